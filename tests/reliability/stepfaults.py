"""Faults injected inside the restore's middle steps: the link cut while the escrowed keys are
restored, and the etcd disk throttled once the disk gate has passed.

Each waits for the event that puts it where it claims (``step.started`` of
``restore-sealing-keys``; ``step.done`` of ``disk-gate``) before acting, and the link cut
keeps the cable out until drboot has noticed (a retry or a failure of that very step), so
nothing here waits on a clock.
"""

from __future__ import annotations

import subprocess
from typing import Any

from tests.integration.labrun import LabSite, LiveRun, events
from tests.reliability.results import CaseResult

ESCROW_STEP = "restore-sealing-keys"
# The etcd of the k3s stand-in lives under this directory (server/standin/etcd), so the lab's
# slow disk is mounted here, the disk gate measures it, and a throttle reaches etcd itself.
SERVER_DIR = "/var/lib/rancher/k3s/server"
THROTTLED_IOPS = 25


def link_cut_in_escrow_restore(run: LiveRun, ls: LabSite, res: CaseResult) -> None:
    """Once ``restore-sealing-keys`` has started, the cable out until drboot reports the step
    retrying or failed (a request to the API server timed out), then back in."""
    run.wait_for(lambda e: e.get("step") == ESCROW_STEP and e["kind"] == "step.started",
                 timeout=1800, what=f"{ESCROW_STEP} started")  # fmt: skip
    host = ls.host()
    host.net_down()
    try:
        noticed = run.wait_for(
            lambda e: (
                e.get("step") == ESCROW_STEP
                and e["kind"] in ("step.retry", "step.failed", "step.done")
            ),
            timeout=600,
            what=f"{ESCROW_STEP} noticing the cut",
        )
    finally:
        host.net_up()
    if noticed["kind"] == "step.done":
        # The step finished before the cut reached it: say so, do not count it as a fault.
        said = noticed.get("message", "")[:60]
        res.notes.append(f"link cut after {ESCROW_STEP} started: the step ended first "
                         f"({said!r}); the fault did not land")  # fmt: skip
        raise AssertionError(f"the link cut did not land inside {ESCROW_STEP}")
    res.faults += 1
    res.notes.append(f"link cut inside {ESCROW_STEP} until drboot noticed: {noticed['kind']} "
                     f"{noticed.get('message', '')[:100]!r}")  # fmt: skip


def after_gate_throttle(run: LiveRun, ls: LabSite, res: CaseResult) -> None:
    """Once ``disk-gate`` is done, the etcd disk throttled to ``THROTTLED_IOPS`` write IOPS
    (a cloud volume whose burst credits ran out after the gate measured it)."""
    gate = run.wait_for(lambda e: e.get("step") == "disk-gate" and e["kind"] == "step.done",
                        timeout=1800, what="disk-gate done")  # fmt: skip
    ls.host().throttle_disk(SERVER_DIR, THROTTLED_IOPS)
    res.faults += 1
    res.notes.append(f"disk gate passed ({gate.get('message', '')[:70]!r}); then {SERVER_DIR} "
                     f"throttled to {THROTTLED_IOPS} write IOPS")  # fmt: skip


def lift_throttle(ls: LabSite, iops: int) -> None:
    ls.host().throttle_disk(SERVER_DIR, iops)


def failure_note(proc: subprocess.CompletedProcess[str]) -> str:
    """What a run that ended non-zero said about it: its failed step and message."""
    failed = [e for e in events(proc) if e.get("kind") == "step.failed"]
    if not failed:
        return f"rc {proc.returncode}, no step.failed event: {proc.stderr[-300:]!r}"
    f: dict[str, Any] = failed[-1]
    return (f"rc {proc.returncode}: {f.get('step')} failed on {f.get('target')}: "
            f"{f.get('message', '')[:200]!r}")  # fmt: skip
