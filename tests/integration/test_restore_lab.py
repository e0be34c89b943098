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
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bootstrap import sealing
from bootstrap.adapters.kube import KubeClient
from bootstrap.escrow import age_file
from tests.integration.conftest_lab import _unavailable, lab_missing_reason
from tests.integration.labrun import (
    LabSite,
    events,
    lab_site_fixture,
    run_id,
    step_events,
    wait_for_event,
)

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

    # Wrong order: the controller runs first (its keys gone) and makes its own key.
    for k in keys:
        kube.delete("v1", "Secret", k["metadata"]["name"], namespace="kube-system")
    kube.delete("apps/v1", "Deployment", "sealed-secrets-controller", namespace="kube-system")
    time.sleep(2)
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


def test_power_cut_in_k3s_step_then_resume_completes(faults: LabSite) -> None:
    ls = faults
    proc = ls.start("restore", "--until", "fetch-kubeconfig", str(ls.site))
    rid, _ = wait_for_event(proc, lambda e: e["kind"] == "step.started"
                            and e["step"] == "install-k3s")
    time.sleep(3)
    ls.host().power_cut()
    _, err = proc.communicate(timeout=600)
    assert proc.returncode in (4, 5), err
    ls.host().reboot()
    r = ls.drboot("resume", rid, "--until", "fetch-kubeconfig")
    assert r.returncode == 0, r.stderr + r.stdout[-3000:]
    db = sqlite3.connect(ls.state / "journal.sqlite")
    attempts = db.execute("SELECT COUNT(*) FROM attempts WHERE run_id=? AND step_id=?",
                          (rid, "install-k3s")).fetchone()[0]
    assert attempts >= 2
    status = db.execute("SELECT status FROM runs WHERE id=?", (rid,)).fetchone()[0]
    assert status == "stopped"  # ended at --until, resumable later
    kube = _kube_for(ls)
    kube.wait_ready(timeout=120)


def test_link_cut_during_playbook_is_survived_or_resumed(faults: LabSite) -> None:
    ls = faults
    proc = ls.start("restore", "--until", "prepare-hosts", str(ls.site))
    rid, _ = wait_for_event(proc, lambda e: e["kind"] == "step.started"
                            and e["step"] == "prepare-hosts")
    host = ls.host()
    host.net_down()
    time.sleep(10)
    host.net_up()
    out, _ = proc.communicate(timeout=600)
    if proc.returncode != 0:
        failure = [json.loads(line) for line in out.splitlines()
                   if '"step.failed"' in line]
        assert failure, out[-2000:]
        assert failure[0]["target"] or "server-1" in failure[0]["message"]
        r = ls.drboot("resume", rid, "--until", "prepare-hosts")
        assert r.returncode == 0, r.stderr + r.stdout[-3000:]


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
