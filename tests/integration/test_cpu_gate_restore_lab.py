"""The CPU gate through the whole CLI on a lab site: ``drboot restore`` reaches the host, the
host's cgroup CPU quota is cut to a fiftieth of a core, ``drboot resume`` is refused at
cpu-gate (exit 3) naming the host and its figures, and ``--accept-slow-cpu REASON`` lets it go
on, journalled with the run and written to the audit log with the figures.

The lab site (tests/integration/labrun.py) asks for a throughput of 0.05 (the lab shares this
machine's cores); the cut caps the host at 0.02 of one core and 0.01 of both.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest_lab import _unavailable, lab_missing_reason
from tests.integration.labrun import LabSite, events, lab_site_fixture, run_id, step_events

pytestmark = [pytest.mark.integration, pytest.mark.lab]


@pytest.fixture
def cpu(tmp_path: Path) -> Iterator[LabSite]:
    reason = lab_missing_reason()
    if reason:
        _unavailable(reason)
    yield from lab_site_fixture(tmp_path, "e2e-cpu")


def test_cpu_gate_refuses_a_cut_host_and_audits_an_override(cpu: LabSite) -> None:
    ls = cpu
    r = ls.drboot("restore", "--until", "connect", str(ls.site))
    assert r.returncode == 0, r.stderr + r.stdout[-2000:]
    rid = run_id(r)
    ls.host().slow_cpu(0.02)
    try:
        refused = ls.drboot("resume", rid, "--until", "cpu-gate")
        assert refused.returncode == 3, refused.stderr + refused.stdout[-2000:]
        failed = next(e for e in step_events(refused, "cpu-gate") if e["kind"] == "step.failed")
        print(f"\n{failed['message']}")
        assert failed["target"] == "server-1"
        assert "CPU not fit for the control plane" in failed["message"]
        assert "of 1 core" in failed["message"] and "(min 0.05)" in failed["message"]
        assert "--accept-slow-cpu" in failed["data"]["hint"]

        ok = ls.drboot("resume", rid, "--until", "cpu-gate", "--accept-slow-cpu", "lab: quota cut")
        assert ok.returncode == 0, ok.stderr + ok.stdout[-2000:]
    finally:
        ls.host().full_cpu()
    audit = [json.loads(line) for line in (ls.state / "audit.jsonl").read_text().splitlines()]
    accepted = [a for a in audit if a["event"] == "audit" and a["data"].get("reason")]
    assert [a["data"]["reason"] for a in accepted] == ["lab: quota cut"]
    assert accepted[0]["data"]["throughput_ratio"] < 0.05
    finished = next(e for e in events(ok) if e["kind"] == "run.finished")
    assert finished["data"]["exit_code"] == 0
