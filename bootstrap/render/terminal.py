"""The live terminal view (rich): the step list, a spinner, elapsed time, the current sub-task.

The only module with colour. When the stream is not a terminal it prints plain
lines, one per event that matters, each naming its unit: a change is printed once,
as its ``change`` line; the ``done`` line then says only how many changes and how
long. At the end of a run, in both views: the outcome, then the RTO, where the
report is, its warnings and which parts were lab stand-ins (read from the report
step's ``report`` event).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from bootstrap.events import Event

ICONS = {
    "pending": "[dim]·[/]",
    "running": "[cyan]…[/]",
    "done": "[green]✓[/]",
    "skipped": "[green]↷[/]",
    "failed": "[red]✗[/]",
}


@dataclass
class _Row:
    step: str
    title: str
    status: str = "pending"
    started: float | None = None
    ended: float | None = None
    current: str = ""
    changes: int = 0
    noops: int = 0


class TerminalRenderer:
    """Renders events live; call ``close()`` at the end of the run."""

    def __init__(self, stream: TextIO | None = None, *, live: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live_enabled = self.stream.isatty() if live is None else live
        self.rows: dict[str, _Row] = {}
        self._live: Any = None
        self._console: Any = None
        self._report: dict[str, Any] | None = None

    def _start(self, steps: list[str]) -> None:
        from rich.console import Console
        from rich.live import Live

        self._console = Console(file=self.stream)
        for sid in steps:
            self.rows.setdefault(sid, _Row(sid, sid))
        if self.live_enabled:
            self._live = Live(
                self._table(), console=self._console, refresh_per_second=4, transient=False
            )
            self._live.start()

    def _table(self) -> Any:
        from rich.spinner import Spinner
        from rich.table import Table

        table = Table.grid(padding=(0, 1))
        now = time.monotonic()
        for row in self.rows.values():
            icon: Any = Spinner("dots") if row.status == "running" else ICONS[row.status]
            elapsed = ""
            if row.started is not None:
                elapsed = f"{(row.ended or now) - row.started:6.1f}s"
            table.add_row(icon, row.step, elapsed, f"[dim]{row.current}[/]")
        return table

    def __call__(self, event: Event) -> None:
        if event.kind == "run.started":
            self._start(list(event.data.get("steps", [])))
            self._print(f"[bold]run {event.run_id}[/]: {event.message}")
            return
        if isinstance(event.data.get("report"), dict):
            self._report = event.data["report"]
        row = self.rows.get(event.step or "")
        if row is not None:
            now = time.monotonic()
            if event.kind == "step.started":
                row.status, row.started, row.current = "running", now, event.message
                row.changes = row.noops = 0
            elif event.kind in ("step.progress", "step.change", "step.noop", "step.retry"):
                row.current = event.line() if event.target else event.message
                row.changes += event.kind == "step.change"
                row.noops += event.kind == "step.noop"
            elif event.kind == "step.done":
                row.status, row.ended, row.current = "done", now, event.message
            elif event.kind == "step.skipped":
                row.status, row.current = "skipped", event.message
            elif event.kind == "step.failed":
                row.status, row.ended, row.current = "failed", now, event.message
        if self._live is not None:
            self._live.update(self._table())
        elif event.kind != "run.finished" and (event.kind != "step.progress" or event.target):
            self._print(self._plain(event, row))
        if event.kind == "run.finished":
            self.close()
            colour = "green" if event.data.get("exit_code") == 0 else "red"
            self._print(
                f"[{colour}]run {event.run_id} {event.message}[/] "
                f"in {event.data.get('seconds', 0):.1f}s"
            )
            if self._report is not None:
                for line in summary_lines(self._report):
                    self._print(line)

    def _plain(self, event: Event, row: _Row | None) -> str:
        kind = event.kind.split(".", 1)[-1]
        from rich.markup import escape

        text = event.line()
        if event.kind == "step.done" and row is not None:
            # the changes were each printed as a ``change`` line: do not repeat them
            text = f"step {row.step}: {_tally(row)}"
        return f"[dim]{kind:>8}[/] {escape(text)}"

    def _print(self, text: str) -> None:
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self.stream)
        self._console.print(text, highlight=False, soft_wrap=True)  # a pipe gets whole lines

    def close(self) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.stop()
            self._live = None


def _tally(row: _Row) -> str:
    took = (
        f" in {row.ended - row.started:.1f}s"
        if row.started is not None and row.ended is not None
        else ""
    )
    if row.changes:
        return f"{row.changes} change(s){took}"
    return f"no change{took}"


def _duration(seconds: float) -> str:
    """As the report writes it: 45.2s, 2m31s, 1h00m00s."""
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The end of a run in words (rich markup): RTO, report files, warnings, lab stand-ins."""
    from rich.markup import escape

    lines: list[str] = []
    seconds, objective = report.get("rto_seconds"), report.get("rto_objective_seconds") or 0.0
    if seconds is None:
        lines.append("RTO: not reached (not every app became Synced+Healthy in this run)")
    else:
        verdict = "[green]met[/]" if report.get("rto_met") else "[red]MISSED[/]"
        lines.append(
            f"RTO {_duration(float(seconds))} against an objective of "
            f"{_duration(float(objective))}: {verdict}"
        )
    files = [str(f) for f in report.get("files", [])]
    if files:
        folder = str(Path(files[0]).parent)
        names = ", ".join(Path(f).name if str(Path(f).parent) == folder else f for f in files)
        lines.append(escape(f"report: {folder}/ ({names})"))
    for warning in report.get("warnings", []):
        lines.append(escape(f"warning: {warning}"))
    standins = [str(s) for s in report.get("lab_standins", [])]
    if standins:
        lines.append("[yellow]lab run: these parts were LAB STAND-INS, not the real thing:[/]")
        lines += [escape(f"  - {s}") for s in standins]
    return lines
