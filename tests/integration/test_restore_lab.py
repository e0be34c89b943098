"""The restore on real lab hosts: real systemd, sshd, apt and Ansible; the real API server
under the k3s stand-in; the Sealed Secrets stand-in. Driven through the real `drboot` CLI.

Proves (issue 4) single-server and HA runs end with a reachable API, a re-run changes
nothing and keeps the token, a power cut in the k3s step resumes, a link cut is survived or
resumed, a changed host key is refused, the disk gate refuses a throttled disk; and (issue 5)
keys restored before the controller open every SealedSecret, the wrong order is detected and
repaired, and no key material leaks into any output, journal or file.
"""

from __future__ import annotations

import base64
import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bootstrap import sealing
from bootstrap.adapters.kube import KubeClient
from bootstrap.escrow import age_file
from bootstrap.lab.hosts import tcp_port_open
from tests.integration.conftest_lab import _unavailable, lab_missing_reason
from tests.integration.labrun import (
    REPO,
    LabSite,
    events,
    lab_site_fixture,
    run_id,
    step_events,
)
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.lab]


@pytest.fixture(autouse=True)
def _lab_ready() -> None:
    reason = lab_missing_reason()
    if reason:
        _unavailable(reason)


def _kube_for(ls: LabSite, host: str = "server-1") -> KubeClient:
    h = ls.host(host)
    raw = h.exec(["cat", "/etc/rancher/k3s/k3s.yaml"], check=True).stdout
    doc = yaml.safe_load(raw)
    doc["clusters"][0]["cluster"]["server"] = f"https://{h.address}:6443"
    path = ls.root / f"test-kubeconfig-{host}"
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return KubeClient.from_kubeconfig(path)


def _done_message(proc: Any, step: str) -> str:
    done = [e for e in step_events(proc, step) if e["kind"] == "step.done"]
    assert done, f"{step} not done: {proc.stdout[-3000:]}"
    return str(done[-1]["message"])


def _secret_forms(ls: LabSite) -> list[bytes]:
    kit = age_file.read_kit(ls.root / "escrow" / "kit.age",
                            identity_files=[ls.root / "escrow" / "identity.txt"])
    forms = [kit.k3s_token.encode()]
    for k in kit.sealing_keys:
        pem = sealing.private_key_pem(k.private_key())
        body = b"".join(pem.splitlines()[1:-1])
        forms += [body[:64], body[-64:], base64.b64encode(pem)[:64]]
    return forms


def _assert_no_leak(ls: LabSite, *procs: Any) -> None:
    forms = _secret_forms(ls)
    blobs = [(f"stdout/stderr of run {i}", (p.stdout + p.stderr).encode())
             for i, p in enumerate(procs)]
    for f in ls.state.rglob("*"):
        if f.is_file():
            blobs.append((str(f), f.read_bytes()))
    for where, blob in blobs:
        for form in forms:
            assert form not in blob, f"secret material leaked into {where}"


@pytest.fixture
def single(tmp_path: Path) -> Iterator[LabSite]:
    yield from lab_site_fixture(tmp_path, "e2e-single")


def test_single_server_restore_rerun_wrong_order_and_changed_host_key(single: LabSite) -> None:
    ls = single
    r1 = ls.drboot("restore", "--until", "verify-sealing-key", str(ls.site))
    assert r1.returncode == 0, r1.stderr + r1.stdout[-3000:]
    assert "k3s:" in _done_message(r1, "install-k3s")  # Ansible changed something
    token_sha = ls.host().exec(["sha256sum", "/etc/rancher/k3s/cluster-token"],
                               check=True).stdout.split()[0]

    # The API answers, and the escrowed key is what the controller uses.
    kube = _kube_for(ls)
    kube.wait_ready(timeout=60)
    kit = age_file.read_kit(ls.root / "escrow" / "kit.age",
                            identity_files=[ls.root / "escrow" / "identity.txt"])
    keys = kube.list("v1", "Secret", namespace="kube-system",
                     label_selector="sealedsecrets.bitnami.com/sealed-secrets-key")
    assert {k["metadata"]["name"] for k in keys} == {k.name for k in kit.sealing_keys}
    served = [e for e in step_events(r1, "verify-sealing-key") if e["kind"] == "step.done"]
    assert kit.fingerprints()[0] in served[0]["message"]

    # Restored before the controller started: the repo's SealedSecret becomes a Secret.
    sealed = yaml.safe_load((ls.root / "config-repo" / "apps" / "base" / "guestbook" /
                             "sealedsecret.yaml").read_text())
    if kube.get("v1", "Namespace", "guestbook") is None:
        kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "guestbook"}})
    kube.apply(sealed)
    secret = kube.wait_for("v1", "Secret", "guestbook-db", lambda o: o is not None, "guestbook",
                           timeout=60)
    assert secret is not None
    expected = sealing.unseal_sealed_secret(kit.private_keys(), sealed)["password"]
    assert base64.b64decode(secret["data"]["password"]) == expected

    # A re-run (a new run of the same site) changes nothing and keeps the token.
    r2 = ls.drboot("restore", "--until", "fetch-kubeconfig", str(ls.site))
    assert r2.returncode == 0, r2.stderr
    assert _done_message(r2, "provision").startswith("no change")
    assert "prepare-host: 0 changed" in _done_message(r2, "prepare-hosts")
    assert "k3s: 0 changed" in _done_message(r2, "install-k3s")
    assert ls.host().exec(["sha256sum", "/etc/rancher/k3s/cluster-token"],
                          check=True).stdout.split()[0] == token_sha

    # Wrong order: the controller runs first (its keys gone) and makes its own key. The old
    # controller stops only when its Pod is gone (the lab's kubelet shim runs a controller
    # while its Pod exists), so wait for that before its replacement is applied.
    for k in keys:
        kube.delete("v1", "Secret", k["metadata"]["name"], namespace="kube-system")
    kube.delete("apps/v1", "Deployment", "sealed-secrets-controller", namespace="kube-system",
                propagation="Foreground", wait=60)
    wait_until(lambda: not kube.list("v1", "Pod", namespace="kube-system",
                                     label_selector="app.kubernetes.io/name=sealed-secrets"),
               timeout=60, what="the old sealed-secrets-controller Pod to be gone")
    from bootstrap.adapters.kube import load_manifest
    from bootstrap.steps.keys import MANIFESTS

    kube.apply_manifest(load_manifest(MANIFESTS / "controller.yaml"), namespace="kube-system")

    def has_foreign(_: object) -> bool:
        found = kube.list("v1", "Secret", namespace="kube-system",
                          label_selector="sealedsecrets.bitnami.com/sealed-secrets-key")
        return bool(found)

    kube.wait_for("v1", "Namespace", "kube-system", has_foreign, timeout=120)
    r3 = ls.drboot("restore", "--until", "verify-sealing-key", str(ls.site))
    assert r3.returncode == 4, r3.stderr + r3.stdout[-3000:]
    failed = next(e for e in step_events(r3, "restore-sealing-keys") if e["kind"] == "step.failed")
    assert "started before its keys were restored" in failed["message"]
    foreign = [s for s in kube.list("v1", "Secret", namespace="kube-system",
                                    label_selector="sealedsecrets.bitnami.com/sealed-secrets-key")
               if s["metadata"]["name"] not in {k.name for k in kit.sealing_keys}]
    assert foreign and foreign[0]["metadata"]["name"] in failed["message"]
    assert "delete its Secret" in failed["data"]["hint"]
    # The escrowed key is back already; the operator removes the stray key and resumes.
    assert kube.get("v1", "Secret", kit.sealing_keys[0].name, namespace="kube-system")
    for s in foreign:
        kube.delete("v1", "Secret", s["metadata"]["name"], namespace="kube-system")
    r3b = ls.drboot("resume", run_id(r3), "--until", "verify-sealing-key")
    assert r3b.returncode == 0, r3b.stderr + r3b.stdout[-3000:]
    assert "restart the controller" in _done_message(r3b, "restore-sealing-keys")
    assert kit.fingerprints()[0] in _done_message(r3b, "verify-sealing-key")

    # A host whose SSH key changed is refused.
    ls.host().exec("rm -f /etc/ssh/ssh_host_* && ssh-keygen -A -q && systemctl restart ssh",
                   check=True)
    r4 = ls.drboot("restore", "--until", "connect", str(ls.site))
    assert r4.returncode == 4
    failed = [e for e in step_events(r4, "connect") if e["kind"] == "step.failed"]
    assert failed and "differs" in failed[0]["message"], r4.stdout[-2000:]
    assert "man-in-the-middle" in failed[0]["data"]["hint"]

    _assert_no_leak(ls, r1, r2, r3, r3b, r4)


@pytest.fixture
def ha(tmp_path: Path) -> Iterator[LabSite]:
    yield from lab_site_fixture(tmp_path, "e2e-ha", servers=3)


def test_ha_three_servers_each_serve_the_api(ha: LabSite) -> None:
    r = ha.drboot("restore", "--until", "fetch-kubeconfig", str(ha.site))
    assert r.returncode == 0, r.stderr + r.stdout[-3000:]
    for name in ("server-1", "server-2", "server-3"):
        kube = _kube_for(ha, name)
        kube.wait_ready(timeout=120)
        assert kube.get("v1", "Namespace", "kube-system") is not None
    tokens = {ha.host(n).exec(["sha256sum", "/etc/rancher/k3s/cluster-token"],
                              check=True).stdout.split()[0]
              for n in ("server-1", "server-2", "server-3")}
    assert len(tokens) == 1, "every server must get the one escrowed token"
    _assert_no_leak(ha, r)


@pytest.fixture
def faults(tmp_path: Path) -> Iterator[LabSite]:
    yield from lab_site_fixture(tmp_path, "e2e-faults")


def _role_tasks(role: str) -> list[str]:
    """The task names of a playbook role, in order (what Ansible reports as `task: NAME`)."""
    doc = yaml.safe_load((REPO / "playbooks" / "roles" / role / "tasks" / "main.yml").read_text())
    return [t["name"] for t in doc]


def _attempts(ls: LabSite, rid: str, step: str) -> list[tuple[int, str, str | None]]:
    with sqlite3.connect(ls.state / "journal.sqlite") as db:
        return db.execute("SELECT n, outcome, error FROM attempts WHERE run_id=? AND step_id=?"
                          " ORDER BY n", (rid, step)).fetchall()


def _unreachable_task(error: str | None, host: str) -> str:
    """The task a playbook attempt lost ``host`` in (from the adapter's TransientError)."""
    m = re.search(rf"host {host} unreachable during task '(.+?)'", error or "")
    assert m, f"not an unreachable-host failure: {error!r}"
    return m.group(1)


# A task of the k3s role that runs on the host early in the step: the cut lands after it starts.
K3S_TASK = "Create the k3s configuration directory"


def test_power_cut_in_k3s_step_then_resume_completes(faults: LabSite) -> None:
    ls = faults
    k3s_tasks = _role_tasks("k3s")
    run = ls.start("restore", "--until", "fetch-kubeconfig", str(ls.site))
    run.wait_for(lambda e: e["kind"] == "step.started" and e["step"] == "install-k3s",
                 timeout=900, what="step install-k3s started")
    run.wait_for(lambda e: e["kind"] == "step.progress" and e["step"] == "install-k3s"
                 and e["message"] == f"task: {K3S_TASK}",
                 timeout=300, what=f"install-k3s running task '{K3S_TASK}'")
    ls.host().power_cut()
    assert not ls.host().is_running()
    first = run.finish(timeout=600)
    rid = run_id(first)
    assert first.returncode in (4, 5), first.stderr + first.stdout[-3000:]
    finished = next(e for e in events(first) if e["kind"] == "run.finished")
    assert finished["step"] == "install-k3s", finished

    # The journal agrees: install-k3s lost the host inside the k3s role; all before it is done.
    with sqlite3.connect(ls.state / "journal.sqlite") as db:
        steps = db.execute("SELECT step_id, status FROM steps WHERE run_id=? ORDER BY position",
                           (rid,)).fetchall()
    k = [s for s, _ in steps].index("install-k3s")
    assert all(status == "done" for _, status in steps[:k]), steps
    assert steps[k][1] == "failed", steps
    cut = _attempts(ls, rid, "install-k3s")
    assert cut and cut[0][1] == "transient", cut
    assert all(outcome != "ok" for _, outcome, _ in cut), cut  # retried while the host was off
    lost_in = _unreachable_task(cut[0][2], "server-1")
    assert "k3s.yml" in str(cut[0][2])
    assert lost_in in k3s_tasks[k3s_tasks.index(K3S_TASK):], (
        f"the cut landed in task {lost_in!r}, not in the k3s role after {K3S_TASK!r}"
    )

    ls.host().reboot()
    r = ls.drboot("resume", rid, "--until", "fetch-kubeconfig")
    assert r.returncode == 0, r.stderr + r.stdout[-3000:]
    assert [e for e in step_events(r, "install-k3s") if e["kind"] == "step.done"]
    attempts = _attempts(ls, rid, "install-k3s")
    assert attempts[: len(cut)] == cut, "the interrupted attempts stay in the journal"
    assert len(attempts) > len(cut) and attempts[-1][1] == "ok", attempts
    with sqlite3.connect(ls.state / "journal.sqlite") as db:
        status = db.execute("SELECT status FROM runs WHERE id=?", (rid,)).fetchone()[0]
    assert status == "stopped"  # ended at --until, resumable later
    kube = _kube_for(ls)
    kube.wait_ready(timeout=120)


# A task of the prepare_host role that runs on the host early in the step.
PREP_TASK = "Find which wanted packages are installed"


def test_link_cut_during_playbook_is_survived_or_resumed(faults: LabSite) -> None:
    ls = faults
    prep_tasks = _role_tasks("prepare_host")
    run = ls.start("restore", "--until", "prepare-hosts", str(ls.site))
    run.wait_for(lambda e: e["kind"] == "step.progress" and e["step"] == "prepare-hosts"
                 and e["message"] == f"task: {PREP_TASK}",
                 timeout=900, what=f"prepare-hosts running task '{PREP_TASK}'")
    host = ls.host()
    host.net_down()
    try:
        assert not tcp_port_open(host.address, host.ssh_port), "the link is still up"
        # The cable stays out until drboot has noticed: Ansible reports the host unreachable.
        noticed = run.wait_for(
            lambda e: e["kind"] == "step.progress" and e["step"] == "prepare-hosts"
            and e["target"] == "server-1" and e["message"].startswith("unreachable: "),
            timeout=180, what="server-1 reported unreachable in prepare-hosts",
        )
    finally:
        host.net_up()
    lost_in = noticed["message"].removeprefix("unreachable: ").split(": ", 1)[0]
    assert lost_in in prep_tasks[prep_tasks.index(PREP_TASK):], noticed
    first = run.finish(timeout=600)
    rid = run_id(first)
    if first.returncode == 0:  # survived: the step was retried once the cable was back
        assert [e for e in step_events(first, "prepare-hosts") if e["kind"] == "step.retry"]
    else:  # or the run stopped on it, and resumes
        failed = [e for e in step_events(first, "prepare-hosts") if e["kind"] == "step.failed"]
        assert failed, first.stdout[-2000:]
        r = ls.drboot("resume", rid, "--until", "prepare-hosts")
        assert r.returncode == 0, r.stderr + r.stdout[-3000:]
    attempts = _attempts(ls, rid, "prepare-hosts")
    assert attempts[0][1] == "transient", attempts
    assert _unreachable_task(attempts[0][2], "server-1") == lost_in
    assert attempts[-1][1] == "ok", attempts


@pytest.fixture
def slow(tmp_path: Path) -> Iterator[LabSite]:
    yield from lab_site_fixture(tmp_path, "e2e-slow", disk="slow", iops=300)


def test_disk_gate_refuses_throttled_disk_and_audits_an_override(slow: LabSite) -> None:
    ls = slow
    r = ls.drboot("restore", "--until", "disk-gate", str(ls.site))
    assert r.returncode == 3, r.stderr + r.stdout[-2000:]
    failed = next(e for e in step_events(r, "disk-gate") if e["kind"] == "step.failed")
    assert "disk too slow for etcd" in failed["message"]
    assert "10 ms" in failed["message"] and failed["target"] == "server-1"
    assert "--accept-slow-disk" in failed["data"]["hint"]
    rid = run_id(r)
    ok = ls.drboot("resume", rid, "--until", "disk-gate", "--accept-slow-disk",
                   "lab: throttled on purpose")
    assert ok.returncode == 0, ok.stderr
    audit = [json.loads(line) for line in (ls.state / "audit.jsonl").read_text().splitlines()]
    accepted = [a for a in audit if a["event"] == "audit" and a["data"].get("reason")]
    assert accepted and accepted[0]["data"]["reason"] == "lab: throttled on purpose"
    assert accepted[0]["data"]["p99_ms"] > 10
    finished = next(e for e in events(ok) if e["kind"] == "run.finished")
    assert finished["data"]["exit_code"] == 0
