"""The error edge of the CLI: an operator's error is shown once with its exit code; anything
else is an internal error (exit 70) whose traceback is saved, in either output format."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from bootstrap.cli import Deps, cli
from bootstrap.engine.step import Pipeline


def _broken() -> dict[str, Pipeline]:
    raise RuntimeError("a bug")


def test_an_internal_error_saves_its_traceback(tmp_path: Path) -> None:
    state = tmp_path / "state"
    deps = Deps(pipelines=_broken)
    res = CliRunner().invoke(cli, ["--state-dir", str(state), "resume", "r1"], obj=deps)
    assert res.exit_code == 70
    assert "internal error (RuntimeError); traceback saved to" in res.stderr
    (crash,) = (state / "crashes").iterdir()
    assert "RuntimeError: a bug" in crash.read_text()

    res = CliRunner().invoke(
        cli, ["--state-dir", str(state), "-o", "json", "resume", "r1"], obj=Deps(pipelines=_broken)
    )
    assert res.exit_code == 70
    doc = json.loads(res.stdout)
    assert doc["exit_code"] == 70 and Path(doc["traceback"]).is_file()


def test_an_operator_error_is_shown_once_with_its_exit_code(tmp_path: Path) -> None:
    args = ["--state-dir", str(tmp_path / "state"), "status", "no-such-run"]
    res = CliRunner().invoke(cli, args, obj=Deps())
    assert res.exit_code == 2
    assert res.stderr.count("no run no-such-run") == 1 and res.stdout == ""

    res = CliRunner().invoke(cli, [*args, "-o", "json"], obj=Deps())
    assert res.exit_code == 2
    doc = json.loads(res.stdout)
    assert doc["exit_code"] == 2 and "no run no-such-run" in doc["error"]
    assert doc["hint"].startswith("list runs with `drboot status`")
