"""More site-file fields and what they change: each test would fail if drboot ignored its field.

The companion of ``test_field_effects.py``, whose seam it reuses: ``context`` hands a step a
site and ``LocalResources`` as the run's resources. The steps and functions that read the
fields run for real. Where a step talks to a cluster it gets ``RecordingCluster``, a stand-in
at drboot's own boundary (the ``KubeAPI`` protocol), not a Kubernetes server: it keeps objects
in a dict and records what it was asked. Where a step needs a lab or an SSH handshake, the
stand-in is said so beside it. The k3s role is the real one, rendered as Ansible renders it.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jinja2
import pytest
import yaml
from jinja2.nativetypes import NativeEnvironment

from bootstrap.adapters.ansible import PlayResult
from bootstrap.engine.context import StepContext
from bootstrap.engine.journal import Journal
from bootstrap.errors import ConfigError, EscrowError, PermanentError
from bootstrap.escrow import TooFewShares, WrongIdentity, age_file, service, shamir
from bootstrap.escrow.backend import AgeFileBackend, ShamirBackend
from bootstrap.escrow.kit import RecoveryKit, SealingKey
from bootstrap.settings import Site
from bootstrap.siteload import load_site_text
from bootstrap.steps import common, finish, hosts, kubernetes
from bootstrap.steps.resources import RunResources
from tests.conftest import REPO
from tests.unit.test_field_effects import LocalShell, _role_defaults, context

Obj = dict[str, Any]

SITE = {
    "apiVersion": "drboot.dev/v1",
    "name": "more",
    "provider": "{type: static, hosts: [{name: s1, address: 10.200.254.250}]}",
    "escrow": "{backend: age, bundle: kit.age, identity_files: [id.txt]}",
    "repo": "{url: https://git.example.invalid/platform.git}",
}


def make_site(tmp_path: Path, **sections: str) -> Site:
    """A site file from ``SITE`` with top-level sections replaced or added (flow YAML)."""
    text = "".join(f"{key}: {value}\n" for key, value in (SITE | sections).items())
    return load_site_text(text, "site.yaml", base_dir=tmp_path)


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
        ({}, None, ["report.json", "report.md"], 3600, True),
        ({"report": "{directory: out, formats: [junit, json]}"}, "out",
         ["report.json", "report.junit.xml"], 3600, True),
        ({"rto": "{objective: 5m}"}, None, ["report.json", "report.md"], 300, False),
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
            for key in ("url", "checksum", "src"):
                if key in args:
                    lines.append(f"  {key}={env.from_string(str(args[key])).render(**variables)}")
        if module.endswith(".template"):
            src = env.from_string(args["src"]).render(**variables)
            lines.append(
                env.from_string((ROLE / "templates" / src).read_text()).render(**variables)
            )
    return "\n".join(lines)


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
    ctx = context(tmp_path, make_site(tmp_path, **sections), "install-k3s")
    handed: Obj = {}

    def playbook(c: StepContext, name: str, **kw: Any) -> PlayResult:
        handed.update(playbook=name, inventory=common.inventory(c, kw["group_vars"]))
        return PlayResult(ok=True, changed={"s1": 1})

    monkeypatch.setattr(common, "playbook", playbook)
    monkeypatch.setattr(RunResources, "kit", lambda self: SimpleNamespace(k3s_token="t" * 24))
    kubernetes.install_k3s(ctx)
    assert handed["playbook"] == "k3s.yml"
    plan = _role_plan(_host_vars(handed["inventory"], "s1")) + "\n"
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
    monkeypatch.setattr(common, "kube", lambda ctx: cluster)
    s = make_site(tmp_path, kubernetes=f"{{api_ready_timeout: {setting}}}")
    kubernetes.fetch_kubeconfig(context(tmp_path, s, "fetch-kubeconfig"))
    assert ("wait_ready", seconds) in cluster.waits, "the wait for /readyz"
    assert all(timeout <= seconds for _, timeout in cluster.waits), cluster.waits


def test_kubernetes_token_reference_must_resolve_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bootstrap.errors import PreflightError
    from bootstrap.steps import preflight

    key = tmp_path / "id_ed25519"
    key.write_text("an SSH key\n")
    s = make_site(tmp_path, kubernetes="{token: {env: DRBOOT_TEST_K3S_TOKEN}}",
                  ssh=f"{{private_key_file: {key}}}")  # fmt: skip
    monkeypatch.delenv("DRBOOT_TEST_K3S_TOKEN", raising=False)
    with pytest.raises(PreflightError) as err:
        preflight.check_references(context(tmp_path, s, "preflight-references"))
    assert "kubernetes.token" in str(err.value) and "DRBOOT_TEST_K3S_TOKEN" in str(err.value)
    monkeypatch.setenv("DRBOOT_TEST_K3S_TOKEN", "K10-a-token-from-the-environment")
    preflight.check_references(context(tmp_path, s, "preflight-references"))
    # The default, {escrow: k3s_token}, needs no variable: the kit holds the token.
    preflight.check_references(
        context(
            tmp_path,
            make_site(tmp_path, ssh=f"{{private_key_file: {key}}}"),
            "preflight-references",
        )
    )


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
