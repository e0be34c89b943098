"""SIGKILL the real drboot process at every step boundary and inside every step, then resume.

The pipeline's steps append to a file on disk (tests/engine_fixtures/sidefx.py). The
process is held at the kill point (SIDEFX_HOLD) until it is killed, so each case first shows
the kill landed where it says (the file and the journal at that moment). After each kill,
`drboot resume` must finish the run with every side effect present exactly once, the journal
intact, and every step done.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PYTHON, REPO
from tests.engine_fixtures.sidefx import POINTS, STEPS

SIDEFX = [PYTHON, str(REPO / "tests" / "engine_fixtures" / "sidefx.py")]

# (step, point) where the process is held and killed:
#  - enter: the step has started (the one before it is journalled done): a step boundary
#  - before-act: inside the step, after it looked, before its side effect
#  - after-act: inside the step, after its side effect but before the journal knows
KILL_POINTS = [(s, p) for s in STEPS for p in POINTS]


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*SIDEFX, "--output", "json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def _kill_at(proc: subprocess.Popen[str], step: str, point: str) -> str:
    """Read events until the process holds at the kill point, SIGKILL, return the run id."""
    run_id = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        ev = json.loads(line)
        if ev["kind"] == "run.started":
            run_id = ev["run_id"]
        if ev["kind"] == "step.progress" and ev["step"] == step and ev["message"] == point:
            assert ev["data"] == {"hold": True}, ev
            proc.send_signal(signal.SIGKILL)
            break
    else:
        pytest.fail(
            f"process ended before {point} of {step}: {proc.stderr.read() if proc.stderr else ''}"
        )
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return run_id


@pytest.mark.parametrize(
    ("step", "point"), KILL_POINTS, ids=[f"{s}-{p}" for s, p in KILL_POINTS]
)
def test_sigkill_then_resume_applies_each_effect_once(
    tmp_path: Path,
    site_file: Path,
    drboot_env: dict[str, str],
    step: str,
    point: str,
) -> None:
    env = dict(drboot_env, SIDEFX_DIR=str(tmp_path))
    held = dict(env, SIDEFX_HOLD=f"{step}:{point}")
    run_id = _kill_at(_start(["restore", str(site_file)], held), step, point)
    assert run_id

    # The kill landed where it says: the file and the journal at that moment.
    k = STEPS.index(step)
    log = tmp_path / "acts.log"
    acts = log.read_text().splitlines() if log.exists() else []
    assert acts == STEPS[: k + 1 if point == "after-act" else k]
    db = sqlite3.connect(Path(env["DRBOOT_STATE_DIR"]) / "journal.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    (status,) = db.execute("SELECT status FROM runs WHERE id=?", (run_id,)).fetchone()
    assert status == "running"
    rows = db.execute(
        "SELECT step_id, status FROM steps WHERE run_id=? ORDER BY position", (run_id,)
    ).fetchall()
    assert rows == [(s, "done") for s in STEPS[:k]] + [(step, "running")] + [
        (s, "pending") for s in STEPS[k + 1 :]
    ]
    db.close()

    res = subprocess.run(
        [*SIDEFX, "--output", "json", "resume", run_id],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr + res.stdout

    acts = (tmp_path / "acts.log").read_text().splitlines()
    assert acts == STEPS, f"each side effect exactly once, in order; got {acts}"

    db = sqlite3.connect(Path(env["DRBOOT_STATE_DIR"]) / "journal.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = db.execute(
        "SELECT step_id, status FROM steps WHERE run_id=? ORDER BY position", (run_id,)
    ).fetchall()
    assert rows == [(s, "done") for s in STEPS]
    (status, code) = db.execute(
        "SELECT status, exit_code FROM runs WHERE id=?", (run_id,)
    ).fetchone()
    assert (status, code) == ("ok", 0)
    seqs = [
        r[0] for r in db.execute("SELECT seq FROM events WHERE run_id=? ORDER BY seq", (run_id,))
    ]
    assert seqs == list(range(1, len(seqs) + 1)), "event rows lost or duplicated"
    db.close()

    # The resumed step says why it did nothing when its effect was already there.
    events = [json.loads(line) for line in res.stdout.splitlines()]
    if point == "after-act":
        noops = [e for e in events if e["kind"] == "step.noop" and e["step"] == step]
        assert noops, "the step killed after acting must observe its effect and do nothing"

    # The audit log written by both processes is an intact chain.
    audit = subprocess.run(
        [*SIDEFX, "audit", "verify"], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert audit.returncode == 0, audit.stderr


def test_resume_of_a_finished_run_is_refused(
    tmp_path: Path, site_file: Path, drboot_env: dict[str, str]
) -> None:
    env = dict(drboot_env, SIDEFX_DIR=str(tmp_path))
    res = subprocess.run(
        [*SIDEFX, "-o", "json", "restore", str(site_file)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    run_id = json.loads(res.stdout.splitlines()[0])["run_id"]
    again = subprocess.run(
        [*SIDEFX, "resume", run_id], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 2
    assert "already finished ok" in again.stderr
    assert (tmp_path / "acts.log").read_text().splitlines() == STEPS


def test_until_stops_resumably_and_resume_goes_on(
    tmp_path: Path, site_file: Path, drboot_env: dict[str, str]
) -> None:
    env = dict(drboot_env, SIDEFX_DIR=str(tmp_path))
    res = subprocess.run([*SIDEFX, "-o", "json", "restore", "--until", "s2", str(site_file)],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    run_id = json.loads(res.stdout.splitlines()[0])["run_id"]
    assert (tmp_path / "acts.log").read_text().splitlines() == ["s1", "s2"]
    st = subprocess.run([*SIDEFX, "-o", "json", "status", run_id], env=env, cwd=REPO,
                        capture_output=True, text=True, timeout=60)
    doc = json.loads(st.stdout)
    assert doc["runs"][0]["status"] == "stopped"
    assert [s["status"] for s in doc["steps"]] == ["done", "done", "pending", "pending", "pending"]
    res = subprocess.run([*SIDEFX, "resume", run_id], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "acts.log").read_text().splitlines() == STEPS

    bad = subprocess.run([*SIDEFX, "restore", "--until", "nope", str(site_file)], env=env,
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no such step" in bad.stderr
