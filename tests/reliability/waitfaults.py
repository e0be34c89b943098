"""Faults injected while ``wait-synced`` polls: each waits for the step's own progress event
before acting and proves it landed inside the step (no ``step.done`` of it yet)."""

from __future__ import annotations

from typing import Any

from tests.integration.labrun import LabSite, LiveRun
from tests.reliability.results import CaseResult


def _in_wait(run: LiveRun) -> None:
    def polling(e: dict[str, Any]) -> bool:
        if e.get("step") == "wait-synced" and e["kind"] == "step.done":
            raise AssertionError("wait-synced ended before the fault could be injected")
        return e["kind"] == "step.progress" and e.get("step") == "wait-synced"

    run.wait_for(polling, timeout=1800, what="wait-synced polling")


def _k3s_pid(ls: LabSite) -> str:
    r = ls.host().exec(["systemctl", "show", "-p", "MainPID", "--value", "k3s"], check=True)
    return r.stdout.strip()


def apiserver_restart(run: LiveRun, ls: LabSite, res: CaseResult) -> None:
    """`systemctl restart k3s` on the host (the stand-in runs the real kube-apiserver)."""
    _in_wait(run)
    before = _k3s_pid(ls)
    ls.host().exec(["systemctl", "restart", "k3s"], check=True)
    after = _k3s_pid(ls)
    assert before != after and after != "0", (before, after)  # it really restarted
    res.faults += 1
    noticed = run.wait_for(lambda e: e.get("step") == "wait-synced"
                           and e["kind"] in ("step.progress", "step.done", "step.failed"),
                           timeout=600, what="wait-synced after the restart")  # fmt: skip
    res.notes.append(f"API server restarted during wait-synced (k3s pid {before} -> {after}); "
                     f"next event: {noticed['kind']} {noticed.get('message', '')[:80]!r}")


def link_cut_in_wait(run: LiveRun, ls: LabSite, res: CaseResult) -> None:
    """The host's cable out until drboot reports the API not answering, then back."""
    _in_wait(run)
    host = ls.host()
    host.net_down()
    try:
        res.faults += 1
        noticed = run.wait_for(
            lambda e: e.get("step") == "wait-synced" and e["kind"] == "step.progress"
            and "API not answering" in e.get("message", ""),
            timeout=300, what="wait-synced reporting the API unreachable",
        )
    finally:
        host.net_up()
    res.notes.append(f"link cut during wait-synced until drboot noticed: "
                     f"{noticed['message'][:100]!r}")  # fmt: skip
