"""`drboot history SITE`: every drill and restore from the journal, and the RTO trend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bootstrap.cli import Deps, cli
from bootstrap.history import Outcome, trend
from tests.conftest import MINIMAL_SITE
from tests.engine_fixtures import drillkit


def _outcome(rto: float | None, i: int = 0) -> Outcome:
    return Outcome(
        run_id=f"r{i}", site="s", kind="drill", status="ok" if rto else "failed",
        started=1000.0 + i, ended=1001.0 + i, rto_seconds=rto, objective_seconds=600.0,
        failed_step=None, error=None, step_seconds={},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("rtos", "verdict", "change", "slope"),  # slope: statistics.linear_regression
    [
        ([100, 100, 100, 130, 130, 130], "growing", 30.0, 7.714),
        ([130, 130, 130, 100, 100, 100], "shrinking", -23.1, -7.714),
        ([100, 104, 98, 101, 105, 99], "steady", 1.0, 0.029),
        # runs that never got an RTO (failed early) do not count
        ([100, None, 100, 100, None, 200, 200, 200], "growing", 100.0, 25.714),
    ],
)
def test_trend_compares_the_last_runs_with_the_ones_before(
    rtos: list[float | None], verdict: str, change: float, slope: float
) -> None:
    t = trend([_outcome(r, i) for i, r in enumerate(rtos)], window=3)
    assert (t.verdict, t.change_percent, t.slope_seconds_per_run) == (verdict, change, slope)
    assert t.sentence().startswith(f"trend: RTO {verdict}: last 3 runs average")


def test_too_few_measured_runs_say_so() -> None:
    t = trend([_outcome(100, i) for i in range(5)] + [_outcome(None, 9)], window=3)
    assert t.verdict == "not enough runs"
    assert t.sentence() == "trend: not enough runs with a measured RTO (5; 6 needed)"


def test_history_lists_drills_and_restores_with_rto_failed_step_and_trend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site.yaml"
    state = tmp_path / "state"

    def run(command: str, rto: float, objective: str, fail: str | None = None) -> int:
        site.write_text(MINIMAL_SITE.format(name="oslo") + f"rto:\n  objective: {objective}\n")
        monkeypatch.setenv("DRILLKIT_RTO", str(rto))
        monkeypatch.setenv("DRILLKIT_FAIL", fail or "")
        res = CliRunner().invoke(
            cli, ["--state-dir", str(state), command, str(site)],
            obj=Deps(pipelines=drillkit.pipelines),
        )  # fmt: skip
        return res.exit_code

    assert run("drill", 100, "10m") == 0
    assert run("restore", 110, "10m") == 0
    assert run("drill", 120, "10m", fail="teardown") == 4
    assert run("drill", 200, "10m") == 0
    assert run("drill", 210, "3m") == 7  # the objective the run had decides its verdict
    assert run("drill", 220, "10m") == 0
    # another site in the same journal is not listed
    other = tmp_path / "other.yaml"
    other.write_text(MINIMAL_SITE.format(name="bergen"))
    CliRunner().invoke(cli, ["--state-dir", str(state), "drill", str(other)],
                       obj=Deps(pipelines=drillkit.pipelines))  # fmt: skip

    res = CliRunner().invoke(cli, ["--state-dir", str(state), "-o", "json", "history", "oslo"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    rows = [
        (r["kind"], r["outcome"], r["rto_seconds"], r["objective_seconds"], r["objective_met"],
         r["failed_step"])
        for r in doc["runs"]
    ]  # fmt: skip
    assert rows == [
        ("drill", "restored", 100.0, 600.0, True, None),
        ("restore", "restored", 110.0, 600.0, True, None),
        ("drill", "failed", 120.0, 600.0, True, "teardown"),
        ("drill", "restored", 200.0, 600.0, True, None),
        ("drill", "rto-missed", 210.0, 180.0, False, None),
        ("drill", "restored", 220.0, 600.0, True, None),
    ]
    assert doc["runs"][2]["error"] == "teardown refused (DRILLKIT_FAIL)"
    assert doc["trend"]["verdict"] == "growing"
    assert (doc["trend"]["recent_mean_seconds"], doc["trend"]["previous_mean_seconds"]) == (
        210.0,
        110.0,
    )

    # The site file names the site as well as its name does; the text view says the trend.
    res = CliRunner().invoke(cli, ["--state-dir", str(state), "history", str(site)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert len([line for line in lines if " drill " in line or " restore " in line]) == 6
    assert lines[-1].startswith("trend: RTO growing: last 3 runs average 210s, the 3 before 110s")
    assert any("teardown: teardown refused (DRILLKIT_FAIL)" in line for line in lines)


def test_history_of_a_site_never_run(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["--state-dir", str(tmp_path / "s"), "history", "nowhere"])
    assert res.exit_code == 0
    assert res.output.strip() == "no drill or restore of site nowhere in the journal"
