"""Step outputs journalled by drboot 0.1.0 (before typed outputs) still read back.

Each row is the JSON the 0.1.0 step wrote (same keys, same shapes), so a run journalled
before the change resumes: later steps and the report read these with ``from_json``. An
output that does not read is refused with a clear error, never an internal one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bootstrap import outputs as o
from bootstrap.engine.context import RunScope, StepContext
from bootstrap.errors import PermanentError
from bootstrap.events import EventBus
from bootstrap.records import StepOutput

HOST = {"name": "server-1", "address": "10.200.3.10", "role": "server", "ssh_port": 22,
        "ssh_user": "root", "host_public_key": "ssh-ed25519 AAAAC3Nz", "host_key_fingerprint": None,
        "provider_id": "lab:demo/server-1"}  # fmt: skip
VERDICT = {"host": "server-1", "p50_ms": 0.1, "p99_ms": 0.4, "p999_ms": 1.2, "syncs": 10029,
           "threshold_ms": 10.0, "ok": True}  # fmt: skip
APP = {"namespace": "argocd", "sync": "Synced", "health": "Healthy", "ready": True, "reason": ""}

OLD_ROWS: list[tuple[type[StepOutput], dict[str, Any]]] = [
    (
        o.EscrowChecked,
        {
            "escrow_fingerprints": ["SHA256:a"],
            "repo": {
                "url": "file:///r",
                "revision": "main",
                "commit": "c" * 40,
                "path": "apps",
                "sealed_secrets": 3,
                "decrypted": 3,
                "failures": [],
                "key_usage": {"SHA256:a": 3},
                "seconds": 0.4,
                "warnings": [],
            },
        },
    ),
    (o.EscrowChecked, {}),  # verification disabled: 0.1.0 recorded nothing
    (o.Provisioned, {"hosts": [HOST]}),
    (
        o.Connected,
        {
            "host_keys": {
                "server-1": {
                    "key": "ssh-ed25519 AAAAC3Nz",
                    "fingerprint": "SHA256:x",
                    "source": "provider",
                }
            }
        },
    ),
    (o.DiskGated, {"verdicts": [VERDICT]}),
    (o.DiskGated, {}),  # gate disabled
    (o.HostsPrepared, {"changed": {"server-1": 12}}),
    (o.K3sInstalled, {"changed": {"server-1": 7}}),
    (o.ApiReachable, {"api_server": "https://10.200.3.10:6443"}),
    (
        o.KeysRestored,
        {
            "restored": [
                {
                    "name": "sealed-secrets-keyabcde",
                    "fingerprint": "SHA256:a",
                    "label": "active",
                    "not_before": "2026-01-01T00:00:00+00:00",
                }
            ],
            "foreign_keys": [],
            "warning": "take a fresh escrow backup",
        },
    ),
    (o.SealedSecretsInstalled, {}),  # 0.1.0 recorded nothing for this step
    (o.SealingKeyVerified, {"serving_fingerprint": "SHA256:a"}),
    (
        o.ReconcilerInstalled,
        {
            "reconciler": "argocd",
            "version": "v3.5.1",
            "namespace": "argocd",
            "workloads": ["Deployment/argocd-server"],
        },
    ),
    (
        o.RepoPointed,
        {
            "root": ["Application argocd/root"],
            "repo": {"url": "file:///r", "revision": "main", "path": "apps"},
        },
    ),
    (
        o.AppsSynced,
        {
            "apps": {"root": APP},
            "ignored": [],
            "seconds": 41.2,
            "ready_at": 1795990000.5,
            "stable_for": 5.0,
        },
    ),
    (
        o.Reported,
        {
            "files": ["/s/runs/r/report.json"],
            "rto_seconds": 61.0,
            "rto_objective_seconds": 3600.0,
            "rto_met": True,
            "warnings": 2,
        },
    ),
    (o.TornDown, {"destroyed": ["server-1"]}),
    (o.TornDown, {"changed": {"h1": 4}}),
]


def _keeps(new: Any, old: Any) -> bool:
    """Everything ``old`` said is in ``new`` (which may add fields with their defaults)."""
    if isinstance(old, dict):
        return isinstance(new, dict) and all(k in new and _keeps(new[k], v) for k, v in old.items())
    if isinstance(old, list):
        return isinstance(new, list) and len(new) == len(old) and all(map(_keeps, new, old))
    return bool(new == old)


@pytest.mark.parametrize(("kind", "row"), OLD_ROWS, ids=lambda v: getattr(v, "STEP", ""))
def test_an_output_journalled_by_0_1_0_reads_back(
    kind: type[StepOutput], row: dict[str, Any]
) -> None:
    out = kind.from_json(row)
    assert kind.from_json(out.to_json()) == out, "a typed output survives the journal unchanged"
    if isinstance(row.get("warnings"), int):  # the report's old warning count
        row = {k: v for k, v in row.items() if k != "warnings"}
    assert _keeps(out.to_json(), row)


def test_reading_an_output_this_drboot_cannot_read_is_a_clear_step_error(tmp_path: Path) -> None:
    scope = RunScope("r1", None, tmp_path / "runs" / "r1", EventBus())  # type: ignore[arg-type]
    scope.outputs["provision"] = {"hosts": [{"name": "server-1"}]}  # no address, no role
    ctx = StepContext(scope, "connect", 60)
    with pytest.raises(PermanentError) as err:
        ctx.read(o.Provisioned)
    assert "does not read as Provisioned" in err.value.message
    assert err.value.hint is not None and "start a new run" in err.value.hint
