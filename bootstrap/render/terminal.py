"""The live terminal view (rich): the step list, a spinner, elapsed time, the current sub-task.

The only module with colour. When stdout is not a terminal it prints plain
lines, one per event that matters, each naming its unit.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
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


class TerminalRenderer:
    """Renders events live; call ``close()`` at the end of the run."""

    def __init__(self, stream: TextIO | None = None, *, live: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live_enabled = self.stream.isatty() if live is None else live
        self.rows: dict[str, _Row] = {}
        self._live: Any = None
        self._console: Any = None

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
        row = self.rows.get(event.step or "")
        if row is not None:
            now = time.monotonic()
            if event.kind == "step.started":
                row.status, row.started, row.current = "running", now, event.message
            elif event.kind in ("step.progress", "step.change", "step.noop", "step.retry"):
                row.current = event.line() if event.target else event.message
            elif event.kind == "step.done":
                row.status, row.ended, row.current = "done", now, event.message
            elif event.kind == "step.skipped":
                row.status, row.current = "skipped", event.message
            elif event.kind == "step.failed":
                row.status, row.ended, row.current = "failed", now, event.message
        if self._live is not None:
            self._live.update(self._table())
        elif event.kind not in ("step.progress",) or event.target:
            self._print(self._plain(event))
        if event.kind == "run.finished":
            self.close()
            colour = "green" if event.data.get("exit_code") == 0 else "red"
            self._print(
                f"[{colour}]run {event.run_id} {event.message}[/] "
                f"in {event.data.get('seconds', 0):.1f}s"
            )

    def _plain(self, event: Event) -> str:
        kind = event.kind.split(".", 1)[-1]
        from rich.markup import escape

        return f"[dim]{kind:>8}[/] {escape(event.line())}"

    def _print(self, text: str) -> None:
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self.stream)
        self._console.print(text, highlight=False)

    def close(self) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.stop()
            self._live = None
