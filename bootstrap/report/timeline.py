"""The timeline picture: a Gantt of the steps and, inside the wait, of each application.

Why it exists: "where did the hour go?" is answered at a glance by a picture, not a table.
The top panel draws every step from its start to its end (coloured by outcome), shades the
time drboot was not running (between a failed or killed attempt and the resume), and marks
the RTO's end (every app Synced+Healthy) and the objective. The bottom panel draws each
application from the start of the wait until it became Synced+Healthy, then ready until
the end of the wait. It is a PNG drawn with matplotlib's Agg renderer (no display, no
pyplot global state), returned as bytes for the HTML page to embed.
"""

from __future__ import annotations

import io
from typing import Any

STATUS_COLOURS = {
    "done": "#2e7d32",
    "failed": "#c62828",
    "running": "#1565c0",
    "skipped": "#9e9e9e",
    "pending": "#9e9e9e",
}
WAITING, READY, IDLE = "#f9a825", "#66bb6a", "#eeeeee"
MAX_APPS = 40  # more would not be readable; the rest are counted in the title


def _label(name: str, width: int = 26) -> str:
    """A label that fits the fixed left margin (long app names are cut in the middle)."""
    return name if len(name) <= width else f"{name[: width // 2 - 1]}…{name[-(width // 2):]}"


def _gaps(spans: list[list[float]]) -> list[tuple[float, float]]:
    ordered = sorted((float(a), float(b)) for a, b in spans)
    return [(ordered[i][1], ordered[i + 1][0]) for i in range(len(ordered) - 1)
            if ordered[i + 1][0] > ordered[i][1]]  # fmt: skip


def render_png(report: dict[str, Any]) -> bytes | None:
    """The timeline as PNG bytes (None when no step has started: nothing to draw)."""
    tl = report.get("timeline") or {}
    bars: list[dict[str, Any]] = tl.get("steps") or []
    if not bars:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t0 = min(float(b["start"]) for b in bars)
    for a, _ in tl.get("attempts") or []:
        t0 = min(t0, float(a))
    apps: list[dict[str, Any]] = tl.get("apps") or []
    shown = apps[:MAX_APPS]
    rows_top, rows_bottom = len(bars), len(shown)
    # Fixed margins in inches (a layout engine would draw the figure twice to find them).
    top_in, gap_in, bottom_in = 0.35, 0.5, 0.55
    top_h, bottom_h = 0.28 * max(rows_top, 1), (0.24 * max(rows_bottom, 1) if shown else 0.0)
    height = top_in + top_h + (gap_in + bottom_h if shown else 0.0) + bottom_in
    fig = Figure(figsize=(10, height), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.18, right=0.98, top=1 - top_in / height, bottom=bottom_in / height,
                        hspace=gap_in / ((top_h + bottom_h) / 2) if shown else 0.0)  # fmt: skip
    if shown:
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[top_h, bottom_h])
    else:
        top, bottom = fig.subplots(1, 1), None

    gaps = _gaps(tl.get("attempts") or [])
    for lo, hi in gaps:
        for ax in (top, bottom):
            if ax is not None:
                ax.axvspan(lo - t0, hi - t0, color=IDLE, zorder=0)
    labels = []
    for i, b in enumerate(bars):
        start, end = float(b["start"]) - t0, float(b["end"]) - t0
        top.barh(i, max(end - start, 0.2), left=start, height=0.6,
                 color=STATUS_COLOURS.get(str(b["status"]), "#616161"))  # fmt: skip
        labels.append(_label(str(b["id"])))
    top.set_yticks(range(rows_top), labels, fontsize=8)
    top.invert_yaxis()
    rto = report.get("rto") or {}
    ready_at = tl.get("ready_at")
    for ax in (top, bottom):
        if ax is None:
            continue
        if ready_at is not None:
            ax.axvline(float(ready_at) - t0, color="#1b5e20", linestyle="--", linewidth=1)
        objective = rto.get("objective_seconds")
        if objective:
            run_start = float((tl.get("attempts") or [[t0]])[0][0])
            ax.axvline(run_start + float(objective) - t0, color="#b71c1c", linestyle=":",
                       linewidth=1)  # fmt: skip
        ax.grid(axis="x", color="#dddddd", linewidth=0.5)
    title = f"{report.get('pipeline')} {report.get('site')}: steps"
    if rto.get("seconds") is not None:
        title += f" (RTO {rto['seconds']:.0f} s, dashed; objective dotted)"
    if gaps:
        title += "; grey: drboot not running"
    top.set_title(title, fontsize=10, loc="left")

    if bottom is not None:
        wait_start = float(tl.get("wait_started") or t0)
        end = float(ready_at) if ready_at is not None else max(float(b["end"]) for b in bars)
        for i, a in enumerate(shown):
            since = a.get("ready_since")
            turned = float(since) if since is not None else end
            bottom.barh(i, max(turned - wait_start, 0.2), left=wait_start - t0, height=0.6,
                        color=WAITING)  # fmt: skip
            if since is not None and end > turned:
                bottom.barh(i, end - turned, left=turned - t0, height=0.6, color=READY)
        bottom.set_yticks(range(rows_bottom), [_label(str(a["name"])) for a in shown], fontsize=8)
        bottom.invert_yaxis()
        more = f" (first {MAX_APPS} of {len(apps)})" if len(apps) > MAX_APPS else ""
        bottom.set_title(
            f"applications in the wait{more}: waiting (amber), Synced+Healthy (green)",
            fontsize=10, loc="left",
        )  # fmt: skip
        bottom.set_xlabel("seconds since the run started", fontsize=9)
    else:
        top.set_xlabel("seconds since the run started", fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()
