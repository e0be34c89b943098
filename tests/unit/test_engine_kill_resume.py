"""SIGKILL the real drboot process at every step boundary and inside every step, then resume.

The pipeline's steps append to a file on disk (tests/engine_fixtures/sidefx.py).
After each kill, `drboot resume` must finish the run with every side effect
present exactly once, the journal intact, and every step done.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PYTHON, REPO

SIDEFX = [PYTHON, str(REPO / "tests" / "engine_fixtures" / "sidefx.py")]
STEPS = [f"s{i}" for i in range(1, 6)]

# (step, event kind, message) after which the process is killed:
#  - step.done: at the boundary after the step was journalled done
#  - before-act: inside the step, before its side effect
#  - after-act: inside the step, after its side effect but before the journal knows
KILL_POINTS = (
    [(s, "step.done", None) for s in STEPS[:-1]]
    + [(s, "step.progress", "before-act") for s in STEPS]
    + [(s, "step.progress", "after-act") for s in STEPS]
)


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*SIDEFX, "--output", "json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def _kill_at(proc: subprocess.Popen[str], step: str, kind: str, message: str | None) -> str:
    """Read events until the kill point, SIGKILL, return the run id."""
    run_id = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        ev = json.loads(line)
        if ev["kind"] == "run.started":
            run_id = ev["run_id"]
        if (
            ev["kind"] == kind
            and ev["step"] == step
            and (message is None or ev["message"] == message)
        ):
            proc.send_signal(signal.SIGKILL)
            break
    else:
        pytest.fail(
            f"process ended before {kind} of {step}: {proc.stderr.read() if proc.stderr else ''}"
        )
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return run_id


@pytest.mark.parametrize(
    ("step", "kind", "message"),
    KILL_POINTS,
    ids=[f"{s}-{m or 'boundary'}" for s, _, m in KILL_POINTS],
)
def test_sigkill_then_resume_applies_each_effect_once(
    tmp_path: Path,
    site_file: Path,
    drboot_env: dict[str, str],
    step: str,
    kind: str,
    message: str | None,
) -> None:
    env = dict(drboot_env, SIDEFX_DIR=str(tmp_path), SIDEFX_DELAY="0.15")
    run_id = _kill_at(_start(["restore", str(site_file)], env), step, kind, message)
    assert run_id

    # The killed run's journal is consistent and says the run is not finished.
    db = sqlite3.connect(Path(env["DRBOOT_STATE_DIR"]) / "journal.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    (status,) = db.execute("SELECT status FROM runs WHERE id=?", (run_id,)).fetchone()
    assert status == "running"
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
    if message == "after-act":
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
    env = dict(drboot_env, SIDEFX_DIR=str(tmp_path), SIDEFX_DELAY="0")
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
    env = dict(drboot_env, SIDEFX_DIR=str(tmp_path), SIDEFX_DELAY="0")
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
