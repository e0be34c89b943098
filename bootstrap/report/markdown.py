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
        f"- provider: {report['provider']}; reconciler: {report['reconciler']}"
        + (f"; repo rendered with {report['renderer']}" if report.get("renderer") else ""),
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
    if report.get("hosts"):
        lines += ["", "## Hosts", "",
                  "| host | country | fdatasync p99 (fio) | CPU steal | CPU throughput |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for name, h in sorted(report["hosts"].items()):
            d, c = h.get("disk"), h.get("cpu")
            disk = f"{d['p99_ms']:.2f} ms (max {d['threshold_ms']:g})" if d else "-"
            if sd := h.get("disk_sustained"):
                disk += (
                    f"; {sd['seconds']} s sustained: p99 {sd['p99_ms']:.2f} ms, "
                    f"max {sd['max_ms']:.2f} ms, {sd['write_kib_s']:.0f} KiB/s"
                )
            steal = f"{c['steal_percent']:.1f}% (max {c['max_steal_percent']:g}%)" if c else "-"
            thr = (
                f"{c['single_ratio']:.2f} of 1 core, {c['all_ratio']:.2f} of {c['cores']} "
                f"(min {c['min_throughput_ratio']:g})"
                if c
                else "-"
            )
            country = h.get("country") or "unknown"
            lines.append(f"| {_cell(name)} | {country} | {disk} | {steal} | {thr} |")
    repo = report.get("repo_location")
    if repo:
        allowed = ", ".join(repo["allowed"]) or "any (no sovereignty list)"
        lines += [
            "",
            f"Config repo on {_cell(repo['host'])}, in {repo['country'] or 'an unknown country'}; "
            f"allowed countries: {allowed}.",
        ]
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
