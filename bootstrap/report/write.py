"""Write a report in the chosen formats, atomically.

Why it exists: the report step and any later ``drboot report RUN`` put report.json /
report.md / report.junit.xml / report.html on disk the same way (tmp -> fsync -> rename;
0644, reports hold no secrets). Reading the journal is the caller's business (the report
knows records, not the engine).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bootstrap.fsutil import write_atomic
from bootstrap.report import html, junit, markdown

FILES = {
    "json": "report.json",
    "markdown": "report.md",
    "junit": "report.junit.xml",
    "html": "report.html",
}
FORMATS = tuple(FILES)


def render(report: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report, indent=2, sort_keys=False) + "\n"
    if fmt == "markdown":
        return markdown.render(report)
    if fmt == "junit":
        return junit.render(report)
    if fmt == "html":
        return html.render(report)
    raise ValueError(f"unknown report format {fmt!r}")


def write(report: dict[str, Any], directory: Path, formats: Iterable[str]) -> list[Path]:
    """Write each format into ``directory``; returns the paths written."""
    return [
        write_atomic(Path(directory) / FILES[fmt], render(report, fmt), mode=0o644)
        for fmt in dict.fromkeys(formats)
    ]
