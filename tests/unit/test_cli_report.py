"""`drboot report RUN_ID` on a finished run whose own report step recorded a warning.

The report step journals how many warnings it found (``"warnings": 1``, a count);
writing the report again must read that as a count, not as a list of warnings, and
exit 0 with the files written and the warning text in them.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from bootstrap.cli import Deps, cli
from bootstrap.engine.journal import Journal
from bootstrap.report import model
from tests.conftest import MINIMAL_SITE

RUN_ID = "reportsite-20260101T000000-abcd"
STEPS = ["disk-gate", "wait-synced", "report"]
WARNING = "disk-gate: server-1: fdatasync p99 14.20 ms exceeds 10.00 ms"


def _finished_run(state: Path) -> None:
    """A journal like a restore leaves it: run row, step rows, the run folder's site.yaml."""
    j = Journal(state / "journal.sqlite")
    j.create_run(RUN_ID, "reportsite", "restore", STEPS, {"site_dir": str(state)}, "digest")
    start = j.run(RUN_ID).created  # type: ignore[union-attr]
    verdict = {
        "host": "server-1",
        "p50_ms": 3.1,
        "p99_ms": 14.2,
        "p999_ms": 20.0,
        "syncs": 10029,
        "threshold_ms": 10.0,
        "ok": False,
    }  # as the disk gate wrote it
    outputs = {
        "disk-gate": {"verdicts": [verdict]},
        "wait-synced": {"apps": {}, "ready_at": start + 60},
        "report": {"files": [], "rto_seconds": 60, "rto_met": True, "warnings": 1},
    }
    for sid in STEPS:
        n = j.start_attempt(RUN_ID, sid)
        j.end_attempt(RUN_ID, sid, n, "ok", None)
        j.finish_step(RUN_ID, sid, "done", outputs[sid], f"{sid} done")
    j.finish_run(RUN_ID, "ok", 0)
    j.close()
    run_dir = state / "runs" / RUN_ID
    run_dir.mkdir(parents=True)
    (run_dir / "site.yaml").write_text(MINIMAL_SITE.format(name="reportsite"))


def test_report_of_a_run_whose_report_step_counted_a_warning(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _finished_run(state)
    out = tmp_path / "out"

    res = CliRunner().invoke(
        cli, ["--state-dir", str(state), "report", RUN_ID, "--directory", str(out)], obj=Deps()
    )
    assert res.exit_code == 0, res.output
    assert f"wrote {out / 'report.json'}" in res.output
    assert f"warning: {WARNING}" in res.output
    report = json.loads((out / "report.json").read_text())
    assert report["warnings"] == [WARNING]
    assert WARNING in (out / "report.md").read_text()

    res = CliRunner().invoke(
        cli, ["--state-dir", str(state), "-o", "json", "report", RUN_ID], obj=Deps()
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    run_dir = state / "runs" / RUN_ID  # no --directory, no report.directory: the run folder
    assert doc["files"] == [
        str(run_dir / name)
        for name in ("report.json", "report.md", "report.junit.xml", "report.html")
    ]
    assert doc["warnings"] == [WARNING]
    assert doc["rto"]["seconds"] == 60


def test_a_count_of_warnings_is_not_a_list_of_them() -> None:
    """drboot 0.1.0 journalled the report step's warning count; it reads back as no list."""
    from bootstrap.engine.journal import StepRow
    from bootstrap.outputs import Reported

    def row(outputs: dict[str, object]) -> StepRow:
        return StepRow(RUN_ID, "report", 0, "done", 1, 0.0, 1.0, outputs, "", None)

    assert Reported.from_json({"warnings": 3}).warnings == []
    assert Reported.from_json({"warnings": ["a", "b"]}).warnings == ["a", "b"]
    assert model.warnings([row({"warnings": 3})], []) == []


def test_report_of_an_unknown_run_or_a_lost_run_folder_is_a_usage_error(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _finished_run(state)
    res = CliRunner().invoke(cli, ["--state-dir", str(state), "report", "nope"], obj=Deps())
    assert res.exit_code == 2 and "no run nope" in res.output

    (state / "runs" / RUN_ID / "site.yaml").unlink()
    res = CliRunner().invoke(cli, ["--state-dir", str(state), "report", RUN_ID], obj=Deps())
    assert res.exit_code == 2, res.output
    assert "has no copy of its site file" in res.output
