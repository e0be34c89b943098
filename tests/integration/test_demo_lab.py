"""The demo's drill end to end on the lab: the payment platform over the lab's SSH forge.

Real: lab hosts (the k3s server and the forge), systemd, sshd, a git-shell account, git over
SSH with the escrowed deploy key and known_hosts (strict host key checking), Ansible, the
Kubernetes API server and controller-manager. LAB STAND-INS (said so in the report): k3s's
kubelet, the Sealed Secrets, Argo CD and Flux controllers.

Proves, for Argo CD and for Flux: ``drboot drill`` on the demo's site restores all six apps of
the app-of-apps (and the root) Synced+Healthy, cloned over SSH by preflight and by the
reconciler with the Secret drboot made; the live progress names the app it waits for; the
report lists every app. And: a deploy key the forge does not accept, or a changed forge host
key, fails at preflight, exit 3, naming the repo, before any host exists; the Argo CD stand-in
fetches with the key of the repository Secret drboot made (a wrong one: a ComparisonError).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.escrow import age_file
from bootstrap.lab import forge, net, platform_repo
from bootstrap.lab.seed import Seed
from tests.integration.conftest_lab import _unavailable, lab_missing_reason
from tests.integration.labrun import REPO, LabSite, events, run_id, step_events, teardown
from tests.leaks import assert_no_leak, seed_forms

pytestmark = [pytest.mark.integration, pytest.mark.lab]

SITE = """\
apiVersion: drboot.dev/v1
kind: Site
name: {name}
provider:
  type: lab
  servers: 1
  subnet_index: {index}
  state_dir: {root}
  disk: host                      # as the demo: etcd on the host's own disk, not a tmpfs
kubernetes:
  topology: single
  install: airgap
  api_ready_timeout: 3m
disk_gate:
  runtime_limit: 8s
  p99_fdatasync_ms: 25            # as the demo site (etcd on this machine's shared disk)
cpu_gate: {{window: 1s, max_steal_percent: 100, min_throughput_ratio: 0.05}}
escrow:
  backend: age
  bundle: {root}/escrow/kit.age
  identity_files: [{root}/escrow/identity.txt]
reconciler:
  type: {reconciler}
repo:
  url: {url}
  path: {path}
sync_wait:
  timeout: 5m
  poll_interval: 1s
  stable_for: 5s
"""
APP_NAMES = sorted(a.name for a in platform_repo.APPS)


def free_index() -> int:
    """A free 10.200.N.0/24 from the top (labs that pick one take the lowest)."""
    with net.allocation_lock():
        used = net.used_indexes()
    return next(i for i in range(250, 100, -1) if i not in used)


def forge_site(tmp: Path, name: str, reconciler: str) -> LabSite:
    root, state, site = tmp / "lab-root", tmp / "state", tmp / f"{name}.yaml"
    index = free_index()
    site.write_text(SITE.format(name=name, root=root, index=index, reconciler=reconciler,
                                url=forge.forge_url(index),
                                path=platform_repo.root_path(reconciler)))  # fmt: skip
    env = dict(os.environ, DRBOOT_STATE_DIR=str(state))
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    ls = LabSite(name, root, state, site, env)
    res = ls.drboot("lab", "seed", str(site), timeout=600)
    assert res.returncode == 0, res.stderr + res.stdout
    return ls


@pytest.fixture(params=["argocd", "flux"])
def demo_site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LabSite]:
    reason = lab_missing_reason()
    if reason:
        _unavailable(reason)
    ls = forge_site(tmp_path, f"demo-{request.param}", request.param)
    try:
        yield ls
    finally:
        teardown(ls)


def test_demo_drill_restores_every_app_over_the_ssh_forge(demo_site: LabSite) -> None:
    ls = demo_site
    r = ls.drboot("drill", str(ls.site), timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-5000:]
    rid = run_id(r)
    # preflight cloned over SSH (the escrowed deploy key, strict known_hosts) and verified
    # the three SealedSecrets (strict, namespace-wide, cluster-wide)
    pre = [e for e in step_events(r, "preflight-escrow") if e["kind"] == "step.done"]
    assert pre and "3 SealedSecret" in pre[0]["message"], pre
    # the live view counted the apps and named the one it waited for, with its reason
    waiting = [e["message"] for e in step_events(r, "wait-synced") if e["kind"] == "step.progress"]
    assert any("/7 apps Synced+Healthy; waiting for " in m for m in waiting), waiting
    report = json.loads((ls.state / "runs" / rid / "report.json").read_text())
    root = "root" if "argocd" in ls.name else "flux-system"
    assert sorted(report["apps"]) == sorted([root, *APP_NAMES]), report["apps"]
    assert all(a["ready"] for a in report["apps"].values()), report["apps"]
    assert report["outcome"] == "restored"
    standin = "argocd" if "argocd" in ls.name else "flux"
    assert any(s.startswith(f"{standin}: LAB STAND-IN") for s in report["lab_standins"])
    md = (ls.state / "runs" / rid / "report.md").read_text()
    for name in APP_NAMES:
        assert name in md
    # the drill tore the lab down, the forge with it
    assert not (ls.root / "lab" / "lab.json").exists()
    # no secret of the seed (deploy key included) in the output, journal, reports, logs
    made = Seed(ls.root, ls.root / "config-repo", ls.root / "escrow" / "kit.age",
                ls.root / "escrow" / "identity.txt", "")  # fmt: skip
    assert_no_leak(seed_forms(made), r.stdout.encode(), r.stderr.encode(), state=ls.state)


@pytest.fixture
def argocd_site(tmp_path: Path) -> Iterator[LabSite]:
    reason = lab_missing_reason()
    if reason:
        _unavailable(reason)
    ls = forge_site(tmp_path, "demo-badkey", "argocd")
    try:
        yield ls
    finally:
        teardown(ls)


def test_wrong_deploy_key_or_changed_host_key_fails_at_preflight(argocd_site: LabSite) -> None:
    """The kit's deploy key replaced by one the forge never saw: refused by the forge's sshd,
    so preflight stops (exit 3) before any host is created, naming the repo. Then the right
    key, but the forge's host key is not the escrowed one (a forge re-keyed, or a machine in
    the middle): refused the same way, saying so."""
    ls = argocd_site
    bundle, identity = ls.root / "escrow" / "kit.age", ls.root / "escrow" / "identity.txt"
    kit = age_file.read_kit(bundle, identity_files=[identity])
    from dataclasses import replace

    from bootstrap.adapters.age import recipient_of

    wrong = replace(kit, deploy_key=forge.new_deploy_key()[0])
    age_file.write_kit(bundle, wrong, recipients=[recipient_of(identity.read_text())])
    r = ls.drboot("drill", str(ls.site), timeout=600)
    assert r.returncode == 3, r.stderr[-3000:] + r.stdout[-3000:]
    failed = [e for e in events(r) if e.get("kind") == "step.failed"]
    assert failed and failed[0]["step"] == "preflight-escrow", failed
    msg = failed[0]["message"]
    assert "git server refused the credentials" in msg, msg
    assert forge.REPO_NAME in json.dumps(failed[0]), failed[0]  # the repo is named
    hosts = subprocess.run(["ls", str(ls.root / "lab" / "hosts")], capture_output=True,
                           text=True).stdout.split()  # fmt: skip
    assert "server-1" not in hosts  # nothing billable was created: only the forge exists

    # the right key again, but known_hosts holds another host key for the forge's address
    other = forge.forge_keys(ls.root / "other-forge", forge.forge_address(1)).known_hosts()
    changed = other.replace(forge.forge_address(1), kit.known_hosts.split()[0])  # type: ignore[union-attr]
    age_file.write_kit(bundle, replace(kit, known_hosts=changed),
                       recipients=[recipient_of(identity.read_text())])  # fmt: skip
    r = ls.drboot("drill", str(ls.site), timeout=600)
    assert r.returncode == 3, r.stderr[-3000:] + r.stdout[-3000:]
    failed = [e for e in events(r) if e.get("kind") == "step.failed"]
    assert failed and failed[0]["step"] == "preflight-escrow", failed
    assert "host key is not in known_hosts (or changed)" in failed[0]["message"], failed[0]


def test_argocd_standin_clones_with_the_repository_secret(argocd_site: LabSite) -> None:
    """The Argo CD stand-in reads the deploy key from the repository Secret drboot created:
    with that Secret's key swapped for one the forge never saw, the root app can no longer
    fetch the repo and says so (a ComparisonError naming the refused credentials), as Argo CD
    does; with the escrowed key put back, it fetches again."""
    import base64

    from bootstrap.reconcilers import argocd
    from tests.integration.test_gitops_lab import _kube_for
    from tests.waiting import wait_until

    ls = argocd_site
    r = ls.drboot("drill", str(ls.site), "--until", "wait-synced", timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-3000:]
    kube = _kube_for(ls)
    url = forge.forge_url(int(ls.site.read_text().split("subnet_index: ")[1].split()[0]))
    name = argocd.repo_secret_name(url)
    secret = kube.get("v1", "Secret", name, "argocd")
    assert secret is not None and secret["data"].get("sshPrivateKey")
    good = secret["data"]["sshPrivateKey"]
    wrong = base64.b64encode(forge.new_deploy_key()[0].encode()).decode()
    refresh = {"metadata": {"annotations": {"argocd.argoproj.io/refresh": "hard"}}}

    def condition_of_root() -> str:
        app = kube.get("argoproj.io/v1alpha1", "Application", "root", "argocd") or {}
        conds = (app.get("status") or {}).get("conditions") or []
        return " ".join(str(c.get("message")) for c in conds if c.get("type") == "ComparisonError")

    kube.patch("v1", "Secret", name, {"data": {"sshPrivateKey": wrong}}, "argocd")
    kube.patch("argoproj.io/v1alpha1", "Application", "root", refresh, "argocd")
    msg = wait_until(condition_of_root, timeout=120, what="ComparisonError on the root app")
    assert "git server refused the credentials" in msg, msg
    kube.patch("v1", "Secret", name, {"data": {"sshPrivateKey": good}}, "argocd")
    kube.patch("argoproj.io/v1alpha1", "Application", "root", refresh, "argocd")
    wait_until(lambda: not condition_of_root(), timeout=120, what="the root app fetching again")
