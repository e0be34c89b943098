"""Site-file fields that reach the tools: each test shows one field's effect.

The steps run with their real code; only the SSH link is replaced, at drboot's own boundary,
by a shell on this machine (``LocalShell``), so the disk gate runs the real fio with the
sizes the site asks for. The k3s unit templates are the real playbook templates, rendered
with Jinja2 as Ansible renders them, from the inventory drboot builds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import pytest

from bootstrap.adapters.ansible import PlayResult
from bootstrap.adapters.ssh import Result
from bootstrap.engine.context import StepContext
from bootstrap.errors import ConfigError
from bootstrap.hostkeys import HostKeyExpectation
from bootstrap.outputs import Connected, DiskGated, Provisioned, VerifiedKey
from bootstrap.providers.base import HostInfo
from bootstrap.settings import Site
from bootstrap.siteload import load_site_text
from bootstrap.steps import common, hosts, keys, kubernetes
from bootstrap.steps.resources import RunResources
from tests.conftest import REPO
from tests.stepkit import step_context

BASE = """\
apiVersion: drboot.dev/v1
name: fields
provider:
  type: static
  hosts:
    - {{name: s1, address: 10.200.254.250, labels: {{tier: control, example.com/zone: a}}}}
escrow: {{backend: age, bundle: kit.age, identity_files: [id.txt]}}
repo: {{url: https://git.example.invalid/platform.git}}
"""


def site(tmp_path: Path, extra: str = "") -> Site:
    return load_site_text(BASE.format() + extra, "site.yaml", base_dir=tmp_path)


@dataclass
class LocalShell:
    """Stands in for a connected SSH client: runs the command on this machine."""

    commands: list[str]

    def run(self, cmd: str, timeout: float | None = None, check: bool = True) -> Result:
        self.commands.append(cmd)
        proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=300)
        if check:
            assert proc.returncode == 0, proc.stderr
        return Result(proc.returncode, proc.stdout, proc.stderr)


def context(tmp_path: Path, s: Site, step_id: str, shell: LocalShell | None = None) -> StepContext:
    """Step ``step_id`` of a run that provisioned and verified host s1."""
    ctx = step_context(
        s, tmp_path / "state" / "runs" / "r1", step_id, shell=shell or LocalShell([])
    )
    host = HostInfo("s1", "10.200.254.250", "server", labels={"tier": "control"})
    ctx._scope.outputs["provision"] = Provisioned(hosts=[host]).to_json()
    ctx._scope.outputs["connect"] = Connected(
        host_keys={"s1": VerifiedKey("ssh-ed25519 AAAA", "SHA256:x", "pinned")}
    ).to_json()
    return ctx


@pytest.mark.skipif(shutil.which("fio") is None, reason="needs fio (make setup installs it)")
def test_disk_gate_size_block_size_and_directory_reach_fio(tmp_path: Path) -> None:
    etcd = tmp_path / "etcd-disk"
    # The threshold is out of the way: this test is about what fio is asked to do.
    gate = f"{{size: 3m, block_size: 4096, directory: {etcd}, p99_fdatasync_ms: 10000}}"
    s = site(tmp_path, f"disk_gate: {gate}\n")
    shell = LocalShell([])
    ctx = context(tmp_path, s, "disk-gate", shell)
    hosts.disk_gate(ctx)
    fio = next(c for c in shell.commands if " fio " in f" {c}")
    assert f"--directory={etcd}" in fio and "--size=3m" in fio and "--bs=4096" in fio
    verdict = DiskGated.from_json(ctx.outputs).verdicts[0]
    assert verdict.host == "s1"
    # fio really wrote 3 MiB in 4096-byte fdatasync'd writes: 768 writes (fio reports the
    # syncs between them; the defaults, 22m in 2300-byte writes, give 10029).
    assert 3 * 1024 * 1024 // 4096 - 1 <= verdict.syncs <= 3 * 1024 * 1024 // 4096
    assert not list(etcd.glob("etcd-gate.*")), "the gate removes its job file"


def test_disk_gate_directory_defaults_to_etcd_under_the_data_dir(tmp_path: Path) -> None:
    s = site(tmp_path, "kubernetes: {data_dir: /srv/k3s}\n")
    assert s.etcd_dir() == Path("/srv/k3s/server/db")
    assert site(tmp_path).etcd_dir() == Path("/var/lib/rancher/k3s/server/db")


def test_ssh_timeouts_and_keepalive_reach_the_ssh_client(tmp_path: Path) -> None:
    s = site(tmp_path, "ssh: {connect_timeout: 7s, command_timeout: 42s, keepalive_interval: 9s}\n")
    ctx = context(tmp_path, s, "connect")
    res = RunResources(ctx._scope.info())
    client = res.new_ssh(ctx.read(Provisioned).hosts[0], HostKeyExpectation(), "connect")
    assert (client.connect_timeout, client.command_timeout, client.keepalive_interval) == (7, 42, 9)
    seen: list[float] = []

    def exec_(
        cmd: str, timeout: float, stdin: bytes | None, label: str
    ) -> tuple[int, bytes, bytes]:
        seen.append(timeout)
        return 0, b"", b""

    client._exec = exec_  # type: ignore[method-assign]
    client.run("true")
    client.run("true", timeout=3)
    assert seen == [42, 3], "a command given no timeout gets ssh.command_timeout"


def _render(template: str, variables: dict[str, Any]) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["bool"] = lambda v: str(v).lower() in ("true", "yes", "1")  # Ansible's filter
    text = (REPO / "playbooks" / "roles" / "k3s" / "templates" / template).read_text()
    return env.from_string(text).render(**variables)


def _role_defaults() -> dict[str, Any]:
    import yaml

    return dict(yaml.safe_load((REPO / "playbooks/roles/k3s/defaults/main.yml").read_text()))


def test_data_dir_and_node_labels_reach_the_k3s_units(tmp_path: Path, monkeypatch: Any) -> None:
    s = site(tmp_path, "kubernetes: {data_dir: /srv/k3s}\n")
    ctx = context(tmp_path, s, "install-k3s")
    captured: dict[str, Any] = {}

    def playbook(c: StepContext, name: str, **kw: Any) -> PlayResult:
        captured.update(kw["group_vars"], inventory=common.inventory(c, kw["group_vars"]))
        return PlayResult(ok=True, changed={"s1": 1})

    monkeypatch.setattr(common, "playbook", playbook)
    monkeypatch.setattr(RunResources, "kit", lambda self: type("K", (), {"k3s_token": "t"})())
    kubernetes.install_k3s(ctx)
    assert captured["k3s_data_dir"] == "/srv/k3s"
    # the report's "versions installed": the pinned release the role asserted on the hosts
    assert ctx.outputs["version"] == s.kubernetes.version == captured["k3s_version"]
    assert ctx.outputs["version_checked"] is True
    host_vars = captured["inventory"]["all"]["children"]["servers"]["hosts"]["s1"]
    assert host_vars["k3s_node_labels"] == {"tier": "control"}
    variables = _role_defaults() | {
        "k3s_data_dir": captured["k3s_data_dir"],
        "k3s_node_labels": host_vars["k3s_node_labels"],
        "k3s_node_ip": "10.200.254.250",
        "k3s_is_first": True,
        "k3s_embedded_etcd": False,
        "k3s_server_url": "https://10.200.254.250:6443",
        "ansible_managed": "drboot",
    }
    for unit in ("k3s.service.j2", "k3s-agent.service.j2"):
        text = _render(unit, variables)
        assert "--data-dir /srv/k3s" in text, unit
        assert "--node-label tier=control" in text, unit


def test_site_labels_reach_the_provider_hosts(tmp_path: Path) -> None:
    from bootstrap.providers.static import StaticHosts

    (host,) = StaticHosts(site(tmp_path)).observe()
    assert host.labels == {"tier": "control", "example.com/zone": "a"}


@pytest.mark.parametrize("label", ["bad key: x", "tier: 'two words'", "-x: y"])
def test_invalid_node_labels_are_refused_with_their_location(tmp_path: Path, label: str) -> None:
    text = BASE.format().replace(
        "labels: {tier: control, example.com/zone: a}", f"labels: {{{label}}}"
    )
    with pytest.raises(ConfigError) as err:
        load_site_text(text, "site.yaml", base_dir=tmp_path)
    assert "site.yaml:6:" in err.value.format()


def test_controller_name_names_every_controller_object(tmp_path: Path) -> None:
    docs = keys.controller_manifest("sealed", "ss-prod")
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {
        ("Deployment", "ss-prod"),
        ("Service", "ss-prod"),
        ("ServiceAccount", "ss-prod"),
    } <= names
    assert not any(n == keys.UPSTREAM_NAME for _, n in names)
    dep = next(d for d in docs if d["kind"] == "Deployment")
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "ss-prod"
    subjects = [sub for d in docs for sub in d.get("subjects") or []]
    assert subjects and all(
        sub == {"kind": "ServiceAccount", "name": "ss-prod", "namespace": "sealed"}
        for sub in subjects
    )


@pytest.mark.parametrize(
    ("extra", "line"),
    [
        ("sealed_secrets: {version: 0.27.0}\n", 9),
        ("reconciler: {type: argocd, version: v2.9.0}\n", 9),
        ("reconciler: {type: flux, version: v2.3.0}\n", 9),
    ],
)
def test_a_version_other_than_the_shipped_one_is_refused(
    tmp_path: Path, extra: str, line: int
) -> None:
    if "flux" in extra:
        pass  # the base repo is https: Flux can follow it
    with pytest.raises(ConfigError) as err:
        load_site_text(BASE.format() + extra, "site.yaml", base_dir=tmp_path)
    text = err.value.format()
    assert f"site.yaml:{line}:" in text and "this drboot installs" in text


def test_the_shipped_versions_are_accepted(tmp_path: Path) -> None:
    from bootstrap import pins

    s = site(tmp_path, f"sealed_secrets: {{version: {pins.SEALED_SECRETS_VERSION}}}\n")
    assert s.sealed_secrets.version == pins.SEALED_SECRETS_VERSION
    manifest = (REPO / "bootstrap/manifests/sealed-secrets/controller.yaml").read_text()
    assert f"sealed-secrets-controller:{pins.SEALED_SECRETS_VERSION}" in manifest
    argo = (REPO / "bootstrap/manifests/argo-cd/install.yaml").read_text()
    assert f"quay.io/argoproj/argocd:{pins.ARGOCD_VERSION}" in argo
    assert json.dumps(pins.FLUX_VERSION)
