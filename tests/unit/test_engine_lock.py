"""One active run per site: concurrent restores, stale locks, --force-unlock.

The run that must hold the lock is held inside its first step (SIDEFX_HOLD) while the other
process tries, so no case depends on how fast either process is.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from bootstrap.engine.lock import MachineLock
from bootstrap.errors import ConfigError, LockedError
from tests.conftest import PYTHON, REPO
from tests.engine_fixtures.sidefx import STEPS, release
from tests.waiting import wait_until

SIDEFX = [PYTHON, str(REPO / "tests" / "engine_fixtures" / "sidefx.py")]


def _start_held(env: dict[str, str], site_file: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*SIDEFX, "-o", "json", "restore", str(site_file)],
        env=dict(env, SIDEFX_HOLD="s1:enter"),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_held(proc: subprocess.Popen[str]) -> str:
    """Read events until the process holds inside s1 (so it holds the lock); its run id."""
    assert proc.stdout is not None
    run_id = ""
    for line in proc.stdout:
        ev = json.loads(line)
        run_id = run_id or ev.get("run_id", "")
        if ev["kind"] == "step.progress" and ev["data"].get("hold"):
            return run_id
    raise AssertionError(f"ended before holding in s1: {proc.stderr.read() if proc.stderr else ''}")


def test_two_concurrent_restores_exactly_one_runs(
    tmp_path: Path, site_file: Path, drboot_env: dict[str, str]
) -> None:
    env = dict(drboot_env, SIDEFX_DIR=str(tmp_path))
    procs = [_start_held(env, site_file) for _ in range(2)]
    # Started together; whichever gets the lock holds it inside s1 until released, so the
    # other one must be refused while it is running.
    loser = wait_until(
        lambda: next((p for p in procs if p.poll() is not None), None),
        timeout=60,
        what="one of the two restores to be refused",
    )
    (winner,) = [p for p in procs if p is not loser]
    out, err_text = loser.communicate(timeout=30)
    assert loser.returncode == 6, out + err_text
    err = json.loads(out.strip().splitlines()[-1])
    assert "is locked by run" in err["error"] and "still running" in err["error"]
    run_id = _wait_held(winner)
    assert run_id in err["error"]
    assert winner.poll() is None and not (tmp_path / "acts.log").exists()
    release(tmp_path)
    out, err_text = winner.communicate(timeout=60)
    assert winner.returncode == 0, err_text
    assert (tmp_path / "acts.log").read_text().splitlines() == STEPS


def test_stale_lock_is_refused_then_force_unlock_or_resume(
    tmp_path: Path, site_file: Path, drboot_env: dict[str, str]
) -> None:
    env = dict(drboot_env, SIDEFX_DIR=str(tmp_path))
    proc = _start_held(env, site_file)
    run_id = _wait_held(proc)  # killed while it holds the lock, inside s1
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    again = subprocess.run(
        [*SIDEFX, "restore", str(site_file)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 6
    assert "stale lock" in again.stderr and f"drboot resume {run_id}" in again.stderr

    # The dead run itself may continue.
    res = subprocess.run(
        [*SIDEFX, "resume", run_id], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr

    # Kill another run, then start over with --force-unlock.
    proc = _start_held(env, site_file)
    _wait_held(proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    forced = subprocess.run(
        [*SIDEFX, "restore", "--force-unlock", str(site_file)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert forced.returncode == 0, forced.stderr


def test_a_second_state_directory_is_refused_by_the_machine_lock(
    tmp_path: Path, site_file: Path, drboot_env: dict[str, str]
) -> None:
    """The per-state-dir lock cannot see a run of another state directory; the machine can."""
    first_env = dict(drboot_env, SIDEFX_DIR=str(tmp_path))
    holder = _start_held(first_env, site_file)
    try:
        run_id = _wait_held(holder)
        other = dict(drboot_env, DRBOOT_STATE_DIR=str(tmp_path / "other-state"),
                     SIDEFX_DIR=str(tmp_path / "other"))  # fmt: skip
        (tmp_path / "other").mkdir()
        again = subprocess.run([*SIDEFX, "restore", str(site_file)], env=other, cwd=REPO,
                               capture_output=True, text=True, timeout=60)  # fmt: skip
        assert again.returncode == 6, again.stderr
        assert f"being restored on this machine by run {run_id}" in again.stderr
        assert str(tmp_path / "state") in again.stderr  # names where the holder keeps its state
        assert not (tmp_path / "other" / "acts.log").exists()
        release(tmp_path)
        _, err = holder.communicate(timeout=60)
        assert holder.returncode == 0, err
        after = subprocess.run([*SIDEFX, "restore", str(site_file)], env=other, cwd=REPO,
                               capture_output=True, text=True, timeout=60)  # fmt: skip
        assert after.returncode == 0, after.stderr  # released on a clean end
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_machine_lock_directory_is_sticky_and_the_holder_is_named(tmp_path: Path) -> None:
    d = tmp_path / "machine"
    first = MachineLock("oslo", d)
    first.acquire("run-1", tmp_path / "state-a")
    assert d.stat().st_mode & 0o7777 == 0o1777  # any account may lock, none may delete others'
    assert first.path.stat().st_mode & 0o777 == 0o666
    assert first.holder()["run_id"] == "run-1" and first.holder()["user"]
    with pytest.raises(LockedError) as err:
        MachineLock("oslo", d).acquire("run-2", tmp_path / "state-b")
    assert "by run run-1 of user " in str(err.value) and str(tmp_path / "state-a") in str(err.value)
    MachineLock("bergen", d).acquire("run-3", tmp_path / "state-b")  # another site: independent
    first.release()
    assert first.path.read_text() == ""
    second = MachineLock("oslo", d)
    second.acquire("run-2", tmp_path / "state-b")
    second.release()


def test_machine_lock_directory_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError, match="not a directory"):
        MachineLock("oslo", tmp_path / "afile").acquire("run-1", tmp_path)
