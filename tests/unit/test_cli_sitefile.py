"""The SITE argument is read once: what was validated is what the run folder keeps.

A site file given through a pipe (``drboot restore <(sops -d site.yaml)``) can be
read only once. These tests give it as a named pipe fed by a writer thread, run the
five-step side-effect pipeline (tests/engine_fixtures/sidefx.py) in process, and
check the run folder's copy byte for byte, then resume from it. Oversized input is
refused with exit 2, from a file and from a pipe that never ends early.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from bootstrap.cli import Deps, cli
from bootstrap.siteload import MAX_BYTES as MAX_SITE_BYTES
from tests.conftest import MINIMAL_SITE
from tests.engine_fixtures import sidefx

Invoke = Callable[..., Result]
SITE = (MINIMAL_SITE.format(name="fifosite") + "# kept: comments, ünïcode, no newline").encode()


def _feed(fifo: Path, data: bytes) -> threading.Thread:
    """A writer that opens the pipe (blocking until drboot opens it), writes, and closes."""

    def write() -> None:
        try:
            with open(fifo, "wb") as fh:
                fh.write(data)
        except BrokenPipeError:
            pass  # the reader stopped early, as it must for oversized input

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    return writer


def _fifo(tmp_path: Path, data: bytes) -> tuple[Path, threading.Thread]:
    fifo = tmp_path / "site.fifo"
    os.mkfifo(fifo)
    return fifo, _feed(fifo, data)


@pytest.fixture
def drboot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    monkeypatch.setenv("SIDEFX_DIR", str(tmp_path))
    state = tmp_path / "state"

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(
            cli, ["--state-dir", str(state), *args], obj=Deps(pipelines=sidefx.pipelines)
        )

    return invoke


def test_restore_from_a_pipe_keeps_the_bytes_it_validated_and_resumes(
    tmp_path: Path, drboot: Invoke
) -> None:
    fifo, writer = _fifo(tmp_path, SITE)
    res = drboot("-o", "json", "restore", "--until", "s2", str(fifo))
    writer.join(timeout=10)
    assert res.exit_code == 0, res.output
    run_id = json.loads(res.output.splitlines()[0])["run_id"]

    assert (tmp_path / "state" / "runs" / run_id / "site.yaml").read_bytes() == SITE
    db = sqlite3.connect(tmp_path / "state" / "journal.sqlite")
    digest, options = db.execute(
        "SELECT site_digest, options FROM runs WHERE id=?", (run_id,)
    ).fetchone()
    db.close()
    assert digest == hashlib.sha256(SITE).hexdigest()
    # A pipe has no folder: relative paths in it mean the current directory.
    assert json.loads(options) == {"site_dir": str(Path.cwd())}

    res = drboot("-o", "json", "resume", run_id)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "acts.log").read_text().splitlines() == sidefx.STEPS


def test_validate_and_plan_read_a_pipe(tmp_path: Path, drboot: Invoke) -> None:
    fifo, writer = _fifo(tmp_path, SITE)
    res = drboot("-o", "json", "validate", str(fifo))
    writer.join(timeout=10)
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == {"ok": True, "site": "fifosite"}

    writer = _feed(fifo, SITE)
    res = drboot("-o", "json", "plan", str(fifo))
    writer.join(timeout=10)
    assert res.exit_code == 0, res.output
    assert [s["step"] for s in json.loads(res.output)["steps"]] == sidefx.STEPS


def test_a_regular_file_resolves_relative_paths_in_its_folder(
    tmp_path: Path, drboot: Invoke
) -> None:
    site = tmp_path / "conf" / "site.yaml"
    site.parent.mkdir()
    site.write_bytes(SITE)
    res = drboot("-o", "json", "restore", "--until", "s1", str(site))
    assert res.exit_code == 0, res.output
    run_id = json.loads(res.output.splitlines()[0])["run_id"]
    db = sqlite3.connect(tmp_path / "state" / "journal.sqlite")
    (options,) = db.execute("SELECT options FROM runs WHERE id=?", (run_id,)).fetchone()
    db.close()
    assert json.loads(options) == {"site_dir": str(site.parent)}


def test_an_oversized_site_file_is_refused(tmp_path: Path, drboot: Invoke) -> None:
    big = SITE + b"#" * (MAX_SITE_BYTES + 1 - len(SITE)) + b"\n"
    path = tmp_path / "big.yaml"
    path.write_bytes(big)
    res = drboot("validate", str(path))
    assert res.exit_code == 2, res.output
    assert "larger than 1 MiB" in res.output

    fifo, writer = _fifo(tmp_path, b"#" * (2 * MAX_SITE_BYTES))
    res = drboot("-o", "json", "restore", str(fifo))
    writer.join(timeout=10)
    assert res.exit_code == 2, res.output
    assert "larger than 1 MiB" in json.loads(res.output)["error"]
    assert not (tmp_path / "state" / "runs").exists() or not any(
        (tmp_path / "state" / "runs").iterdir()
    )


def test_exactly_the_cap_is_accepted(tmp_path: Path, drboot: Invoke) -> None:
    path = tmp_path / "full.yaml"
    path.write_bytes(SITE + b"\n" + b"#" * (MAX_SITE_BYTES - len(SITE) - 1))
    assert path.stat().st_size == MAX_SITE_BYTES
    res = drboot("validate", str(path))
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "site file not found"),
        (lambda p: p.write_bytes(b"name: \xff\n"), "not UTF-8"),
    ],
)
def test_unreadable_site_files_are_usage_errors(
    tmp_path: Path, drboot: Invoke, make: Callable[[Path], Any], message: str
) -> None:
    path = tmp_path / "x.yaml"
    make(path)
    res = drboot("validate", str(path))
    assert res.exit_code == 2, res.output
    assert message in res.output
