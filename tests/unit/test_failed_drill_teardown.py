"""A drill that fails still tears down its throw-away hosts and writes its report; the run
stays failed with its own exit code, and a resume is refused (nothing is left to resume).
``--keep-on-failure`` keeps the hosts, and then the drill resumes.

The pipeline is ``tests.engine_fixtures.drillkit`` (steps without hosts); its ``teardown`` step
stands where drboot's is, and the ``report`` step is drboot's real one.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bootstrap.cli import Deps, cli
from bootstrap.engine.step import Pipeline, RetryPolicy
from tests.conftest import MINIMAL_SITE
from tests.engine_fixtures import drillkit


def _drboot(state: Path, *args: str) -> Result:
    return CliRunner().invoke(
        cli, ["--state-dir", str(state), "-o", "json", *args],
        obj=Deps(pipelines=drillkit.pipelines),
    )  # fmt: skip


def _events(res: Result) -> list[dict[str, object]]:
    return [json.loads(line) for line in res.output.splitlines() if line.startswith("{")]


def _steps(state: Path, run_id: str) -> dict[str, str]:
    db = sqlite3.connect(state / "journal.sqlite")
    try:
        rows = db.execute("SELECT step_id, status FROM steps WHERE run_id=?", (run_id,))
        return dict(rows.fetchall())
    finally:
        db.close()


def _run(state: Path, run_id: str) -> tuple[str, int]:
    db = sqlite3.connect(state / "journal.sqlite")
    try:
        row = db.execute("SELECT status, exit_code FROM runs WHERE id=?", (run_id,)).fetchone()
        return str(row[0]), int(row[1])
    finally:
        db.close()


@pytest.fixture
def site(tmp_path: Path) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(MINIMAL_SITE.format(name="oslo"))
    return path


def test_a_failed_drill_tears_down_reports_and_cannot_be_resumed(
    tmp_path: Path, site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("DRILLKIT_FAIL", "preflight")
    res = _drboot(state, "drill", str(site))
    assert res.exit_code == 4, res.output
    events = _events(res)
    run_id = str(events[0]["run_id"])
    # the teardown and the report ran after the failure, in that order
    started = [e["step"] for e in events if e["kind"] == "step.started"]
    assert started == ["preflight", "teardown", "report"], started
    assert any(
        e["kind"] == "step.progress" and "tearing down" in str(e["message"]) for e in events
    )
    assert _steps(state, run_id) == {
        "preflight": "failed", "wait-synced": "pending", "teardown": "done", "report": "done",
    }  # fmt: skip
    assert _run(state, run_id) == ("failed", 4)  # the run keeps its own verdict
    assert (state / "runs" / run_id / "report.json").is_file()

    monkeypatch.setenv("DRILLKIT_FAIL", "")
    again = _drboot(state, "resume", run_id)
    assert again.exit_code == 2, again.output
    assert "torn down: nothing to resume" in again.output
    assert _steps(state, run_id)["wait-synced"] == "pending"  # nothing ran


def test_keep_on_failure_keeps_the_hosts_and_the_drill_resumes(
    tmp_path: Path, site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("DRILLKIT_FAIL", "preflight")
    res = _drboot(state, "drill", str(site), "--keep-on-failure")
    assert res.exit_code == 4, res.output
    run_id = str(_events(res)[0]["run_id"])
    assert _steps(state, run_id)["teardown"] == "pending"

    monkeypatch.setenv("DRILLKIT_FAIL", "")
    again = _drboot(state, "resume", run_id)
    assert again.exit_code == 0, again.output
    assert set(_steps(state, run_id).values()) == {"done"}
    assert _run(state, run_id) == ("ok", 0)


def test_a_failed_restore_keeps_everything_for_resume(
    tmp_path: Path, site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("DRILLKIT_FAIL", "preflight")
    res = _drboot(state, "restore", str(site))
    assert res.exit_code == 4, res.output
    run_id = str(_events(res)[0]["run_id"])
    assert _steps(state, run_id)["report"] == "pending"
    monkeypatch.setenv("DRILLKIT_FAIL", "")
    assert _drboot(state, "resume", run_id).exit_code == 0


def _with_provision() -> dict[str, Pipeline]:
    """drillkit's drill with a ``provision`` step after its preflight: what a drill that
    failed in preflight (before anything billable exists) leaves."""
    made = drillkit.pipelines()
    drill = Pipeline("drill")
    kit = made["drill"]
    drill.step("preflight", retry=RetryPolicy.none(), timeout=60)(kit.get("preflight").func)
    drill.step("provision", after=["preflight"], retry=RetryPolicy.none(), timeout=60)(
        lambda ctx: ctx.noop("nothing to create")
    )
    for step in ("wait-synced", "teardown", "report"):
        spec = kit.get(step)
        drill.step(step, retry=RetryPolicy.none(), timeout=60)(spec.func)
    made["drill"] = drill
    return made


def test_a_drill_refused_before_provision_writes_its_report_and_stays_resumable(
    tmp_path: Path, site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("DRILLKIT_FAIL", "preflight")
    res = CliRunner().invoke(
        cli, ["--state-dir", str(state), "-o", "json", "drill", str(site)],
        obj=Deps(pipelines=_with_provision),
    )  # fmt: skip
    assert res.exit_code == 4, res.output
    run_id = str(_events(res)[0]["run_id"])
    # nothing was created, so nothing is torn down; the report says what happened
    assert _steps(state, run_id) == {
        "preflight": "failed", "provision": "pending", "wait-synced": "pending",
        "teardown": "pending", "report": "done",
    }  # fmt: skip
    monkeypatch.setenv("DRILLKIT_FAIL", "")
    again = CliRunner().invoke(
        cli, ["--state-dir", str(state), "-o", "json", "resume", run_id],
        obj=Deps(pipelines=_with_provision),
    )  # fmt: skip
    assert again.exit_code == 0, again.output
    assert _run(state, run_id) == ("ok", 0)
    started = [e["step"] for e in _events(again) if e["kind"] == "step.started"]
    assert started == ["preflight", "provision", "wait-synced", "teardown", "report"], started
