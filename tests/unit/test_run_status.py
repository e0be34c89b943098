"""`drboot status` tells a live run from one whose process is gone.

The journal says ``running`` until a run's process records its end; a SIGKILL
never lets it. ``runs.effective_status`` decides by the site lock (held with flock
for the life of the process) and, when the lock cannot tell, by the pid on this
host. First the decision as a table over real lock files, then the real thing: the
side-effect pipeline (tests/engine_fixtures/sidefx.py) killed with SIGKILL at an
event it printed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from bootstrap.cli import Deps, cli
from bootstrap.engine.lock import SiteLock
from bootstrap.runs import StateDir, effective_status, status
from tests.conftest import PYTHON, REPO

SIDEFX = [PYTHON, str(REPO / "tests" / "engine_fixtures" / "sidefx.py")]
RUN = "st-20260101T000000-aaaa"
SITE = "st"


def _dead_pid() -> int:
    """The pid of a process that has ended and been reaped."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _row_with_pid(state: StateDir, pid: int | None, run_status: str = "running") -> None:
    j = state.journal()
    j.create_run(RUN, SITE, "restore", ["s1"], {}, "digest")
    j.close()
    db = sqlite3.connect(state.journal_path)
    db.execute("UPDATE runs SET pid=?, status=? WHERE id=?", (pid, run_status, RUN))
    db.commit()
    db.close()


def _stale(run_id: str | None, host: str | None = None) -> Callable[[StateDir], object]:
    """A lock file as a killed process leaves it: written, not held (or emptied)."""

    def make(state: StateDir) -> None:
        path = SiteLock(state.root, SITE).path
        path.parent.mkdir(parents=True, exist_ok=True)
        holder = {"run_id": run_id, "pid": 1, "host": host or socket.gethostname()}
        path.write_text(json.dumps(holder) if run_id else "")

    return make


def _held_by(run_id: str) -> Callable[[StateDir], object]:
    def make(state: StateDir) -> SiteLock:
        lock = SiteLock(state.root, SITE)
        lock.acquire(run_id, force_unlock=True)
        return lock  # kept open (so held) until the test releases it

    return make


def _no_lock(state: StateDir) -> None:
    return None


CASES = [
    # (lock file, pid alive?, journalled status, shown status)
    ("held by this run", _held_by(RUN), False, "running", "running"),
    ("held by another run", _held_by("st-other"), True, "running", "interrupted"),
    ("left by this run, not held", _stale(RUN), True, "running", "interrupted"),
    ("emptied, not held", _stale(None), True, "running", "interrupted"),
    ("no lock file, pid alive", _no_lock, True, "running", "running"),
    ("no lock file, pid gone", _no_lock, False, "running", "interrupted"),
    ("another run's stale lock, pid gone", _stale("st-other"), False, "running", "interrupted"),
    ("another run's stale lock, pid alive", _stale("st-other"), True, "running", "running"),
    ("stale lock from another host", _stale("st-other", "elsewhere"), False, "running", "running"),
    ("finished runs are what they are", _stale(RUN), False, "failed", "failed"),
    ("an ok run stays ok", _no_lock, False, "ok", "ok"),
]


@pytest.mark.parametrize(
    ("lock", "alive", "journalled", "shown"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_effective_status(
    tmp_path: Path,
    lock: Callable[[StateDir], object],
    alive: bool,
    journalled: str,
    shown: str,
) -> None:
    state = StateDir(tmp_path / "state")
    _row_with_pid(state, os.getpid() if alive else _dead_pid(), journalled)
    held = lock(state)
    try:
        j = state.journal()
        row = j.run(RUN)
        j.close()
        assert row is not None
        assert effective_status(state, row) == shown
        (view,), _ = status(state, RUN)
        assert view.process_gone == (journalled == "running" and shown == "interrupted")
        resumable = shown in ("interrupted", "failed")
        assert view.next_command == (f"drboot resume {RUN}" if resumable else None)
        if isinstance(held, SiteLock):
            # The probe let go at once: the holder can still release and take its lock again.
            held.release()
            held.acquire(RUN, force_unlock=True)
    finally:
        if isinstance(held, SiteLock):
            held.release()


def _status(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SIDEFX, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )


def test_a_sigkilled_run_shows_interrupted_with_the_resume_command(
    tmp_path: Path, site_file: Path, drboot_env: dict[str, str]
) -> None:
    # s1 holds at before-act until released (it never is: the process is killed there).
    env = dict(drboot_env, SIDEFX_DIR=str(tmp_path), SIDEFX_HOLD="s1:before-act")
    state = Path(env["DRBOOT_STATE_DIR"])
    proc = subprocess.Popen(
        [*SIDEFX, "-o", "json", "restore", str(site_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        run_id = ""
        assert proc.stdout is not None
        for line in proc.stdout:
            ev = json.loads(line)
            run_id = ev["run_id"]
            if ev["kind"] == "step.progress" and ev["message"] == "before-act":
                break
        else:
            pytest.fail(f"the run ended early: {proc.stderr.read() if proc.stderr else ''}")

        # Alive (in its pause): running, nothing to do.
        live = CliRunner().invoke(
            cli, ["--state-dir", str(state), "-o", "json", "status", run_id], obj=Deps()
        )
        assert live.exit_code == 0, live.output
        (run,) = json.loads(live.output)["runs"]
        assert (run["status"], run["process_gone"], run["next"]) == ("running", False, None)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    text = _status(env, "status")
    assert text.returncode == 0, text.stderr
    (line,) = [ln for ln in text.stdout.splitlines() if ln.startswith(run_id)]
    assert "interrupted (process gone)" in line
    assert f"next: drboot resume {run_id}" in text.stdout

    one = _status(env, "-o", "json", "status", run_id)
    assert one.returncode == 0, one.stderr
    doc = json.loads(one.stdout)
    (run,) = doc["runs"]
    assert run["status"] == "interrupted" and run["journal_status"] == "running"
    assert run["process_gone"] is True
    assert run["next"] == f"drboot resume {run_id}"
    assert [s["status"] for s in doc["steps"]][:2] == ["running", "pending"]

    # The hint is right: the resume finishes the run, and status says so.
    resume_env = {k: v for k, v in env.items() if k != "SIDEFX_HOLD"}
    res = _status(resume_env, "-o", "json", "resume", run_id)
    assert res.returncode == 0, res.stderr
    (run,) = json.loads(_status(env, "-o", "json", "status", run_id).stdout)["runs"]
    assert (run["status"], run["process_gone"], run["next"]) == ("ok", False, None)
