"""The report as Markdown: for people (a drill's write-up, a ticket, a chat message).

Why it exists: the JSON report is for machines; this renders the same dict as a short page
with the RTO verdict first, then the steps, apps, warnings and what was a LAB STAND-IN.
"""

from __future__ import annotations

from typing import Any


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    total = round(value)
    m, s = divmod(total, 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{value:.1f}s")


def _cell(text: object) -> str:
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def render(report: dict[str, Any]) -> str:
    rto = report["rto"]
    if rto["met"] is None:
        verdict = "not measured (the apps never all became Synced+Healthy in this run)"
    else:
        verdict = (
            f"**{'met' if rto['met'] else 'MISSED'}**: {_secs(rto['seconds'])} "
            f"against an objective of {_secs(rto['objective_seconds'])}"
        )
    lines = [f"# drboot {report['pipeline']} report: {report['site']}", ""]
    if report.get("description"):
        lines += [_cell(report["description"]), ""]
    lines += [
        f"- run: `{report['run_id']}` ({report['outcome']})",
        f"- started: {report['started_at']}; report generated: {report['generated_at']}",
        f"- provider: {report['provider']}; reconciler: {report['reconciler']}",
        f"- RTO (run start to every app Synced+Healthy): {verdict}",
        "",
        "## Steps",
        "",
        "| step | status | attempts | time | summary |",
        "|---|---|---|---|---|",
    ]
    for s in report["steps"]:
        summary = s["error"] or s["summary"]
        lines.append(
            f"| {s['id']} | {s['status']} | {s['attempts']} | {_secs(s['seconds'])} | "
            f"{_cell(summary)[:200]} |"
        )
    conv = report.get("converged")
    if conv and conv.get("commit"):
        state = "verified" if conv.get("verified") else "NOT verified"
        lines += ["", f"Converged to commit `{conv['commit'][:12]}` ({state}: every SealedSecret "
                  "opens with the escrowed keys)." if conv.get("verified") else
                  f"Converged to commit `{conv['commit'][:12]}` ({state})."]  # fmt: skip
        if conv.get("strays"):
            lines.append("Apps not declared in Git (strays): " + ", ".join(conv["strays"]))
    if report["apps"]:
        lines += ["", "## Applications", "", "| app | sync | health |", "|---|---|---|"]
        for name, a in sorted(report["apps"].items()):
            lines.append(f"| {_cell(name)} | {a.get('sync')} | {a.get('health')} |")
    lines += ["", "## Warnings", ""]
    lines += [f"- {_cell(w)}" for w in report["warnings"]] or ["- none"]
    if report["decisions"]:
        lines += ["", "## Decisions (audit log)", ""]
        for d in report["decisions"]:
            target = f" ({d['target']})" if d["target"] else ""
            lines.append(f"- {d['at']} {d['step']}: {_cell(d['what'])}{target}")
    if report["lab_standins"]:
        lines += ["", "## LAB STAND-INS", "", "This was a lab run. Simulated parts:", ""]
        lines += [f"- {_cell(s)}" for s in report["lab_standins"]]
    return "\n".join(lines) + "\n"
