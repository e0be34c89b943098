"""More site-file fields and what they change: each test would fail if drboot ignored its field.

The companion of ``test_field_effects.py``, whose seam it reuses: ``context`` hands a step a
site and a run that provisioned and verified host s1, and ``tests/stepkit.py`` gives it the
recovery kit, a cluster client or an SSH stand-in. The steps and functions that read the
fields run for real. Where a step talks to a cluster it gets ``RecordingCluster``, a stand-in
at drboot's own boundary (the ``KubeAPI`` protocol), not a Kubernetes server: it keeps objects
in a dict and records what it was asked. Where a step needs a lab or an SSH handshake, the
stand-in is said so beside it. The k3s role is the real one, rendered as Ansible renders it.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from jinja2.nativetypes import NativeEnvironment

from bootstrap.adapters.ansible import PlayResult
from bootstrap.adapters.ssh import Result
from bootstrap.engine.context import StepContext
from bootstrap.engine.journal import Journal
from bootstrap.errors import (
    ConfigError,
    EscrowError,
    HostKeyMismatch,
    PermanentError,
    PreflightError,
    TransientError,
    WaitTimeout,
)
from bootstrap.escrow import TooFewShares, WrongIdentity, age_file, service, shamir
from bootstrap.escrow.backend import AgeFileBackend, ShamirBackend
from bootstrap.escrow.kit import RecoveryKit, SealingKey
from bootstrap.hostkeys import HostKeyExpectation, PublicKey, decide
from bootstrap.kubeapi import Listed, WatchCancel, WatchEvent
from bootstrap.outputs import KeysRestored
from bootstrap.providers import provider_for
from bootstrap.providers.base import HostInfo
from bootstrap.settings import Site
from bootstrap.siteload import load_site_text
from bootstrap.steps import common, finish, gitops, hosts, keys, kubernetes, preflight
from bootstrap.steps.resources import RunResources
from tests.conftest import REPO
from tests.stepkit import GivenResources
from tests.unit.test_field_effects import LocalShell, _role_defaults, context

Obj = dict[str, Any]

URL = "https://git.example.invalid/platform.git"
SITE = {
    "apiVersion": "drboot.dev/v1",
    "name": "more",
    "provider": "{type: static, hosts: [{name: s1, address: 10.200.254.250}]}",
    "escrow": "{backend: age, bundle: kit.age, identity_files: [id.txt]}",
    "repo": f"{{url: {URL}}}",
}


def make_site(tmp_path: Path, **sections: str) -> Site:
    """A site file from ``SITE`` with top-level sections replaced or added (flow YAML)."""
    text = "".join(f"{key}: {value}\n" for key, value in (SITE | sections).items())
    return load_site_text(text, "site.yaml", base_dir=tmp_path)


def given(
    tmp_path: Path,
    s: Site,
    step_id: str,
    *,
    kit: RecoveryKit | None = None,
    kube: Any = None,
    shell: LocalShell | None = None,
    timeout: float = 600,
) -> StepContext:
    """``context`` (host s1 provisioned and verified) with the kit, the cluster client and/or
    an SSH stand-in given, and a step timeout of ``timeout`` seconds."""
    ctx = context(tmp_path, s, step_id, shell)
    res = GivenResources(ctx._scope, kit=kit, kube=kube, shell=shell or LocalShell([]))
    ctx._scope.shared[RunResources] = res
    return StepContext(ctx._scope, step_id, timeout)


def from_site(
    tmp_path: Path, s: Site, step_id: str, shell: LocalShell | None = None
) -> StepContext:
    """A step's context whose hosts are the site's: the provision step ran first, for real."""
    ctx = context(tmp_path, s, step_id, shell)
    prov = StepContext(ctx._scope, "provision", 60)
    hosts.provision(prov)
    ctx._scope.outputs["provision"] = prov.outputs
    return ctx


CLUSTER_SCOPED = {"Namespace", "Node", "CustomResourceDefinition", "ClusterRole",
                  "ClusterRoleBinding"}  # fmt: skip


class RecordingCluster:
    """The verbs of ``bootstrap.kubeapi.KubeAPI`` over a dict. A stand-in at drboot's own
    boundary, not a Kubernetes server: no validation, no controllers. What it adds of its own:
    a Deployment reads as rolled out once stored (as the controller-manager and kubelet would
    report it), and ``proxy_get`` answers ``served`` only for a Service it holds."""

    target = "recording-cluster"

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str | None, str], Obj] = {}
        self.patches: list[tuple[str, str | None, str, Obj]] = []
        self.waits: list[tuple[str, float]] = []
        self.proxied: list[tuple[str, str, int | str, str]] = []
        self.lists: dict[str, list[float]] = {}
        self.watches: dict[str, list[float]] = {}
        self.served = b""

    def __enter__(self) -> RecordingCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def close(self) -> None:
        return None

    @staticmethod
    def _key(kind: str, name: str, namespace: str | None) -> tuple[str, str | None, str]:
        return kind, None if kind in CLUSTER_SCOPED else namespace, name

    def _store(self, obj: Obj, namespace: str | None = None) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if obj["kind"] not in CLUSTER_SCOPED:
            meta.setdefault("namespace", namespace)
        if obj["kind"] == "Deployment":
            replicas = (obj.get("spec") or {}).get("replicas", 1)
            meta.setdefault("generation", 1)
            obj["status"] = {
                "observedGeneration": meta["generation"],
                "replicas": replicas,
                "updatedReplicas": replicas,
                "availableReplicas": replicas,
            }
        self.objects[self._key(obj["kind"], meta["name"], meta.get("namespace"))] = obj
        return obj

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None:
        return self.objects.get(self._key(kind, name, namespace))

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Obj]:
        self.lists.setdefault(kind, []).append(time.monotonic())
        label = (label_selector or "").split("=")[0]
        return [
            copy.deepcopy(o)
            for (k, ns, _), o in self.objects.items()
            if k == kind
            and (namespace is None or ns == namespace)
            and (not label or label in (o["metadata"].get("labels") or {}))
        ]

    def list_versioned(self, api_version: str, kind: str, namespace: str | None = None) -> Listed:
        return Listed(self.list(api_version, kind, namespace), "1")

    def watch(
        self, api_version: str, kind: str, namespace: str | None = None, *,
        resource_version: str | None = None, timeout: int = 60, bookmarks: bool = False,
        cancel: WatchCancel | None = None,
    ) -> Iterator[WatchEvent]:  # fmt: skip
        """No changes: the watch runs out after ``timeout`` seconds, as the server's would
        (or when ``cancel`` shuts it down)."""
        self.watches.setdefault(kind, []).append(time.monotonic())
        closed = threading.Event()
        if cancel is not None:
            cancel.bind(closed.set)
        closed.wait(timeout)
        yield from ()

    def serves(self, api_version: str, kind: str) -> bool:
        return True

    def create(self, obj: Obj) -> Obj:
        return self._store(obj)

    def apply(self, obj: Obj, field_manager: str = "drboot", *, force: bool = True) -> Obj:
        return self._store(obj)

    def apply_manifest(
        self,
        objs: Iterable[Obj],
        *,
        namespace: str | None = None,
        field_manager: str = "drboot",
        crd_timeout: float = 60.0,
    ) -> list[Obj]:
        return [self._store(o, namespace) for o in objs]

    def patch(
        self, api_version: str, kind: str, name: str, patch: Obj, namespace: str | None = None
    ) -> Obj:
        self.patches.append((kind, namespace, name, patch))
        return patch

    def wait_ready(self, timeout: float = 120.0, interval: float = 0.5) -> None:
        self.waits.append(("wait_ready", timeout))

    def wait_for(
        self,
        api_version: str,
        kind: str,
        name: str,
        predicate: Any,
        namespace: str | None = None,
        *,
        timeout: float = 60.0,
        interval: float = 0.5,
        what: str = "ready",
    ) -> Obj | None:
        self.waits.append((f"{kind} {name} {what}", timeout))
        obj = self.get(api_version, kind, name, namespace)
        assert predicate(obj), f"{kind} {name} is not {what}"
        return obj

    def proxy_get(
        self, namespace: str, service: str, port: int | str, path: str, *, scheme: str = ""
    ) -> bytes:
        self.proxied.append((namespace, service, port, path))
        if self.get("v1", "Service", service, namespace) is None:
            raise PermanentError(f"no Service {namespace}/{service}")
        return self.served


# --------------------------------------------------------------------------- the report


def _journal_with_a_restored_run(ctx: StepContext, ready_after: float) -> None:
    """The journal of run ``ctx.run_id`` as the pipeline leaves it when the report step
    starts: wait-synced done, every app ready ``ready_after`` seconds after the start."""
    j = Journal(ctx.state_root / "journal.sqlite")
    try:
        j.create_run(ctx.run_id, ctx.site.name, "restore", ["wait-synced", "report"], {}, "d")
        start = j.run(ctx.run_id).created  # type: ignore[union-attr]
        n = j.start_attempt(ctx.run_id, "wait-synced")
        j.end_attempt(ctx.run_id, "wait-synced", n, "ok", None)
        j.finish_step(ctx.run_id, "wait-synced", "done", {"ready_at": start + ready_after}, "ok")
        j.start_attempt(ctx.run_id, "report")
    finally:
        j.close()


@pytest.mark.parametrize(
    ("sections", "where", "files", "objective", "met"),
    [
        ({}, None, ["report.html", "report.json", "report.junit.xml", "report.md"], 3600, True),
        ({"report": "{directory: out, formats: [junit, json]}"}, "out",
         ["report.json", "report.junit.xml"], 3600, True),
        ({"rto": "{objective: 5m}", "report": "{formats: [json, markdown]}"}, None,
         ["report.json", "report.md"], 300, False),
    ],
    ids=["defaults", "directory-and-formats", "objective"],
)  # fmt: skip
def test_report_directory_formats_and_rto_objective(
    tmp_path: Path,
    sections: dict[str, str],
    where: str | None,
    files: list[str],
    objective: int,
    met: bool,
) -> None:
    ctx = context(tmp_path, make_site(tmp_path, **sections), "report")
    _journal_with_a_restored_run(ctx, ready_after=600)
    finish.report(ctx)
    directory = tmp_path / where if where else ctx.run_dir
    assert sorted(p.name for p in directory.glob("report*")) == files
    assert sorted(Path(p).name for p in ctx.outputs["files"]) == files
    assert (ctx.outputs["rto_objective_seconds"], ctx.outputs["rto_met"]) == (objective, met)
    rto = json.loads((directory / "report.json").read_text())["rto"]
    assert (rto["seconds"], rto["objective_seconds"], rto["met"]) == (600, objective, met)


def test_description_heads_the_report(tmp_path: Path) -> None:
    text = "Oslo production: rebuilt from git every quarter"
    ctx = context(tmp_path, make_site(tmp_path, description=f'"{text}"'), "report")
    _journal_with_a_restored_run(ctx, ready_after=60)
    finish.report(ctx)
    md = (ctx.run_dir / "report.md").read_text().splitlines()
    assert md[0] == "# drboot restore report: more" and md[2] == text
    assert f'"description": "{text}"' in (ctx.run_dir / "report.json").read_text()
    plain = context(tmp_path / "plain", make_site(tmp_path), "report")
    _journal_with_a_restored_run(plain, ready_after=60)
    finish.report(plain)
    assert (plain.run_dir / "report.md").read_text().splitlines()[2].startswith("- run: ")


# --------------------------------------------------------------------------- kubernetes

ROLE = REPO / "playbooks" / "roles" / "k3s"
SHA = "0123456789abcdef" * 4
MIRROR = "https://mirror.example.org/k3s/v1.30.4"


def _jinja(native: bool = False) -> jinja2.Environment:
    """Jinja2 as Ansible sets it up for the k3s role: strict, with its ``bool`` filter and
    ``file`` test (native types when Ansible evaluates a variable that is one expression)."""
    env = (NativeEnvironment if native else jinja2.Environment)(undefined=jinja2.StrictUndefined)
    env.filters["bool"] = lambda v: (
        v if isinstance(v, bool) else str(v).lower() in ("true", "yes", "1")
    )
    env.tests["file"] = lambda p: Path(str(p)).is_file()
    return env


def _host_vars(inventory: Obj, host: str) -> Obj:
    """The variables the k3s role sees on ``host``: its defaults, under the inventory's group
    variables, under the host's own, then the facts the role's first task sets."""
    children = inventory["all"]["children"]
    groups = {g: list(c.get("hosts") or {}) for g, c in children.items()}
    hostvars = {n: hv for c in children.values() for n, hv in (c.get("hosts") or {}).items() if hv}
    variables = {**_role_defaults(), **inventory["all"]["vars"], **hostvars[host]}
    variables |= {"inventory_hostname": host, "groups": groups, "hostvars": hostvars,
                  "ansible_managed": "drboot"}  # fmt: skip
    native = _jinja(native=True)
    pending = [k for k, v in variables.items() if isinstance(v, str) and "{{" in v]
    while pending:  # defaults refer to defaults (k3s_server_url -> k3s_first_server)
        left = []
        for k in pending:
            try:
                variables[k] = native.from_string(variables[k]).render(**variables)
            except jinja2.UndefinedError:
                left.append(k)
        assert len(left) < len(pending), f"unresolvable role variables: {left}"
        pending = left
    tasks = yaml.safe_load((ROLE / "tasks" / "main.yml").read_text())
    facts = next(t for t in tasks if t["name"] == "Work out this node's role")
    for k, v in facts["ansible.builtin.set_fact"].items():
        variables[k] = native.from_string(v).render(**variables)
    return variables


def _role_plan(variables: Obj) -> str:
    """What the k3s role does with ``variables``: each task that runs (its ``when``), the URL,
    checksum or source a download or copy uses, and the systemd unit its template writes."""
    env = _jinja()
    lines = []
    for task in yaml.safe_load((ROLE / "tasks" / "main.yml").read_text()):
        when = task.get("when") or []
        if not all(env.compile_expression(c)(**variables) for c in
                   (when if isinstance(when, list) else [when])):  # fmt: skip
            continue
        lines.append(f"task: {task['name']}")
        module = next(k for k in task if k.startswith("ansible.builtin."))
        args = task[module]
        if module.endswith((".get_url", ".copy")) and "loop" not in task:
            for key in ("url", "checksum", "src", "content"):
                if key in args:
                    lines.append(f"  {key}={env.from_string(str(args[key])).render(**variables)}")
        if module.endswith(".template"):
            src = env.from_string(args["src"]).render(**variables)
            lines.append(
                env.from_string((ROLE / "templates" / src).read_text()).render(**variables)
            )
    return "\n".join(lines)


def _k3s_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s: Site, kit: RecoveryKit | None = None
) -> str:
    """Run install-k3s for ``s``; return what the k3s role does with what it was handed (the
    group variables in the inventory and, as Ansible extra vars, the secret ones)."""
    kit = kit or RecoveryKit(site="more", sealing_keys=[], k3s_token="K10-" + "t" * 24)
    handed: Obj = {}

    def playbook(c: StepContext, name: str, **kw: Any) -> PlayResult:
        handed.update(playbook=name, inventory=common.inventory(c, kw["group_vars"]),
                      secret=kw["secret_vars"])  # fmt: skip
        return PlayResult(ok=True, changed={"s1": 1})

    monkeypatch.setattr(common, "playbook", playbook)
    kubernetes.install_k3s(given(tmp_path, s, "install-k3s", kit=kit))
    assert handed["playbook"] == "k3s.yml"
    return _role_plan(_host_vars(handed["inventory"], "s1") | handed["secret"]) + "\n"


THREE_SERVERS = (
    "{type: static, hosts: [{name: s1, address: 10.200.254.250},"
    " {name: s2, address: 10.200.254.251}, {name: s3, address: 10.200.254.252}]}"
)


@pytest.mark.parametrize(
    ("sections", "shown", "not_shown"),
    [
        pytest.param(
            {"kubernetes": "{version: v1.29.8+k3s1}"},
            ["Lightweight Kubernetes v1.29.8+k3s1 (server",
             "url=https://github.com/k3s-io/k3s/releases/download/v1.29.8%2Bk3s1/k3s"],
            ["v1.30"], id="version",
        ),
        pytest.param(
            {"kubernetes": f"{{download_url: '{MIRROR}', sha256: {SHA}}}"},
            ["task: Download the pinned k3s binary",
             f"url={MIRROR}", f"checksum=sha256:{SHA}"],
            ["github.com", "task: Install the air-gap k3s binary"], id="download_url-sha256",
        ),
        pytest.param(
            {"kubernetes": "{install: airgap, airgap_dir: bundle}"},
            ["task: Install the air-gap k3s binary", "src={tmp}/bundle/k3s",
             "task: Install the air-gap images"],
            ["task: Download the pinned k3s binary"], id="install-airgap_dir",
        ),
        pytest.param(
            {"kubernetes": "{tls_sans: [api.example.org, 192.0.2.10]}"},
            ["--tls-san 10.200.254.250", "--tls-san api.example.org", "--tls-san 192.0.2.10"],
            [], id="tls_sans",
        ),
        pytest.param({}, ["--tls-san 10.200.254.250", "checksum=sha256:\n"],
                     ["--cluster-init", "--tls-san api"], id="defaults"),
        pytest.param({"provider": THREE_SERVERS, "kubernetes": "{topology: ha}"},
                     ["--cluster-init"], [], id="topology-ha"),
    ],
)  # fmt: skip
def test_k3s_settings_reach_the_k3s_role(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sections: dict[str, str],
    shown: list[str],
    not_shown: list[str],
) -> None:
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "k3s").write_text("the air-gap k3s binary\n")
    (tmp_path / "bundle" / "k3s-airgap-images-amd64.tar.zst").write_text("images\n")
    plan = _k3s_plan(tmp_path, monkeypatch, make_site(tmp_path, **sections))
    for text in shown:
        assert text.format(tmp=tmp_path) in plan, plan
    for text in not_shown:
        assert text not in plan, plan


@pytest.mark.parametrize(("setting", "seconds"), [("42s", 42), ("3m", 180)])
def test_api_ready_timeout_bounds_the_wait_for_the_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, seconds: int
) -> None:
    from bootstrap.adapters.kube import KubeClient

    cluster = RecordingCluster()
    ready = {"type": "Ready", "status": "True"}
    cluster.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "s1"},
                    "status": {"conditions": [ready]}})  # fmt: skip
    monkeypatch.setattr(kubernetes, "write_kubeconfig", lambda ctx: tmp_path / "kubeconfig")
    monkeypatch.setattr(KubeClient, "from_kubeconfig", lambda path: cluster)
    s = make_site(tmp_path, kubernetes=f"{{api_ready_timeout: {setting}}}")
    kubernetes.fetch_kubeconfig(given(tmp_path, s, "fetch-kubeconfig", kube=cluster))
    assert ("wait_ready", seconds) in cluster.waits, "the wait for /readyz"
    assert all(timeout <= seconds for _, timeout in cluster.waits), cluster.waits


@pytest.mark.parametrize(
    ("token", "written"),
    [("{escrow: k3s_token}", "K10-token-from-the-escrow"),
     ("{env: DRBOOT_TEST_K3S_TOKEN}", "K10-token-from-the-environment"),
     ("{file: k3s-token}", "K10-token-from-a-file")],
    ids=["escrow", "env", "file"],
)  # fmt: skip
def test_kubernetes_token_reference_is_the_token_k3s_gets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token: str, written: str
) -> None:
    monkeypatch.setenv("DRBOOT_TEST_K3S_TOKEN", "K10-token-from-the-environment")
    (tmp_path / "k3s-token").write_text("K10-token-from-a-file\n")
    kit = RecoveryKit(site="more", sealing_keys=[], k3s_token="K10-token-from-the-escrow")
    s = make_site(tmp_path, kubernetes=f"{{token: {token}}}")
    plan = _k3s_plan(tmp_path, monkeypatch, s, kit)
    lines = plan.splitlines()
    at = lines.index("task: Write the cluster token")
    assert lines[at + 1] == f"  content={written}", plan


# --------------------------------------------------------------------------- escrow

TOKEN = "K10-field-effects-token-0123456789abcdef::server:feedface"


@pytest.fixture(scope="module")
def sealing_key() -> SealingKey:
    from bootstrap import sealing

    key, cert = sealing.generate_key(bits=2048)
    return SealingKey.from_pem("sealed-secrets-keyabcde", sealing.private_key_pem(key), cert)


def _kit(key: SealingKey, site: str = "more") -> RecoveryKit:
    return RecoveryKit(site=site, sealing_keys=[key], k3s_token=TOKEN)


def _identity(path: Path) -> str:
    """Write a new age identity to ``path`` (0600); returns its recipient (age1...)."""
    from bootstrap.adapters.age import generate_identity

    secret, recipient = generate_identity()
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return recipient


SHAMIR = "{{backend: shamir, bundle: kit.shamir, shares: [{shares}], threshold: {m}, total: {n}}}"


@pytest.mark.parametrize(
    ("escrow", "backend"),
    [(SITE["escrow"], AgeFileBackend), (SHAMIR.format(shares="a, b", m=2, n=2), ShamirBackend)],
    ids=["age", "shamir"],
)
def test_escrow_backend_picks_the_backend(tmp_path: Path, escrow: str, backend: type) -> None:
    assert type(service.backend_for(make_site(tmp_path, escrow=escrow))) is backend


def test_site_name_must_be_the_name_in_the_recovery_kit(
    tmp_path: Path, sealing_key: SealingKey
) -> None:
    recipient = _identity(tmp_path / "id.txt")
    age_file.write_kit(tmp_path / "kit.age", _kit(sealing_key, site="oslo"), recipients=[recipient])
    assert service.open_kit(make_site(tmp_path, name="oslo")).fingerprints() == [
        sealing_key.fingerprint
    ]
    with pytest.raises(EscrowError, match="recovery kit of site 'oslo', not 'bergen'"):
        service.open_kit(make_site(tmp_path, name="bergen"))


PASSPHRASE = "correct horse battery staple"


@pytest.fixture(scope="module")
def passphrase_bundle(tmp_path_factory: pytest.TempPathFactory, sealing_key: SealingKey) -> Path:
    """A kit under a passphrase (age's scrypt: ~2 s for each encryption or decryption)."""
    bundle = tmp_path_factory.mktemp("passphrase") / "kit.age"
    age_file.write_kit(bundle, _kit(sealing_key), passphrase=PASSPHRASE)
    return bundle


@pytest.mark.parametrize("where", ["env", "file"])
def test_escrow_passphrase_reference_opens_the_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, passphrase_bundle: Path, where: str
) -> None:
    monkeypatch.delenv("DRBOOT_ESCROW_PASSPHRASE", raising=False)
    if where == "env":
        ref = "{env: DRBOOT_TEST_ESCROW_PASSPHRASE}"
        monkeypatch.setenv("DRBOOT_TEST_ESCROW_PASSPHRASE", PASSPHRASE)
    else:
        ref = "{file: passphrase.txt}"
        (tmp_path / "passphrase.txt").write_text(PASSPHRASE + "\n")
    s = make_site(
        tmp_path, escrow=f"{{backend: age, bundle: {passphrase_bundle}, passphrase: {ref}}}"
    )
    assert service.open_kit(s).k3s_token == TOKEN


def _cluster_holding(key: SealingKey, namespace: str = "kube-system") -> RecordingCluster:
    cluster = RecordingCluster()
    cluster.create(key.to_secret(namespace))
    return cluster


def test_escrow_backup_encrypts_to_the_site_recipients(
    tmp_path: Path, sealing_key: SealingKey
) -> None:
    _identity(tmp_path / "ours.txt")
    theirs = _identity(tmp_path / "theirs.txt")
    s = make_site(tmp_path, escrow=f"{{backend: age, bundle: kit.age, identity_files: [ours.txt],"
                                   f" recipients: [{theirs}]}}")  # fmt: skip
    service.backup(s, _cluster_holding(sealing_key), k3s_token=TOKEN, deploy_key=None,
                   known_hosts=None)  # fmt: skip
    kit = age_file.read_kit(tmp_path / "kit.age", identity_files=[tmp_path / "theirs.txt"])
    assert kit.fingerprints() == [sealing_key.fingerprint] and kit.k3s_token == TOKEN
    with pytest.raises(WrongIdentity):  # not encrypted to the identity it is read with
        age_file.read_kit(tmp_path / "kit.age", identity_files=[tmp_path / "ours.txt"])


@pytest.mark.parametrize(
    ("threshold", "total", "listed", "two_open"),
    [(2, 3, 3, True), (3, 3, 3, False), (2, 4, 3, None)],
    ids=["2-of-3", "3-of-3", "3-files-for-4-custodians"],
)
def test_shamir_backup_splits_the_kit_as_the_site_says(
    tmp_path: Path,
    sealing_key: SealingKey,
    threshold: int,
    total: int,
    listed: int,
    two_open: bool | None,
) -> None:
    shares = [tmp_path / f"custodian-{i}.share" for i in range(1, listed + 1)]
    s = make_site(tmp_path, escrow=SHAMIR.format(shares=", ".join(map(str, shares)),
                                                 m=threshold, n=total))  # fmt: skip

    def backup() -> None:
        service.backup(s, _cluster_holding(sealing_key), k3s_token=TOKEN, deploy_key=None,
                       known_hosts=None)  # fmt: skip

    if two_open is None:
        with pytest.raises(
            ConfigError, match=f"lists {listed} share file.* escrow.total is {total}"
        ):
            backup()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(("kit", "custodian"))]
        return
    backup()
    assert [p.read_text().startswith(f"drboot-share-{i}-of-{total}:{threshold}:")
            for i, p in enumerate(shares, 1)] == [True] * total  # fmt: skip
    if two_open:
        assert shamir.read_kit(tmp_path / "kit.shamir", shares[1:]).k3s_token == TOKEN
    else:
        with pytest.raises(TooFewShares):
            shamir.read_kit(tmp_path / "kit.shamir", shares[1:])


# --------------------------------------------------------------------------- the site itself


@pytest.mark.parametrize(
    ("refused", "refusal", "accepted"),
    [
        ({"apiVersion": "drboot.dev/v2"}, "apiVersion: expected one of 'drboot.dev/v1'",
         {"apiVersion": "drboot.dev/v1"}),
        ({"kind": "Cluster"}, "kind: expected one of 'Site' (got 'Cluster')", {"kind": "Site"}),
        ({"provider": "{type: lab, agents: 1}"},
         "provider.agents: the lab's k3s stand-in has no agent mode",
         {"provider": "{type: lab, agents: 0}"}),
    ],
    ids=["apiVersion", "kind", "lab-agents"],
)  # fmt: skip
def test_a_value_this_drboot_cannot_honour_is_refused(
    tmp_path: Path, refused: dict[str, str], refusal: str, accepted: dict[str, str]
) -> None:
    """Fields that only state what the file is (or, for the lab's agents, what the lab cannot
    do): a value this drboot cannot honour is refused where it stands, not ignored."""
    with pytest.raises(ConfigError) as err:
        make_site(tmp_path, **refused)
    assert refusal in err.value.format() and "site.yaml:" in err.value.format()
    make_site(tmp_path, **accepted)


@pytest.mark.parametrize(
    ("provider", "kind"), [(SITE["provider"], "static"), ("{type: lab}", "lab")]
)
def test_provider_type_picks_the_provider(tmp_path: Path, provider: str, kind: str) -> None:
    prov = provider_for(make_site(tmp_path, provider=provider), tmp_path / "state")
    assert (prov.kind, prov.creates_hosts) == (kind, kind == "lab")


# --------------------------------------------------------------------------- hosts


def test_static_hosts_reach_the_inventory_and_the_ssh_client(tmp_path: Path) -> None:
    s = make_site(tmp_path, provider="{type: static, hosts: ["
                  "{name: edge-1, address: edge.example.org, role: agent},"
                  " {name: db-1, address: 192.0.2.11, ssh_port: 2222}]}")  # fmt: skip
    ctx = from_site(tmp_path, s, "prepare-hosts")
    groups = common.inventory(ctx)["all"]["children"]
    assert groups["servers"]["hosts"] == {
        "db-1": {"ansible_host": "192.0.2.11", "ansible_port": 2222, "ansible_user": "root"}
    }
    assert list(groups["first_server"]["hosts"]) == ["db-1"]
    assert groups["agents"]["hosts"] == {
        "edge-1": {"ansible_host": "edge.example.org", "ansible_port": 22, "ansible_user": "root"}
    }
    res = RunResources(ctx._scope.info())
    targets = [res.new_ssh(h, HostKeyExpectation(), "connect").target for h in common.hosts(ctx)]
    assert targets == ["root@192.0.2.11:2222", "root@edge.example.org"]


@dataclass
class LabHostStandIn:
    name: str
    address: str
    host_public_key: str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFixture"
    disks: list[tuple[str, str, int]] = field(default_factory=list)

    def slow_disk(self, directory: str, iops: int) -> None:
        self.disks.append(("slow", directory, iops))

    def fast_disk(self, directory: str, size_mib: int) -> None:
        self.disks.append(("fast", directory, size_mib))


@dataclass
class LabStandIn:
    """Stands in for ``bootstrap.lab.hosts.Lab`` (which needs root and systemd-nspawn): it
    records how the lab provider asks for the lab, its hosts and their etcd disks."""

    name: str
    lab_dir: Path
    index: int | None
    hosts: list[LabHostStandIn] = field(default_factory=list)

    @classmethod
    def create(cls, name: str, lab_dir: Path, index: int | None = None) -> LabStandIn:
        made = cls(name, lab_dir, index)
        LAB_STAND_INS.append(made)
        return made

    def create_host(self, name: str) -> LabHostStandIn:
        host = LabHostStandIn(name, f"10.200.{self.index or 9}.{10 + len(self.hosts)}")
        self.hosts.append(host)
        return host


LAB_STAND_INS: list[LabStandIn] = []


@pytest.mark.parametrize(
    ("provider", "topology", "names", "disk"),
    [
        ("{type: lab, state_dir: labs/a}", "single", ["server-1"], ("fast", 512)),
        ("{type: lab, state_dir: labs/b, servers: 3, disk: slow, slow_disk_iops: 120}",
         "ha", ["server-1", "server-2", "server-3"], ("slow", 120)),
        ("{type: lab, state_dir: labs/c, disk: host}", "single", ["server-1"], None),
    ],
    ids=["one-fast", "three-slow", "one-own-disk"],
)  # fmt: skip
def test_lab_provider_makes_the_lab_the_site_describes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
    topology: str,
    names: list[str],
    disk: tuple[str, int] | None,
) -> None:
    from bootstrap.providers import lab

    monkeypatch.setattr(lab, "Lab", LabStandIn)
    LAB_STAND_INS.clear()
    s = make_site(tmp_path, provider=provider, kubernetes=f"{{topology: {topology}}}")
    prov = provider_for(s, tmp_path / "state")
    assert prov.wanted() == names
    made = prov.create(prov.wanted(), lambda m: None)
    (the_lab,) = LAB_STAND_INS
    assert the_lab.name == "more" and the_lab.lab_dir.parent.parent == tmp_path / "labs"
    assert [(h.name, h.role) for h in made] == [(n, "server") for n in names]
    etcd = "/var/lib/rancher/k3s/server/db"
    wanted = [(disk[0], etcd, disk[1])] if disk else []  # 'host': no extra disk at all
    assert [h.disks for h in the_lab.hosts] == [wanted] * len(names)


def _host_key() -> PublicKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public = Ed25519PrivateKey.generate().public_key()
    line = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return PublicKey.parse(line.decode())


@dataclass
class Handshake:
    """Stands in for the SSH handshake (no sshd runs here): the host presents ``presented``
    and drboot's own ``hostkeys.decide`` judges it against what the connect step expects,
    as ``SSHClient`` does during key exchange."""

    host: HostInfo
    expected: HostKeyExpectation
    presented: PublicKey

    def __enter__(self) -> Handshake:
        self.trusted_key = decide(self.host.address, self.host.ssh_port, self.presented,
                                  self.expected)  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def run(self, cmd: str, timeout: float | None = None, check: bool = True) -> Result:
        return Result(0, "", "")


@pytest.mark.parametrize(
    ("how", "trusted"),
    [
        ("pinned", "pinned"),
        ("pinned-other", HostKeyMismatch),
        ("known_hosts_file", "known_hosts"),
        ("known_hosts_file-other", HostKeyMismatch),
        ("home", "known_hosts"),  # no known_hosts_file: ~/.ssh/known_hosts
        ("trust_on_first_use", "first-use"),
        ("nothing", PermanentError),
    ],
)
def test_connect_trusts_only_the_host_key_the_site_allows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str, trusted: str | type[Exception]
) -> None:
    presented, other = _host_key(), _host_key()
    known = presented if how.endswith("file") else other
    (tmp_path / "known_hosts").write_text(f"10.200.254.250 {known.openssh()}\n")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if how == "home":
        (tmp_path / "home" / ".ssh").mkdir(parents=True)
        (tmp_path / "home" / ".ssh" / "known_hosts").write_text(
            f"10.200.254.250 {presented.openssh()}\n"
        )
    pin = (presented if how == "pinned" else other).fingerprint
    host = "{name: s1, address: 10.200.254.250"
    host += f", host_key_fingerprint: '{pin}'}}" if how.startswith("pinned") else "}"
    ssh = {
        "known_hosts_file": "{known_hosts_file: known_hosts}",
        "trust_on_first_use": "{trust_on_first_use: true}",
    }.get(how.split("-")[0], "{}")
    s = make_site(tmp_path, provider=f"{{type: static, hosts: [{host}]}}", ssh=ssh)
    ctx = from_site(tmp_path, s, "connect")

    class Resources(GivenResources):
        def new_ssh(self, h: HostInfo, expected: HostKeyExpectation, step: str) -> Any:
            return Handshake(h, expected, presented)

    ctx._scope.shared[RunResources] = Resources(ctx._scope)
    if isinstance(trusted, str):
        hosts.connect(ctx)
        assert ctx.outputs["host_keys"]["s1"]["source"] == trusted
        assert ctx.outputs["host_keys"]["s1"]["fingerprint"] == presented.fingerprint
    else:
        with pytest.raises(trusted) as err:
            hosts.connect(ctx)
        assert type(err.value) is trusted


@pytest.mark.parametrize(
    ("ssh", "user", "key", "sent"),
    [
        ("{}", "root", "~/.ssh/id_ed25519", "true"),
        ("{user: deploy, private_key_file: keys/ops}", "deploy", "keys/ops",
         "sudo -n -- sh -c true"),
        ("{user: deploy, sudo: false}", "deploy", "~/.ssh/id_ed25519", "true"),
        ("{sudo: true}", "root", "~/.ssh/id_ed25519", "true"),  # root needs no sudo
    ],
)  # fmt: skip
def test_ssh_user_key_and_sudo_reach_the_client_and_ansible(
    tmp_path: Path, ssh: str, user: str, key: str, sent: str
) -> None:
    ctx = from_site(tmp_path, make_site(tmp_path, ssh=ssh), "prepare-hosts")
    key_file = tmp_path / Path(key).expanduser()
    client = RunResources(ctx._scope.info()).new_ssh(common.hosts(ctx)[0], HostKeyExpectation(),
                                                     "connect")  # fmt: skip
    assert (client.user, client.key_file) == (user, key_file)
    assert client._wrap("true") == sent, "the command as it goes over the SSH channel"
    assert common.ssh_key_file(ctx) == key_file, "the key Ansible is given"
    hv = common.inventory(ctx)["all"]["children"]["servers"]["hosts"]["s1"]
    assert hv["ansible_user"] == user


# --------------------------------------------------------------------------- disk gate

FIO_RUNS = REPO / "tests" / "fixtures" / "fio"


@dataclass
class FioReplay(LocalShell):
    """Stands in for a server: answers the disk gate's fio job with a recorded run of real fio
    (``tests/fixtures/fio``) and any other command with success."""

    run_file: str = "vda-ext4.json"

    def run(self, cmd: str, timeout: float | None = None, check: bool = True) -> Result:
        self.commands.append(cmd)
        fio = " fio --name=" in f" {cmd}"
        return Result(0, (FIO_RUNS / self.run_file).read_text() if fio else "", "")


@pytest.mark.parametrize(("enabled", "runs_fio"), [("true", True), ("false", False)])
def test_disk_gate_enabled_decides_whether_fio_runs(
    tmp_path: Path, enabled: str, runs_fio: bool
) -> None:
    shell = FioReplay([])
    ctx = context(tmp_path, make_site(tmp_path, disk_gate=f"{{enabled: {enabled}}}"), "disk-gate",
                  shell)  # fmt: skip
    hosts.disk_gate(ctx)
    assert any(" fio --name=" in f" {c}" for c in shell.commands) == runs_fio
    assert len(ctx.outputs["verdicts"]) == int(runs_fio)


@pytest.mark.parametrize(
    ("run_file", "threshold", "passes"),
    [("vda-ext4.json", 10, True), ("vda-ext4.json", 5, False),  # p99 7.57 ms
     ("throttled-loop-400iops.json", 10, False), ("throttled-loop-400iops.json", 50, True)],
)  # fmt: skip
def test_disk_gate_threshold_decides_the_verdict(
    tmp_path: Path, run_file: str, threshold: int, passes: bool
) -> None:
    s = make_site(tmp_path, disk_gate=f"{{p99_fdatasync_ms: {threshold}, runtime_limit: 7s}}")
    shell = FioReplay([], run_file)
    ctx = context(tmp_path, s, "disk-gate", shell)
    if passes:
        hosts.disk_gate(ctx)
        assert ctx.outputs["verdicts"][0]["threshold_ms"] == threshold
    else:
        with pytest.raises(PreflightError, match=f"above the {threshold} ms threshold"):
            hosts.disk_gate(ctx)
    assert any(" --runtime=7 " in f"{c} " for c in shell.commands), shell.commands


@pytest.mark.skipif(shutil.which("fio") is None, reason="needs fio (make setup installs it)")
def test_disk_gate_runtime_limit_stops_fio(tmp_path: Path) -> None:
    """A 1 GiB job in fdatasync'd 2300-byte writes takes many minutes on any disk; the
    runtime_limit stops it after one second (its verdict still counts)."""
    etcd = tmp_path / "etcd-disk"
    s = make_site(tmp_path, disk_gate=f"{{size: 1g, directory: {etcd}, runtime_limit: 1s,"
                                      " p99_fdatasync_ms: 10000}")  # fmt: skip
    ctx = context(tmp_path, s, "disk-gate", LocalShell([]))
    started = time.monotonic()
    hosts.disk_gate(ctx)
    assert time.monotonic() - started < 30
    syncs = ctx.outputs["verdicts"][0]["syncs"]
    assert 0 < syncs < (1 << 30) // 2300 // 20, "stopped long before the job's size"
    assert not list(etcd.glob("etcd-gate.*")), "the gate removes its job file"


# --------------------------------------------------------------------------- sealed secrets


def test_sealed_secrets_namespace_and_controller_name_reach_the_cluster(
    tmp_path: Path, sealing_key: SealingKey
) -> None:
    cluster = RecordingCluster()
    cluster.served = sealing_key.tls_crt.encode()  # the controller serves the restored key
    s = make_site(tmp_path, sealed_secrets="{namespace: sealing, controller_name: ss-prod}")
    ctx = given(tmp_path, s, "install-sealed-secrets", kube=cluster)
    keys.install_sealed_secrets(ctx)
    for kind in ("Deployment", "Service", "ServiceAccount"):
        assert cluster.get("v1", kind, "ss-prod", "sealing") is not None, kind
    namespaces = {ns for kind, ns, _ in cluster.objects if kind not in CLUSTER_SCOPED}
    assert namespaces == {"sealing"}
    assert ctx.outputs["controller"] == "ss-prod"
    verify = given(tmp_path, s, "verify-sealing-key", kube=cluster, kit=_kit(sealing_key))
    keys.verify_sealing_key(verify)
    assert cluster.proxied == [("sealing", "ss-prod", keys.CERT_PORT, "/v1/cert.pem")]
    assert verify.outputs["serving_fingerprint"] == sealing_key.fingerprint


@pytest.mark.parametrize(
    ("due", "made_after_restore", "accepted"),
    [(True, True, True), (False, True, False), (True, False, False)],
    ids=["renewed", "not-due", "made-before-the-restore"],
)
def test_a_key_the_controller_made_by_renewal_is_accepted_with_a_backup_warning(
    tmp_path: Path, sealing_key: SealingKey, due: bool, made_after_restore: bool, accepted: bool
) -> None:
    """The restored keys are older than the renewal period: the controller (orders keys by
    notBefore) makes a new key as it starts and serves it. That key is expected, not foreign:
    verify accepts it and says the escrow needs a new backup. A key served when no renewal
    was due, or one made before the restored keys existed, is still refused."""
    from bootstrap import sealing

    ns = "sealing"
    cluster = RecordingCluster()
    restored = sealing_key.to_secret(ns)
    restored["metadata"]["creationTimestamp"] = "2026-11-30T01:00:00Z"
    cluster.create(restored)
    key, cert = sealing.generate_key(bits=2048)
    made = sealing.key_secret_manifest(key, cert, "sealed-secrets-keyzzzzz", ns)
    made["metadata"]["creationTimestamp"] = (
        "2026-11-30T01:00:07Z" if made_after_restore else "2026-11-30T00:59:00Z"
    )
    cluster.create(made)
    cluster.create({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "ss", "namespace": ns}})  # fmt: skip
    cluster.served = cert
    s = make_site(tmp_path, sealed_secrets=f"{{namespace: {ns}, controller_name: ss}}")
    verify = given(tmp_path, s, "verify-sealing-key", kube=cluster, kit=_kit(sealing_key))
    verify._scope.outputs["restore-sealing-keys"] = KeysRestored(
        warning="the newest restored key is from 2026-01-01, older than the renewal period"
        if due else None
    ).to_json()  # fmt: skip
    new_fp = sealing.cert_fingerprint(cert)
    if not accepted:
        with pytest.raises(TransientError, match="not in the escrow"):
            keys.verify_sealing_key(verify)
        return
    keys.verify_sealing_key(verify)
    out = verify.outputs
    assert out["serving_fingerprint"] == new_fp and out["renewed_by_controller"] is True
    assert f"the controller made a new key {new_fp}" in out["warning"]
    assert "back up the escrow again" in out["warning"]


@pytest.mark.parametrize(("period", "warned"), [("30d", True), ("60d", False)])
def test_key_renewal_period_decides_the_backup_warning(
    tmp_path: Path,
    sealing_key: SealingKey,
    period: str,
    warned: bool,
) -> None:
    """The newest escrowed key is 45 days old: older than a 30-day renewal period (the
    controller makes a new key at once, so a fresh backup is due), younger than 60 days."""
    old = dataclasses.replace(sealing_key, not_before=sealing_key.not_before - timedelta(days=45))
    cluster = RecordingCluster()
    s = make_site(tmp_path, sealed_secrets=f"{{namespace: sealing, key_renewal_period: {period}}}")
    ctx = given(tmp_path, s, "restore-sealing-keys", kube=cluster, kit=_kit(old))
    keys.restore_sealing_keys(ctx)
    assert cluster.get("v1", "Secret", old.name, "sealing") is not None
    warning = ctx.outputs.get("warning")
    assert (warning is not None) == warned
    if warned:
        assert "older than the renewal period (30 days)" in warning
        assert "back up the escrow again" in warning
    days = 30 if period == "30d" else 60
    assert ctx.outputs["renewal_period_seconds"] == days * 86400
    # the controller renews on the same period the warning is judged against
    docs = keys.controller_manifest("sealing", "ss", s.sealed_secrets.key_renewal_period)
    dep = next(d for d in docs if d["kind"] == "Deployment")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--key-renew-period={days * 86400}s" in args


@pytest.mark.parametrize("verify", [True, False])
def test_verify_in_preflight_decides_whether_the_repo_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sealing_key: SealingKey, verify: bool
) -> None:
    checked: list[str] = []

    def check_repo(site: Site, kit: RecoveryKit) -> None:
        """Stands in for cloning and decrypting the repo (test_escrow_cli.py does it for real)."""
        checked.append(site.repo.url)
        raise PreflightError("stand-in: the repo was checked")

    monkeypatch.setattr(service, "check_repo", check_repo)
    s = make_site(tmp_path, sealed_secrets=f"{{verify_in_preflight: {str(verify).lower()}}}")
    ctx = given(tmp_path, s, "preflight-escrow", kit=_kit(sealing_key))
    if verify:
        with pytest.raises(PreflightError, match="stand-in"):
            preflight.check_escrow(ctx)
    else:
        preflight.check_escrow(ctx)
        assert "verify_in_preflight" in ctx.noops[0]
    assert checked == ([URL] if verify else [])


# --------------------------------------------------------------------------- gitops

COMMIT = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c"


def _root_summary(obj: Obj) -> Obj:
    """What a root object says about where it points (kind, namespace and spec essentials)."""
    spec, meta = obj["spec"], obj["metadata"]
    out: Obj = {"kind": obj["kind"], "namespace": meta["namespace"]}
    if obj["kind"] == "Application":
        out |= {"project": spec["project"], **spec["source"]}
    elif obj["kind"] == "GitRepository":
        out |= {"url": spec["url"], "ref": spec["ref"], "interval": spec["interval"]}
    else:
        out |= {"path": spec["path"], "interval": spec["interval"]}
    return out


@pytest.mark.parametrize(
    ("sections", "roots"),
    [
        pytest.param({}, [{"kind": "Application", "namespace": "argocd", "project": "default",
                           "repoURL": URL, "targetRevision": "main", "path": "."}],
                     id="argocd-defaults"),
        pytest.param({"reconciler": "{type: argocd, namespace: gitops, project: infra}",
                      "repo": f"{{url: {URL}, revision: release-7, path: apps/prod}}"},
                     [{"kind": "Application", "namespace": "gitops", "project": "infra",
                       "repoURL": URL, "targetRevision": "release-7", "path": "apps/prod"}],
                     id="argocd-namespace-project-revision-path"),
        pytest.param({"reconciler": "{type: argocd, app_of_apps: clusters/prod}",
                      "repo": f"{{url: {URL}, path: apps/prod}}"},
                     [{"kind": "Application", "namespace": "argocd", "project": "default",
                       "repoURL": URL, "targetRevision": "main", "path": "clusters/prod"}],
                     id="argocd-app_of_apps"),
        pytest.param({"reconciler": "{type: flux, namespace: fs, interval: 90s}",
                      "repo": f"{{url: {URL}, revision: {COMMIT}, path: apps/prod}}"},
                     [{"kind": "GitRepository", "namespace": "fs", "url": URL,
                       "ref": {"commit": COMMIT}, "interval": "1m30s"},
                      {"kind": "Kustomization", "namespace": "fs", "path": "./apps/prod",
                       "interval": "1m30s"}],
                     id="flux-namespace-interval-revision-path"),
        pytest.param({"reconciler": "{type: flux}"},
                     [{"kind": "GitRepository", "namespace": "flux-system", "url": URL,
                       "ref": {"branch": "main"}, "interval": "1m"},
                      {"kind": "Kustomization", "namespace": "flux-system", "path": "./",
                       "interval": "1m"}],
                     id="flux-defaults"),
    ],
)  # fmt: skip
def test_point_at_repo_builds_the_root_objects_the_site_describes(
    tmp_path: Path, sections: dict[str, str], roots: list[Obj]
) -> None:
    cluster = RecordingCluster()
    s = make_site(tmp_path, **sections)
    gitops.point_at_repo(given(tmp_path, s, "point-at-repo", kube=cluster))
    kinds = ("Application", "GitRepository", "Kustomization")
    assert [_root_summary(o) for o in cluster.objects.values() if o["kind"] in kinds] == roots


def _secret_data(secret: Obj | None, key: str) -> str:
    assert secret is not None
    return base64.b64decode(secret["data"][key]).decode()


@pytest.mark.parametrize("reconciler", ["argocd", "flux"])
def test_repo_deploy_key_and_known_hosts_reach_the_reconciler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reconciler: str
) -> None:
    deploy_key = "-----BEGIN OPENSSH PRIVATE KEY-----\nZmllbGQtZWZmZWN0cw==\n-----END ..."
    known = "git.example.invalid ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKnownHost"
    monkeypatch.setenv("DRBOOT_TEST_DEPLOY_KEY", deploy_key)
    (tmp_path / "known_hosts").write_text(known + "\n")
    cluster = RecordingCluster()
    repo = (
        "{url: 'ssh://git@git.example.invalid/org/platform.git',"
        " deploy_key: {env: DRBOOT_TEST_DEPLOY_KEY}, known_hosts: {file: known_hosts}}"
    )
    s = make_site(tmp_path, reconciler=f"{{type: {reconciler}}}", repo=repo)
    gitops.point_at_repo(given(tmp_path, s, "point-at-repo", kube=cluster))
    secrets = [o for o in cluster.objects.values() if o["kind"] == "Secret"]
    assert len(secrets) == 1
    if reconciler == "argocd":
        assert _secret_data(secrets[0], "sshPrivateKey").strip() == deploy_key
        ((kind, ns, name, patch),) = cluster.patches
        assert (kind, ns, name) == ("ConfigMap", "argocd", "argocd-ssh-known-hosts-cm")
        assert known in patch["data"]["ssh_known_hosts"]
    else:
        assert _secret_data(secrets[0], "identity").strip() == deploy_key
        assert _secret_data(secrets[0], "known_hosts").strip() == known
        (source,) = [o for o in cluster.objects.values() if o["kind"] == "GitRepository"]
        assert source["spec"]["secretRef"] == {"name": secrets[0]["metadata"]["name"]}


def _application(name: str, ready: bool) -> Obj:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd"},
        "status": {"sync": {"status": "Synced"},
                   "health": {"status": "Healthy" if ready else "Progressing"}},
    }  # fmt: skip


def _wait(tmp_path: Path, s: Site, cluster: RecordingCluster, timeout: float = 60) -> StepContext:
    """Run wait-synced (a step timeout of ``timeout`` s bounds the wait if the site's did not)."""
    ctx = given(tmp_path, s, "wait-synced", kube=cluster, timeout=timeout)
    gitops.wait_synced(ctx)
    return ctx


@pytest.mark.parametrize(("poll", "stable"), [(1, 1), (1, 2), (2, 2)])
def test_sync_wait_watches_and_holds_as_the_site_says(
    tmp_path: Path, poll: int, stable: int
) -> None:
    """One list and one watch of the Applications however long the wait; done once the apps
    were ready for ``stable_for`` (not a poll interval later)."""
    cluster = RecordingCluster()
    cluster.create(_application("root", ready=True))
    s = make_site(tmp_path, sync_wait=f"{{poll_interval: {poll}s, stable_for: {stable}s}}")
    started = time.monotonic()
    ctx = _wait(tmp_path, s, cluster)
    took = time.monotonic() - started
    # one list and one watch; one fresh list confirms the end of the stable window
    assert len(cluster.lists["Application"]) == 2 and len(cluster.watches["Application"]) == 1
    assert ctx.outputs["confirm_reads"] == 1
    assert stable <= took < stable + 0.5
    assert ctx.outputs["stable_for"] == stable and ctx.outputs["requests"] == 2


@pytest.mark.parametrize(
    ("sync_wait", "ready", "ignored"),
    [
        ("{timeout: 2s}", False, []),
        ("{timeout: 2s, require_all: false}", True, []),
        ("{timeout: 2s, ignore_apps: [legacy]}", True, ["legacy"]),
    ],
)
def test_sync_wait_decides_which_apps_count_and_when_to_give_up(
    tmp_path: Path,
    sync_wait: str,
    ready: bool,
    ignored: list[str],
) -> None:
    """The root app is ready, ``legacy`` never is."""
    cluster = RecordingCluster()
    cluster.create(_application("root", ready=True))
    cluster.create(_application("legacy", ready=False))
    s = make_site(tmp_path, sync_wait=sync_wait[:-1] + ", poll_interval: 1s, stable_for: 1s}")
    started = time.monotonic()
    if ready:
        ctx = _wait(tmp_path, s, cluster, timeout=30)
        assert list(ctx.outputs["apps"]) == ["root"] and ctx.outputs["ignored"] == ignored
    else:
        timeout = s.sync_wait.timeout.total_seconds()
        with pytest.raises(WaitTimeout, match=r"\(sync_wait.timeout\): .*legacy"):
            _wait(tmp_path, s, cluster, timeout=30)
        assert timeout <= time.monotonic() - started < timeout + 5  # gave up at its timeout
