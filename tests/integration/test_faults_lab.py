"""Killing drboot during a real playbook leaves nothing running (issue 13, defect 8).

`kill -9` of drboot during `install-k3s` used to leave its `ansible-playbook` running against
the host while a `resume` started a second one. Now the playbook runs under a guard that the
kernel tells when drboot dies, and a resume stops whatever a dead run's records still find.
Both are shown on a real lab restore, each kill landing while the k3s playbook runs (its task
event seen, its process seen in /proc).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest_lab import _unavailable, lab_missing_reason
from tests.integration.labrun import LabSite, LiveRun, events, lab_site_fixture, step_events
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.lab]

K3S_TASK = "Create the k3s configuration directory"


@pytest.fixture(autouse=True)
def _lab_ready() -> None:
    reason = lab_missing_reason()
    if reason:
        _unavailable(reason)


@pytest.fixture
def orphans(tmp_path: Path) -> Iterator[LabSite]:
    yield from lab_site_fixture(tmp_path, "e2e-orphans")


def _procs_of(run_dir: Path) -> dict[int, str]:
    """Processes whose command line names this run's folder (the playbook, its workers, the
    guard) or one of its recorded ssh control directories."""
    needles = [str(run_dir).encode()]
    for rec in (run_dir / "children").glob("*.json"):
        match = json.loads(rec.read_text()).get("match")
        if match:
            needles.append(match.encode())
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if any(n in cmd for n in needles):
            found[int(entry.name)] = cmd.replace(b"\0", b" ").decode(errors="replace")
    return found


def _playbooks(procs: dict[int, str]) -> dict[int, str]:
    return {p: c for p, c in procs.items() if "ansible-playbook" in c and "guarded" not in c}


def _in_k3s_task(run: LiveRun) -> None:
    run.wait_for(lambda e: e["kind"] == "step.progress" and e["step"] == "install-k3s"
                 and e["message"] == f"task: {K3S_TASK}",
                 timeout=900, what=f"install-k3s running task '{K3S_TASK}'")  # fmt: skip


def test_kill_9_during_install_k3s_leaves_no_playbook_and_resume_stops_leftovers(
    orphans: LabSite,
) -> None:
    ls = orphans
    run = ls.start("restore", "--until", "fetch-kubeconfig", str(ls.site))
    _in_k3s_task(run)
    rid = run.run_id
    run_dir = ls.state / "runs" / rid
    assert _playbooks(_procs_of(run_dir)), "the k3s playbook runs when drboot is killed"
    records = list((run_dir / "children").glob("*.json"))
    assert records, "the playbook's mark is recorded in the run folder before it starts"

    # 1. Only drboot is killed: the kernel tells the guard, which takes the whole tree down.
    run.proc.send_signal(signal.SIGKILL)
    run.finish(timeout=60)
    wait_until(lambda: not _procs_of(run_dir), 30,
               "every process of the killed run (playbook, workers, ssh masters) to die")

    # 2. The resume runs install-k3s again; now drboot *and* the guard are killed at once,
    # as an OOM kill of both could. The playbook then dies of the hang-up of its terminal, but
    # its ssh control master detached (ControlPersist): it outlives them until a resume.
    again = ls.start("resume", rid, "--until", "fetch-kubeconfig")
    _in_k3s_task(again)
    procs = _procs_of(run_dir)
    guards = [p for p, c in procs.items() if "guarded-ansible-playbook" in c]
    assert guards and _playbooks(procs), procs
    for pid in guards:
        os.kill(pid, signal.SIGKILL)
    again.proc.send_signal(signal.SIGKILL)
    again.finish(timeout=60)
    left = _procs_of(run_dir)
    masters = [p for p, c in left.items() if c.startswith("ssh: ") and "[mux]" in c]
    assert masters, f"an ssh control master of the run outlives drboot and its guard: {left}"

    done = ls.drboot("resume", rid, "--until", "fetch-kubeconfig")
    assert done.returncode == 0, done.stderr + done.stdout[-3000:]
    stopped = [e["message"] for e in events(done)
               if e["kind"] == "audit" and e["message"].startswith("stopped leftover ")]
    for pid in masters:  # ControlPersist keeps it 60s: alive when the resume began, stopped
        assert any(m.startswith(f"stopped leftover ansible-playbook k3s.yml: pid {pid} ")
                   for m in stopped), (pid, stopped)
    first_act = next(i for i, e in enumerate(events(done)) if e["kind"] == "step.started")
    assert all(i < first_act for i, e in enumerate(events(done))
               if e["kind"] == "audit" and e["message"].startswith("stopped leftover ")), (
        "leftovers are stopped before the resume acts")
    assert [e for e in step_events(done, "install-k3s") if e["kind"] == "step.done"]
    assert not any(p in _procs_of(run_dir) for p in left), "nothing of the killed runs is left"
    assert not list((run_dir / "children").glob("*.json")), "records go with their processes"
