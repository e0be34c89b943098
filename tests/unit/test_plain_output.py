"""The text output of a run on a pipe: each change once, and the end of the run in words.

A run through the real CLI (``CliRunner``: its streams are not terminals, so the plain
view is used), with a three-step pipeline: a step that makes changes and says why it
skipped one, a ``wait-synced`` that records when every app was ready, and drboot's real
``report`` step. The cluster plug-in of the site's provider is swapped for one that names
two stand-ins (a fake at drboot's own boundary), so the summary must list them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bootstrap.cli import Deps, cli
from bootstrap.engine.context import StepContext
from bootstrap.engine.step import Pipeline, RetryPolicy
from bootstrap.outputs import AppsSynced
from bootstrap.providers import plugin as plugins
from bootstrap.providers.plugin import ProductionCluster
from bootstrap.settings import Site
from bootstrap.steps import finish
from tests.conftest import MINIMAL_SITE

CHANGES = ["create host alpha", "create host beta", "write the kubeconfig"]
NOOP = "the network already exists"
STANDINS = ["k3s: LAB STAND-IN of the k3s binary", "argocd: LAB STAND-IN of the controller"]


def _work(ctx: StepContext) -> None:
    ctx.noop(NOOP, target="net")
    for change in CHANGES[:2]:
        if not ctx.will(change, target="lab"):
            return
    ctx.changed(CHANGES[2])


def _synced(ctx: StepContext) -> None:
    ctx.noop("1 app(s) Synced+Healthy")
    ctx.record(AppsSynced(ready_at=time.time(), seconds=0.1))


def _pipelines() -> dict[str, Pipeline]:
    p = Pipeline("restore")
    p.step("work", retry=RetryPolicy.none(), timeout=60)(_work)
    p.step("wait-synced", after=["work"], retry=RetryPolicy.none(), timeout=60)(_synced)
    p.step("report", after=["wait-synced"], retry=RetryPolicy.none(), timeout=60)(finish.report)
    return {"restore": p, "drill": p}


class _StandinWorld(ProductionCluster):
    name = "standin-world"

    def standins(self) -> list[str]:
        return list(STANDINS)


def _standin_world(site: Site, state_root: Path) -> _StandinWorld:
    return _StandinWorld()


@pytest.fixture
def site_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setitem(plugins._PLUGINS, "static", _standin_world)
    path = tmp_path / "site.yaml"
    path.write_text(MINIMAL_SITE.format(name="plainsite"))
    return path


def _run(tmp_path: Path, site: Path, *output: str) -> Result:
    return CliRunner().invoke(
        cli,
        ["--state-dir", str(tmp_path / "state"), *output, "restore", str(site)],
        obj=Deps(pipelines=_pipelines),
    )


def test_each_change_is_printed_once_on_a_pipe(tmp_path: Path, site_file: Path) -> None:
    res = _run(tmp_path, site_file)
    assert res.exit_code == 0, res.output
    text = res.output
    assert "\x1b[" not in text  # not a terminal: no colour, no live view
    for change in CHANGES:
        assert text.count(change) == 1, text
    assert text.count(NOOP) == 1, text
    lines = text.splitlines()
    # the done lines say how much, not what again
    assert any(line.split() [:3] == ["done", "step", "work:"] and "3 change(s)" in line
               for line in lines), text  # fmt: skip
    assert any(line.split()[:3] == ["done", "step", "wait-synced:"] and "no change" in line
               for line in lines), text  # fmt: skip


def test_the_end_of_a_run_names_rto_report_and_standins(tmp_path: Path, site_file: Path) -> None:
    res = _run(tmp_path, site_file)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    end = max(i for i, line in enumerate(lines) if line.startswith("run plainsite-"))
    summary = lines[end + 1 :]
    assert " ok in " in lines[end]
    assert sum(" ok" in line for line in lines) == 1, lines  # the outcome, said once
    assert summary[0].startswith("RTO ") and summary[0].endswith(
        "against an objective of 1h00m00s: met"
    ), summary
    run_dir = next((tmp_path / "state" / "runs").iterdir())
    report_line = next(line for line in summary if line.startswith("report: "))
    assert report_line.startswith(f"report: {run_dir}/ (")
    for name in ("report.json", "report.md"):
        assert name in report_line and (run_dir / name).is_file()
    assert "LAB STAND-INS" in "\n".join(summary)
    for standin in STANDINS:
        assert f"  - {standin}" in summary


def test_json_output_carries_the_same_summary_and_nothing_else_changes(
    tmp_path: Path, site_file: Path
) -> None:
    res = _run(tmp_path, site_file, "-o", "json")
    assert res.exit_code == 0, res.output
    events = [json.loads(line) for line in res.output.splitlines()]
    changes = [e["message"] for e in events if e["kind"] == "step.change" and e["step"] == "work"]
    assert changes == CHANGES
    done = {e["step"]: e["message"] for e in events if e["kind"] == "step.done"}
    assert done["work"] == "lab: create host alpha; lab: create host beta; write the kubeconfig"
    (summary,) = [e["data"]["report"] for e in events if "report" in e["data"]]
    assert summary["lab_standins"] == STANDINS
    assert summary["rto_met"] is True and summary["rto_objective_seconds"] == 3600.0
    assert all(Path(f).is_file() for f in summary["files"])
    assert events[-1]["kind"] == "run.finished"
