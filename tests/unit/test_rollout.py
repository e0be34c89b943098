"""``drboot rollout``: many sites, each a real child ``drboot`` process, one combined report.

The children run ``tests/engine_fixtures/rolloutfx.py``: the real CLI, engine, journal and
locks with a three-step restore whose ``disk-gate`` refuses the sites named in ROLLFX_SLOW
(as the lab's slow disk does, exit 3) unless ``--accept-slow-disk``. The lab proof of the
same behaviour is tests/integration/test_rollout_lab.py.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from bootstrap.engine.journal import Journal
from bootstrap.engine.lock import SiteLock
from bootstrap.rollout import SiteSpec, decide, digest
from bootstrap.runs import StateDir
from bootstrap.siteload import load_site
from tests.conftest import MINIMAL_SITE, PYTHON, REPO
from tests.waiting import wait_until

FX = [PYTHON, str(REPO / "tests" / "engine_fixtures" / "rolloutfx.py")]


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLFX_")}
    env.update(ROLLFX_DIR=str(tmp), **extra)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _sites(tmp: Path, *names: str) -> list[Path]:
    out = []
    for name in names:
        path = tmp / "sites" / f"{name}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(MINIMAL_SITE.format(name=name))
        out.append(path)
    return out


def _rollout(tmp: Path, *args: str, env: dict[str, str]) -> tuple[int, list[dict[str, Any]], str]:
    done = subprocess.run(
        [*FX, "--state-dir", str(tmp / "state"), "-o", "json", "rollout", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    events = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return done.returncode, events, done.stderr


def _runs(tmp: Path) -> list[tuple[str, str, str, float, float | None]]:
    db = sqlite3.connect(tmp / "state" / "journal.sqlite")
    try:
        rows = db.execute("SELECT id, site, status, created, ended FROM runs ORDER BY created")
        return list(rows)
    finally:
        db.close()


def _acts(tmp: Path) -> list[tuple[str, str]]:
    log = tmp / "acts.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [(line.split()[0], line.split()[1]) for line in lines]


def test_a_failing_site_stops_no_other_and_a_rerun_resumes_only_it(tmp_path: Path) -> None:
    files = _sites(tmp_path, "alpha", "bravo", "charlie")
    env = _env(tmp_path, ROLLFX_SLOW="bravo")
    code, events, err = _rollout(tmp_path, *map(str, files), "--parallel", "2", env=env)
    assert code == 4, (events, err)
    final = events[-1]
    assert final["kind"] == "rollout.finished"
    by_site = {s["site"]: s for s in final["sites"]}
    assert {k: v["state"] for k, v in by_site.items()} == {
        "alpha": "ok",
        "bravo": "failed",
        "charlie": "ok",
    }
    bravo = by_site["bravo"]
    assert bravo["failed_step"] == "disk-gate" and bravo["exit_code"] == 3
    assert "p99 fdatasync 48.0 ms" in bravo["error"] and "server-1" in bravo["error"]
    assert by_site["alpha"]["rto_seconds"] == 12.5 and by_site["bravo"]["rto_seconds"] is None
    # every site has its own report, the failed one's written from the journal
    assert bravo["report"] and all(Path(f).is_file() for f in bravo["report"])
    # the combined report, JSON and Markdown, names the failure
    report_json, report_md = (Path(f) for f in final["report"])
    assert json.loads(report_json.read_text())["sites"] == final["sites"]
    md = report_md.read_text()
    assert "| bravo | FAILED | restore |" in md and "| disk-gate |" in md
    assert "p99 fdatasync 48.0 ms" in md and f"drboot resume {bravo['run_id']}" in md
    assert oct(report_json.stat().st_mode & 0o777) == "0o600"
    # one run per site, never more than two at a time
    runs = _runs(tmp_path)
    assert sorted(r[1] for r in runs) == ["alpha", "bravo", "charlie"]
    for _, _, _, created, _ in runs:
        alive = [r for r in runs if r[3] <= created and (r[4] is None or r[4] > created)]
        assert len(alive) <= 2
    first_acts = _acts(tmp_path)
    assert ("bravo", "report") not in first_acts

    # fixed (the disk accepted): the re-run resumes bravo only; alpha and charlie are done
    code, events, err = _rollout(
        tmp_path, *map(str, files), "--accept-slow-disk", "lab disk, known", env=env
    )
    assert code == 0, (events, err)
    final = events[-1]
    states = {s["site"]: (s["action"], s["state"]) for s in final["sites"]}
    assert states == {
        "alpha": ("skip", "skipped"),
        "bravo": ("resume", "ok"),
        "charlie": ("skip", "skipped"),
    }
    assert {s["site"]: s["result"] for s in final["sites"]}["alpha"] == "done, skipped"
    again = _runs(tmp_path)
    assert [r[0] for r in again] == [r[0] for r in runs]  # no new run for any site
    assert {r[1]: r[2] for r in again} == {"alpha": "ok", "bravo": "ok", "charlie": "ok"}
    assert _acts(tmp_path)[len(first_acts) :] == [("bravo", "disk-gate"), ("bravo", "report")]
    started = [e["site"] for e in events if e["kind"] == "site.started"]
    assert started == ["bravo"]


def test_decisions_come_from_the_journal(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    files = _sites(tmp_path, "new", "done", "broke", "changed", "busy")
    specs = [SiteSpec(p, load_site(p), digest(p.read_bytes())) for p in files]
    journal = Journal(state.journal_path)
    for spec, status in zip(specs[1:], ("ok", "failed", "failed", "running"), strict=True):
        run = f"{spec.name}-run"
        same = spec.digest if spec.name != "changed" else "0" * 64
        journal.create_run(run, spec.name, "restore", ["s"], {}, same)
        if status != "running":
            journal.finish_run(run, status, 0 if status == "ok" else 4)  # type: ignore[arg-type]
    journal.close()
    lock = SiteLock(state.root, "busy")
    lock.acquire("busy-run")  # a live process holds the busy site's run
    try:
        got = {d.spec.name: (d.action, d.run_id) for d in decide(state, specs)}
    finally:
        lock.release()
    assert got == {
        "new": ("restore", None),
        "done": ("skip", "done-run"),
        "broke": ("resume", "broke-run"),
        "changed": ("restore", None),
        "busy": ("locked", "busy-run"),
    }


def test_bad_input_is_refused_before_any_site_starts(tmp_path: Path) -> None:
    good = _sites(tmp_path, "alpha", "bravo")
    bad = tmp_path / "sites" / "broken.yaml"
    bad.write_text(MINIMAL_SITE.format(name="broken").replace("type: static", "type: cloud"))
    env = _env(tmp_path)
    code, events, _ = _rollout(tmp_path, *map(str, good), str(bad), env=env)
    assert code == 2 and f"{bad}:5:" in events[0]["error"]
    twin = tmp_path / "twin.yaml"
    twin.write_text(MINIMAL_SITE.format(name="alpha"))
    code, events, _ = _rollout(tmp_path, str(good[0]), str(twin), env=env)
    assert code == 2 and "named by both" in events[0]["error"]
    (tmp_path / "empty").mkdir()
    code, events, _ = _rollout(tmp_path, str(tmp_path / "empty"), env=env)
    assert code == 2 and "no site files" in events[0]["error"]
    code, events, _ = _rollout(tmp_path, str(good[0]), "/dev/null", env=env)
    assert code == 2 and "not a regular file" in events[0]["error"]
    code, _, err = _rollout(tmp_path, str(good[0]), "--parallel", "0", env=env)
    assert code == 2 and "--parallel" in err
    assert not (tmp_path / "acts.log").exists()
    assert not (tmp_path / "state" / "journal.sqlite").exists() or _runs(tmp_path) == []


def test_a_folder_of_regions_derived_from_a_base(tmp_path: Path) -> None:
    region = tmp_path / "region"
    region.mkdir()
    (region / "_base.yaml").write_text(MINIMAL_SITE.format(name="base"))
    for name in ("north", "south"):
        (region / f"{name}.yaml").write_text(f"extends: _base.yaml\nname: {name}\n")
    code, events, err = _rollout(tmp_path, str(region), env=_env(tmp_path))
    assert code == 0, (events, err)
    assert [s["site"] for s in events[-1]["sites"]] == ["north", "south"]
    assert sorted(r[1] for r in _runs(tmp_path)) == ["north", "south"]


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_a_killed_rollout_leaves_no_process_and_its_rerun_resumes(tmp_path: Path) -> None:
    files = _sites(tmp_path, "alpha", "bravo")
    env = _env(tmp_path, ROLLFX_HOLD="alpha")
    proc = subprocess.Popen(
        [*FX, "--state-dir", str(tmp_path / "state"), "-o", "json", "rollout", *map(str, files)],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    pids: dict[str, int] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        ev = json.loads(line)
        if ev["kind"] == "site.started":
            pids[ev["site"]] = ev["pid"]
        if len(pids) == 2:
            break
    wait_until(lambda: (tmp_path / "hold-alpha.fifo").exists(), what="alpha holding")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    for name, pid in pids.items():
        wait_until(lambda pid=pid: _gone(pid), timeout=30, what=f"{name}'s drboot gone")
    # alpha was killed mid-run: interrupted, and the next rollout resumes it
    code, events, err = _rollout(tmp_path, *map(str, files), env=_env(tmp_path))
    assert code == 0, (events, err)
    actions = {s["site"]: s["action"] for s in events[-1]["sites"]}
    assert actions["alpha"] == "resume"
    assert len(_runs(tmp_path)) == 2


def test_plain_lines_on_a_pipe(tmp_path: Path) -> None:
    files = _sites(tmp_path, "alpha", "bravo")
    done = subprocess.run(
        [*FX, "--state-dir", str(tmp_path / "state"), "rollout", *map(str, files)],
        env=_env(tmp_path, ROLLFX_SLOW="bravo"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 4
    out = done.stdout
    assert "\x1b[" not in out  # no cursor movement on a pipe
    assert "alpha: step disk-gate" in out and "bravo: failed at step disk-gate, exit 3" in out
    assert "report: " in out and "rollout.md" in out
    assert "bravo: FAILED at disk-gate" in done.stderr


def test_ctrl_c_interrupts_every_site_and_the_report_says_so(tmp_path: Path) -> None:
    files = _sites(tmp_path, "alpha", "bravo")
    proc = subprocess.Popen(
        [*FX, "--state-dir", str(tmp_path / "state"), "-o", "json", "rollout", *map(str, files)],
        env=_env(tmp_path, ROLLFX_HOLD="alpha"),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    wait_until(lambda: (tmp_path / "hold-alpha.fifo").exists(), what="alpha holding")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130
    final = json.loads(out.splitlines()[-1])
    states = {s["site"]: s["state"] for s in final["sites"]}
    assert states["alpha"] == "interrupted"
    alpha = next(s for s in final["sites"] if s["site"] == "alpha")
    assert alpha["exit_code"] == 130 and alpha["failed_step"] == "disk-gate"
    assert final["exit_code"] == 130 and "INTERRUPTED" in Path(final["report"][1]).read_text()
    # the child recorded its own interruption: resumable, nothing left running
    assert {r[1]: r[2] for r in _runs(tmp_path)}["alpha"] == "interrupted"
