"""The wait for every app on the real API server, with the Argo CD stand-in writing status.

Real: kube-apiserver (the Application CRD drboot ships, list + watch with resourceVersions),
git (a config repo on disk, cloned by drboot at the verified commit), kubectl kustomize where a
path has a kustomization, drboot's escrow check (``check_repo``) of a commit the branch moved on
to. LAB STAND-IN: the Argo CD application controller (it reads and writes the same fields).

Proves: a child app created late by the root (app of apps) is waited for; an app Git declares
that is never created is named at timeout; a commit pushed after preflight verified another is
verified, then accepted (and the output says so), or refused naming the SealedSecret that does
not open; the wait lists the Applications once and watches them; a watch from a version
the server no longer keeps is answered 410 Gone, and the informer lists again.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from bootstrap.errors import PermanentError, WaitTimeout
from bootstrap.escrow.kit import RecoveryKit
from bootstrap.escrow.service import check_repo
from bootstrap.kubeapi import Gone
from bootstrap.lab.standins.argocd import ArgoCDController
from bootstrap.lab.standins.common import client_factory
from bootstrap.outputs import AppsSynced
from bootstrap.reconcilers import ArgoCD
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
        source = RepoSource(self.url, "main", "root")
        self.kube.apply(self.rec.root_objects(source, None)[0])
        return self

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

    def wait(self, commits: Commits, timeout: float = 40) -> AppsSynced:
        ws = WaitSettings(timeout=timeout, interval=1, stable_for=1.5, require_all=True, ignore=())

        def give_up(last: Tally | None, waited: float) -> WaitTimeout:
            return WaitTimeout(timeout_text(last or Tally((), (), ()), ws.stable_for))

        return wait_for_apps(self.kube, self.rec, self.url, commits, ws,
                             progress=lambda m, **d: None, give_up=give_up)  # fmt: skip


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
