"""Write a report in the chosen formats, atomically, and read a run's journal into one.

Why it exists: the report step and any later ``drboot report RUN`` need the same two things:
load a run's rows from the journal, and put report.json / report.md / report.junit.xml on disk
(tmp -> fsync -> rename; 0644, reports hold no secrets).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bootstrap.engine.journal import Journal
from bootstrap.fsutil import write_atomic
from bootstrap.report import junit, markdown, model

FILES = {"json": "report.json", "markdown": "report.md", "junit": "report.junit.xml"}


def render(report: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report, indent=2, sort_keys=False) + "\n"
    if fmt == "markdown":
        return markdown.render(report)
    if fmt == "junit":
        return junit.render(report)
    raise ValueError(f"unknown report format {fmt!r}")


def write(report: dict[str, Any], directory: Path, formats: Iterable[str]) -> list[Path]:
    """Write each format into ``directory``; returns the paths written."""
    return [
        write_atomic(Path(directory) / FILES[fmt], render(report, fmt), mode=0o644)
        for fmt in dict.fromkeys(formats)
    ]


def from_journal(journal_path: Path, run_id: str, ctx: model.Context) -> dict[str, Any]:
    """Build the report of ``run_id`` from the journal file."""
    journal = Journal(journal_path)
    try:
        run = journal.run(run_id)
        if run is None:
            raise KeyError(run_id)
        return model.build(run, journal.steps(run_id), journal.events(run_id), ctx)
    finally:
        journal.close()
