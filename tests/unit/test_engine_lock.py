"""One active run per site: concurrent restores, stale locks, --force-unlock."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from tests.conftest import PYTHON, REPO

SIDEFX = [PYTHON, str(REPO / "tests" / "engine_fixtures" / "sidefx.py")]


def test_two_concurrent_restores_exactly_one_runs(
    tmp_path: Path, site_file: Path, drboot_env: dict[str, str]
) -> None:
    env = dict(drboot_env, SIDEFX_DIR=str(tmp_path), SIDEFX_DELAY="0.3")
    procs = [
        subprocess.Popen(
            [*SIDEFX, "-o", "json", "restore", str(site_file)],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 6], outs
    loser = outs[[p.returncode for p in procs].index(6)]
    err = json.loads(loser[0].strip().splitlines()[-1])
    assert "is locked by run" in err["error"] and "still running" in err["error"]
    assert (tmp_path / "acts.log").read_text().splitlines() == [f"s{i}" for i in range(1, 6)]


def test_stale_lock_is_refused_then_force_unlock_or_resume(
    tmp_path: Path, site_file: Path, drboot_env: dict[str, str]
) -> None:
    env = dict(drboot_env, SIDEFX_DIR=str(tmp_path), SIDEFX_DELAY="0.3")
    proc = subprocess.Popen(
        [*SIDEFX, "-o", "json", "restore", str(site_file)],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    run_id = json.loads(proc.stdout.readline())["run_id"]
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
    proc = subprocess.Popen(
        [*SIDEFX, "-o", "json", "restore", str(site_file)],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
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
