"""The combined report of a rollout: one JSON and one Markdown file for all its sites.

Why a module of its own: each site already has its own report (``report.json`` /
``report.md`` in its run folder, or its ``report.directory``); the rollout's report is the
page an operator reads first: per site the result, the RTO against its objective, the step
that failed and its error, what to do next, and where that site's own report is. For a site
that failed, its report is written from the journal (``drboot report RUN_ID``, in a child
process like the run itself), so every site has one.

Everything here is read from the journal and the rollout's own progress records; the files
are written atomically (tmp, fsync, rename), 0600 like every report.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootstrap.fsutil import write_atomic
from bootstrap.rollout import RolloutRequest, SiteProgress, exit_code
from bootstrap.runs import StateDir

REPORT_TIMEOUT = 300.0
RESULT_WORDS = {
    "ok": "ok",
    "skipped": "done, skipped",
    "failed": "FAILED",
    "interrupted": "INTERRUPTED",
    "locked": "LOCKED",
    "waiting": "not started",
    "running": "running",
}


@dataclass(frozen=True)
class RolloutReport:
    data: dict[str, Any]
    files: list[Path]


def build(
    rollout_id: str,
    req: RolloutRequest,
    sites: list[SiteProgress],
    started: float,
    *,
    interrupted: bool = False,
) -> dict[str, Any]:
    """The combined report's data (each site's RTO and report files read from the journal)."""
    rows = [_site(req, s) for s in sites]
    counts: dict[str, int] = {}
    for s in sites:
        counts[s.state] = counts.get(s.state, 0) + 1
    return {
        "rollout": rollout_id,
        "started": started,
        "ended": time.time(),
        "parallel": req.parallel,
        "state_dir": str(req.state.root),
        "exit_code": 130 if interrupted else exit_code(sites),
        "summary": {"sites": len(sites), **counts},
        "sites": rows,
    }


def _site(req: RolloutRequest, site: SiteProgress) -> dict[str, Any]:
    out = site.to_json()
    out["result"] = RESULT_WORDS.get(site.state, site.state)
    rto = _reported(req.state, site.run_id)
    if site.run_id and not rto.get("files") and site.state not in ("running", "waiting"):
        rto["files"] = _write_site_report(req, site.run_id)
    out["rto_seconds"] = rto.get("rto_seconds")
    out["rto_objective_seconds"] = rto.get("rto_objective_seconds")
    out["rto_met"] = rto.get("rto_met")
    out["report"] = rto.get("files") or []
    out["next"] = _next(site)
    return out


def _reported(state: StateDir, run_id: str | None) -> dict[str, Any]:
    """What the run's ``report`` step recorded (RTO, files), if it ran."""
    if run_id is None:
        return {}
    journal = state.journal()
    try:
        row = journal.step(run_id, "report")
    finally:
        journal.close()
    if row is None or row.status != "done":
        return {}
    return dict(row.outputs)


def _write_site_report(req: RolloutRequest, run_id: str) -> list[str]:
    """A failed site's report, written from the journal by ``drboot report RUN_ID``."""
    argv = [sys.executable, *req.program, "--state-dir", str(req.state.root), "-o", "json"]
    argv += ["report", run_id]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=REPORT_TIMEOUT, check=False)
        files = json.loads(done.stdout.decode(errors="replace").strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError, OSError):
        return []
    got = files.get("files") if isinstance(files, dict) else None
    return [str(f) for f in got] if isinstance(got, list) else []


def _next(site: SiteProgress) -> str | None:
    if site.state in ("ok", "skipped"):
        return None
    if site.state == "locked":
        return "wait for the run holding the site, or `drboot status` to see it"
    if site.run_id:
        return (
            "fix the cause, then run the same `drboot rollout` again "
            f"(or `drboot resume {site.run_id}` for this site alone)"
        )
    return "fix the cause, then run the same `drboot rollout` again"


def write(data: dict[str, Any], folder: Path) -> list[Path]:
    """``rollout.json`` and ``rollout.md`` in ``folder`` (atomic, 0600)."""
    return [
        write_atomic(folder / "rollout.json", json.dumps(data, indent=2, default=str) + "\n"),
        write_atomic(folder / "rollout.md", markdown(data)),
    ]


def _secs(value: object) -> str:
    return f"{value:.0f} s" if isinstance(value, int | float) else "-"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ") if text is not None else "-"


def markdown(data: dict[str, Any]) -> str:
    summary = data["summary"]
    parts = ", ".join(f"{v} {k}" for k, v in summary.items() if k != "sites")
    lines = [
        f"# Rollout {data['rollout']}",
        "",
        f"{summary['sites']} sites, at most {data['parallel']} at a time: {parts}. "
        f"Exit code {data['exit_code']}.",
        "",
        "| site | result | action | RTO | objective | failed step | report |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in data["sites"]:
        report = next((f for f in s["report"] if f.endswith(".md")), None) or (
            s["report"][0] if s["report"] else None
        )
        lines.append(
            f"| {_cell(s['site'])} | {_cell(s['result'])} | {_cell(s['action'])} "
            f"| {_secs(s['rto_seconds'])} | {_secs(s['rto_objective_seconds'])} "
            f"| {_cell(s['failed_step'])} | {_cell(report)} |"
        )
    failed = [s for s in data["sites"] if s["next"]]
    if failed:
        lines += ["", "## Sites that did not finish", ""]
        for s in failed:
            lines += [
                f"### {s['site']}: {s['result']}",
                "",
                f"- run: `{s['run_id'] or '-'}`, exit code {s['exit_code']}",
                f"- failed step: `{s['failed_step'] or '-'}`",
                f"- next: {s['next']}",
                f"- drboot's own log of this site: `{s['log'] or '-'}`",
                "",
                "```",
                str(s["error"] or "no error recorded"),
                "```",
                "",
            ]
    return "\n".join(lines).rstrip() + "\n"
