"""What "every app is ready" means: at the verified commit, every app Git declares, in the
reconciler's real states, seen through a watch.

Table-driven over real-shaped Argo CD / Flux objects; the wait itself runs over the in-memory
``FakeKube`` of test_reconciler_interface (our own ``KubeAPI`` boundary, not a Kubernetes
server: the real API server and the stand-ins are in tests/integration/test_wait_apiserver.py).
The app-of-apps walk runs on a real git repository with real ``git clone``.
"""

from __future__ import annotations

import copy
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bootstrap.errors import (
    ConfigError,
    PermanentError,
    PreflightError,
    TransientError,
    WaitTimeout,
)
from bootstrap.kubeapi import Gone, Listed, WatchCancel, WatchEvent
from bootstrap.outputs import AppsSynced, EscrowChecked, RepoSummary
from bootstrap.reconcilers import ArgoCD, Flux
from bootstrap.reconcilers.base import Tally, commit_of
from bootstrap.siteload import load_site_text
from bootstrap.steps.appset import Expected, expected_apps
from bootstrap.steps.appwatch import Informer
from bootstrap.steps.gitops import (
    Commits,
    WaitSettings,
    point_at_repo,
    timeout_text,
    wait_for_apps,
    wait_synced,
)
from tests.stepkit import step_context
from tests.unit.test_reconciler_interface import FakeKube

X = "a" * 40
Y = "b" * 40
URL = "https://git.example/config.git"
ARGO = ArgoCD("argocd")
FLUX = Flux("flux-system")


def app(name: str, *, revision: str = X, health: str = "Healthy", sync: str = "Synced",
        repo: str = URL, **extra: Any) -> dict[str, Any]:  # fmt: skip
    status: dict[str, Any] = {"sync": {"status": sync, "revision": revision},
                              "health": {"status": health}}  # fmt: skip
    status.update(extra.pop("status", {}))
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd"},
        "spec": {"source": {"repoURL": repo, "path": name, "targetRevision": "main"},
                 "syncPolicy": extra.pop("sync_policy", {"automated": {}})},
        "status": status, **extra,
    }  # fmt: skip


def ks(name: str, applied: str, *, ready: str = "True", reason: str = "ReconciliationSucceeded",
       message: str = "", **spec: Any) -> dict[str, Any]:  # fmt: skip
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": name, "namespace": "flux-system", "generation": 1},
        "spec": {"path": f"./{name}", "sourceRef": {"kind": "GitRepository",
                                                     "name": "flux-system"}, **spec},
        "status": {"observedGeneration": 1, "lastAppliedRevision": applied,
                   "lastAttemptedRevision": applied,
                   "conditions": [{"type": "Ready", "status": ready, "reason": reason,
                                   "message": message}]},
    }  # fmt: skip


def gitrepo(revision: str) -> dict[str, Any]:
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": "flux-system", "namespace": "flux-system"},
        "status": {"artifact": {"revision": revision}},
    }  # fmt: skip


WS = WaitSettings(timeout=1.5, interval=0.5, stable_for=0.2, require_all=True, ignore=())


def run(kube: FakeKube, rec: Any, commits: Commits, ws: WaitSettings = WS) -> AppsSynced:
    def give_up(last: Tally | None, waited: float) -> WaitTimeout:
        return WaitTimeout(timeout_text(last or Tally((), (), ()), ws.stable_for))

    return wait_for_apps(kube, rec, URL, commits, ws, progress=lambda m, **d: None,
                         give_up=give_up)  # fmt: skip


# --------------------------------------------------------------------------- revisions


@pytest.mark.parametrize(
    ("revision", "sha"),
    [(X, X), (f"main@sha1:{X}", X), (f"sha1:{X}", X), ("1.2.3", None), ("", None)],
)
def test_commit_of_reads_argocd_and_flux_revisions(revision: str, sha: str | None) -> None:
    assert commit_of(revision) == sha


def test_an_app_counts_only_at_the_verified_commit() -> None:
    out = run(FakeKube(app("root"), app("ledger")), ARGO, Commits([X]))
    assert out.commit == X and out.commit_verified and out.verified_commits == [X]
    assert {a.revision for a in out.apps.values()} == {X}
    assert all(a.ready_since is not None for a in out.apps.values())


def test_an_app_of_another_repo_is_not_held_to_the_config_repos_commit() -> None:
    chart = app("redis", revision="18.1.0", repo="https://charts.example/")
    out = run(FakeKube(app("root"), chart), ARGO, Commits([X]))
    assert set(out.apps) == {"root", "redis"} and out.commit == X


def test_the_branch_moved_on_the_new_commit_is_verified_then_accepted() -> None:
    asked: list[str] = []
    commits = Commits([X], verify=asked.append)
    out = run(FakeKube(app("root", revision=Y)), ARGO, commits)
    assert asked == [Y] and out.commit == Y and out.commit_verified
    assert out.verified_commits == [X, Y]


def test_the_branch_moved_on_to_a_commit_that_does_not_verify_is_refused() -> None:
    def verify(commit: str) -> None:
        raise PreflightError(
            "1 of 2 SealedSecret(s) in config@bbbbbbbbbbbb:apps cannot be decrypted with the "
            "escrowed keys:\n    ledger/db-creds (apps/db.yaml): no-key-decrypts: ..."
        )

    with pytest.raises(PermanentError) as exc:
        run(FakeKube(app("root", revision=Y)), ARGO, Commits([X], verify=verify))
    assert exc.value.message.startswith(f"the branch moved on to {Y[:12]}, which drboot "
                                        "cannot verify: ")  # fmt: skip
    assert "ledger/db-creds" in exc.value.message


def test_a_moved_branch_is_verified_as_soon_as_the_reconciler_targets_it() -> None:
    """Before any app is synced at the new commit: refused while Argo CD is still syncing."""

    def verify(commit: str) -> None:
        raise PreflightError("ledger/db-creds (apps/db.yaml): no-key-decrypts")

    syncing = app("root", revision=Y, sync="OutOfSync", health="Progressing")
    with pytest.raises(PermanentError, match="ledger/db-creds"):
        run(FakeKube(syncing), ARGO, Commits([X], verify=verify))
    source_moved = [ks("flux-system", f"main@sha1:{X}"), gitrepo(f"main@sha1:{Y}")]
    with pytest.raises(PermanentError, match=f"moved on to {Y[:12]}"):
        run(FakeKube(*source_moved), FLUX, Commits([X], verify=verify))


def test_without_a_way_to_verify_a_moved_branch_the_app_waits_and_says_why() -> None:
    with pytest.raises(WaitTimeout, match=f"root: Healthy: synced at {Y[:12]}, not at the "
                       f"verified {X[:12]}"):  # fmt: skip
        run(FakeKube(app("root", revision=Y)), ARGO, Commits([X]))


def test_flux_counts_when_the_applied_revision_is_the_sources_artifact() -> None:
    kube = FakeKube(ks("flux-system", f"main@sha1:{X}"), gitrepo(f"main@sha1:{X}"))
    out = run(kube, FLUX, Commits([X]))
    assert out.commit == X and out.apps["flux-system"].revision == X
    # one list each for the watch, one more each confirming the end of the stable window
    assert kube.calls.count("list Kustomization") == kube.calls.count("list GitRepository") == 2
    assert kube.calls.count("watch Kustomization") == kube.calls.count("watch GitRepository") == 1


def test_flux_behind_its_source_is_not_synced_yet() -> None:
    kube = FakeKube(ks("flux-system", f"main@sha1:{X}"), gitrepo(f"main@sha1:{Y}"))
    with pytest.raises(WaitTimeout, match="not at its source's current revision yet"):
        run(kube, FLUX, Commits([X], verify=lambda c: None))


# --------------------------------------------------------------------------- the expected set


def test_an_app_git_declares_but_never_created_is_named_at_timeout() -> None:
    commits = Commits([X])
    commits.expected = Expected(X, frozenset({("argocd", "ledger"), ("argocd", "web")}), ("a",))
    with pytest.raises(WaitTimeout) as exc:
        run(FakeKube(app("root"), app("web")), ARGO, commits)
    assert exc.value.message == f"expected from Git at {X[:12]}, never created: ledger"


def test_apps_not_in_git_are_strays_and_the_root_is_not_one() -> None:
    commits = Commits([X])
    commits.expected = Expected(X, frozenset({("argocd", "web")}), ("a",))
    out = run(FakeKube(app("root"), app("web"), app("handmade")), ARGO, commits)
    assert out.strays == ["argocd/handmade"] and out.expected == ["argocd/web"]


def test_a_child_app_created_late_is_waited_for_then_counted() -> None:
    commits = Commits([X])
    commits.expected = Expected(X, frozenset({("argocd", "web")}), ("a",))
    kube = FakeKube(app("root"))
    threading.Timer(0.3, lambda: kube.events.put(WatchEvent("ADDED", app("web")))).start()
    out = run(kube, ARGO, commits)
    assert set(out.apps) == {"root", "web"}
    assert out.apps["web"].ready_since > out.apps["root"].ready_since  # type: ignore[operator]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


def _write(path: Path, *docs: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs))


def test_app_of_apps_is_walked_at_the_commit_through_the_same_repo_only(tmp_path: Path) -> None:
    repo = tmp_path / "config"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    url = str(repo)
    child = lambda name, path, u=url: {  # noqa: E731
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd"},
        "spec": {"source": {"repoURL": u, "path": path}},
    }  # fmt: skip
    _write(repo / "apps" / "root.yaml", child("platform", "platform"),
           child("redis", "x", "https://charts.example/"))  # fmt: skip
    _write(repo / "platform" / "apps.yaml", child("ledger", "ledger"), child("web", "web"))
    _write(repo / "ledger" / "d.yaml", {"apiVersion": "v1", "kind": "ConfigMap",
                                        "metadata": {"name": "c"}})  # fmt: skip
    _write(repo / "web" / "d.yaml", child("platform", "platform"))  # a cycle: walked once
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "apps")
    sha = _git(repo, "rev-parse", "HEAD")
    _write(repo / "platform" / "late.yaml", child("late", "late"))  # after the commit
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "late")
    got = expected_apps(ARGO, url=url, commit=sha, path="apps", deploy_key=None,
                        known_hosts=None)  # fmt: skip
    assert got.commit == sha
    assert got.apps == {("argocd", n) for n in ("platform", "redis", "ledger", "web")}
    assert got.paths == ("apps", "platform", "ledger", "web")


# --------------------------------------------------------------------------- real states


@pytest.mark.parametrize(
    ("obj", "ready", "reason"),
    [
        (app("a", status={"conditions": [{"type": "SyncError", "message": "boom"}]}), False,
         "SyncError: boom"),
        (app("a", operation={"sync": {"revision": X}}), False, "sync operation in flight"),
        (app("a", status={"operationState": {"phase": "Running", "message": "applying"}}),
         False, "sync operation in flight: applying"),
        (app("a", health="Suspended"), False, "health Suspended: suspended"),
        (app("a", health="Missing", sync="OutOfSync"), False,
         "health Missing: its resources do not exist yet"),
        (app("a", sync="OutOfSync", sync_policy={}), False,
         "manual sync: it will not sync by itself"),
        (app("a"), True, ""),
    ],
)  # fmt: skip
def test_argocd_real_states(obj: dict[str, Any], ready: bool, reason: str) -> None:
    s = ARGO.app_state(obj)
    assert (s.ready, s.reason) == (ready, reason)


@pytest.mark.parametrize(
    ("obj", "ready", "reason"),
    [
        (ks("apps", "", ready="False", reason="DependencyNotReady",
            message="dependency 'flux-system/infra' is not ready"), False,
         "waiting for flux-system/infra"),
        (ks("apps", f"main@sha1:{X}", suspend=True), False,
         "suspended (spec.suspend: true): flux will not reconcile it"),
        (ks("apps", f"main@sha1:{X}"), True, ""),
    ],
)  # fmt: skip
def test_flux_real_states(obj: dict[str, Any], ready: bool, reason: str) -> None:
    s = FLUX.app_state(obj)
    assert (s.ready, s.reason) == (ready, reason)


# --------------------------------------------------------------------------- the watch


class Scripted:
    """A ``KubeAPI`` at our own boundary whose list/watch answers are scripted: each watch
    call takes the next script entry (events, then an exception or a normal end)."""

    def __init__(self, script: list[list[WatchEvent | Exception]]) -> None:
        self.script = script
        self.lists: list[str] = []
        self.watched_from: list[str | None] = []
        self.done = threading.Event()

    def list_versioned(self, api: str, kind: str, namespace: str | None = None) -> Listed:
        self.lists.append(kind)
        return Listed([app("root")], str(10 * len(self.lists)))

    def watch(self, api: str, kind: str, namespace: str | None = None, *,
              resource_version: str | None = None, timeout: int = 60,
              bookmarks: bool = False,
              cancel: WatchCancel | None = None) -> Iterator[WatchEvent]:  # fmt: skip
        self.watched_from.append(resource_version)
        if not self.script:
            self.done.set()
            closed = threading.Event()
            if cancel is not None:
                cancel.bind(closed.set)
            closed.wait(timeout)
            return
        for item in self.script.pop(0):
            if isinstance(item, Exception):
                raise item
            yield item


def test_the_watch_resumes_from_its_resource_version_relists_on_410_and_backs_off() -> None:
    ev = WatchEvent(
        "MODIFIED",
        app("root", health="Degraded")
        | {"metadata": {"name": "root", "namespace": "argocd", "resourceVersion": "15"}},
    )
    bookmark = WatchEvent("BOOKMARK", {"metadata": {"resourceVersion": "17"}})
    kube = Scripted([
        [ev, bookmark],  # ends normally (server timeout): resumed from 17
        [Gone("too old")],  # 410: list again
        [TransientError("connection reset")],  # cut: reconnect after a backoff
        [],
    ])  # fmt: skip
    changed = threading.Event()
    inf = Informer(kube, "argoproj.io/v1alpha1", "Application", "argocd", changed)  # type: ignore[arg-type]
    inf.start()
    assert kube.done.wait(10)
    inf.stop()
    assert kube.lists == ["Application", "Application"]
    assert kube.watched_from == ["10", "17", "20", "20", "20"]
    assert (inf.relists, inf.reconnects, inf.requests) == (1, 1, 7)
    assert inf.snapshot()[("argocd", "root")]["status"]["health"]["status"] == "Healthy"


def test_a_flap_inside_the_stable_window_restarts_it() -> None:
    kube = FakeKube(app("root"))
    degraded = copy.deepcopy(app("root", health="Degraded"))
    ws = WaitSettings(timeout=5, interval=1, stable_for=0.6, require_all=True, ignore=())
    threading.Timer(0.3, lambda: kube.events.put(WatchEvent("MODIFIED", degraded))).start()
    threading.Timer(0.5, lambda: kube.events.put(WatchEvent("MODIFIED", app("root")))).start()
    out = run(kube, ARGO, Commits([X]), ws)
    assert out.seconds >= 0.5 + 0.6 - 0.05


def test_a_flap_between_two_looks_is_not_missed() -> None:
    """Degraded then Healthy again before the waiter looks: the snapshot shows Healthy, but
    the watch saw the dip, and the stable window restarts."""
    kube = FakeKube(app("root"))
    ws = WaitSettings(timeout=5, interval=1, stable_for=0.6, require_all=True, ignore=())

    def flap() -> None:
        kube.events.put(WatchEvent("MODIFIED", app("root", health="Degraded")))
        kube.events.put(WatchEvent("MODIFIED", app("root")))

    threading.Timer(0.3, flap).start()
    out = run(kube, ARGO, Commits([X]), ws)
    assert out.seconds >= 0.3 + 0.6 - 0.05


# --------------------------------------------------------------------------- repo.pin


@pytest.mark.parametrize(("pin", "argo_rev", "flux_ref"),
                         [("branch", "main", {"branch": "main"}),
                          ("commit", X, {"commit": X})])  # fmt: skip
def test_repo_pin_commit_points_the_reconciler_at_the_verified_commit(
    tmp_path: Path, pin: str, argo_rev: str, flux_ref: dict[str, str]
) -> None:
    checked = EscrowChecked(repo=RepoSummary(URL, "main", X, "apps"))

    def argo(k: FakeKube) -> bool:
        root = k.get("argoproj.io/v1alpha1", "Application", "root", "argocd")
        return bool(root["spec"]["source"]["targetRevision"] == argo_rev)

    def flux(k: FakeKube) -> bool:
        return bool(k.get("x", "GitRepository", "flux-system", "flux-system")["spec"]["ref"]
                    == flux_ref)  # fmt: skip

    for rec, check in (("argocd", argo), ("flux", flux)):
        site = load_site_text(PIN_SITE.format(rec=rec, pin=pin), "s.yaml", base_dir=tmp_path)
        kube = FakeKube()
        ctx = step_context(site, tmp_path / rec / pin, "point-at-repo", kube=kube,
                           outputs=[checked])  # type: ignore[arg-type]  # fmt: skip
        point_at_repo(ctx)
        assert check(kube), rec


def test_repo_pin_commit_without_a_verified_commit_is_refused(tmp_path: Path) -> None:
    site = load_site_text(PIN_SITE.format(rec="argocd", pin="commit"), "s.yaml",
                          base_dir=tmp_path)  # fmt: skip
    ctx = step_context(site, tmp_path / "r", "point-at-repo", kube=FakeKube())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"repo\.pin: commit needs the commit preflight verified"):
        point_at_repo(ctx)


PIN_SITE = """\
apiVersion: drboot.dev/v1
kind: Site
name: pin
provider: {{type: static, hosts: [{{name: h, address: 127.0.0.1}}]}}
escrow: {{backend: age, bundle: kit.age, identity_files: [id.txt]}}
reconciler: {{type: {rec}}}
repo: {{url: "https://git.example/config.git", revision: main, path: apps, pin: {pin}}}
"""


# --------------------------------------------------------------------------- resume


RESUME_SITE = """\
apiVersion: drboot.dev/v1
kind: Site
name: resume
provider: {{type: static, hosts: [{{name: h, address: 127.0.0.1}}]}}
escrow: {{backend: age, bundle: kit.age, identity_files: [id.txt]}}
reconciler: {{type: argocd}}
repo: {{url: "{url}", revision: main, path: apps}}
sync_wait: {{timeout: 1s, poll_interval: 1s, stable_for: 1s}}
"""


def test_resume_after_a_wait_timeout_waits_for_the_same_verified_commit(tmp_path: Path) -> None:
    """The wait-synced step reads the verified commit from the journal (preflight's output),
    so a resumed run waits for that commit and the apps Git declares at it: it does not
    start over, nor settle for whatever the branch says now."""
    repo = tmp_path / "config"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    url = str(repo)
    web = app("web", repo=url)
    _write(
        repo / "apps" / "web.yaml", {k: web[k] for k in ("apiVersion", "kind", "metadata", "spec")}
    )
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "web")
    sha = _git(repo, "rev-parse", "HEAD")
    _write(repo / "apps" / "more.yaml", app("more", repo=url))  # pushed later: not verified
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "more")
    site = load_site_text(RESUME_SITE.format(url=url), "s.yaml", base_dir=tmp_path)
    checked = EscrowChecked(repo=RepoSummary(url, "main", sha, "apps"))
    kube = FakeKube(app("root", revision=sha, repo=url))
    ctx = step_context(site, tmp_path / "r", "wait-synced", kube=kube, outputs=[checked])  # type: ignore[arg-type]
    with pytest.raises(WaitTimeout, match=f"expected from Git at {sha[:12]}, never created: web"):
        wait_synced(ctx)
    kube._put(app("web", revision=sha, repo=url))  # the operator fixed it; then `drboot resume`
    ctx = step_context(site, tmp_path / "r", "wait-synced", kube=kube, outputs=[checked])  # type: ignore[arg-type]
    wait_synced(ctx)
    out = AppsSynced.from_json(ctx.outputs)
    assert out.commit == sha and out.commit_verified and out.expected == ["argocd/web"]
    assert set(out.apps) == {"root", "web"}


# --------------------------------------------------------------------------- after the wait


def test_no_watch_thread_is_left_after_the_wait_returns() -> None:
    """The waiter closes its watches when it returns (the connection shut down, the thread
    joined), instead of leaving daemon threads until the server's watch timeout."""
    before = set(threading.enumerate())
    out = run(FakeKube(app("root")), ARGO, Commits([X]))
    assert "root" in out.apps
    left = [t.name for t in threading.enumerate() if t not in before and t.is_alive()]
    assert left == []


def test_no_watch_thread_is_left_after_the_wait_times_out() -> None:
    before = set(threading.enumerate())
    with pytest.raises(WaitTimeout):
        run(FakeKube(app("root", health="Degraded")), ARGO, Commits([X]))
    assert [t.name for t in threading.enumerate() if t not in before and t.is_alive()] == []


# --------------------------------------------------------------------------- HelmRelease


def hr(name: str, *, ready: str = "True", reason: str = "InstallSucceeded", message: str = "",
       generation: int = 1, observed: int = 1, **spec: Any) -> dict[str, Any]:  # fmt: skip
    """A HelmRelease as helm-controller v1 (helm.toolkit.fluxcd.io/v2) writes its status."""
    return {
        "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
        "metadata": {"name": name, "namespace": "flux-system", "generation": generation},
        "spec": {"interval": "10m", "chart": {"spec": {
            "chart": name, "version": "6.x",
            "sourceRef": {"kind": "HelmRepository", "name": "podinfo"}}}, **spec},
        "status": {"observedGeneration": observed, "lastAttemptedRevision": "6.5.4",
                   "history": [{"chartVersion": "6.5.4", "status": "deployed"}],
                   "conditions": [{"type": "Ready", "status": ready, "reason": reason,
                                   "message": message}]},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("obj", "ready", "reason"),
    [
        (hr("podinfo", message="Helm install succeeded"), True, ""),
        (hr("podinfo", ready="False", reason="InstallFailed",
            message="Helm install failed: timed out waiting for the condition"), False,
         "InstallFailed: Helm install failed: timed out waiting for the condition"),
        (hr("podinfo", ready="Unknown", reason="Progressing", message="Fulfilling prerequisites"),
         False, "Progressing: Fulfilling prerequisites"),
        (hr("podinfo", ready="False", reason="DependencyNotReady",
            message="dependency 'flux-system/redis' is not ready"), False,
         "waiting for flux-system/redis"),
        (hr("podinfo", generation=2), False, "not reconciled yet"),
        (hr("podinfo", suspend=True), False,
         "suspended (spec.suspend: true): flux will not reconcile it"),
    ],
)  # fmt: skip
def test_helmrelease_real_states(obj: dict[str, Any], ready: bool, reason: str) -> None:
    s = FLUX.app_state(obj)
    assert (s.name, s.ready, s.reason) == ("HelmRelease/podinfo", ready, reason)


def test_helmreleases_are_waited_for_only_when_their_crd_is_installed() -> None:
    failing = hr("podinfo", ready="False", reason="InstallFailed", message="Helm install failed")
    objs = (ks("flux-system", f"main@sha1:{X}"), gitrepo(f"main@sha1:{X}"), failing)
    kube = FakeKube(*objs)
    kube.unserved = {"HelmRelease"}  # helm-controller not installed: nothing to wait for
    out = run(kube, FLUX, Commits([X]))
    assert set(out.apps) == {"flux-system"} and "list HelmRelease" not in kube.calls
    kube = FakeKube(*objs)
    with pytest.raises(WaitTimeout) as exc:
        run(kube, FLUX, Commits([X]))
    want = "HelmRelease/podinfo: OutOfSync/Degraded: InstallFailed: Helm install failed"
    assert want in exc.value.message
    healthy = FakeKube(ks("flux-system", f"main@sha1:{X}"), gitrepo(f"main@sha1:{X}"),
                       hr("podinfo"))  # fmt: skip
    assert set(run(healthy, FLUX, Commits([X])).apps) == {"flux-system", "HelmRelease/podinfo"}


def test_helmreleases_git_declares_are_expected_and_not_strays() -> None:
    declared = FLUX.declared_apps([hr("podinfo"), ks("infra", X)], URL)
    assert [(d.namespace, d.name) for d in declared] == [
        ("flux-system", "HelmRelease/podinfo"), ("flux-system", "infra")]  # fmt: skip
    kube = FakeKube(ks("flux-system", f"main@sha1:{X}"), gitrepo(f"main@sha1:{X}"),
                    ks("infra", f"main@sha1:{X}"), hr("podinfo"), hr("adhoc"))  # fmt: skip
    commits = Commits([X])
    declared_keys = frozenset({("flux-system", "infra"), ("flux-system", "HelmRelease/podinfo")})
    commits.expected = Expected(X, declared_keys, ())
    out = run(kube, FLUX, commits)
    assert out.strays == ["flux-system/HelmRelease/adhoc"]


# --------------------------------------------------------------------------- manual sync


def manual(name: str, *, sync: str = "OutOfSync", health: str = "Missing", revision: str = X,
           repo: str = URL, **status: Any) -> dict[str, Any]:  # fmt: skip
    """An Application without automated sync (``syncPolicy`` without ``automated``)."""
    return app(name, sync=sync, health=health, revision=revision, repo=repo, sync_policy={},
               status=status)  # fmt: skip


@pytest.mark.parametrize(
    ("obj", "wanted"),
    [
        (manual("web"), True),
        (app("web", sync="OutOfSync"), False),  # automated: it syncs by itself
        (manual("web") | {"operation": {"sync": {"revision": X}}}, False),  # in flight
        (manual("web", operationState={"phase": "Running",
                                       "operation": {"sync": {"revision": Y}}}), False),
        (manual("web", operationState={"phase": "Succeeded", "syncResult": {"revision": X},
                                       "operation": {"sync": {"revision": X}}}), False),
        (manual("web", operationState={"phase": "Failed", "message": "one or more objects "
                                       "failed to apply", "syncResult": {"revision": X},
                                       "operation": {"sync": {"revision": X}}}), False),
        (manual("web", operationState={"phase": "Succeeded", "syncResult": {"revision": Y},
                                       "operation": {"sync": {"revision": Y}}}), True),
    ],
)  # fmt: skip
def test_a_manual_sync_app_gets_one_sync_per_revision(obj: dict[str, Any], wanted: bool) -> None:
    want = {"operation": {"sync": {"revision": X}, "initiatedBy": {"username": "drboot"}}}
    assert ARGO.sync_request(obj, X) == (want if wanted else None)
    assert FLUX.sync_request(ks("web", X), X) is None


class ArgoSyncs(FakeKube):
    """Answers drboot's ``operation`` patch as Argo CD's application controller does: the
    sync runs at the requested revision, ``status.operationState`` records it, ``operation``
    is cleared, and the watch sees one MODIFIED event."""

    def __init__(self, *objs: dict[str, Any]) -> None:
        super().__init__(*objs)
        self.operations: list[dict[str, Any]] = []

    def patch(self, api: str, kind: str, name: str, patch: dict[str, Any],  # type: ignore[override]
              namespace: str | None = None) -> None:  # fmt: skip
        self.calls.append(f"patch {kind} {name}")
        op = patch["operation"]
        self.operations.append(op)
        rev = op["sync"]["revision"]
        live = self.get(api, kind, name, namespace)
        repo = live["spec"]["source"]["repoURL"]
        done = manual(name, sync="Synced", health="Healthy", revision=rev, repo=repo,
                      operationState={"operation": op, "phase": "Succeeded",
                                      "message": "successfully synced",
                                      "syncResult": {"revision": rev}})  # fmt: skip
        self._put(done)
        self.events.put(WatchEvent("MODIFIED", done))


MANUAL_SITE = """\
apiVersion: drboot.dev/v1
kind: Site
name: manual
provider: {{type: static, hosts: [{{name: h, address: 127.0.0.1}}]}}
escrow: {{backend: age, bundle: kit.age, identity_files: [id.txt]}}
reconciler: {{type: argocd}}
repo: {{url: "{url}", revision: main, path: apps}}
sync_wait: {{timeout: 3s, poll_interval: 1s, stable_for: 1s{extra}}}
"""


def test_sync_manual_apps_syncs_a_manual_app_once_at_the_verified_commit(tmp_path: Path) -> None:
    """``sync_wait.sync_manual_apps``: off, a manual-sync app is named and left alone; on,
    drboot starts one sync at the verified commit through ``operation`` (as ``argocd app
    sync`` does), and the record says so."""
    repo = tmp_path / "config"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    url = str(repo)
    web = manual("web", repo=url)
    _write(repo / "apps" / "web.yaml", {k: web[k] for k in ("apiVersion", "kind", "metadata",
                                                            "spec")})  # fmt: skip
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "web, synced by hand")
    sha = _git(repo, "rev-parse", "HEAD")
    checked = EscrowChecked(repo=RepoSummary(url, "main", sha, "apps"))

    def site(extra: str) -> Any:
        return load_site_text(MANUAL_SITE.format(url=url, extra=extra), "s.yaml",
                              base_dir=tmp_path)  # fmt: skip

    kube = ArgoSyncs(app("root", revision=sha, repo=url), manual("web", revision=sha, repo=url))
    ctx = step_context(site(""), tmp_path / "off", "wait-synced", kube=kube,
                       outputs=[checked])  # type: ignore[arg-type]  # fmt: skip
    with pytest.raises(WaitTimeout, match=r"web: OutOfSync/Missing: .*; manual sync: it will "
                       r"not sync by itself"):  # fmt: skip
        wait_synced(ctx)
    assert kube.operations == []
    ctx = step_context(site(", sync_manual_apps: true"), tmp_path / "on", "wait-synced",
                       kube=kube, outputs=[checked])  # type: ignore[arg-type]  # fmt: skip
    wait_synced(ctx)
    out = AppsSynced.from_json(ctx.outputs)
    assert kube.operations == [{"sync": {"revision": sha}, "initiatedBy": {"username": "drboot"}}]
    assert out.synced_by_drboot == [f"argocd/web@{sha}"] and set(out.apps) == {"root", "web"}
    assert out.commit == sha and out.commit_verified


class CutLink(FakeKube):
    """A link cut under an open watch: the watch shows nothing and ends never (as a TCP
    connection to a host that stopped answering), and every list fails as the kube adapter's
    request deadline would, until ``restore()``; the app is changed on the server meanwhile."""

    def __init__(self, *objs: dict[str, Any]) -> None:
        super().__init__(*objs)
        self.cut = threading.Event()
        self.refused = threading.Event()
        self.watch_calls = 0
        self.lists = 0

    def list_versioned(self, api: str, kind: str, namespace: str | None = None) -> Listed:
        self.lists += 1
        if self.cut.is_set() and self.lists > 1:  # the informer's first list got through
            self.refused.set()
            raise TransientError("GET applications: connection timed out")
        return super().list_versioned(api, kind, namespace)

    def watch(self, api: str, kind: str, namespace: str | None = None, *,
              resource_version: str | None = None, timeout: int = 60, bookmarks: bool = False,
              cancel: WatchCancel | None = None) -> Iterator[WatchEvent]:  # fmt: skip
        self.watch_calls += 1
        return super().watch(api, kind, namespace, resource_version=resource_version,
                             timeout=timeout, bookmarks=bookmarks, cancel=cancel)  # fmt: skip


def test_a_link_cut_under_a_quiet_watch_is_noticed_and_the_wait_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing happens on the watch while the link is cut: after LIVE_EVERY seconds of
    silence a fresh list says "API not answering" and the hung watch is dropped; once the
    link is back, a fresh list shows the app that became healthy meanwhile (the watch never
    told), and the wait ends."""
    from bootstrap.steps import gitops

    monkeypatch.setattr(gitops, "LIVE_EVERY", 0.3)
    kube = CutLink(app("root", health="Progressing"))
    kube.cut.set()
    said: list[str] = []
    ws = WaitSettings(timeout=20, interval=0.1, stable_for=0.2, require_all=True, ignore=())

    def back_when_noticed() -> None:
        assert kube.refused.wait(10)
        kube._put(app("root"))  # healthy on the server; no watch event reaches us
        kube.cut.clear()

    helper = threading.Thread(target=back_when_noticed)
    helper.start()
    out = wait_for_apps(kube, ARGO, URL, Commits([X]), ws,  # type: ignore[arg-type]
                        progress=lambda m, **d: said.append(m),
                        give_up=lambda last, waited: WaitTimeout("gave up"))  # fmt: skip
    helper.join()
    assert any(m.startswith("API not answering (GET applications") for m in said), said
    assert list(out.apps) == ["root"]
    assert kube.watch_calls >= 2  # the hung watch was dropped and opened again
