"""The live view of a rollout: a row per site, as a table, as plain lines, or as JSON lines.

Why a module of its own: ``bootstrap.rollout`` reports progress through an observer and
knows nothing of terminals. On a terminal the table is redrawn in place (site, state,
current step, elapsed); on a pipe (a CI log) each change is one plain line; with
``--output json`` each rollout event is one JSON object per line on stdout.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from bootstrap.rollout import RolloutEvent, SiteProgress

_SHOWN = ("rollout.started", "site.started", "site.run", "site.step", "site.finished")


class JsonLinesView:
    """One JSON object per rollout event (the ``tick`` of the loop is not an event)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def __call__(self, event: RolloutEvent) -> None:
        if event.kind == "tick":
            return
        self.stream.write(json.dumps(event.to_dict(), default=str) + "\n")
        self.stream.flush()


def _elapsed(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def _row(site: SiteProgress | dict[str, Any]) -> tuple[str, str, str, str]:
    data = site.to_json() if isinstance(site, SiteProgress) else site
    state = str(data["state"])
    if state == "waiting" and data["action"] == "resume":
        state = f"waiting (resume {data['run_id']})"
    step = data["failed_step"] if state == "failed" else data["step"]
    return str(data["site"]), state, str(step or "-"), _elapsed(data["elapsed"])


class LinesView:
    """A plain line for each change (for a pipe or a CI log)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def __call__(self, event: RolloutEvent) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(event.ts))
        site = event.site
        if event.kind == "rollout.started":
            sites = event.data["sites"]
            self._say(f"{stamp} rollout of {len(sites)} sites, {event.data['parallel']} at a time")
            for s in sites:
                self._say(f"{stamp}   {s['site']}: {s['action']} ({s['why']})")
        elif site is None or event.kind not in _SHOWN:
            return
        elif event.kind == "site.started":
            what = f"resume {site.run_id}" if site.action == "resume" else "restore"
            self._say(f"{stamp} {site.name}: started ({what})")
        elif event.kind == "site.run":
            self._say(f"{stamp} {site.name}: run {site.run_id}")
        elif event.kind == "site.step":
            self._say(f"{stamp} {site.name}: step {site.step} ({_elapsed(site.elapsed)})")
        elif event.kind == "site.finished":
            line = f"{stamp} {site.name}: {site.state}"
            if site.state not in ("ok", "skipped"):
                line += f" at step {site.failed_step or '-'}, exit {site.exit_code}"
                if site.error:
                    line += f": {site.error.splitlines()[0]}"
            self._say(line + f" ({_elapsed(site.elapsed)})")

    def _say(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


class TableView:
    """The table redrawn in place on a terminal, at most twice a second."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.rows: dict[str, SiteProgress | dict[str, Any]] = {}
        self.drawn = 0
        self.last = 0.0

    def __call__(self, event: RolloutEvent) -> None:
        if event.kind == "rollout.started":
            for s in event.data["sites"]:
                self.rows[str(s["site"])] = s
        if event.site is not None:
            self.rows[event.site.name] = event.site
        now = time.monotonic()
        if event.kind == "tick" and now - self.last < 0.5:
            return
        self.last = now
        self._draw()

    def _draw(self) -> None:
        rows = [("SITE", "STATE", "STEP", "ELAPSED"), *(_row(s) for s in self.rows.values())]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        out = []
        if self.drawn:
            out.append(f"\x1b[{self.drawn}F")  # back to the first line of the last drawing
        for r in rows:
            line = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip()
            out.append("\x1b[2K" + line + "\n")
        self.stream.write("".join(out))
        self.stream.flush()
        self.drawn = len(rows)
