"""A whole DR drill on one lab site through the real `drboot` CLI, GitOps steps included.

Real: lab hosts, systemd, sshd, Ansible, the Kubernetes API server and controller-manager, git.
LAB STAND-INS (said so in the report): k3s's kubelet, Sealed Secrets and Argo CD controllers.

Proves: with an app in the config repo whose Secret can never exist, ``drboot drill`` stops at
wait-synced with exit 5 naming the app and the kubelet's reason; after the repo is fixed,
``resume`` reaches every Application Synced+Healthy (checked here with our own client), writes
report.json/.md/.junit.xml with the RTO, then tears the lab down.

And (marker ``apiserver``, ~20 s): the Flux path of the three GitOps steps against the real API
server with the Flux stand-ins and a config repo served over HTTPS on loopback: install (then a
no-op re-run), GitRepository + Kustomization (then a no-op re-run), wait until Ready; and a
file:// repo refused with a ConfigError when the site file is read.
"""

from __future__ import annotations

import functools
import http.server
import json
import sqlite3
import ssl
import subprocess
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import xmlschema
import yaml

from bootstrap.adapters.kube import KubeClient
from bootstrap.engine.context import StepContext
from bootstrap.errors import ConfigError
from bootstrap.lab.standins import StandinSet
from bootstrap.outputs import AppsSynced
from bootstrap.reconcilers import flux
from bootstrap.siteload import load_site_text
from bootstrap.steps.gitops import install_reconciler, point_at_repo, wait_synced
from tests.integration.conftest_lab import _unavailable, lab_missing_reason
from tests.integration.labrun import LabSite, events, lab_site_fixture, run_id, step_events
from tests.integration.test_report_browser import screenshot
from tests.stepkit import step_context
from tests.unit.test_report_formats import XSD as JUNIT_XSD

pytestmark = [pytest.mark.integration]

MISSING_SECRET = "never-created"
SYNC_WAIT = """\
sync_wait:
  timeout: 75s
  poll_interval: 1s
  stable_for: 5s
report:
  formats: [json, markdown, junit, html]
"""


@pytest.fixture
def drill_site(tmp_path: Path) -> Iterator[LabSite]:
    reason = lab_missing_reason()
    if reason:
        _unavailable(reason)
    yield from lab_site_fixture(tmp_path, "gx-drill")


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    )  # fmt: skip


def _set_broken_app(repo: Path, present: bool) -> None:
    """Add (or remove) a Deployment that needs a Secret nothing will ever create."""
    overlay = repo / "apps" / "overlays" / "lab"
    kfile = overlay / "kustomization.yaml"
    k = yaml.safe_load(kfile.read_text())
    k["resources"] = [r for r in k["resources"] if r != "broken.yaml"]
    if present:
        k["resources"].append("broken.yaml")
        env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": MISSING_SECRET,
                                                                "key": "token"}}}]  # fmt: skip
        broken = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "broken", "namespace": "guestbook"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "broken"}},
                "template": {
                    "metadata": {"labels": {"app": "broken"}},
                    "spec": {
                        "containers": [{"name": "c", "image": "registry.invalid/b:1", "env": env}]
                    },
                },
            },
        }
        (overlay / "broken.yaml").write_text(yaml.safe_dump(broken))
    else:
        (overlay / "broken.yaml").unlink()
    kfile.write_text(yaml.safe_dump(k))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "broken app" if present else "remove the broken app")


def _kube_for(ls: LabSite) -> KubeClient:
    h = ls.host()
    doc = yaml.safe_load(h.exec(["cat", "/etc/rancher/k3s/k3s.yaml"], check=True).stdout)
    doc["clusters"][0]["cluster"]["server"] = f"https://{h.address}:6443"
    path = ls.root / "test-kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return KubeClient.from_kubeconfig(path)


def _outputs(ls: LabSite, rid: str, step: str) -> dict[str, Any]:
    db = sqlite3.connect(ls.state / "journal.sqlite")
    try:
        row = db.execute(
            "SELECT outputs FROM steps WHERE run_id=? AND step_id=?", (rid, step)
        ).fetchone()
    finally:
        db.close()
    out: dict[str, Any] = json.loads(row[0])
    return out


@pytest.mark.lab
def test_drill_waits_for_every_app_reports_rto_and_tears_down(drill_site: LabSite) -> None:
    ls = drill_site
    ls.site.write_text(ls.site.read_text() + SYNC_WAIT)
    repo = ls.root / "config-repo"
    _set_broken_app(repo, present=True)

    # 1. An app whose Secret cannot exist: the wait gives up, naming the app and the reason.
    r1 = ls.drboot("drill", str(ls.site), "--keep-on-failure")  # kept, to resume
    assert r1.returncode == 5, r1.stderr + r1.stdout[-3000:]
    rid = run_id(r1)
    failed = [e for e in step_events(r1, "wait-synced") if e["kind"] == "step.failed"]
    assert failed, r1.stdout[-3000:]
    msg = failed[0]["message"]
    assert "root: Progressing" in msg, msg
    assert (
        f'Deployment broken: CreateContainerConfigError: secret "{MISSING_SECRET}" not found'
        in (msg)
    )
    assert "sync_wait.ignore_apps" in failed[0]["data"]["hint"]
    waiting = [e for e in step_events(r1, "wait-synced") if e["kind"] == "step.progress"]
    assert any("0/1 apps Synced+Healthy" in e["message"] for e in waiting)
    assert all("ready" in e["data"] and "total" in e["data"] for e in waiting)
    for step in ("install-reconciler", "point-at-repo"):
        assert any(e["kind"] == "step.done" for e in step_events(r1, step))

    # 2. Fixed in Git; resume until the wait: every Application is Synced+Healthy.
    _set_broken_app(repo, present=False)
    r2 = ls.drboot("resume", rid, "--until", "wait-synced")
    assert r2.returncode == 0, r2.stderr + r2.stdout[-3000:]
    for step in ("install-reconciler", "point-at-repo"):  # done before: not run again
        assert any(e["kind"] == "step.skipped" for e in step_events(r2, step))
    kube = _kube_for(ls)
    apps = kube.list("argoproj.io/v1alpha1", "Application", "argocd")
    assert [a["metadata"]["name"] for a in apps] == ["root"]
    for a in apps:
        assert (a["status"]["sync"]["status"], a["status"]["health"]["status"]) == (
            "Synced", "Healthy",
        )  # fmt: skip
    # No longer in Git, no longer part of the app (the LAB STAND-IN does not prune it: it
    # syncs only when a rendered object differs, unlike Argo CD's requiresPruning).
    assert "broken" not in {r["name"] for r in apps[0]["status"]["resources"]}
    gb = kube.get("apps/v1", "Deployment", "guestbook", "guestbook")
    assert gb is not None and gb["status"].get("availableReplicas") == 1
    waited = _outputs(ls, rid, "wait-synced")
    fixed = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True,
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    root = waited["apps"]["root"]
    assert root.pop("ready_since") <= waited["ready_at"]
    assert root == {"namespace": "argocd", "sync": "Synced", "health": "Healthy",
                    "ready": True, "reason": "", "revision": fixed}  # fmt: skip
    # The fix was pushed after preflight verified the broken commit: drboot verified the new
    # commit (every SealedSecret opens) before it counted the app synced at it.
    verified = _outputs(ls, rid, "preflight-escrow")["repo"]["commit"]
    assert verified != fixed and waited["verified_commits"] == [verified, fixed]
    assert waited["commit"] == fixed and waited["commit_verified"] is True

    # 3. Resume to the end: teardown destroys the lab (hosts, network, stand-ins).
    r3 = ls.drboot("resume", rid)
    assert r3.returncode == 0, r3.stderr + r3.stdout[-3000:]
    done = [e for e in step_events(r3, "teardown") if e["kind"] == "step.done"]
    assert done and "destroy 1 lab host(s): server-1" in done[0]["message"]
    assert not (ls.root / "lab" / "lab.json").exists()
    status = ls.drboot("lab", "status", str(ls.site))
    info = json.loads(status.stdout)
    assert info["hosts"] == [] and info["standins_pid"] is None
    finished = next(e for e in events(r3) if e["kind"] == "run.finished")
    assert finished["data"]["exit_code"] == 0

    # 4. The drill's report is written last: it is final, teardown included.
    run_dir = ls.state / "runs" / rid
    report = json.loads((run_dir / "report.json").read_text())
    assert report["rto"]["seconds"] > 30 and report["rto"]["met"] is True
    assert report["rto"]["objective_seconds"] == 3600
    assert report["outcome"] == "restored"
    assert any("argocd: LAB STAND-IN" in s for s in report["lab_standins"])
    assert (
        "RTO (run start to every app Synced+Healthy): **met**"
        in (run_dir / "report.md").read_text()
    )
    suite = ET.parse(run_dir / "report.junit.xml").getroot().find("testsuite")
    assert suite is not None
    names = [c.get("name") for c in suite.iter("testcase")]
    assert "wait-synced" in names and names[-1] == "rto"
    by_step = {st["id"]: st for st in report["steps"]}
    assert by_step["teardown"]["status"] == "done", by_step["teardown"]
    assert by_step["report"]["status"] == "done", by_step["report"]
    assert all(st["status"] in ("done", "skipped") for st in report["steps"]), report["steps"]
    assert [st["id"] for st in report["steps"]][-2:] == ["teardown", "report"]
    _check_report_contents(run_dir, report, fixed, verified)


def _check_report_contents(
    run_dir: Path, report: dict[str, Any], fixed: str, verified: str
) -> None:
    """What the drill's report says, from a run in three processes (failed in the wait, resumed
    to the wait, resumed to the end): both RTO figures, the repo and commits, the keys by
    fingerprint, the versions, the teardown; the HTML page opens in headless Chromium."""
    rto = report["rto"]
    assert rto["attempts"] == 3 and rto["checked_against"] == "wall"
    assert 0 < rto["active_seconds"] <= rto["wall_seconds"] == rto["seconds"]
    repo = report["config_repo"]
    assert (repo["preflight_commit"], repo["synced_commit"]) == (verified, fixed)
    assert repo["synced_commit_verified"] is True and repo["url"].startswith("file://")
    keys = report["escrow_keys"]
    restored = [k["fingerprint"] for k in keys["restored"]]
    assert restored and set(restored) <= set(keys["escrow_fingerprints"])
    assert keys["serving_fingerprint"] in restored
    versions = report["versions"]
    assert versions["k3s"]["version"] and versions["sealed_secrets"] == "0.36.6"
    assert versions["reconciler"] == {"name": "argocd", "version": "v3.5.1"}
    assert report["teardown"]["status"] == "done"
    assert report["teardown"]["destroyed"] == ["server-1"]
    assert [a["name"] for a in report["timeline"]["apps"]] == ["root"]
    xmlschema.XMLSchema(str(JUNIT_XSD)).validate(str(run_dir / "report.junit.xml"))
    page = (run_dir / "report.html").read_text()
    assert fixed in page and "LAB STAND-IN" in page
    shot = screenshot(run_dir / "report.html", run_dir.parent.parent / "shot")
    assert shot.stat().st_size > 10_000


# -- Flux against the real API server (the lab's file:// repos are refused by Flux's CRD) -------


def _step_ctx(site: Any, kube: KubeClient, run_dir: Path, step: str) -> StepContext:
    return step_context(site, run_dir, step, kube=kube)


def _flux_site(url: str, ns: str) -> Any:
    return load_site_text(
        f"""\
apiVersion: drboot.dev/v1
kind: Site
name: gx-flux
provider: {{type: static, hosts: [{{name: h, address: 127.0.0.1}}]}}
escrow: {{backend: age, bundle: /nonexistent/kit.age, identity_files: [/nonexistent/id]}}
reconciler: {{type: flux, namespace: {ns}, interval: 1m}}
repo: {{url: "{url}", revision: main, path: apps}}
sync_wait: {{timeout: 90s, poll_interval: 1s, stable_for: 2s}}
""",
        "gx-flux.yaml",
        base_dir=Path("/"),
    )


@pytest.fixture
def flux_repo_url(tmp_path: Path, namespace: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A config repo with one Deployment, served over git's dumb HTTP protocol with TLS on
    loopback (site files take https://, not http://; git is told to skip verification)."""
    repo = tmp_path / "srv" / "repo"
    (repo / "apps").mkdir(parents=True)
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]},
            },
        },
    }
    (repo / "apps" / "web.yaml").write_text(yaml.safe_dump(dep))
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "web")
    _git(repo, "update-server-info")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(repo.parent))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("GIT_SSL_NO_VERIFY", "1")  # the stand-ins' git runs in this process
    yield f"https://127.0.0.1:{server.server_address[1]}/repo/.git"
    server.shutdown()
    server.server_close()


@pytest.mark.apiserver
def test_flux_install_point_and_wait_on_a_real_api_server(
    apiserver: Any, namespace: str, flux_repo_url: str, tmp_path: Path
) -> None:
    kube = apiserver.client
    site = _flux_site(flux_repo_url, namespace)
    sset = StandinSet(apiserver.kubeconfig, interval=0.5, namespaces=[namespace],
                      state_dir=tmp_path / "standins")  # fmt: skip
    sset.start()
    try:
        ctx = _step_ctx(site, kube, tmp_path, "install-reconciler")
        install_reconciler(ctx)
        assert ctx.changes and "install flux v2.9.4" in ctx.changes[0]
        for name in ("source-controller", "kustomize-controller"):
            dep = kube.get("apps/v1", "Deployment", name, namespace)
            assert dep is not None and dep["status"].get("availableReplicas") == 1
        again = _step_ctx(site, kube, tmp_path, "install-reconciler")
        install_reconciler(again)
        assert again.changes == [] and "installed" in again.noops[0]

        ctx = _step_ctx(site, kube, tmp_path, "point-at-repo")
        point_at_repo(ctx)
        assert len(ctx.changes) == 2  # GitRepository and Kustomization created
        again = _step_ctx(site, kube, tmp_path, "point-at-repo")
        point_at_repo(again)
        assert again.changes == [] and len(again.noops) == 2

        ctx = _step_ctx(site, kube, tmp_path, "wait-synced")
        wait_synced(ctx)
        assert AppsSynced.from_json(ctx.outputs).apps["flux-system"].ready is True
        web = kube.get("apps/v1", "Deployment", "web", namespace)
        assert (
            web is not None
            and web["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] == "flux-system"
        )
    finally:
        sset.close()
        for kind, api in (("Kustomization", flux.KS_API), ("GitRepository", flux.SOURCE_API)):
            kube.delete(api, kind, flux.ROOT, namespace)

    # A file:// repo with Flux is refused when the site file is read, before anything runs.
    with pytest.raises(ConfigError, match="accepts only ssh:// or https://"):
        _flux_site("file:///srv/repo", namespace)
