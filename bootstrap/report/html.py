"""The report as one self-contained HTML page, with the timeline picture embedded.

Why it exists: a drill's report is read by people who were not there, often from a mail
attachment or a CI artifact with no network. So the page carries everything inside it:
inline CSS, the timeline PNG as a ``data:`` URI, no script, and a Content-Security-Policy
that forbids loading anything from elsewhere. Every value from the journal is escaped.
"""

from __future__ import annotations

import base64
from html import escape
from typing import Any

from bootstrap.report import timeline
from bootstrap.report.markdown import secs

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;color:#212121}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #ddd;padding:.2em .5em;
text-align:left;vertical-align:top}th{background:#f5f5f5}code{font-size:.95em}
.ok{color:#2e7d32;font-weight:600}.bad{color:#c62828;font-weight:600}.warn{color:#e65100}
.lab{background:#fff3e0;border:1px solid #ffb74d;padding:.5em 1em}
img{max-width:100%;border:1px solid #eee}
"""


def _e(value: object) -> str:
    return escape(str(value if value is not None else ""), quote=True)


def _table(head: list[str], rows: list[list[str]]) -> str:
    """Cells in ``rows`` are HTML already (escaped by the caller)."""
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    thead = f"<thead><tr>{th}</tr></thead>" if any(head) else ""
    return f"<table>{thead}<tbody>{body}</tbody></table>"


def _verdict(rto: dict[str, Any]) -> str:
    if rto["met"] is None:
        return '<span class="bad">not measured</span> (the apps never all became ' \
               "Synced+Healthy in this run)"  # fmt: skip
    cls, word = ("ok", "met") if rto["met"] else ("bad", "MISSED")
    return (
        f'<span class="{cls}">{word}</span>: {_e(secs(rto["seconds"]))} of wall time against '
        f"an objective of {_e(secs(rto['objective_seconds']))}"
    )


def _rto(rto: dict[str, Any]) -> str:
    lines = [f"<p>RTO (run start to every app Synced+Healthy): {_verdict(rto)}.</p>"]
    if rto.get("active_seconds") is not None:
        lines.append(
            f"<p>Wall time from the first start: {_e(secs(rto['wall_seconds']))}; time drboot "
            f"was actually running: {_e(secs(rto['active_seconds']))} over "
            f"{_e(rto['attempts'])} attempt(s). The objective is checked against the "
            f"{_e(rto['checked_against'])} time: it is what the business feels.</p>"
        )
    return "".join(lines)


def _picture(report: dict[str, Any]) -> str:
    png = timeline.render_png(report)
    if png is None:
        return "<p>No step started: nothing to draw.</p>"
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<img id="timeline" alt="timeline of the steps and of each application in the wait" '
        f'src="data:image/png;base64,{data}">'
    )


def _steps(report: dict[str, Any]) -> str:
    rows = []
    for s in report["steps"]:
        cls = {"failed": "bad", "done": "ok"}.get(s["status"], "")
        rows.append([f'<span class="{cls}">{_e(s["status"])}</span>', _e(s["id"]),
                     _e(s["attempts"]), _e(secs(s["seconds"])),
                     _e((s["error"] or s["summary"] or "")[:300])])  # fmt: skip
    return _table(["status", "step", "attempts", "time", "summary"], rows)


def _repo(report: dict[str, Any]) -> str:
    repo = report.get("config_repo")
    if not repo:
        return "<p>Not recorded.</p>"
    synced = repo.get("synced_commit")
    state = " (escrow-verified)" if repo.get("synced_commit_verified") else " (not verified)"
    rows = [
        ["URL", f"<code>{_e(repo['url'])}</code>"],
        ["revision / path", f"{_e(repo['revision'])} / {_e(repo['path'])}"],
        ["commit checked in preflight", f"<code>{_e(repo.get('preflight_commit') or '-')}</code>"],
        ["commit that became synced",
         f"<code>{_e(synced)}</code>{state}" if synced else "-"],
    ]  # fmt: skip
    where = report.get("repo_location")
    if where:
        allowed = ", ".join(where["allowed"]) or "any"
        rows.append(["location", f"{_e(where['host'])} in {_e(where['country'] or 'unknown')}"
                                 f" (allowed: {_e(allowed)})"])  # fmt: skip
    return _table(["", ""], rows)


def _keys(report: dict[str, Any]) -> str:
    keys = report.get("escrow_keys")
    if not keys:
        return "<p>Not recorded.</p>"
    rows = [[f"<code>{_e(k['fingerprint'])}</code>", _e(k["label"]), _e(k["not_before"])]
            for k in keys["restored"]]  # fmt: skip
    out = [_table(["restored key (public fingerprint)", "label", "notBefore"], rows)]
    if keys.get("escrow_fingerprints"):
        fps = ", ".join(f"<code>{_e(f)}</code>" for f in keys["escrow_fingerprints"])
        out.append(f"<p>Escrow fingerprints checked in preflight: {fps}.</p>")
    if keys.get("serving_fingerprint"):
        out.append(f"<p>The controller serves <code>{_e(keys['serving_fingerprint'])}</code>.</p>")
    if keys.get("newest_age_days") is not None and keys.get("renewal_period_days"):
        cls = "warn" if keys.get("renewal_due") else ""
        out.append(
            f'<p class="{cls}">Newest key: {_e(keys["newest_age_days"])} days old at restore; '
            f"renewal period {_e(keys['renewal_period_days'])} days.</p>"
        )
    return "".join(out)


def _hosts(report: dict[str, Any]) -> str:
    hosts = report.get("hosts") or {}
    if not hosts:
        return "<p>No gate figures recorded.</p>"
    rows = []
    for name, h in sorted(hosts.items()):
        d, c, sd = h.get("disk"), h.get("cpu"), h.get("disk_sustained")
        disk = (f"p50 {d['p50_ms']:.2f} / p99 {d['p99_ms']:.2f} / p99.9 {d['p999_ms']:.2f} ms, "
                f"{d['syncs']} syncs (max p99 {d['threshold_ms']:g} ms)") if d else "-"  # fmt: skip
        if sd:
            disk += (f"; {sd['seconds']} s sustained: p99 {sd['p99_ms']:.2f} ms, "
                     f"{sd['write_kib_s']:.0f} KiB/s")  # fmt: skip
        cpu = (f"steal {c['steal_percent']:.1f}%, {c['all_ratio']:.2f} of {c['cores']} cores"
               if c else "-")  # fmt: skip
        ok = all(x.get("ok", True) for x in (d or {}, c or {}, sd or {}))
        cls = "ok" if ok else "bad"
        rows.append([_e(name), _e(h.get("country") or "unknown"),
                     f'<span class="{cls}">{_e(disk)}</span>', _e(cpu)])  # fmt: skip
    return _table(["host", "country", "fdatasync (fio)", "CPU"], rows)


def _versions(report: dict[str, Any]) -> str:
    v = report.get("versions") or {}
    k3s, rec = v.get("k3s"), v.get("reconciler")
    k3s_text = "-"
    if k3s:
        checked = "checked on the hosts" if k3s["checked_on_hosts"] else "not checked on the hosts"
        k3s_text = f"{k3s['version']} ({checked})"
    rows = [
        ["k3s", _e(k3s_text)],
        ["reconciler", _e(f"{rec['name']} {rec['version']}" if rec else "-")],
        ["Sealed Secrets", _e(v.get("sealed_secrets") or "-")],
    ]
    if report.get("renderer"):
        rows.append(["repo rendered with", _e(report["renderer"])])
    return _table(["component", "version"], rows)


def _apps(report: dict[str, Any]) -> str:
    if not report["apps"]:
        return "<p>None recorded.</p>"
    rows = [[_e(n), _e(a.get("sync")), _e(a.get("health")), _e(a.get("revision") or "-")]
            for n, a in sorted(report["apps"].items())]  # fmt: skip
    return _table(["app", "sync", "health", "revision"], rows)


def _overrides(report: dict[str, Any]) -> str:
    items = report.get("overrides") or []
    if not items:
        return "<p>None: every check was applied.</p>"
    rows = [[_e(o["option"]), _e(o["reason"]), _e(", ".join(o["used_on"]) or "not needed")]
            for o in items]  # fmt: skip
    return _table(["override", "reason", "used on"], rows)


def _teardown(report: dict[str, Any]) -> str:
    t = report.get("teardown")
    if t is None:
        return ""
    if t["status"] != "done":
        body = f'<p class="bad">teardown {_e(t["status"])}: {_e(t.get("error") or "")}</p>'
    elif t["destroyed"]:
        body = f"<p>Destroyed: {_e(', '.join(t['destroyed']))}.</p>"
    elif t["changed"]:
        body = "<p>k3s removed from: " + _e(", ".join(sorted(t["changed"]))) + ".</p>"
    else:
        body = "<p>Nothing was left to tear down.</p>"
    return "<h2>Teardown</h2>" + body


def render(report: dict[str, Any]) -> str:
    title = f"drboot {report['pipeline']} report: {report['site']}"
    warnings = report["warnings"]
    parts = [
        f"<h1>{_e(title)}</h1>",
        f"<p>{_e(report['description'])}</p>" if report.get("description") else "",
        f"<p>Run <code>{_e(report['run_id'])}</code>: <b>{_e(report['outcome'])}</b>; started "
        f"{_e(report['started_at'])}; report generated {_e(report['generated_at'])}; provider "
        f"{_e(report['provider'])}; reconciler {_e(report['reconciler'])}.</p>",
        _rto(report["rto"]),
        "<h2>Timeline</h2>",
        _picture(report),
        "<h2>Steps</h2>",
        _steps(report),
        "<h2>Config repo</h2>",
        _repo(report),
        "<h2>Applications</h2>",
        _apps(report),
        "<h2>Escrow keys</h2>",
        _keys(report),
        "<h2>Hosts (disk and CPU gates)</h2>",
        _hosts(report),
        "<h2>Versions installed</h2>",
        _versions(report),
        "<h2>Overrides</h2>",
        _overrides(report),
        "<h2>Warnings</h2>",
        "<ul>" + "".join(f'<li class="warn">{_e(w)}</li>' for w in warnings) + "</ul>"
        if warnings else "<p>None.</p>",
        _teardown(report),
    ]
    if report["lab_standins"]:
        items = "".join(f"<li>{_e(s)}</li>" for s in report["lab_standins"])
        parts.append(f'<h2>LAB STAND-INS</h2><div class="lab"><p>This was a lab run. '
                     f"Simulated parts:</p><ul>{items}</ul></div>")  # fmt: skip
    if report["decisions"]:
        rows = [[_e(d["at"]), _e(d["step"]), _e(d["what"]), _e(d["target"] or "")]
                for d in report["decisions"]]  # fmt: skip
        parts += ["<h2>Decisions (audit log)</h2>", _table(["at", "step", "what", "on"], rows)]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(p for p in parts if p)
        + "\n</body></html>\n"
    )
