"""The Reconciler interface: Argo CD and Flux answer the same questions over real-shaped
objects, ``reconciler_for`` finds them by type, and the GitOps steps drive either one through
the interface alone (a fake Kubernetes client at our own boundary stands in for the API
server; the real one is in tests/integration/test_gitops_lab.py)."""

from __future__ import annotations

import base64
import copy
import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest

from bootstrap.engine.context import StepContext
from bootstrap.errors import ConfigError, PermanentError, WaitTimeout
from bootstrap.escrow.kit import RecoveryKit
from bootstrap.events import Event, EventBus
from bootstrap.kubeapi import Listed, WatchCancel, WatchEvent
from bootstrap.reconcilers import REGISTRY, ArgoCD, Flux, reconciler_for
from bootstrap.reconcilers.base import AppList, Reconciler, secret_value
from bootstrap.settings import ArgocdReconciler, FluxReconciler, Repo
from bootstrap.siteload import load_site_text
from bootstrap.steps.gitops import point_at_repo, wait_synced
from tests.stepkit import step_context

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n-----END OPENSSH PRIVATE KEY-----"
KNOWN = "git.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample"
SSH_URL = "git@git.example:org/config.git"


def repo(url: str, path: str = "apps/overlays/prod") -> Repo:
    return Repo.model_validate({"url": url, "revision": "main", "path": path})


def test_registry_covers_every_reconciler_type_of_the_schema() -> None:
    types = {
        get_args(model.model_fields["type"].annotation)[0]
        for model in (ArgocdReconciler, FluxReconciler)
    }
    assert set(REGISTRY) == types == {"argocd", "flux"}
    argo = reconciler_for(ArgocdReconciler(type="argocd", namespace="gitops", project="infra",
                                           app_of_apps="clusters/prod"))  # fmt: skip
    assert argo == ArgoCD("gitops", "infra", "clusters/prod")
    flux = reconciler_for(FluxReconciler.model_validate({"type": "flux", "interval": "90s"}))
    assert isinstance(flux, Flux) and flux.namespace == "flux-system"
    assert flux.interval.total_seconds() == 90


# --------------------------------------------------------------------------- per implementation

ARGO: Reconciler = ArgoCD("argocd", "default", None)
FLUX: Reconciler = Flux("flux-system")


@pytest.mark.parametrize(
    ("rec", "url", "followed", "path"),
    [
        (ARGO, SSH_URL, SSH_URL, "apps/overlays/prod"),
        (ArgoCD("argocd", app_of_apps="root-apps"), "/srv/config", "/srv/config", "root-apps"),
        (FLUX, SSH_URL, "ssh://git@git.example/org/config.git", "apps/overlays/prod"),
        (FLUX, "https://git.example/c.git", "https://git.example/c.git", "apps/overlays/prod"),
    ],
)
def test_source_is_the_repo_as_the_reconciler_follows_it(
    rec: Reconciler, url: str, followed: str, path: str
) -> None:
    src = rec.source(repo(url))
    assert src.to_dict() == {"url": followed, "revision": "main", "path": path}


@pytest.mark.parametrize("url", ["file:///srv/config", "/srv/config"])
def test_flux_refuses_a_repo_it_cannot_fetch(url: str) -> None:
    with pytest.raises(ConfigError, match="accepts only http") as exc:
        FLUX.source(repo(url))
    assert "reconciler.type: argocd" in str(exc.value.hint)


@pytest.mark.parametrize(
    ("rec", "key", "name", "field", "known_in_secret"),
    [
        (ARGO, KEY, "repo-", "sshPrivateKey", None),
        (ARGO, None, "repo-", None, None),  # https: the Secret declares the repo, no key
        (FLUX, KEY, "flux-system", "identity", KNOWN),
        (FLUX, None, None, None, None),  # https: no Secret at all
    ],
)
def test_key_secret(
    rec: Reconciler, key: str | None, name: str | None, field: str | None,
    known_in_secret: str | None,
) -> None:  # fmt: skip
    src = rec.source(repo(SSH_URL))
    secret = rec.key_secret(src, key, KNOWN)
    if name is None:
        assert secret is None
        return
    assert secret is not None and secret.name.startswith(name)
    assert secret.namespace == rec.namespace
    if field is not None:
        assert secret.key_field == field
        assert secret_value(secret.obj, field) == KEY + "\n"  # the consumer adds the newline
    else:
        assert secret_value(secret.obj, secret.key_field) is None
    assert secret_value(secret.obj, "known_hosts") == known_in_secret


def test_known_hosts_live_in_a_configmap_for_argocd_only() -> None:
    assert ARGO.known_hosts_configmap() == "argocd-ssh-known-hosts-cm"
    cm = {"data": {"ssh_known_hosts": "github.com ssh-ed25519 AAAA\n"}}
    assert ARGO.known_hosts_patch(cm, KNOWN) == {
        "data": {"ssh_known_hosts": f"github.com ssh-ed25519 AAAA\n{KNOWN}\n"}
    }
    assert FLUX.known_hosts_configmap() is None
    assert FLUX.known_hosts_patch(cm, KNOWN) is None


@pytest.mark.parametrize(
    ("rec", "kinds", "roots"),
    [
        (ARGO, ["Application argocd/root"], {("argocd", "root")}),
        (FLUX, ["GitRepository flux-system/flux-system", "Kustomization flux-system/flux-system"],
         {("flux-system", "flux-system")}),
    ],
)  # fmt: skip
def test_root_objects_and_their_differences(
    rec: Reconciler, kinds: list[str], roots: frozenset[tuple[str, str]]
) -> None:
    src = rec.source(repo(SSH_URL))
    secret = rec.key_secret(src, KEY, None)
    objs = rec.root_objects(src, secret)
    got = [f"{o['kind']} {o['metadata']['namespace']}/{o['metadata']['name']}" for o in objs]
    assert got == kinds
    assert rec.root_apps() == roots
    for o in objs:
        assert rec.spec_differences(o, o) == []
        assert rec.spec_differences(o, None) == ["missing"]
        stale = copy.deepcopy(o)
        stale["spec"].pop("syncPolicy" if o["kind"] == "Application" else "interval")
        assert rec.spec_differences(o, stale)
    if isinstance(rec, Flux):  # the GitRepository names the key Secret
        assert secret is not None and objs[0]["spec"]["secretRef"] == {"name": secret.name}
        assert "secretRef" not in rec.root_objects(src, None)[0]["spec"]


def test_where_apps_are_listed() -> None:
    assert ARGO.apps() == AppList("argoproj.io/v1alpha1", "Application", "argocd")
    assert FLUX.apps() == AppList("kustomize.toolkit.fluxcd.io/v1", "Kustomization", None)


ARGO_APP: dict[str, Any] = {
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "Application",
    "metadata": {"name": "root", "namespace": "argocd", "generation": 2},
    "status": {
        "sync": {"status": "Synced", "revision": "a" * 40},
        "health": {"status": "Progressing"},
        "resources": [
            {"version": "v1", "kind": "ConfigMap", "namespace": "guestbook", "name": "cfg",
             "status": "Synced"},
            {"group": "apps", "version": "v1", "kind": "Deployment", "namespace": "guestbook",
             "name": "guestbook", "status": "Synced",
             "health": {"status": "Progressing",
                        "message": "Waiting for rollout to finish: 0 of 1 updated replicas are "
                                   "available..."}},
            {"version": "v1", "kind": "Service", "namespace": "guestbook", "name": "guestbook",
             "status": "Synced", "health": {"status": "Healthy"}},
        ],
    },
}  # fmt: skip

FLUX_KS: dict[str, Any] = {
    "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
    "kind": "Kustomization",
    "metadata": {"name": "flux-system", "namespace": "flux-system", "generation": 1},
    "status": {
        "observedGeneration": 1,
        "lastAttemptedRevision": "main@sha1:" + "b" * 40,
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "HealthCheckFailed",
             "message": "health check failed after 30s: timeout waiting for: "
                        "[Deployment/guestbook/guestbook status: 'InProgress']"},
        ],
        "inventory": {"entries": [
            {"id": "guestbook_cfg__ConfigMap", "v": "v1"},
            {"id": "guestbook_guestbook_apps_Deployment", "v": "v1"},
            {"id": "_guestbook__Namespace", "v": "v1"},
            {"id": "monitoring_agent_apps_DaemonSet", "v": "v1"},
        ]},
    },
}  # fmt: skip


@pytest.mark.parametrize(
    ("rec", "app", "state", "workloads"),
    [
        (ARGO, ARGO_APP, ("root", "argocd", "Synced", "Progressing"),
         [("apps/v1", "Deployment", "guestbook", "guestbook")]),
        (FLUX, FLUX_KS, ("flux-system", "flux-system", "OutOfSync", "Degraded"),
         [("apps/v1", "Deployment", "guestbook", "guestbook"),
          ("apps/v1", "DaemonSet", "agent", "monitoring")]),
    ],
)  # fmt: skip
def test_app_state_and_the_workloads_of_an_unready_app(
    rec: Reconciler, app: dict[str, Any], state: tuple[str, ...],
    workloads: list[tuple[str, str, str, str | None]],
) -> None:  # fmt: skip
    s = rec.app_state(app)
    assert (s.name, s.namespace, s.sync, s.health) == state and not s.ready
    assert rec.workload_refs(app) == workloads


# --------------------------------------------------------------------------- the steps


class FakeKube:
    """An in-memory stand-in for ``bootstrap.adapters.kube.KubeClient`` (our own boundary):
    objects keyed by (kind, namespace, name); ``list`` with namespace None lists them all."""

    def __init__(self, *objs: dict[str, Any]) -> None:
        self.objs: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self.calls: list[str] = []
        self.events: queue.Queue[WatchEvent | None] = queue.Queue()
        self.unserved: set[str] = set()  # kinds whose CRD is not installed
        for o in objs:
            self._put(o)

    def _key(self, kind: str, name: str, ns: str | None) -> tuple[str, str | None, str]:
        return kind, ns, name

    def _put(self, obj: dict[str, Any]) -> None:
        m = obj["metadata"]
        self.objs[self._key(obj["kind"], m["name"], m.get("namespace"))] = copy.deepcopy(obj)

    def get(self, api: str, kind: str, name: str, namespace: str | None = None) -> Any:
        return copy.deepcopy(self.objs.get(self._key(kind, name, namespace)))

    def list(
        self,
        api: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        want = dict(p.split("=", 1) for p in label_selector.split(",")) if label_selector else {}
        return [
            copy.deepcopy(o)
            for (k, ns, _), o in sorted(self.objs.items(), key=lambda kv: str(kv[0]))
            if k == kind and (namespace is None or ns == namespace)
            and want.items() <= (o["metadata"].get("labels") or {}).items()
        ]  # fmt: skip

    def list_versioned(self, api: str, kind: str, namespace: str | None = None) -> Listed:
        self.calls.append(f"list {kind}")
        return Listed(self.list(api, kind, namespace), "1")

    def watch(
        self, api: str, kind: str, namespace: str | None = None, *,
        resource_version: str | None = None, timeout: int = 60, bookmarks: bool = False,
        cancel: WatchCancel | None = None,
    ) -> Iterator[WatchEvent]:  # fmt: skip
        """Events the test puts on ``events`` (one watch per call, ended by None, or by
        ``cancel`` as the adapter's connection shut down ends it)."""
        self.calls.append(f"watch {kind}")
        if cancel is not None:
            cancel.bind(lambda: self.events.put(None))
        while (ev := self.events.get(timeout=timeout)) is not None:
            if ev.object["kind"] == kind:
                # as on a real server, the change is stored before a watch reports it
                if ev.type == "DELETED":
                    m = ev.object["metadata"]
                    self.objs.pop(self._key(kind, m["name"], m.get("namespace")), None)
                elif ev.type != "BOOKMARK":
                    self._put(ev.object)
                yield ev

    def serves(self, api: str, kind: str) -> bool:
        return kind not in self.unserved

    def create(self, obj: dict[str, Any]) -> None:
        self.calls.append(f"create {obj['kind']} {obj['metadata']['name']}")
        self._put(obj)

    def apply(self, obj: dict[str, Any]) -> None:
        self.calls.append(f"apply {obj['kind']} {obj['metadata']['name']}")
        self._put(obj)

    def patch(self, api: str, kind: str, name: str, patch: dict[str, Any], namespace: str) -> None:
        self.calls.append(f"patch {kind} {name}")
        obj = self.objs.setdefault(self._key(kind, name, namespace), {
            "kind": kind, "metadata": {"name": name, "namespace": namespace}})  # fmt: skip
        obj.setdefault("data", {}).update(patch.get("data") or {})


SITE = """\
apiVersion: drboot.dev/v1
kind: Site
name: gitops-unit
provider: {{type: static, hosts: [{{name: h, address: 127.0.0.1}}]}}
escrow: {{backend: age, bundle: kit.age, identity_files: [id.txt]}}
reconciler: {reconciler}
repo: {{url: "{url}", revision: main, path: apps}}
sync_wait: {{timeout: {timeout}, poll_interval: 1s, stable_for: 1s{sync_extra}}}
"""


def step_ctx(
    tmp_path: Path, kube: FakeKube, step: str, *, reconciler: str = "{type: argocd}",
    url: str = SSH_URL, timeout: str = "1s", sync_extra: str = "",
    kit: RecoveryKit | None = None,
) -> tuple[StepContext, list[Event]]:  # fmt: skip
    site = load_site_text(
        SITE.format(reconciler=reconciler, url=url, timeout=timeout, sync_extra=sync_extra),
        "s.yaml", base_dir=tmp_path,
    )  # fmt: skip
    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe(seen.append)
    ctx = step_context(site, tmp_path / "runs" / "run-1", step, bus=bus, kit=kit, kube=kube)
    return ctx, seen


def recovery_kit(deploy_key: str | None = KEY + "\n") -> RecoveryKit:
    return RecoveryKit(site="gitops-unit", sealing_keys=[], k3s_token="t" * 20,
                       deploy_key=deploy_key, known_hosts=KNOWN + "\n")  # fmt: skip


def test_point_at_repo_argocd_ssh_then_nothing_to_do(tmp_path: Path) -> None:
    kube = FakeKube()
    ctx, _ = step_ctx(tmp_path, kube, "point-at-repo", kit=recovery_kit())
    point_at_repo(ctx)
    assert [c.split(": ", 1)[1] for c in ctx.changes] == [
        f"create the repository Secret (deploy key {_fp(KEY)})",
        "add the escrowed known_hosts",
        "create",
    ]
    assert ctx.outputs == {
        "root": ["Application argocd/root"],
        "repo": {"url": SSH_URL, "revision": "main", "path": "apps"},
    }
    again, _ = step_ctx(tmp_path, kube, "point-at-repo", kit=recovery_kit())
    point_at_repo(again)
    assert again.changes == [] and len(again.noops) == 3


def _fp(key: str) -> str:
    from bootstrap.reconcilers.base import key_fingerprint

    return str(key_fingerprint(key))


def test_point_at_repo_never_rotates_a_deploy_key(tmp_path: Path) -> None:
    kube = FakeKube()
    point_at_repo(step_ctx(tmp_path, kube, "point-at-repo", kit=recovery_kit())[0])
    other = recovery_kit("-----BEGIN OPENSSH PRIVATE KEY-----\nZm9yZWlnbg==\n-----END-----\n")
    ctx, _ = step_ctx(tmp_path, kube, "point-at-repo", kit=other)
    with pytest.raises(PermanentError, match="drboot never rotates a deploy key") as exc:
        point_at_repo(ctx)
    shown = exc.value.format()
    assert "Zm9yZWlnbg" not in shown and "b3BlbnNzaC1rZXk" not in shown


def test_point_at_repo_without_a_deploy_key_in_the_escrow(tmp_path: Path) -> None:
    ctx, _ = step_ctx(tmp_path, FakeKube(), "point-at-repo", kit=recovery_kit(None))
    with pytest.raises(Exception, match="no deploy key was found"):
        point_at_repo(ctx)


def test_point_at_repo_flux_ssh_and_https(tmp_path: Path) -> None:
    kube = FakeKube()
    ctx, _ = step_ctx(tmp_path, kube, "point-at-repo", reconciler="{type: flux}",
                      kit=recovery_kit())  # fmt: skip
    point_at_repo(ctx)
    assert kube.calls == ["create Secret flux-system", "apply GitRepository flux-system",
                          "apply Kustomization flux-system"]  # fmt: skip
    secret = kube.get("v1", "Secret", "flux-system", "flux-system")
    assert base64.b64decode(secret["data"]["known_hosts"]).decode() == KNOWN
    assert ctx.outputs["repo"]["url"] == "ssh://git@git.example/org/config.git"
    https = FakeKube()
    ctx, _ = step_ctx(tmp_path, https, "point-at-repo", reconciler="{type: flux}",
                      url="https://git.example/c.git")  # fmt: skip
    point_at_repo(ctx)  # no kit given: an https repo never opens it
    assert https.calls == ["apply GitRepository flux-system", "apply Kustomization flux-system"]
    assert ctx.outputs["root"] == ["GitRepository flux-system/flux-system",
                                   "Kustomization flux-system/flux-system"]  # fmt: skip


def _ready(app: dict[str, Any]) -> dict[str, Any]:
    done = copy.deepcopy(app)
    done["status"]["health"] = {"status": "Healthy"}
    for r in done["status"]["resources"]:
        if "health" in r:
            r["health"] = {"status": "Healthy"}
    return done


def test_wait_synced_records_the_apps_when_ready_and_stable(tmp_path: Path) -> None:
    kube = FakeKube(_ready(ARGO_APP))
    ctx, seen = step_ctx(tmp_path, kube, "wait-synced", timeout="10s")
    wait_synced(ctx)
    ready_since = ctx.outputs["apps"]["root"].pop("ready_since")
    assert ctx.outputs["apps"] == {
        "root": {
            "namespace": "argocd",
            "sync": "Synced",
            "health": "Healthy",
            "ready": True,
            "reason": "",
            "revision": "a" * 40,
        }
    }
    assert ready_since <= ctx.outputs["ready_at"]
    # no verified commit was recorded (preflight's check is off here): said, not hidden; and
    # this Application names no source, so no commit of the config repo is claimed either
    assert ctx.outputs["commit"] == "" and ctx.outputs["commit_verified"] is False
    # one list and one watch of the Applications, however long the wait
    # one list and one watch; one fresh list confirms the end of the stable window
    assert kube.calls == ["list Application", "watch Application", "list Application"]
    assert ctx.outputs["requests"] == 2 and ctx.outputs["confirm_reads"] == 1
    assert 1.0 <= ctx.outputs["seconds"] < 5 and ctx.outputs["stable_for"] == 1.0
    progress = [e for e in seen if e.kind == "step.progress"]
    assert progress[0].message == "1/1 apps Synced+Healthy (stable for 0/1s)"
    assert progress[0].data == {"ready": 1, "total": 1, "waiting": []}


def test_wait_synced_gives_up_naming_the_app_and_the_kubelets_reason(tmp_path: Path) -> None:
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "guestbook", "namespace": "guestbook", "generation": 1},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "guestbook"}}},
        "status": {"observedGeneration": 1, "updatedReplicas": 1},
    }  # fmt: skip
    pod = {
        "kind": "Pod",
        "metadata": {"name": "guestbook-1", "namespace": "guestbook",
                     "labels": {"app": "guestbook"}},
        "status": {"phase": "Pending", "containerStatuses": [{"state": {"waiting": {
            "reason": "CreateContainerConfigError",
            "message": 'secret "guestbook-db" not found'}}}]},
    }  # fmt: skip
    kube = FakeKube(ARGO_APP, deployment, pod)
    ctx, _ = step_ctx(tmp_path, kube, "wait-synced")
    with pytest.raises(WaitTimeout) as exc:
        wait_synced(ctx)
    assert exc.value.message.startswith(
        "gave up after 1s (sync_wait.timeout): not Synced+Healthy: "
    )
    assert exc.value.message.endswith(
        "root: Progressing: Deployment guestbook: CreateContainerConfigError: secret "
        '"guestbook-db" not found'
    )
    assert exc.value.target == "argocd" and "sync_wait.ignore_apps" in str(exc.value.hint)


def test_wait_synced_require_all_false_counts_only_the_root(tmp_path: Path) -> None:
    unready = copy.deepcopy(FLUX_KS)
    unready["metadata"]["name"] = "apps"
    kube = FakeKube(FLUX_KS | {"status": _ks_ready()}, unready)
    ctx, _ = step_ctx(tmp_path, kube, "wait-synced", reconciler="{type: flux}",
                      url="https://git.example/c.git",
                      timeout="10s", sync_extra=", require_all: false")  # fmt: skip
    wait_synced(ctx)
    assert list(ctx.outputs["apps"]) == ["flux-system"]


def _ks_ready() -> dict[str, Any]:
    return {
        "observedGeneration": 1,
        "lastAppliedRevision": "main@sha1:" + "b" * 40,
        "lastAttemptedRevision": "main@sha1:" + "b" * 40,
        "conditions": [{"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded"}],
    }


def test_no_step_asks_which_reconciler_it_holds() -> None:
    text = (Path(__file__).resolve().parents[2] / "bootstrap" / "steps" / "gitops.py").read_text()
    for needle in ('reconciler.type ==', '.type == "flux"', '.type == "argocd"',
                   "import argocd", "import flux"):  # fmt: skip
        assert needle not in text
