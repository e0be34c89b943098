"""Faults injected into real lab restores, then resume: what reaches Synced, what is lost.

Run by `.ci/run` (through `make test`) as a sample: one restore killed at two seeded random
step boundaries and two seeded random points inside steps, with the API server restarted
and the link cut while it waits for Synced. `DRBOOT_RELIABILITY=all` runs every case:
a kill at every step boundary, `DRBOOT_RELIABILITY_POINTS` (20) random kills inside steps,
the wait faults on their own, a link cut inside the escrow restore, the etcd disk throttled
after the disk gate passed, and the power cut during the k3s install and the link cut
during Ansible of tests/integration/test_restore_lab.py (reused, not copied).
`DRBOOT_RELIABILITY_SEED` replays a sample. Each case writes its row of docs/RELIABILITY.md
and fails when anything was lost.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration import test_restore_lab as restore_lab
from tests.integration.conftest_lab import _unavailable, lab_missing_reason
from tests.integration.labrun import LabSite, lab_site_fixture, make_site, teardown
from tests.reliability import chain, stepfaults, waitfaults
from tests.reliability.results import CaseResult, mode, record

pytestmark = [pytest.mark.integration, pytest.mark.lab]

ALL = mode() == "all"
SEED = int(os.environ.get("DRBOOT_RELIABILITY_SEED") or time.time_ns() % 100_000)
all_only = pytest.mark.skipif(not ALL, reason="DRBOOT_RELIABILITY=all runs this case")
sample_only = pytest.mark.skipif(ALL, reason="the full set replaces the sample")


@pytest.fixture(autouse=True)
def _lab_ready() -> None:
    reason = lab_missing_reason()
    if reason:
        _unavailable(reason)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[LabSite]:
    yield from lab_site_fixture(tmp_path, "rel")


def _done(res: CaseResult) -> None:
    record(res)
    assert res.lost == 0, res
    assert res.synced == res.runs, res


@sample_only
def test_sample_kills_and_wait_faults(site: LabSite) -> None:
    rng = random.Random(SEED)
    # Every kill lands before wait-synced, so the resumed run still has the wait to fault.
    before_wait = "point-at-repo"
    points = (rng.sample(chain.boundaries(before_wait), 2)
              + chain.random_points(rng, 2, before_wait))  # fmt: skip
    res = CaseResult("sample: kills + wait faults",
                     "SIGKILL at 2 random step boundaries and 2 random points inside steps, "
                     "then resume; API server restart and link cut during wait-synced")  # fmt: skip
    res.notes.append(f"seed {SEED}: {[p.label() for p in chain.order(points)]}")
    chain.drive(site, res, points,
                faults_in_wait=[waitfaults.apiserver_restart, waitfaults.link_cut_in_wait])
    _done(res)


@all_only
def test_kill_at_every_step_boundary(site: LabSite) -> None:
    res = CaseResult("kill at every step boundary",
                     "SIGKILL at each step.done of a restore, then resume")  # fmt: skip
    chain.drive(site, res, chain.boundaries())
    _done(res)


@all_only
def test_kill_at_random_points_inside_steps(site: LabSite) -> None:
    n = int(os.environ.get("DRBOOT_RELIABILITY_POINTS", "20"))
    rng = random.Random(SEED)
    points = chain.random_points(rng, n)
    res = CaseResult(f"kill at {n} random points inside steps",
                     "SIGKILL at the n-th event inside a random step, then resume")  # fmt: skip
    res.notes.append(f"seed {SEED}")
    chain.drive(site, res, points)
    _done(res)


@all_only
def test_api_server_restart_and_link_cut_during_wait(site: LabSite) -> None:
    res = CaseResult("API server restart + link cut during wait",
                     "systemctl restart k3s, then the cable out until noticed, in wait-synced")
    chain.drive(site, res, [],
                faults_in_wait=[waitfaults.apiserver_restart, waitfaults.link_cut_in_wait])
    _done(res)


@all_only
def test_link_cut_during_escrow_restore(site: LabSite) -> None:
    res = CaseResult(
        "link cut during escrow restore",
        "the cable out once restore-sealing-keys has started, until drboot notices (retry or "
        "failure of that step), then back; resume if it stopped",
    )

    def failed(proc: object) -> None:
        assert isinstance(proc, subprocess.CompletedProcess)
        res.notes.append(f"the run stopped: {stepfaults.failure_note(proc)}; resumed")

    chain.drive(site, res, [], faults_in_wait=[stepfaults.link_cut_in_escrow_restore],
                on_failure=failed)
    _done(res)


@pytest.fixture
def slow_site(tmp_path: Path) -> Iterator[LabSite]:
    """A lab site whose server disk (holding the stand-in's etcd) is a throttleable slow disk,
    fast enough for the gate until the test throttles it."""
    for ls in lab_site_fixture(tmp_path, "rel-disk", disk="slow", iops=UNTHROTTLED_IOPS):
        text = ls.site.read_text()
        ls.site.write_text(text.replace("disk_gate:\n",
                                        f"disk_gate:\n  directory: {stepfaults.SERVER_DIR}\n"))
        yield ls


UNTHROTTLED_IOPS = 100_000


@all_only
def test_disk_throttled_after_the_gate_passed(slow_site: LabSite) -> None:
    res = CaseResult("disk throttled after the gate",
                     f"after disk-gate's step.done, the etcd disk throttled to "
                     f"{stepfaults.THROTTLED_IOPS} write IOPS; if the run stops, the throttle is "
                     "lifted and the run resumed")  # fmt: skip

    def failed(proc: object) -> None:
        assert isinstance(proc, subprocess.CompletedProcess)
        note = stepfaults.failure_note(proc)
        res.notes.append(f"throttled, the run stopped clearly: {note}; throttle lifted, resumed")
        assert "failed on" in note, note  # a step and its target named, not a traceback
        stepfaults.lift_throttle(slow_site, UNTHROTTLED_IOPS)

    chain.drive(slow_site, res, [], faults_in_wait=[stepfaults.after_gate_throttle],
                on_failure=failed)
    if not any("stopped clearly" in n for n in res.notes):
        res.notes.append(f"throttled, the restore still completed in one run (no stop, no "
                         f"resume): {res.seconds:.0f}s in all, throttled from disk-gate on")
    _done(res)


@all_only
def test_power_cut_during_k3s_install(tmp_path: Path) -> None:
    """The integration suite's test, run here for the table."""
    res = CaseResult("power cut during k3s install",
                     "SIGKILL of the host's PID 1 inside the k3s role, reboot, resume "
                     "(tests/integration/test_restore_lab.py, to fetch-kubeconfig)")  # fmt: skip
    _reuse(tmp_path, res, restore_lab.test_power_cut_in_k3s_step_then_resume_completes)


@all_only
def test_link_cut_during_ansible(tmp_path: Path) -> None:
    res = CaseResult("link cut during Ansible",
                     "the cable out inside prepare-hosts until Ansible reports it unreachable "
                     "(tests/integration/test_restore_lab.py, to prepare-hosts)")  # fmt: skip
    _reuse(tmp_path, res, restore_lab.test_link_cut_during_playbook_is_survived_or_resumed)


def _reuse(tmp_path: Path, res: CaseResult, test: object) -> None:
    started = time.monotonic()
    res.runs = res.faults = 1
    ls = make_site(tmp_path, "rel-reuse")
    try:
        assert callable(test)
        test(ls)  # its own assertions: the fault landed inside the step, resume completed
        chain._count_hosts(ls, res, 1)
        res.synced = 1
        res.notes.append("outcome judged by the reused test's assertions; ends at its --until")
    finally:
        teardown(ls)
        res.seconds = time.monotonic() - started
        record(res)
    assert res.lost == 0, res
