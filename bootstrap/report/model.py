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
from dataclasses import dataclass
from typing import Any

from bootstrap.engine.journal import RunRow, StepRow

SCHEMA = "drboot.dev/report/v1"
RTO_STEP = "wait-synced"

# What runs for real and what is simulated when the provider is the lab.
LAB_STANDINS = {
    "k3s": "LAB STAND-IN: the real kube-apiserver and kube-controller-manager v1.20 run under "
    "a k3s stand-in (no kubelet, no container runtime)",
    "pods": "LAB STAND-IN: a kubelet shim writes Pod status after checking referenced "
    "Secrets/ConfigMaps; no container runs",
    "sealed-secrets": "LAB STAND-IN of the Sealed Secrets controller (real key handling and "
    "decryption, no container)",
    "argocd": "LAB STAND-IN of the Argo CD application controller (same objects and status "
    "fields, no container)",
    "flux": "LAB STAND-IN of Flux's source- and kustomize-controller (same objects and status "
    "fields, no container)",
}
LAB_REAL = "real: the hosts (systemd-nspawn), systemd, sshd, apt, Ansible, fio, the API server"


@dataclass(frozen=True)
class Context:
    """What the report needs to know besides the journal."""

    objective_seconds: float
    provider: str
    reconciler: str
    now: float


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


def _step(row: StepRow) -> dict[str, Any]:
    return {
        "id": row.step_id,
        "status": row.status,
        "attempts": row.attempts,
        "started_at": iso(row.started),
        "seconds": round(row.seconds, 3) if row.seconds is not None else None,
        "summary": row.summary,
        "error": row.error,
    }


def rto(run: RunRow, steps: Sequence[StepRow], objective: float) -> dict[str, Any]:
    """Seconds from the run's start until every app was Synced+Healthy, vs the objective."""
    outs = next((s.outputs for s in steps if s.step_id == RTO_STEP and s.status == "done"), {})
    ready_at = outs.get("ready_at")
    seconds = round(float(ready_at) - run.created, 3) if ready_at is not None else None
    return {
        "seconds": seconds,
        "objective_seconds": objective,
        "met": None if seconds is None else seconds <= objective,
        "started_at": iso(run.created),
        "ready_at": iso(ready_at),
        "measured_to": "every app Synced+Healthy (start of the stable window)",
    }


def warnings(steps: Sequence[StepRow], events: Iterable[Mapping[str, Any]]) -> list[str]:
    """Warnings from step outputs (``warning``/``warnings``), failing disk verdicts, foreign
    sealing keys, steps that needed retries, and audited operator decisions."""
    out: list[str] = []
    for s in steps:
        w = s.outputs.get("warning")
        if isinstance(w, str) and w:
            out.append(f"{s.step_id}: {w}")
        listed = s.outputs.get("warnings")
        if isinstance(listed, list):  # the report step records only a count here
            out.extend(f"{s.step_id}: {item}" for item in listed)
        for v in s.outputs.get("verdicts") or []:
            if isinstance(v, dict) and not v.get("ok", True):
                out.append(
                    f"{s.step_id}: {v.get('host')}: fdatasync p99 {float(v.get('p99_ms', 0)):.2f} "
                    f"ms exceeds {float(v.get('threshold_ms', 0)):.2f} ms"
                )
        if s.outputs.get("foreign_keys"):
            out.append(f"{s.step_id}: foreign sealing keys {', '.join(s.outputs['foreign_keys'])}")
        if s.status == "done" and s.attempts > 1:
            out.append(f"{s.step_id}: succeeded after {s.attempts} attempts")
    for e in events:
        if e.get("kind") != "audit":
            continue
        data = e.get("data") or {}
        if data.get("reason"):
            where = f" on {e['target']}" if e.get("target") else ""
            out.append(f"{e.get('step')}: {e.get('message')}{where}: {data['reason']}")
    return list(dict.fromkeys(out))  # de-duplicated, in order


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


def standins(provider: str, reconciler: str) -> list[str]:
    if provider != "lab":
        return []
    parts = ["k3s", "pods", "sealed-secrets", reconciler]
    return [f"{p}: {LAB_STANDINS[p]}" for p in parts if p in LAB_STANDINS] + [LAB_REAL]


def build(
    run: RunRow,
    steps: Sequence[StepRow],
    events: Sequence[Mapping[str, Any]],
    ctx: Context,
) -> dict[str, Any]:
    """The whole report as a JSON-able dict."""
    apps = next((s.outputs.get("apps") for s in steps if s.step_id == RTO_STEP), None) or {}
    failed = any(s.status == "failed" for s in steps)
    restored = any(s.step_id == RTO_STEP and s.status == "done" for s in steps)
    return {
        "schema": SCHEMA,
        "run_id": run.id,
        "site": run.site,
        "pipeline": run.pipeline,
        "generated_at": iso(ctx.now),
        "started_at": iso(run.created),
        "elapsed_seconds": round(ctx.now - run.created, 3),
        "outcome": "failed" if failed else ("restored" if restored else "incomplete"),
        "provider": ctx.provider,
        "reconciler": ctx.reconciler,
        "rto": rto(run, steps, ctx.objective_seconds),
        "steps": [_step(s) for s in steps],
        "apps": apps,
        "warnings": warnings(steps, events),
        "decisions": decisions(events),
        "lab_standins": standins(ctx.provider, ctx.reconciler),
    }
