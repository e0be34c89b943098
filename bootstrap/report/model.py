"""The report as data: built from journal rows by a pure function, so it is testable as data.

Why it exists: every renderer (JSON, Markdown, JUnit) must say the same thing: per-step
timings and outcomes, the RTO measured from the run's start to the moment every app was
Synced+Healthy (the ``ready_at`` the wait-synced step records) against the objective,
the warnings and operator decisions the run collected, and, for lab runs, which parts were
LAB STAND-INS rather than the real thing.
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
    KeysRestored,
    SovereigntyChecked,
)
from bootstrap.records import OutputFormatError, RunRow, StepOutput, StepRow
from bootstrap.settings import Site

Out = TypeVar("Out", bound=StepOutput)

SCHEMA = "drboot.dev/report/v1"
RTO_STEP = "wait-synced"



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


def rto(run: RunRow, steps: Sequence[StepRow], objective: float) -> dict[str, Any]:
    """Seconds from the run's start until every app was Synced+Healthy, vs the objective."""
    synced = output_of(steps, AppsSynced, done=True)
    ready_at = synced.ready_at if synced is not None else None
    seconds = round(float(ready_at) - run.created, 3) if ready_at is not None else None
    return {
        "seconds": seconds,
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
    for s in steps:
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
        "rto": rto(run, steps, ctx.objective_seconds),
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
    }
