"""The report as data: built from journal rows by a pure function, so it is testable as data.

Why it exists: every renderer (JSON, Markdown, JUnit, HTML) must say the same thing: per-step
timings and outcomes, the RTO measured from the run's start to the moment every app was
Synced+Healthy (the ``ready_at`` the wait-synced step records) against the objective (wall
time; the time drboot was actually running is shown beside it for resumed runs), the config
repo and the commit that became synced, the escrow key fingerprints, fio figures per host,
the versions installed, the overrides and their reasons, the warnings and operator decisions
the run collected, a drill's teardown, the timeline picture's data and, for lab runs, which
parts were LAB STAND-INS rather than the real thing. Everything comes from the journal's
typed step outputs and events: references and timings, never key material.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from bootstrap.outputs import (
    AppsSynced,
    CpuGated,
    DiskGated,
    EscrowChecked,
    K3sInstalled,
    KeysRestored,
    ReconcilerInstalled,
    RepoPointed,
    SealedSecretsInstalled,
    SealingKeyVerified,
    SovereigntyChecked,
    TornDown,
)
from bootstrap.records import OutputFormatError, RunRow, StepOutput, StepRow
from bootstrap.settings import Site

Out = TypeVar("Out", bound=StepOutput)

SCHEMA = "drboot.dev/report/v1"
RTO_STEP = "wait-synced"
TEARDOWN_STEP = TornDown.STEP
# What the objective is checked against: the wall time from the run's first start, which is
# what the business feels (an hour spent between a failed attempt and `drboot resume` is an
# hour of outage). The time drboot was actually running is reported beside it.
CHECKED_AGAINST = "wall"

@dataclass(frozen=True)
class Context:
    """What the report needs to know besides the journal."""

    objective_seconds: float
    provider: str
    reconciler: str
    now: float
    writing_step: str | None = None  # the step writing this report: done once it is on disk
    standins: tuple[str, ...] = ()  # what the provider's world simulated (named in the report)
    description: str = ""  # the site file's free text for humans, shown under the title


def context_for(
    site: Site, standins: Sequence[str], now: float, writing_step: str | None = None
) -> Context:
    """The report's context for a run of ``site`` (its objective, provider, reconciler)."""
    return Context(
        objective_seconds=site.rto.objective.total_seconds(),
        provider=str(site.provider.type),
        reconciler=str(site.reconciler.type),
        now=now,
        writing_step=writing_step,
        standins=tuple(standins),
        description=site.description,
    )


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


def _step(row: StepRow, ctx: Context) -> dict[str, Any]:
    writing = row.step_id == ctx.writing_step and row.status == "running"
    seconds = row.seconds
    if writing and row.started is not None:
        seconds = ctx.now - row.started
    return {
        "id": row.step_id,
        "status": "done" if writing else row.status,
        "attempts": row.attempts,
        "started_at": iso(row.started),
        "seconds": round(seconds, 3) if seconds is not None else None,
        "summary": "this report" if writing else row.summary,
        "error": row.error,
    }


def output_of(steps: Sequence[StepRow], kind: type[Out], *, done: bool = False) -> Out | None:
    """The typed output ``kind`` of its step (None if that step recorded none, or one this
    drboot cannot read: a report never fails over an old journal row)."""
    for s in steps:
        if s.step_id == kind.STEP and s.outputs and (s.status == "done" or not done):
            try:
                return kind.from_json(s.outputs)
            except OutputFormatError:
                return None
    return None


def attempts(run: RunRow, events: Sequence[Mapping[str, Any]], now: float) -> list[
    tuple[float, float]
]:
    """When drboot was running this run: one (start, end) span per process that worked on it.

    A span starts at a ``run.started`` event and ends at its ``run.finished``; a process that
    was killed wrote none, so its span ends at its last journalled event. The span still open
    while the run is ``running`` (the process writing this report) ends ``now``. A journal
    without run events (older rows) counts as one span from the run's creation.
    """
    spans: list[tuple[float, float]] = []
    start: float | None = None
    last = run.created
    for e in events:
        ts = float(e.get("ts") or last)
        if e.get("kind") == "run.started":
            if start is not None:  # the previous process died without a word
                spans.append((start, last))
            start = run.created if not spans and start is None else ts
        elif e.get("kind") == "run.finished" and start is not None:
            spans.append((start, ts))
            start = None
        last = max(last, ts)
    if start is not None:
        spans.append((start, now if run.status == "running" else max(last, run.ended or last)))
    if not spans:
        spans.append((run.created, run.ended or now))
    return spans


def rto(
    run: RunRow,
    steps: Sequence[StepRow],
    objective: float,
    spans: Sequence[tuple[float, float]] = (),
) -> dict[str, Any]:
    """Seconds from the run's first start until every app was Synced+Healthy (wall time: the
    objective is checked against it), and how much of that drboot was actually running."""
    synced = output_of(steps, AppsSynced, done=True)
    ready_at = synced.ready_at if synced is not None else None
    seconds = round(float(ready_at) - run.created, 3) if ready_at is not None else None
    active = None
    if ready_at is not None:
        end = float(ready_at)
        active = round(sum(max(0.0, min(b, end) - max(a, run.created)) for a, b in spans), 3)
    return {
        "seconds": seconds,
        "wall_seconds": seconds,
        "active_seconds": active,
        "attempts": len(spans) or 1,
        "checked_against": CHECKED_AGAINST,
        "objective_seconds": objective,
        "met": None if seconds is None else seconds <= objective,
        "started_at": iso(run.created),
        "ready_at": iso(ready_at),
        "measured_to": "every app Synced+Healthy (start of the stable window)",
    }


def converged(synced: AppsSynced | None) -> dict[str, Any] | None:
    """Which commit of the config repo the cluster converged to, and whether drboot verified
    it (every SealedSecret opens with the escrowed keys); the apps Git declared, the strays."""
    if synced is None:
        return None
    return {
        "commit": synced.commit,
        "verified": synced.commit_verified,
        "verified_commits": list(synced.verified_commits),
        "expected_apps": len(synced.expected),
        "strays": list(synced.strays),
    }


def warnings(steps: Sequence[StepRow], events: Iterable[Mapping[str, Any]]) -> list[str]:
    """Warnings from step outputs (``warning``/``warnings``), failing disk verdicts, foreign
    sealing keys, steps that needed retries, and audited operator decisions."""
    out: list[str] = []
    keys = output_of(steps, KeysRestored)
    gate = output_of(steps, DiskGated)
    cpu = output_of(steps, CpuGated)
    serving = output_of(steps, SealingKeyVerified)
    for s in steps:
        if serving is not None and s.step_id == SealingKeyVerified.STEP and serving.warning:
            out.append(f"{s.step_id}: {serving.warning}")
        if keys is not None and s.step_id == KeysRestored.STEP:
            if keys.warning:
                out.append(f"{s.step_id}: {keys.warning}")
            if keys.foreign_keys:
                out.append(f"{s.step_id}: foreign sealing keys {', '.join(keys.foreign_keys)}")
        if gate is not None and s.step_id == DiskGated.STEP:
            for v in gate.verdicts:
                if not v.ok:
                    out.append(
                        f"{s.step_id}: {v.host}: fdatasync p99 {v.p99_ms:.2f} ms exceeds "
                        f"{v.threshold_ms:.2f} ms"
                    )
        if gate is not None and s.step_id == DiskGated.STEP:
            for sv in gate.sustained:
                if not sv.ok:
                    out.append(f"{s.step_id}: {sv.host}: {sv.summary()}")
        if cpu is not None and s.step_id == CpuGated.STEP:
            for c in cpu.verdicts:
                if not c.ok:
                    out.append(f"{s.step_id}: {c.host}: {c.summary()}")
        if s.status == "done" and s.attempts > 1:
            out.append(f"{s.step_id}: succeeded after {s.attempts} attempts")
    for e in events:
        if e.get("kind") == "warning":  # journalled after the last step (bootstrap.runs)
            out.append(f"{e.get('step') or 'run'}: {e.get('message')}")
        if e.get("kind") != "audit":
            continue
        data = e.get("data") or {}
        if data.get("reason"):
            where = f" on {e['target']}" if e.get("target") else ""
            out.append(f"{e.get('step')}: {e.get('message')}{where}: {data['reason']}")
    return list(dict.fromkeys(out))  # de-duplicated, in order


def host_fitness(steps: Sequence[StepRow]) -> dict[str, dict[str, Any]]:
    """Per host, where it is and what the gates measured: fio's fdatasync figures and the
    CPU probe's."""
    hosts: dict[str, dict[str, Any]] = {}
    where = output_of(steps, SovereigntyChecked)
    for name, country in (where.hosts if where else {}).items():
        hosts.setdefault(name, {})["country"] = country
    disk = output_of(steps, DiskGated)
    for d in disk.verdicts if disk else []:
        hosts.setdefault(d.host, {})["disk"] = asdict(d)
    for sd in disk.sustained if disk else []:
        hosts.setdefault(sd.host, {})["disk_sustained"] = asdict(sd)
    cpu = output_of(steps, CpuGated)
    for c in cpu.verdicts if cpu else []:
        hosts.setdefault(c.host, {})["cpu"] = asdict(c) | {"throughput_ratio": c.throughput_ratio}
    return hosts


def repo_location(steps: Sequence[StepRow]) -> dict[str, Any] | None:
    """Where the config repo is, and the countries the site allowed (None: not checked)."""
    where = output_of(steps, SovereigntyChecked)
    if where is None:
        return None
    return {"host": where.repo_host, "country": where.repo_country, "allowed": where.allowed}


def config_repo(steps: Sequence[StepRow]) -> dict[str, Any] | None:
    """The config repo (URL, branch or tag, path), the commit preflight checked, and the
    commit every app became synced at."""
    checked = output_of(steps, EscrowChecked)
    pointed = output_of(steps, RepoPointed)
    synced = output_of(steps, AppsSynced, done=True)
    src = checked.repo if checked is not None and checked.repo is not None else None
    ptr = pointed.repo if pointed is not None else None
    if src is None and ptr is None:
        return None
    return {
        "url": src.url if src else ptr.url if ptr else "",
        "revision": src.revision if src else ptr.revision if ptr else "",
        "path": src.path if src else ptr.path if ptr else "",
        "preflight_commit": src.commit if src else None,
        "synced_commit": (synced.commit or None) if synced else None,
        "synced_commit_verified": synced.commit_verified if synced else False,
    }


def escrow_keys(steps: Sequence[StepRow]) -> dict[str, Any] | None:
    """Which escrowed sealing keys were used: their public fingerprints, never key bytes; the
    newest key's age at restore time against the controller's renewal period."""
    checked = output_of(steps, EscrowChecked)
    keys = output_of(steps, KeysRestored)
    serving = output_of(steps, SealingKeyVerified, done=True)
    if checked is None and keys is None:
        return None
    restored = [
        {"fingerprint": k.fingerprint, "label": k.label, "not_before": k.not_before}
        for k in (keys.restored if keys else [])
    ]
    newest = max((k["not_before"] for k in restored), default=None)
    row = next((s for s in steps if s.step_id == KeysRestored.STEP), None)
    age_days = None
    if newest is not None and row is not None and row.started is not None:
        born = dt.datetime.fromisoformat(newest).timestamp()
        age_days = round((row.started - born) / 86400, 1)
    period = keys.renewal_period_seconds if keys else None
    return {
        "escrow_fingerprints": list(checked.escrow_fingerprints) if checked else [],
        "restored": restored,
        "serving_fingerprint": serving.serving_fingerprint if serving else None,
        "renewed_by_controller": serving.renewed_by_controller if serving else False,
        "foreign": list(keys.foreign_keys) if keys else [],
        "newest_not_before": newest,
        "newest_age_days": age_days,
        "renewal_period_days": round(period / 86400, 1) if period else None,
        "renewal_due": bool(age_days is not None and period and age_days * 86400 > period),
        "usage": dict(checked.repo.key_usage) if checked and checked.repo else {},
    }


def versions(steps: Sequence[StepRow]) -> dict[str, Any]:
    """What was installed: k3s, the reconciler and Sealed Secrets (None: not recorded)."""
    k3s = output_of(steps, K3sInstalled, done=True)
    rec = output_of(steps, ReconcilerInstalled, done=True)
    ss = output_of(steps, SealedSecretsInstalled, done=True)
    return {
        "k3s": {"version": k3s.version, "checked_on_hosts": k3s.version_checked}
        if k3s is not None and k3s.version else None,
        "reconciler": {"name": rec.reconciler, "version": rec.version}
        if rec is not None and rec.version else None,
        "sealed_secrets": ss.version if ss is not None and ss.version else None,
    }  # fmt: skip


OVERRIDE_EVENTS = {
    "slow disk accepted by the operator": "--accept-slow-disk",
    "slow disk (sustained load) accepted by the operator": "--accept-slow-disk",
    "slow CPU accepted by the operator": "--accept-slow-cpu",
    "trusted SSH host key on first use": "trust on first use",
}


def overrides(run: RunRow, events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The safety checks the operator overrode, with their reasons: what was given on the
    command line (journalled with the run) and where each override was actually used."""
    given: dict[str, str] = {}
    opts = run.options or {}
    if opts.get("accept_slow_disk"):
        given["--accept-slow-disk"] = str(opts["accept_slow_disk"])
    if opts.get("accept_slow_cpu"):
        given["--accept-slow-cpu"] = str(opts["accept_slow_cpu"])
    used: dict[str, list[str]] = {}
    for e in events:
        if e.get("kind") != "audit":
            continue
        data = e.get("data") or {}
        if e.get("message") == "trust on first use enabled for SSH host keys":
            given.setdefault("trust on first use", f"enabled by {data.get('enabled_by', '?')}")
        option = OVERRIDE_EVENTS.get(str(e.get("message")))
        if option is None:
            continue
        if option == "trust on first use":
            given.setdefault(option, f"enabled by {data.get('enabled_by', '?')}")
            where = f"{e.get('target')} ({data.get('fingerprint', '?')})"
        else:
            given.setdefault(option, str(data.get("reason") or ""))
            where = str(e.get("target"))
        used.setdefault(option, [])
        if where not in used[option]:
            used[option].append(where)
    return [
        {"option": option, "reason": reason, "used_on": used.get(option, [])}
        for option, reason in given.items()
    ]


def teardown(pipeline: str, steps: Sequence[StepRow]) -> dict[str, Any] | None:
    """What happened to a drill's throw-away hosts (None: not a drill)."""
    row = next((s for s in steps if s.step_id == TEARDOWN_STEP), None)
    if row is None:
        return None
    out = output_of(steps, TornDown)
    return {
        "status": row.status,
        "destroyed": list(out.destroyed) if out else [],
        "changed": dict(out.changed) if out else {},
        "error": row.error,
    }


def timeline(
    steps: Sequence[StepRow], spans: Sequence[tuple[float, float]], ctx: Context
) -> dict[str, Any]:
    """What the timeline picture draws, in wall-clock seconds: each step's span, the spans
    drboot ran, and inside the wait, when each application became Synced+Healthy."""
    bars = []
    for row in steps:
        if row.started is None:
            continue
        end = row.ended
        if end is None or row.status == "running":
            end = ctx.now
        bars.append({"id": row.step_id, "status": _step(row, ctx)["status"],
                     "start": row.started, "end": max(end, row.started)})  # fmt: skip
    synced = output_of(steps, AppsSynced)
    wait = next((s for s in steps if s.step_id == RTO_STEP), None)
    apps = []
    if synced is not None and wait is not None and wait.started is not None:
        for name, a in sorted(synced.apps.items()):
            apps.append({"name": name, "ready_since": a.ready_since})
    return {
        "steps": bars,
        "attempts": [list(span) for span in spans],
        "wait_started": wait.started if wait is not None else None,
        "ready_at": synced.ready_at if synced is not None else None,
        "apps": apps,
    }


def decisions(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every audit event of the run (trusted host keys, accepted slow disks, ...)."""
    return [
        {
            "at": iso(e.get("ts")),
            "step": e.get("step"),
            "target": e.get("target"),
            "what": e.get("message"),
            "data": e.get("data") or {},
        }
        for e in events
        if e.get("kind") == "audit"
    ]


def build(
    run: RunRow,
    steps: Sequence[StepRow],
    events: Sequence[Mapping[str, Any]],
    ctx: Context,
) -> dict[str, Any]:
    """The whole report as a JSON-able dict."""
    synced = output_of(steps, AppsSynced)
    escrow = output_of(steps, EscrowChecked)
    apps = {name: asdict(a) for name, a in synced.apps.items()} if synced else {}
    failed = any(s.status == "failed" for s in steps)
    restored = any(s.step_id == RTO_STEP and s.status == "done" for s in steps)
    spans = attempts(run, events, ctx.now)
    return {
        "schema": SCHEMA,
        "run_id": run.id,
        "site": run.site,
        "description": ctx.description,
        "pipeline": run.pipeline,
        "generated_at": iso(ctx.now),
        "started_at": iso(run.created),
        "elapsed_seconds": round(ctx.now - run.created, 3),
        "outcome": "failed" if failed else ("restored" if restored else "incomplete"),
        "provider": ctx.provider,
        "reconciler": ctx.reconciler,
        "rto": rto(run, steps, ctx.objective_seconds, spans),
        "steps": [_step(s, ctx) for s in steps],
        "apps": apps,
        "hosts": host_fitness(steps),
        "repo_location": repo_location(steps),
        "converged": converged(synced),
        "warnings": warnings(steps, events),
        "decisions": decisions(events),
        "lab_standins": list(ctx.standins),
        # the kubectl/kustomize that rendered the config repo in preflight (None: not rendered)
        "renderer": escrow.repo.renderer if escrow is not None and escrow.repo else None,
        "config_repo": config_repo(steps),
        "escrow_keys": escrow_keys(steps),
        "versions": versions(steps),
        "overrides": overrides(run, events),
        "teardown": teardown(run.pipeline, steps),
        "timeline": timeline(steps, spans, ctx),
    }
