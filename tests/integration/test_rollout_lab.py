"""``drboot rollout`` on the lab: three real sites, two at a time, one refused by the disk gate.

Proves (issue 12): the two good sites reach Synced while the third fails at ``disk-gate`` (its
etcd disk throttled, ``provider.disk: slow``); the combined report names the site, the step
and the error; and the same rollout run again with the disk accepted resumes only the failed
site: the journal holds no new run for the other two.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest_lab import _unavailable, lab_missing_reason
from tests.integration.labrun import REPO, LabSite, make_site, teardown

pytestmark = [pytest.mark.integration, pytest.mark.lab]
SITES = (("roll-a", "fast"), ("roll-b", "slow"), ("roll-c", "fast"))


@pytest.fixture(autouse=True)
def _lab_ready() -> None:
    reason = lab_missing_reason()
    if reason:
        _unavailable(reason)


@pytest.fixture
def region(tmp_path: Path) -> Iterator[list[LabSite]]:
    made: list[LabSite] = []
    try:
        for name, disk in SITES:
            (tmp_path / name).mkdir()
            made.append(make_site(tmp_path / name, name, disk=disk, iops=300))
        yield made
    finally:
        for ls in made:
            teardown(ls)


def _rollout(
    state: Path, sites: list[LabSite], *args: str
) -> tuple[int, list[dict[str, Any]], str]:
    env = dict(sites[0].env, DRBOOT_STATE_DIR=str(state))
    done = subprocess.run(
        [sys.executable, "-m", "bootstrap.cli", "-o", "json", "rollout",
         *(str(s.site) for s in sites), *args],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    events = []
    for line in done.stdout.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return done.returncode, events, done.stderr


def _journal(state: Path) -> tuple[dict[str, list[tuple[str, str]]], set[tuple[str, str]]]:
    db = sqlite3.connect(state / "journal.sqlite")
    try:
        runs: dict[str, list[tuple[str, str]]] = {}
        for rid, site, status in db.execute("SELECT id, site, status FROM runs ORDER BY created"):
            runs.setdefault(site, []).append((rid, status))
        synced = {
            (rid, step)
            for rid, step in db.execute(
                "SELECT run_id, step_id FROM steps WHERE status='done' AND step_id='wait-synced'"
            )
        }
        return runs, synced
    finally:
        db.close()


def test_rollout_of_three_lab_sites_one_failing_at_the_disk_gate(
    region: list[LabSite], tmp_path: Path
) -> None:
    state = tmp_path / "rollout-state"
    code, events, err = _rollout(state, region, "--parallel", "2")
    assert code == 4, (events[-3:], err[-3000:])
    final = events[-1]
    assert final["kind"] == "rollout.finished"
    by_site = {s["site"]: s for s in final["sites"]}
    assert by_site["roll-a"]["state"] == "ok" and by_site["roll-c"]["state"] == "ok", final
    failed = by_site["roll-b"]
    assert failed["state"] == "failed" and failed["failed_step"] == "disk-gate"
    assert failed["exit_code"] == 3 and "disk too slow for etcd" in failed["error"]
    # never more than two sites at once: a third started only after one had finished
    order = [
        (e["kind"], e.get("site")) for e in events if e["kind"] in ("site.started", "site.finished")
    ]
    third = order.index(("site.started", "roll-c"))
    assert any(k == "site.finished" for k, _ in order[:third])
    # the two good sites reached Synced (their wait-synced step is done in the journal)
    runs, synced = _journal(state)
    for name in ("roll-a", "roll-c"):
        ((rid, status),) = runs[name]
        assert status == "ok" and (rid, "wait-synced") in synced
        assert by_site[name]["rto_seconds"] is not None
    # the combined report names the failure
    md = Path(next(f for f in final["report"] if f.endswith(".md"))).read_text()
    assert "| roll-b | FAILED | restore |" in md and "| disk-gate |" in md
    assert "disk too slow for etcd" in md

    # fixed (the throttled disk accepted): only roll-b runs again, resumed
    code, events, err = _rollout(
        state, region, "--parallel", "2", "--accept-slow-disk", "lab disk throttled on purpose"
    )
    assert code == 0, (events[-3:], err[-3000:])
    final = events[-1]
    assert {s["site"]: (s["action"], s["state"]) for s in final["sites"]} == {
        "roll-a": ("skip", "skipped"),
        "roll-b": ("resume", "ok"),
        "roll-c": ("skip", "skipped"),
    }
    assert [e["site"] for e in events if e["kind"] == "site.started"] == ["roll-b"]
    again, synced = _journal(state)
    assert again["roll-a"] == runs["roll-a"] and again["roll-c"] == runs["roll-c"]
    ((rid, status),) = again["roll-b"]
    assert rid == failed["run_id"] and status == "ok" and (rid, "wait-synced") in synced
    assert os.path.isfile(next(f for f in final["report"] if f.endswith(".json")))
