"""The wait for every app on the real API server, with the Argo CD stand-in writing status.

Real: kube-apiserver (the Application CRD drboot ships, list + watch with resourceVersions),
git (a config repo on disk, cloned by drboot at the verified commit), kubectl kustomize where a
path has a kustomization, drboot's escrow check (``check_repo``) of a commit the branch moved on
to. LAB STAND-IN: the Argo CD application controller (it reads and writes the same fields).

Proves: a child app created late by the root (app of apps) is waited for; an app Git declares
that is never created is named at timeout; a commit pushed after preflight verified another is
verified, then accepted (and the output says so), or refused naming the SealedSecret that does
not open; the wait lists the Applications once and watches them; a watch from a version
the server no longer keeps is answered 410 Gone, and the informer lists again; the watch's
TCP connection cut mid-wait (through a loopback proxy the test controls) is reconnected and
counted; an app without automated sync is synced once by drboot through ``operation`` (the
stand-in runs it as Argo CD's controller does); a HelmRelease counts once its CRD exists
(a minimal CRD written here: the server validates nothing of helm-controller's schema);
Flux Kustomizations declared in a rendered root are expected (one never created is named,
one not in Git is a stray); no watch thread is left when the wait returns.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from bootstrap.adapters.kube import KubeClient
from bootstrap.errors import PermanentError, WaitTimeout
from bootstrap.escrow.kit import RecoveryKit
from bootstrap.escrow.service import check_repo
from bootstrap.kubeapi import Gone
from bootstrap.lab.standins.argocd import ArgoCDController
from bootstrap.lab.standins.common import client_factory
from bootstrap.outputs import AppsSynced
from bootstrap.reconcilers import ArgoCD, Flux
from bootstrap.reconcilers.base import RepoSource, Tally
from bootstrap.siteload import load_site_text
from bootstrap.steps.appset import expected_apps
from bootstrap.steps.appwatch import Informer
from bootstrap.steps.gitops import Commits, WaitSettings, timeout_text, wait_for_apps

pytestmark = [pytest.mark.integration, pytest.mark.apiserver]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


def _app(name: str, ns: str, url: str, path: str, app_ns: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": name, "namespace": app_ns or ns},
        "spec": {"project": "default",
                 "source": {"repoURL": url, "targetRevision": "main", "path": path},
                 "destination": {"server": "https://kubernetes.default.svc", "namespace": ns},
                 "syncPolicy": {"automated": {"prune": True}}},
    }  # fmt: skip


def _cm(name: str, value: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"v": value}}  # fmt: skip


def _put(repo: Path, rel: str, *docs: dict[str, Any]) -> None:
    p = repo / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump_all(docs))


def _commit(repo: Path, msg: str) -> str:
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", msg)
    return _git(repo, "rev-parse", "HEAD")


class Bed:
    """A namespace with the Application CRD, the Argo CD stand-in, a config repo on disk whose
    root path declares ``platform`` (which declares ``web``), and the root Application."""

    def __init__(self, apiserver: Any, ns: str, tmp: Path, *, extra: list[dict[str, Any]]):
        self.kube = apiserver.client
        self.ns = ns
        self.rec = ArgoCD(ns)
        crds = [o for o in self.rec.install_objects() if o["kind"] == "CustomResourceDefinition"]
        self.kube.apply_manifest(crds)
        self.repo = tmp / "config"
        self.repo.mkdir()
        _git(self.repo, "init", "-q", "-b", "main")
        self.url = str(self.repo)
        _put(self.repo, "root/apps.yaml", _app("platform", ns, self.url, "platform"), *extra)
        _put(self.repo, "platform/apps.yaml", _app("web", ns, self.url, "web"))
        _put(self.repo, "web/cm.yaml", _cm("web", "1"))
        self.verified = _commit(self.repo, "apps")
        self.site = load_site_text(
            f'apiVersion: drboot.dev/v1\nkind: Site\nname: w\n'
            f'provider: {{type: static, hosts: [{{name: h, address: 127.0.0.1}}]}}\n'
            f'escrow: {{backend: age, bundle: /nonexistent/kit.age, identity_files: [/x]}}\n'
            f'reconciler: {{type: argocd, namespace: {ns}}}\n'
            f'repo: {{url: "{self.url}", revision: main, path: root}}\n',
            "w.yaml", base_dir=Path("/"),
        )  # fmt: skip
        self.ctl = ArgoCDController(client_factory(apiserver.kubeconfig), namespace=ns,
                                    interval=0.3, resync=1.0)  # fmt: skip

    def __enter__(self) -> Bed:
        self.ctl.start()
        self.apply_root()
        return self

    def apply_root(self) -> None:
        """What point-at-repo does: the root Application follows the repo's root path."""
        source = RepoSource(self.url, "main", "root")
        self.kube.apply(self.rec.root_objects(source, None)[0])

    def __exit__(self, *exc: object) -> None:
        self.ctl.stop()

    def commits(self) -> Commits:
        """As the wait-synced step builds them: preflight verified ``self.verified``; a newer
        commit is checked by the escrow check (an empty kit: no SealedSecret may be in it)."""
        kit = RecoveryKit(site="w", sealing_keys=[], k3s_token="t" * 20)

        def expect(commit: str) -> Any:
            return expected_apps(self.rec, url=self.url, commit=commit, path="root",
                                 deploy_key=None, known_hosts=None)  # fmt: skip

        c = Commits([self.verified], lambda sha: check_repo(self.site, kit, revision=sha), expect)
        c.adopt(self.verified)
        return c

    def wait(self, commits: Commits, timeout: float = 40, *, sync_manual: bool = False,
             kube: Any = None, progress: Any = None) -> AppsSynced:  # fmt: skip
        ws = WaitSettings(timeout=timeout, interval=1, stable_for=1.5, require_all=True,
                          ignore=(), sync_manual=sync_manual)  # fmt: skip

        def give_up(last: Tally | None, waited: float) -> WaitTimeout:
            return WaitTimeout(timeout_text(last or Tally((), (), ()), ws.stable_for))

        return wait_for_apps(kube or self.kube, self.rec, self.url, commits, ws,
                             progress=progress or _quiet, give_up=give_up)  # fmt: skip


def test_children_created_late_are_waited_for_at_the_verified_commit(
    apiserver: Any, namespace: str, tmp_path: Path
) -> None:
    with Bed(apiserver, namespace, tmp_path, extra=[]) as bed:
        out = bed.wait(bed.commits())
    assert set(out.apps) == {"root", "platform", "web"}
    assert out.commit == bed.verified and out.commit_verified
    assert out.expected == [f"{namespace}/platform", f"{namespace}/web"] and out.strays == []
    # created by the root, then by platform: each turned ready after its parent's first sync
    since = {n: a.ready_since for n, a in out.apps.items()}
    assert all(since.values())
    assert out.requests == 2  # one list and one watch of the Applications, however long


def test_an_app_git_declares_that_is_never_created_is_named(
    apiserver: Any, namespace: str, tmp_path: Path
) -> None:
    # ledger's namespace does not exist: the sync of the root cannot create it, ever
    ledger = _app("ledger", namespace, "https://git.invalid/x", "x", app_ns=f"{namespace}-gone")
    with (
        Bed(apiserver, namespace, tmp_path, extra=[ledger]) as bed,
        pytest.raises(WaitTimeout) as exc,
    ):
        bed.wait(bed.commits(), timeout=8)
    assert f"expected from Git at {bed.verified[:12]}, never created: ledger" in exc.value.message


def test_a_commit_pushed_after_preflight_is_verified_then_accepted(
    apiserver: Any, namespace: str, tmp_path: Path
) -> None:
    with Bed(apiserver, namespace, tmp_path, extra=[]) as bed:
        _put(bed.repo, "web/cm.yaml", _cm("web", "2"))
        _put(bed.repo, "platform/apps.yaml", _app("web", namespace, bed.url, "web"),
             _app("api", namespace, bed.url, "api"))  # fmt: skip
        _put(bed.repo, "api/cm.yaml", _cm("api", "1"))
        newer = _commit(bed.repo, "web 2, and an api app")
        out = bed.wait(bed.commits())
    assert out.commit == newer and out.commit_verified
    assert out.verified_commits == [bed.verified, newer]
    # the apps expected are those of the commit the cluster converged to
    assert f"{namespace}/api" in out.expected and "api" in out.apps


def test_a_commit_pushed_after_preflight_that_does_not_verify_is_refused(
    apiserver: Any, namespace: str, tmp_path: Path
) -> None:
    sealed = {
        "apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret",
        "metadata": {"name": "db-creds", "namespace": namespace},
        "spec": {"encryptedData": {"password": "bm90IGEgc2VhbGVkIHZhbHVl"}},
    }  # fmt: skip
    with Bed(apiserver, namespace, tmp_path, extra=[]) as bed:
        _put(bed.repo, "unused/db.yaml", sealed)  # not applied by any app; still in the repo
        _put(bed.repo, "web/cm.yaml", _cm("web", "3"))
        newer = _commit(bed.repo, "a secret sealed with a key the escrow does not hold")
        with pytest.raises(PermanentError) as exc:
            bed.wait(bed.commits())
    assert exc.value.message.startswith(f"the branch moved on to {newer[:12]}, which drboot "
                                        "cannot verify: ")  # fmt: skip
    assert f"{namespace}/db-creds" in exc.value.message


def test_a_watch_from_a_version_the_server_no_longer_has_gets_410_and_relists(
    apiserver: Any, namespace: str
) -> None:
    """The API server keeps a bounded window of history (its watch cache starts at the
    version it first listed; etcd compacts older ones): a watch from a version before that
    window is answered ``410 Gone``, what a waiter meets after a long disconnection. Version
    "1" is before any window. The informer lists again and carries on from the new list."""
    kube = apiserver.client
    rec = ArgoCD(namespace)
    crds = [o for o in rec.install_objects() if o["kind"] == "CustomResourceDefinition"]
    kube.apply_manifest(crds)
    kube.create(_app("root", namespace, "https://git.invalid/x", "x"))
    kube.patch("argoproj.io/v1alpha1", "Application", "root",
               {"metadata": {"annotations": {"n": "1"}}}, namespace)  # fmt: skip
    gone = "1"
    with pytest.raises(Gone):
        next(iter(kube.watch("argoproj.io/v1alpha1", "Application", namespace,
                             resource_version=gone, timeout=5)))  # fmt: skip
    changed = threading.Event()
    inf = Informer(kube, "argoproj.io/v1alpha1", "Application", namespace, changed)
    inf.resource_version = gone  # as if it had listed long ago and lost its connection
    inf.synced.set()
    inf.start()
    try:
        deadline = time.monotonic() + 30
        while (namespace, "root") not in inf.snapshot() and time.monotonic() < deadline:
            changed.wait(1)
            changed.clear()
        assert inf.relists == 1 and inf.lists == 1
        assert inf.snapshot()[(namespace, "root")]["metadata"]["annotations"]["n"] == "1"
    finally:
        inf.stop()


def test_drboot_wait_on_a_cluster_that_is_up(
    apiserver: Any, namespace: str, tmp_path: Path
) -> None:
    """``drboot wait SITE --kubeconfig K -o json`` through the real CLI: exit 0 and the record.
    The site turns preflight's escrow check off, so the commit is reported as not verified."""
    from click.testing import CliRunner

    from bootstrap.cli import cli

    with Bed(apiserver, namespace, tmp_path, extra=[]) as bed:
        site = tmp_path / "site.yaml"
        site.write_text(
            "apiVersion: drboot.dev/v1\nkind: Site\nname: w\n"
            "provider: {type: static, hosts: [{name: h, address: 127.0.0.1}]}\n"
            "escrow: {backend: age, bundle: /nonexistent/kit.age, identity_files: [/x]}\n"
            f"reconciler: {{type: argocd, namespace: {namespace}}}\n"
            f'repo: {{url: "{bed.url}", revision: main, path: root}}\n'
            "sealed_secrets: {verify_in_preflight: false}\n"
            "sync_wait: {timeout: 60s, poll_interval: 1s, stable_for: 1s}\n"
        )
        res = CliRunner().invoke(
            cli, ["-o", "json", "wait", str(site), "--kubeconfig", str(apiserver.kubeconfig)]
        )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.splitlines()[-1])
    assert set(out["apps"]) == {"root", "platform", "web"}
    assert out["commit"] == bed.verified and out["commit_verified"] is False


# --------------------------------------------------------------------------- manual sync


def _manual(name: str, ns: str, url: str, path: str) -> dict[str, Any]:
    a = _app(name, ns, url, path)
    del a["spec"]["syncPolicy"]  # no automated sync: Argo CD waits for someone to sync it
    return a


def test_an_app_without_automated_sync_is_synced_once_by_drboot(
    apiserver: Any, namespace: str, tmp_path: Path
) -> None:
    manual = _manual("ledger", namespace, str(tmp_path / "config"), "ledger")
    with Bed(apiserver, namespace, tmp_path, extra=[manual]) as bed:
        _put(bed.repo, "ledger/cm.yaml", _cm("ledger", "1"))
        bed.verified = _commit(bed.repo, "ledger, synced by hand")
        out = bed.wait(bed.commits(), sync_manual=True)
        live = bed.kube.get("argoproj.io/v1alpha1", "Application", "ledger", namespace)
    assert out.synced_by_drboot == [f"{namespace}/ledger@{bed.verified}"]
    assert "ledger" in out.apps and out.commit == bed.verified
    op = live["status"]["operationState"]
    assert op["phase"] == "Succeeded" and op["syncResult"]["revision"] == bed.verified
    assert op["operation"]["initiatedBy"] == {"username": "drboot"}
    assert op["operation"]["sync"]["revision"] == bed.verified
    assert "operation" not in live  # the controller cleared it, as Argo CD does
    assert bed.kube.get("v1", "ConfigMap", "ledger", namespace) is not None


def test_an_app_without_automated_sync_is_named_when_the_site_does_not_sync_it(
    apiserver: Any, namespace: str, tmp_path: Path
) -> None:
    manual = _manual("ledger", namespace, str(tmp_path / "config"), "ledger")
    with Bed(apiserver, namespace, tmp_path, extra=[manual]) as bed:
        _put(bed.repo, "ledger/cm.yaml", _cm("ledger", "1"))
        bed.verified = _commit(bed.repo, "ledger, synced by hand")
        with pytest.raises(WaitTimeout) as exc:
            bed.wait(bed.commits(), timeout=8)
        live = bed.kube.get("argoproj.io/v1alpha1", "Application", "ledger", namespace)
    assert "operationState" not in live["status"]  # nobody synced it
    assert "ledger: OutOfSync/" in exc.value.message
    assert "manual sync: it will not sync by itself" in exc.value.message


# --------------------------------------------------------------------------- the watch cut


class CuttableProxy:
    """A loopback TCP proxy to the API server that the test can cut: ``cut()`` closes every
    connection open through it (both sides), as a link or a load balancer dropping them
    would; new connections are still accepted afterwards."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.cuts = 0
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, name="proxy accept", daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True,
                             name="proxy pipe").start()  # fmt: skip

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [])
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except OSError:
            return
        finally:
            for s in (a, b):
                s.close()

    def cut(self) -> int:
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        self.cuts += 1
        return len(conns) // 2

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        self.cut()


def _server_of(kubeconfig: Path) -> tuple[str, int]:
    cfg = yaml.safe_load(kubeconfig.read_text())
    host, port = cfg["clusters"][0]["cluster"]["server"].removeprefix("https://").rsplit(":", 1)
    return host, int(port)


def _through(kubeconfig: Path, port: int, dest: Path) -> Path:
    """A copy of ``kubeconfig`` whose server is the proxy's port on the same loopback host
    (so the server's certificate still matches)."""
    cfg = yaml.safe_load(kubeconfig.read_text())
    host, _ = _server_of(kubeconfig)
    cfg["clusters"][0]["cluster"]["server"] = f"https://{host}:{port}"
    dest.write_text(yaml.safe_dump(cfg))
    return dest


def test_the_watch_connection_cut_mid_wait_is_reconnected_and_counted(
    apiserver: Any, namespace: str, tmp_path: Path
) -> None:
    """The waiter talks to the real API server through a proxy. Once its watch has delivered
    an event (the root Application, created after the waiter's list found none: only the
    watch can have brought it), every proxied connection is closed. The waiter reconnects,
    resumes the watch from its resourceVersion, and returns when the apps turn ready."""
    proxy = CuttableProxy(_server_of(Path(apiserver.kubeconfig)))
    kubeconfig = _through(Path(apiserver.kubeconfig), proxy.port, tmp_path / "proxied")
    seen: list[dict[str, Any]] = []
    seen_cond = threading.Condition()

    def progress(message: str, **data: Any) -> None:
        with seen_cond:
            seen.append(data)
            seen_cond.notify_all()

    def saw(pred: Any, what: str) -> None:
        with seen_cond:
            assert seen_cond.wait_for(lambda: any(pred(d) for d in seen), 30), what

    bed = Bed(apiserver, namespace, tmp_path, extra=[])
    result: dict[str, Any] = {}
    with KubeClient.from_kubeconfig(kubeconfig) as proxied:

        def run() -> None:
            try:
                result["out"] = bed.wait(bed.commits(), timeout=60, kube=proxied,
                                         progress=progress)  # fmt: skip
            except BaseException as e:
                result["error"] = e

        waiter = threading.Thread(target=run, name="waiter")
        waiter.start()
        try:
            saw(lambda d: d.get("total") == 2, "the waiter's first look (nothing created yet)")
            bed.apply_root()  # after the list: only the watch can tell the waiter
            saw(lambda d: "root" in (d.get("waiting") or []), "the root seen through the watch")
            assert proxy.cut() >= 1
            bed.ctl.start()  # the controller: root, then platform, then web turn ready
            waiter.join(90)
        finally:
            bed.ctl.stop()
            proxy.close()
    assert not waiter.is_alive()
    assert "error" not in result, result.get("error")
    out: AppsSynced = result["out"]
    assert set(out.apps) == {"root", "platform", "web"}
    assert out.reconnects >= 1
    assert out.requests == 2 + out.reconnects  # the watch resumed: no new list


# --------------------------------------------------------------------------- HelmRelease


HELMRELEASE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "helmreleases.helm.toolkit.fluxcd.io"},
    "spec": {
        "group": "helm.toolkit.fluxcd.io",
        "names": {"kind": "HelmRelease", "listKind": "HelmReleaseList", "plural": "helmreleases",
                  "singular": "helmrelease", "shortNames": ["hr"]},
        "scope": "Namespaced",
        "versions": [{"name": "v2", "served": True, "storage": True,
                      "subresources": {"status": {}},
                      "schema": {"openAPIV3Schema": {
                          "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}],
    },
}  # fmt: skip


def _quiet(message: str, **data: Any) -> None:
    pass


def _flux_objects(kube: Any, ns: str) -> None:
    rec = Flux(ns)
    groups = ("kustomize.toolkit.fluxcd.io", "source.toolkit.fluxcd.io")
    crds = [
        o
        for o in rec.install_objects()
        if o["kind"] == "CustomResourceDefinition" and o["spec"]["group"] in groups
    ]
    kube.apply_manifest(crds)


def _ready_flux(kube: Any, api: str, kind: str, name: str, ns: str, rev: str | None,
                ready: str = "True", reason: str = "ReconciliationSucceeded",
                message: str = "Applied") -> None:  # fmt: skip
    """Write the status the Flux controller writes (LAB STAND-IN for the controllers)."""
    live = kube.get(api, kind, name, ns)
    status: dict[str, Any] = {
        "observedGeneration": live["metadata"]["generation"],
        "conditions": [{"type": "Ready", "status": ready, "reason": reason, "message": message,
                        "lastTransitionTime": "2026-11-29T00:00:00Z"}],
    }  # fmt: skip
    if kind == "Kustomization" and rev:
        status |= {"lastAppliedRevision": rev, "lastAttemptedRevision": rev}
    if kind == "GitRepository" and rev:
        sha = rev.rsplit(":", 1)[-1]
        where = f"gitrepository/{ns}/{name}/{sha}.tar.gz"
        status["artifact"] = {
            "revision": rev, "digest": "sha256:" + "0" * 64, "path": where,
            "url": f"http://source-controller.{ns}.svc.cluster.local./{where}",
            "lastUpdateTime": "2026-11-29T00:00:00Z",
        }  # fmt: skip
    kube.patch_status(api, kind, name, status, ns)


def test_a_helmrelease_counts_once_its_crd_exists(apiserver: Any, namespace: str) -> None:
    kube = apiserver.client
    _flux_objects(kube, namespace)
    rec = Flux(namespace)
    sha = "c" * 40
    for o in rec.root_objects(RepoSource("https://git.example/c.git", "main", "apps"), None):
        kube.apply(o)
    _ready_flux(kube, "source.toolkit.fluxcd.io/v1", "GitRepository", "flux-system", namespace,
                f"main@sha1:{sha}", reason="Succeeded", message="stored artifact")  # fmt: skip
    _ready_flux(kube, "kustomize.toolkit.fluxcd.io/v1", "Kustomization", "flux-system",
                namespace, f"main@sha1:{sha}")  # fmt: skip
    ws = WaitSettings(timeout=6, interval=1, stable_for=0.5, require_all=True, ignore=())

    def give_up(last: Tally | None, waited: float) -> WaitTimeout:
        return WaitTimeout(timeout_text(last or Tally((), (), ()), ws.stable_for))

    def wait() -> AppsSynced:
        return wait_for_apps(kube, rec, "https://git.example/c.git", Commits([sha]), ws,
                             progress=_quiet, give_up=give_up)  # fmt: skip

    if not kube.serves("helm.toolkit.fluxcd.io/v2", "HelmRelease"):
        assert set(wait().apps) == {"flux-system"}  # no helm-controller: nothing more to wait for
    kube.apply_manifest([HELMRELEASE_CRD])
    assert kube.serves("helm.toolkit.fluxcd.io/v2", "HelmRelease")
    kube.create({"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
                 "metadata": {"name": "podinfo", "namespace": namespace},
                 "spec": {"interval": "10m", "chart": {"spec": {
                     "chart": "podinfo", "sourceRef": {"kind": "HelmRepository",
                                                       "name": "podinfo"}}}}})  # fmt: skip
    _ready_flux(kube, "helm.toolkit.fluxcd.io/v2", "HelmRelease", "podinfo", namespace, None,
                ready="False", reason="InstallFailed",
                message="Helm install failed: timed out waiting for the condition")  # fmt: skip
    with pytest.raises(WaitTimeout) as exc:
        wait()
    assert ("HelmRelease/podinfo: OutOfSync/Degraded: InstallFailed: Helm install failed"
            in exc.value.message)  # fmt: skip
    _ready_flux(kube, "helm.toolkit.fluxcd.io/v2", "HelmRelease", "podinfo", namespace, None,
                reason="InstallSucceeded", message="Helm install succeeded")  # fmt: skip
    assert set(wait().apps) == {"flux-system", "HelmRelease/podinfo"}


# --------------------------------------------------------------------------- Flux: expected set


def _ks(name: str, ns: str, path: str) -> dict[str, Any]:
    return {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"interval": "1m", "path": path, "prune": True,
                     "sourceRef": {"kind": "GitRepository", "name": "flux-system"}}}  # fmt: skip


def test_flux_kustomizations_git_declares_are_expected_and_the_others_are_strays(
    apiserver: Any, namespace: str, tmp_path: Path
) -> None:
    """A Flux root rendered at the verified commit declares ``infra`` and ``ledger``
    (app of apps through the same GitRepository). ``ledger`` is never created: named at
    timeout. ``adhoc`` exists in the cluster but not in Git: listed as a stray. The Flux
    controllers' status writes are done by the test (LAB STAND-IN for kustomize-controller:
    the same fields it writes); the objects, list and watch are the real API server's."""
    kube = apiserver.client
    _flux_objects(kube, namespace)
    repo = tmp_path / "config"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _put(repo, "clusters/prod/apps.yaml", _ks("infra", namespace, "./infra"),
         _ks("ledger", namespace, "./ledger"))  # fmt: skip
    _put(repo, "infra/cm.yaml", _cm("infra", "1"))
    _put(repo, "ledger/cm.yaml", _cm("ledger", "1"))
    sha = _commit(repo, "flux apps")
    rec = Flux(namespace)
    url = "https://git.example/config.git"  # what the GitRepository says; cloned from disk
    for o in rec.root_objects(RepoSource(url, "main", "clusters/prod"), None):
        kube.apply(o)
    kube.create(_ks("infra", namespace, "./infra"))
    kube.create(_ks("adhoc", namespace, "./adhoc"))  # made by hand, not in Git
    rev = f"main@sha1:{sha}"
    _ready_flux(kube, "source.toolkit.fluxcd.io/v1", "GitRepository", "flux-system", namespace,
                rev, reason="Succeeded", message="stored artifact")  # fmt: skip
    for name in ("flux-system", "infra", "adhoc"):
        _ready_flux(kube, "kustomize.toolkit.fluxcd.io/v1", "Kustomization", name, namespace, rev)

    def expect(commit: str) -> Any:
        return expected_apps(rec, url=str(repo), commit=commit, path="clusters/prod",
                             deploy_key=None, known_hosts=None)  # fmt: skip

    def wait(timeout: float) -> AppsSynced:
        commits = Commits([sha], None, expect)
        commits.adopt(sha)
        ws = WaitSettings(timeout=timeout, interval=1, stable_for=0.5, require_all=True,
                          ignore=())  # fmt: skip

        def give_up(last: Tally | None, waited: float) -> WaitTimeout:
            return WaitTimeout(timeout_text(last or Tally((), (), ()), ws.stable_for))

        return wait_for_apps(kube, rec, url, commits, ws, progress=_quiet,
                             give_up=give_up)  # fmt: skip

    with pytest.raises(WaitTimeout) as exc:
        wait(5)
    assert f"expected from Git at {sha[:12]}, never created: ledger" in exc.value.message
    kube.create(_ks("ledger", namespace, "./ledger"))
    _ready_flux(kube, "kustomize.toolkit.fluxcd.io/v1", "Kustomization", "ledger", namespace, rev)
    out = wait(30)
    assert out.expected == [f"{namespace}/infra", f"{namespace}/ledger"]
    assert out.strays == [f"{namespace}/adhoc"]
    assert out.commit == sha and out.commit_verified


# --------------------------------------------------------------------------- after the wait


def test_no_watch_thread_is_left_when_the_wait_returns(
    apiserver: Any, namespace: str, tmp_path: Path
) -> None:
    """The real adapter's watch is shut down (its connection closed) when the wait ends, not
    left blocked until the server's watch timeout."""
    before = set(threading.enumerate())
    with Bed(apiserver, namespace, tmp_path, extra=[]) as bed:
        out = bed.wait(bed.commits())
        left = [t.name for t in threading.enumerate()
                if t not in before and t.is_alive() and t.name.startswith("watch ")]  # fmt: skip
    assert set(out.apps) == {"root", "platform", "web"}
    assert left == []
