"""The run commands' options: declared once, gathered into one frozen record, journalled
as the JSON every drboot version wrote, and merged on resume.

Tested by what the engine received: a two-step pipeline whose steps record the
options they were given.
"""

from __future__ import annotations

import ast
import json
import sqlite3
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from bootstrap.cli import Deps, cli
from bootstrap.cli.runcmds import RunArgs, run_options
from bootstrap.engine.context import StepContext
from bootstrap.engine.journal import Journal
from bootstrap.engine.step import Pipeline, RetryPolicy
from bootstrap.options import RunOptions
from bootstrap.records import StepOutput
from tests.conftest import MINIMAL_SITE, PYTHON, REPO


@dataclass(frozen=True)
class SeenByA(StepOutput):
    """The options step ``a`` was given (as the journal writes them)."""

    STEP = "a"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SeenByB(SeenByA):
    STEP = "b"


def _pipelines() -> dict[str, Pipeline]:
    p = Pipeline("restore")

    def record(ctx: StepContext) -> None:
        assert isinstance(ctx.options, RunOptions)
        seen = SeenByA if ctx.step_id == "a" else SeenByB
        ctx.record(seen(options=ctx.options.to_json()))

    p.step("a", retry=RetryPolicy.none())(record)
    p.step("b", after=["a"], retry=RetryPolicy.none())(record)
    return {"restore": p}


def _invoke(state: Path, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(
        cli, ["--state-dir", str(state), "-o", "json", *args], obj=Deps(pipelines=_pipelines)
    )
    return res.exit_code, res.output


def _outputs(state: Path, run_id: str) -> dict[str, dict[str, object]]:
    j = Journal(state / "journal.sqlite")
    try:
        return {s.step_id: s.outputs.get("options", {}) for s in j.steps(run_id)}
    finally:
        j.close()


def test_run_options_arrive_as_one_frozen_record() -> None:
    seen: list[RunArgs] = []

    @click.command()
    @run_options
    def probe(run: RunArgs) -> None:
        seen.append(run)

    args = ["--accept-slow-disk", "why", "--trust-on-first-use", "--until", "x", "--force-unlock"]
    res = CliRunner().invoke(probe, [*args, "--accept-slow-cpu", "cpu why", "-o", "json"])
    assert res.exit_code == 0, res.output
    opts = RunOptions("why", True, accept_slow_cpu="cpu why")
    assert seen == [RunArgs(opts, "x", True, "json")]
    assert CliRunner().invoke(probe, []).exit_code == 0
    assert seen[1] == RunArgs(RunOptions())
    with pytest.raises(AttributeError):
        seen[1].until = "y"  # type: ignore[misc]


def test_options_reach_the_engine_and_the_journal_and_merge_on_resume(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(MINIMAL_SITE.format(name="optsite"))
    state = tmp_path / "state"
    code, out = _invoke(
        state, "restore", "--accept-slow-disk", "lab disk", "--until", "a", str(site)
    )
    assert code == 0, out
    run_id = json.loads(out.splitlines()[0])["run_id"]
    started = {"accept_slow_disk": "lab disk", "site_dir": str(tmp_path)}
    assert _outputs(state, run_id)["a"] == started
    db = sqlite3.connect(state / "journal.sqlite")
    (journalled,) = db.execute("SELECT options FROM runs WHERE id=?", (run_id,)).fetchone()
    db.close()
    assert json.loads(journalled) == started  # the keys drboot has always written

    code, out = _invoke(state, "resume", run_id, "--trust-on-first-use", "--accept-slow-cpu",
                        "lab: quota cut")  # fmt: skip
    assert code == 0, out
    resumed = dict(started, trust_on_first_use=True, accept_slow_cpu="lab: quota cut")
    assert _outputs(state, run_id)["b"] == resumed


def test_a_run_journalled_with_unknown_options_is_not_resumed(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(MINIMAL_SITE.format(name="optsite"))
    state = tmp_path / "state"
    code, out = _invoke(state, "restore", "--until", "a", str(site))
    assert code == 0, out
    run_id = json.loads(out.splitlines()[0])["run_id"]
    db = sqlite3.connect(state / "journal.sqlite")
    db.execute("UPDATE runs SET options=? WHERE id=?", ('{"warp_speed": 9}', run_id))
    db.commit()
    db.close()

    code, out = _invoke(state, "resume", run_id)
    assert code == 2, out
    err = json.loads(out)
    assert "journalled by another drboot version and cannot be resumed" in err["error"]
    assert "warp_speed" in err["error"]
    assert "drboot restore SITE" in err["hint"]


def test_python_dash_m_runs_the_same_cli() -> None:
    res = subprocess.run(
        [PYTHON, "-m", "bootstrap.cli", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    for command in ["restore", "resume", "status", "report", "escrow", "lab", "demo"]:
        assert f"  {command} " in res.stdout


def test_command_modules_do_not_import_the_cli_package() -> None:
    """Only the package assembles the commands; a module importing it back makes a cycle."""
    for path in sorted((REPO / "bootstrap" / "cli").glob("*.py")):
        if path.name in ("__init__.py", "__main__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "bootstrap.cli":
                pytest.fail(f"{path.name}:{node.lineno} imports from bootstrap.cli")
            if isinstance(node, ast.Import):
                assert all(a.name != "bootstrap.cli" for a in node.names), path.name
