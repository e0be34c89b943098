"""The report as Markdown: for people (a drill's write-up, a ticket, a chat message).

Why it exists: the JSON report is for machines; this renders the same dict as a short page
with the RTO verdict first, then the steps, apps, warnings and what was a LAB STAND-IN.
"""

from __future__ import annotations

from typing import Any


def secs(value: float | None) -> str:
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
            f"**{'met' if rto['met'] else 'MISSED'}**: {secs(rto['seconds'])} "
            f"against an objective of {secs(rto['objective_seconds'])}"
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
    ]
    if rto.get("active_seconds") is not None:
        lines.append(
            f"- wall time from the first start {secs(rto['wall_seconds'])}; drboot was running "
            f"{secs(rto['active_seconds'])} of it over {rto['attempts']} attempt(s); the "
            f"objective is checked against the {rto['checked_against']} time"
        )
    lines += [
        "",
        "## Steps",
        "",
        "| step | status | attempts | time | summary |",
        "|---|---|---|---|---|",
    ]
    for s in report["steps"]:
        summary = s["error"] or s["summary"]
        lines.append(
            f"| {s['id']} | {s['status']} | {s['attempts']} | {secs(s['seconds'])} | "
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
    lines += _contents(report)
    lines += ["", "## Warnings", ""]
    lines += [f"- {_cell(w)}" for w in report["warnings"]] or ["- none"]
    if report["decisions"]:
        lines += ["", "## Decisions (audit log)", ""]
        for d in report["decisions"]:
            target = f" ({d['target']})" if d["target"] else ""
            lines.append(f"- {d['at']} {d['step']}: {_cell(d['what'])}{target}")
    if (t := report.get("teardown")) is not None:
        lines += ["", "## Teardown", ""]
        if t["status"] != "done":
            lines.append(f"- teardown {t['status']}: {_cell(t.get('error') or '')}")
        elif t["destroyed"]:
            lines.append("- destroyed: " + ", ".join(t["destroyed"]))
        elif t["changed"]:
            lines.append("- k3s removed from: " + ", ".join(sorted(t["changed"])))
        else:
            lines.append("- nothing was left to tear down")
    if report["lab_standins"]:
        lines += ["", "## LAB STAND-INS", "", "This was a lab run. Simulated parts:", ""]
        lines += [f"- {_cell(s)}" for s in report["lab_standins"]]
    return "\n".join(lines) + "\n"


def _contents(report: dict[str, Any]) -> list[str]:
    """Config repo, escrow keys, versions and overrides (the sections every format has)."""
    lines: list[str] = []
    if repo := report.get("config_repo"):
        synced = repo.get("synced_commit")
        lines += ["", "## Config repo", "",
                  f"- `{_cell(repo['url'])}` {_cell(repo['revision'])}, path {_cell(repo['path'])}",
                  f"- commit checked in preflight: `{repo.get('preflight_commit') or '-'}`",
                  f"- commit that became synced: `{synced}`"
                  + (" (escrow-verified)" if repo.get("synced_commit_verified") else "")
                  if synced else "- commit that became synced: -"]  # fmt: skip
    if keys := report.get("escrow_keys"):
        lines += ["", "## Escrow keys (public fingerprints)", ""]
        lines += [f"- restored `{k['fingerprint']}` ({k['label']}, notBefore {k['not_before']})"
                  for k in keys["restored"]]  # fmt: skip
        if keys.get("escrow_fingerprints"):
            lines.append("- checked in preflight: " + ", ".join(
                f"`{f}`" for f in keys["escrow_fingerprints"]))  # fmt: skip
        if keys.get("serving_fingerprint"):
            lines.append(f"- the controller serves `{keys['serving_fingerprint']}`")
        if keys.get("newest_age_days") is not None and keys.get("renewal_period_days"):
            lines.append(f"- newest key {keys['newest_age_days']} days old at restore; renewal "
                         f"period {keys['renewal_period_days']} days")  # fmt: skip
    v = report.get("versions") or {}
    if any(v.values()):
        k3s, rec = v.get("k3s"), v.get("reconciler")
        lines += ["", "## Versions installed", ""]
        if k3s:
            how = "checked on the hosts" if k3s["checked_on_hosts"] else "not checked on the hosts"
            lines.append(f"- k3s {k3s['version']} ({how})")
        if rec:
            lines.append(f"- {rec['name']} {rec['version']}")
        if v.get("sealed_secrets"):
            lines.append(f"- Sealed Secrets {v['sealed_secrets']}")
    lines += ["", "## Overrides", ""]
    lines += [f"- {o['option']}: {_cell(o['reason'])}; used on "
              f"{_cell(', '.join(o['used_on'])) or 'nothing (not needed)'}"
              for o in report.get("overrides") or []] or ["- none: every check was applied"]
    return lines
