"""Journal rows of a finished lab drill, as the pipeline records them, for report tests.

Each step's output is the typed record's own ``to_json()`` (the exact journalled shape), with
chosen timings: a run that started at ``T0``, failed over once (killed while waiting) and was
resumed, whose twelve applications became Synced+Healthy one after another in the wait.
"""

from __future__ import annotations

from typing import Any

from bootstrap import outputs as o
from bootstrap.cpugate import CpuVerdict
from bootstrap.diskgate import DiskVerdict
from bootstrap.records import RunRow, StepRow

T0 = 1_790_000_000.0
KILLED_AT = T0 + 300.0  # the first process's last journalled event
RESUMED_AT = T0 + 900.0  # `drboot resume` ten minutes later
READY_AT = T0 + 1150.0  # every app Synced+Healthy
TORN_DOWN_AT = T0 + 1260.0
NOW = T0 + 1270.0
COMMIT = "4e1f0c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f"
REPO = "https://git.example.com/platform/gitops.git"
APPS = [f"app-{i:02d}" for i in range(12)]
WAIT_STARTED = T0 + 200.0

# (step, start, end): provision .. wait-synced; the wait spans the outage and the resume
TIMES = [
    ("preflight-escrow", 0, 8), ("provision", 8, 40), ("connect", 40, 45),
    ("disk-gate", 45, 95), ("prepare-hosts", 95, 130), ("install-k3s", 130, 170),
    ("fetch-kubeconfig", 170, 176), ("restore-sealing-keys", 176, 178),
    ("install-sealed-secrets", 178, 186), ("verify-sealing-key", 186, 188),
    ("install-reconciler", 188, 196), ("point-at-repo", 196, 200),
    ("wait-synced", 200, 1160), ("teardown", 1160, 1260), ("report", 1260, None),
]  # fmt: skip


def outputs(fingerprint: str, not_before: str) -> dict[str, dict[str, Any]]:
    verdict = DiskVerdict("server-1", 0.4, 14.2, 20.0, 9000, 10.0, False)
    return {
        "preflight-escrow": o.EscrowChecked(
            escrow_fingerprints=[fingerprint],
            repo=o.RepoSummary(url=REPO, revision="main", commit=COMMIT, path="clusters/oslo",
                               sealed_secrets=3, decrypted=3, key_usage={fingerprint: 3}),
        ).to_json(),
        "disk-gate": o.DiskGated(verdicts=[verdict]).to_json(),
        "cpu-gate": o.CpuGated(
            verdicts=[CpuVerdict("server-1", 2, 1.5, 0.9, 0.8, 1e6, 1.6e6, 3.0, 5.0, 0.7, True)]
        ).to_json(),
        "install-k3s": o.K3sInstalled(
            changed={"server-1": 7}, version="v1.30.6+k3s1", version_checked=True
        ).to_json(),
        "restore-sealing-keys": o.KeysRestored(
            restored=[o.RestoredKey("sealed-secrets-keyabcde", fingerprint, "active", not_before)],
            warning="the newest restored key is from 2026-01-01, older than the renewal period "
            "(30 days): the controller makes a new key as it starts, which the escrow does not "
            "hold; back up the escrow again (`drboot escrow backup`) after the restore",
            renewal_period_seconds=30 * 86400.0,
        ).to_json(),
        "install-sealed-secrets": o.SealedSecretsInstalled(
            version="0.36.6", controller="sealed-secrets-controller"
        ).to_json(),
        "verify-sealing-key": o.SealingKeyVerified(serving_fingerprint=fingerprint).to_json(),
        "install-reconciler": o.ReconcilerInstalled(
            reconciler="argocd", version="v3.5.1", namespace="argocd"
        ).to_json(),
        "point-at-repo": o.RepoPointed(
            root=["Application argocd/root"],
            repo=o.RepoPointer(REPO, "main", "clusters/oslo"),
        ).to_json(),
        "wait-synced": o.AppsSynced(
            apps={
                name: o.AppRecord("Synced", "Healthy", True, "argocd", "", COMMIT,
                                  WAIT_STARTED + 60 + 75 * i)
                for i, name in enumerate(APPS)
            },
            ready_at=READY_AT,
            commit=COMMIT,
            commit_verified=True,
            verified_commits=[COMMIT],
        ).to_json(),
        "teardown": o.TornDown(destroyed=["server-1", "agent-1"]).to_json(),
    }


def drill_rows(
    fingerprint: str, not_before: str = "2026-01-01T00:00:00+00:00"
) -> tuple[RunRow, list[StepRow], list[dict[str, Any]]]:
    """The run, its step rows and its events, as ``Journal.run/steps/events`` return them."""
    options = {"accept_slow_disk": "lab: throttled on purpose", "trust_on_first_use": True}
    run = RunRow("drill-oslo-20260101T000000-abcd", "oslo", "drill", "running", T0, None, 1,
                 None, None, options, "digest")  # fmt: skip
    outs = outputs(fingerprint, not_before)
    steps = []
    for i, (sid, a, b) in enumerate(TIMES):
        status = "running" if b is None else "done"
        attempts = 2 if sid == "wait-synced" else 1
        steps.append(StepRow(run.id, sid, i, status, attempts, T0 + a,  # type: ignore[arg-type]
                             None if b is None else T0 + b, outs.get(sid, {}), f"{sid} ok",
                             None))  # fmt: skip
    events: list[dict[str, Any]] = [
        {"ts": T0 + 0.05, "kind": "run.started", "step": None, "target": None,
         "message": "drill started", "data": {}},
        {"ts": T0 + 41, "kind": "audit", "step": "connect", "target": "ssh",
         "message": "trust on first use enabled for SSH host keys",
         "data": {"enabled_by": "--trust-on-first-use"}},
        {"ts": T0 + 42, "kind": "audit", "step": "connect", "target": "server-1",
         "message": "trusted SSH host key on first use",
         "data": {"fingerprint": "SHA256:hostkeyfp", "enabled_by": "--trust-on-first-use"}},
        {"ts": T0 + 90, "kind": "audit", "step": "disk-gate", "target": "server-1",
         "message": "slow disk accepted by the operator",
         "data": {"p99_ms": 14.2, "threshold_ms": 10.0, "reason": "lab: throttled on purpose"}},
        {"ts": KILLED_AT, "kind": "step.progress", "step": "wait-synced", "target": None,
         "message": "3/12 apps ready", "data": {}},
        {"ts": RESUMED_AT, "kind": "run.started", "step": None, "target": None,
         "message": "drill started", "data": {}},
    ]  # fmt: skip
    for e, n in zip(events, range(1, len(events) + 1), strict=True):
        e["seq"] = n
    return run, steps, events
