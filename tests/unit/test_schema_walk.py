"""Every site-file field works, or it does not exist.

The ``Site`` model is walked through its nested models and discriminated unions into leaf
field paths (``provider[static].hosts.labels``, ``escrow[age].recipients``,
``reconciler[flux].interval``); secret references (``SecretRef``/``EscrowRef`` and their
aliases) are leaves, since what matters is where the secret goes, not how it is named.
``FIELD_EFFECTS`` names, for every leaf, the test that shows what the field changes: a test
that would fail if drboot ignored the field. Fields that only select or pin a value (the
format version, a pinned controller version) count with a test showing that another value
is refused. A field added to the schema without such a test fails here, and so does an entry
for a field that is gone or a test that does not exist.
"""

from __future__ import annotations

import ast
import types
import typing
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, create_model

from bootstrap.settings import Site
from bootstrap.sitetypes.secretrefs import EscrowRef, SecretRef
from tests.conftest import REPO

MORE = "tests/unit/test_field_effects_more.py"
EFFECTS = "tests/unit/test_field_effects.py"
VERSION_REFUSED = f"{EFFECTS}::test_a_version_other_than_the_shipped_one_is_refused"
K3S_ROLE = f"{MORE}::test_k3s_settings_reach_the_k3s_role"
POINT = f"{MORE}::test_point_at_repo_builds_the_root_objects_the_site_describes"
REPORT = f"{MORE}::test_report_directory_formats_and_rto_objective"
CONNECT = f"{MORE}::test_connect_trusts_only_the_host_key_the_site_allows"
SSH_CLIENT = f"{MORE}::test_ssh_user_key_and_sudo_reach_the_client_and_ansible"
SSH_TIMEOUTS = f"{EFFECTS}::test_ssh_timeouts_and_keepalive_reach_the_ssh_client"
STATIC_HOSTS = f"{MORE}::test_static_hosts_reach_the_inventory_and_the_ssh_client"
LAB_HOSTS = f"{MORE}::test_lab_provider_makes_the_lab_the_site_describes"
FIO = f"{EFFECTS}::test_disk_gate_size_block_size_and_directory_reach_fio"
REFUSED = f"{MORE}::test_a_value_this_drboot_cannot_honour_is_refused"
SHAMIR_BACKUP = f"{MORE}::test_shamir_backup_splits_the_kit_as_the_site_says"
SHAMIR_OPEN = "tests/unit/test_escrow_cli.py::test_shamir_escrow_opens_with_threshold_shares_only"
SEALED = f"{MORE}::test_sealed_secrets_namespace_and_controller_name_reach_the_cluster"
SYNC_SCOPE = f"{MORE}::test_sync_wait_decides_which_apps_count_and_when_to_give_up"
GATES = "tests/unit/test_field_effects_gates.py"
SOVEREIGN = "tests/unit/test_sovereignty.py::"
SOV_REFUSED = (
    f"{SOVEREIGN}test_a_host_or_repo_outside_the_allowed_countries_is_refused_in_preflight"
)
CPU_THRESHOLDS = f"{GATES}::test_cpu_gate_thresholds_decide_the_verdict"
SYNC_TIMING = f"{MORE}::test_sync_wait_watches_and_holds_as_the_site_says"
RUN_END = "tests/unit/test_run_end.py"
HCLOUD = "tests/unit/test_hcloud_provider.py"
HCLOUD_FIELDS = f"{HCLOUD}::test_site_fields_reach_the_api"
OS = "tests/unit/test_openstack_provider.py::"
OS_CREDS = f"{OS}test_credentials_reach_keystone_as_the_site_states_them"
OS_FOUND = f"{OS}test_keypair_network_and_security_group_are_found_or_created_once"
OS_NAMED = f"{OS}test_named_resources_from_the_site_file_are_used"
OS_PREFLIGHT = f"{OS}test_unknown_flavor_image_or_network_is_refused_before_anything_is_created"

FIELD_EFFECTS: dict[str, str] = {
    "apiVersion": REFUSED,
    "kind": REFUSED,
    "name": f"{MORE}::test_site_name_must_be_the_name_in_the_recovery_kit",
    "description": f"{MORE}::test_description_heads_the_report",
    "extends": "tests/unit/test_site_extends.py::test_extends_lays_the_region_over_its_base",
    "provider[static].type": f"{MORE}::test_provider_type_picks_the_provider",
    "provider[static].hosts.name": STATIC_HOSTS,
    "provider[static].hosts.address": STATIC_HOSTS,
    "provider[static].hosts.role": STATIC_HOSTS,
    "provider[static].hosts.ssh_port": STATIC_HOSTS,
    "provider[static].hosts.host_key_fingerprint": CONNECT,
    "provider[static].hosts.labels": f"{EFFECTS}::test_site_labels_reach_the_provider_hosts",
    "provider[static].hosts.country": SOV_REFUSED,
    "provider[lab].type": f"{MORE}::test_provider_type_picks_the_provider",
    "provider[hcloud].type": f"{HCLOUD}::test_plan_line_and_country_come_from_the_api",
    "provider[hcloud].token": f"{HCLOUD}::test_bad_token_location_type_or_image_is_refused_"
    "before_anything_is_bought",
    "provider[hcloud].location": HCLOUD_FIELDS,
    "provider[hcloud].server_type": HCLOUD_FIELDS,
    "provider[hcloud].image": HCLOUD_FIELDS,
    "provider[hcloud].ssh_key_name": HCLOUD_FIELDS,
    "provider[hcloud].servers": f"{HCLOUD}::test_plan_line_and_country_come_from_the_api",
    "provider[hcloud].agents": HCLOUD_FIELDS,
    "provider[hcloud].network.ip_range": HCLOUD_FIELDS,
    "provider[hcloud].network.subnet": HCLOUD_FIELDS,
    "provider[hcloud].firewall.operator_cidrs": HCLOUD_FIELDS,
    "provider[hcloud].create_timeout": f"{HCLOUD}::test_a_server_stuck_in_initializing_ends_"
    "in_a_located_error",
    "provider[hcloud].endpoint": f"{HCLOUD}::test_bad_hcloud_fields_are_refused_at_validation",
    "provider[lab].servers": LAB_HOSTS,
    "provider[lab].agents": REFUSED,
    "provider[lab].subnet_index": "tests/integration/test_lab_provider.py::"
    "test_subnet_index_places_the_lab_and_a_taken_one_is_refused",
    "provider[lab].state_dir": LAB_HOSTS,
    "provider[lab].disk": LAB_HOSTS,
    "provider[lab].slow_disk_iops": LAB_HOSTS,
    "provider[openstack].type": f"{OS}test_the_provider_is_picked_by_type_and_states_the_country",
    "provider[openstack].cloud": f"{OS}test_clouds_yaml_cloud_name",
    "provider[openstack].clouds_file": f"{OS}test_clouds_yaml_cloud_name",
    "provider[openstack].auth.auth_url": f"{OS}test_auth_url_and_region_pick_the_endpoints",
    "provider[openstack].auth.username": OS_CREDS,
    "provider[openstack].auth.password": f"{OS}test_bad_credentials_are_refused_before_anything"
    "_is_created",
    "provider[openstack].auth.project_name": OS_CREDS,
    "provider[openstack].auth.user_domain_name": OS_CREDS,
    "provider[openstack].auth.project_domain_name": OS_CREDS,
    "provider[openstack].region": f"{OS}test_auth_url_and_region_pick_the_endpoints",
    "provider[openstack].country": f"{OS}test_the_provider_is_picked_by_type_and_states_the"
    "_country",
    "provider[openstack].flavor": OS_PREFLIGHT,
    "provider[openstack].image": OS_PREFLIGHT,
    "provider[openstack].network": OS_PREFLIGHT,
    "provider[openstack].keypair": OS_NAMED,
    "provider[openstack].private_network": OS_NAMED,
    "provider[openstack].security_group": OS_NAMED,
    "provider[openstack].private_cidr": OS_FOUND,
    "provider[openstack].operator_cidrs": OS_FOUND,
    "provider[openstack].servers": f"{OS}test_create_finds_before_it_buys_and_a_rerun_buys"
    "_nothing",
    "provider[openstack].agents": f"{OS}test_agents_are_created_with_their_role",
    "provider[openstack].build_timeout": f"{OS}test_a_server_stuck_in_build_times_out_and_resume"
    "_uses_the_same_server",
    "kubernetes.version": K3S_ROLE,
    "kubernetes.topology": K3S_ROLE,
    "kubernetes.install": K3S_ROLE,
    "kubernetes.airgap_dir": K3S_ROLE,
    "kubernetes.download_url": K3S_ROLE,
    "kubernetes.sha256": K3S_ROLE,
    "kubernetes.tls_sans": K3S_ROLE,
    "kubernetes.token": f"{MORE}::test_kubernetes_token_reference_is_the_token_k3s_gets",
    "kubernetes.api_ready_timeout": f"{MORE}::test_api_ready_timeout_bounds_the_wait_for_the_api",
    "kubernetes.data_dir": f"{EFFECTS}::test_data_dir_and_node_labels_reach_the_k3s_units",
    "disk_gate.enabled": f"{MORE}::test_disk_gate_enabled_decides_whether_fio_runs",
    "disk_gate.directory": FIO,
    "disk_gate.p99_fdatasync_ms": f"{MORE}::test_disk_gate_threshold_decides_the_verdict",
    "disk_gate.size": FIO,
    "disk_gate.block_size": FIO,
    "disk_gate.sustained.seconds": f"{GATES}::"
    "test_disk_gate_sustained_seconds_runs_real_fio_for_that_long",
    "disk_gate.runtime_limit": f"{MORE}::test_disk_gate_runtime_limit_stops_fio",
    "cpu_gate.enabled": f"{GATES}::test_cpu_gate_enabled_decides_whether_the_probe_runs",
    "cpu_gate.max_steal_percent": CPU_THRESHOLDS,
    "cpu_gate.min_throughput_ratio": CPU_THRESHOLDS,
    "cpu_gate.window": f"{GATES}::test_cpu_gate_window_is_how_long_the_real_probe_runs",
    "escrow[age].backend": f"{MORE}::test_escrow_backend_picks_the_backend",
    "escrow[age].bundle": "tests/unit/test_escrow_cli.py::test_verify_passes_and_reports_counts",
    "escrow[age].identity_files": "tests/unit/test_escrow_cli.py::"
    "test_wrong_identity_is_a_distinct_clear_error",
    "escrow[age].passphrase": f"{MORE}::test_escrow_passphrase_reference_opens_the_bundle",
    "escrow[age].recipients": f"{MORE}::test_escrow_backup_encrypts_to_the_site_recipients",
    "escrow[shamir].backend": f"{MORE}::test_escrow_backend_picks_the_backend",
    "escrow[shamir].bundle": SHAMIR_OPEN,
    "escrow[shamir].shares": SHAMIR_OPEN,
    "escrow[shamir].threshold": SHAMIR_BACKUP,
    "escrow[shamir].total": SHAMIR_BACKUP,
    "sealed_secrets.namespace": SEALED,
    "sealed_secrets.controller_name": SEALED,
    "sealed_secrets.version": VERSION_REFUSED,
    "sealed_secrets.key_renewal_period": f"{MORE}::"
    "test_key_renewal_period_decides_the_backup_warning",
    "sealed_secrets.verify_in_preflight": f"{MORE}::"
    "test_verify_in_preflight_decides_whether_the_repo_is_checked",
    "reconciler[argocd].type": POINT,
    "reconciler[argocd].version": VERSION_REFUSED,
    "reconciler[argocd].namespace": POINT,
    "reconciler[argocd].app_of_apps": POINT,
    "reconciler[argocd].project": POINT,
    "reconciler[flux].type": POINT,
    "reconciler[flux].version": VERSION_REFUSED,
    "reconciler[flux].namespace": POINT,
    "reconciler[flux].interval": POINT,
    "repo.url": POINT,
    "repo.revision": POINT,
    "repo.path": POINT,
    "repo.deploy_key": f"{MORE}::test_repo_deploy_key_and_known_hosts_reach_the_reconciler",
    "repo.known_hosts": f"{MORE}::test_repo_deploy_key_and_known_hosts_reach_the_reconciler",
    "repo.country": SOV_REFUSED,
    "sovereignty.allowed_countries": SOV_REFUSED,
    "repo.pin": "tests/unit/test_wait_meaning.py::"
    "test_repo_pin_commit_points_the_reconciler_at_the_verified_commit",
    "sync_wait.timeout": SYNC_SCOPE,
    "sync_wait.poll_interval": SYNC_TIMING,
    "sync_wait.require_all": SYNC_SCOPE,
    "sync_wait.ignore_apps": SYNC_SCOPE,
    "sync_wait.stable_for": SYNC_TIMING,
    "sync_wait.sync_manual_apps": "tests/unit/test_wait_meaning.py::"
    "test_sync_manual_apps_syncs_a_manual_app_once_at_the_verified_commit",
    "rto.objective": REPORT,
    "ssh.user": SSH_CLIENT,
    "ssh.private_key_file": SSH_CLIENT,
    "ssh.known_hosts_file": CONNECT,
    "ssh.trust_on_first_use": CONNECT,
    "ssh.connect_timeout": SSH_TIMEOUTS,
    "ssh.command_timeout": SSH_TIMEOUTS,
    "ssh.keepalive_interval": SSH_TIMEOUTS,
    "ssh.sudo": SSH_CLIENT,
    "report.directory": REPORT,
    "report.formats": REPORT,
    "metrics.textfile": f"{RUN_END}::test_metrics_textfile_after_a_drill_and_a_failed_restore",
    "notify.webhook.url": f"{RUN_END}::test_webhook_json_body_of_a_drill",
    "notify.webhook.format": f"{RUN_END}::test_webhook_slack_body_of_a_failed_restore",
    "notify.webhook.timeout": f"{RUN_END}::"
    "test_a_failing_webhook_is_a_warning_and_never_shows_its_url",
}

LEAF_MODELS = (SecretRef, EscrowRef)


# --------------------------------------------------------------------------- the walk


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Annotated, unions, containers)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, tuple, list, dict, frozenset, set):
        return [m for arg in typing.get_args(annotation) if arg is not Ellipsis
                for m in _models(arg)]  # fmt: skip
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def leaf_paths(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """Every leaf field of ``model``: ``a.b`` through nested models (and sequences of them),
    ``a[tag].b`` through a union discriminated by a literal field."""
    for name, info in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        found = _models(info.annotation)
        if not found or any(issubclass(m, LEAF_MODELS) for m in found):
            yield path
        elif len(found) == 1:
            yield from leaf_paths(found[0], path)
        else:
            key = info.discriminator
            if not isinstance(key, str):
                raise TypeError(f"{path}: a union of models without a named discriminator")
            for variant in found:
                (tag,) = typing.get_args(variant.model_fields[key].annotation)
                yield from leaf_paths(variant, f"{path}[{tag}]")


# --------------------------------------------------------------------------- the check


@cache
def _test_functions(path: Path) -> frozenset[str]:
    tree = ast.parse(path.read_text(), str(path))
    return frozenset(
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    )


def problems(effects: Mapping[str, str], fields: list[str], root: Path) -> list[str]:
    """What is wrong with ``effects`` as the table of ``fields`` (empty: nothing)."""
    out = [
        f"field {f} has no test showing its effect: add one, or remove the field"
        for f in fields
        if f not in effects
    ]
    out += [
        f"FIELD_EFFECTS names {f}, which is not a field of the site schema"
        for f in effects
        if f not in fields
    ]
    for field, ref in effects.items():
        file, sep, name = ref.partition("::")
        path = root / file
        if not sep or "[" in name or not name:
            out.append(f"{field}: {ref!r} is not 'tests/.../test_x.py::test_name'")
        elif not path.is_file():
            out.append(f"{field}: {file} does not exist")
        elif name not in _test_functions(path):
            out.append(f"{field}: {file} has no test function {name}")
    return out


# --------------------------------------------------------------------------- tests


def test_the_walk_reaches_every_kind_of_field() -> None:
    fields = list(leaf_paths(Site))
    assert len(fields) == len(set(fields))
    assert {
        "apiVersion",
        "provider[static].hosts.labels",
        "provider[lab].subnet_index",
        "escrow[age].recipients",
        "escrow[shamir].threshold",
        "reconciler[flux].interval",
        "reconciler[argocd].app_of_apps",
        "kubernetes.token",
        "repo.deploy_key",
        "ssh.sudo",
    } <= set(fields)
    # secret references are leaves, not their env/file/escrow keys; no union left unnamed
    assert not [f for f in fields if f.endswith((".env", ".file", ".escrow"))]
    assert not [f for f in fields if f.split(".")[0] in ("provider", "escrow", "reconciler")]


def test_every_field_has_a_test_showing_its_effect() -> None:
    found = problems(FIELD_EFFECTS, list(leaf_paths(Site)), REPO)
    assert not found, "\n".join(found)


def test_the_check_catches_a_missing_field_a_stale_entry_and_a_missing_test(
    tmp_path: Path,
) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text(
        "import pytest\n\n@pytest.mark.parametrize('v', [1])\ndef test_real(v):\n    pass\n"
        "\nclass TestGroup:\n    def test_method(self):\n        pass\n\ndef helper():\n    pass\n"
    )
    fields = ["a", "b.c", "d"]
    effects = {
        "a": "tests/test_x.py::test_real",
        "b.c": "tests/test_x.py::test_method",
        "gone": "tests/test_x.py::test_real",
        "d": "tests/test_x.py::test_imagined",
    }
    assert problems(effects, fields, tmp_path) == [
        "FIELD_EFFECTS names gone, which is not a field of the site schema",
        "d: tests/test_x.py has no test function test_imagined",
    ]
    del effects["a"]
    effects["d"] = "tests/test_x.py::helper"
    assert problems(effects, fields, tmp_path) == [
        "field a has no test showing its effect: add one, or remove the field",
        "FIELD_EFFECTS names gone, which is not a field of the site schema",
        "d: tests/test_x.py has no test function helper",
    ]
    for bad in ("tests/test_x.py::test_real[1]", "tests/test_x.py", "tests/nope.py::test_real"):
        assert len(problems({**effects, "d": bad}, fields, tmp_path)) == 3, bad


@pytest.mark.parametrize(
    ("annotation", "reason"),
    [(int | None, "scalar"), (tuple[SecretRef, ...], "secret reference")],
)
def test_scalars_and_secret_references_are_leaves(annotation: Any, reason: str) -> None:
    probe = create_model("Probe", value=(annotation, ...))
    assert list(leaf_paths(probe)) == ["value"], reason


def test_a_union_of_models_without_a_named_discriminator_is_refused() -> None:
    class A(BaseModel):
        x: int

    class B(BaseModel):
        y: int

    class Probe(BaseModel):
        either: A | B

    with pytest.raises(TypeError, match="either: a union of models without a named"):
        list(leaf_paths(Probe))
