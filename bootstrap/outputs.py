"""The typed outputs of the restore's steps: what later steps and the report read.

Why it exists: a step hands its results on through the journal (a resumed run has no
memory but the journal), and the readers must not dig ``"verdicts"`` or ``"ready_at"``
out of dicts by string key. Each record names its step (``STEP``) and keeps the JSON keys
drboot has always journalled, so runs journalled by an earlier version still read back.
Fields are references only: names, addresses, public keys, fingerprints, timings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BeforeValidator

from bootstrap.cpugate import CpuVerdict
from bootstrap.diskgate import DiskVerdict, SustainedVerdict
from bootstrap.providers.base import HostInfo
from bootstrap.records import StepOutput


@dataclass(frozen=True)
class RepoSummary:
    """What preflight learnt about the config repo."""

    url: str
    revision: str
    commit: str
    path: str
    sealed_secrets: int = 0
    decrypted: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    key_usage: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    renderer: str | None = None  # the kubectl/kustomize versions that rendered the repo


@dataclass(frozen=True)
class EscrowChecked(StepOutput):
    STEP = "preflight-escrow"
    escrow_fingerprints: list[str] = field(default_factory=list)
    repo: RepoSummary | None = None


@dataclass(frozen=True)
class SovereigntyChecked(StepOutput):
    """Where every host and the repo are (ISO 3166-1 alpha-2; None: unknown)."""

    STEP = "preflight-sovereignty"
    hosts: dict[str, str | None] = field(default_factory=dict)
    repo_host: str = ""
    repo_country: str | None = None
    allowed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Provisioned(StepOutput):
    STEP = "provision"
    hosts: list[HostInfo] = field(default_factory=list)

    def servers(self) -> list[HostInfo]:
        """The servers, in the provider's order (the first one serves the kubeconfig)."""
        return [h for h in self.hosts if h.role == "server"]


@dataclass(frozen=True)
class VerifiedKey:
    key: str  # OpenSSH public key line
    fingerprint: str
    source: str


@dataclass(frozen=True)
class Connected(StepOutput):
    STEP = "connect"
    host_keys: dict[str, VerifiedKey] = field(default_factory=dict)


@dataclass(frozen=True)
class DiskGated(StepOutput):
    STEP = "disk-gate"
    verdicts: list[DiskVerdict] = field(default_factory=list)
    sustained: list[SustainedVerdict] = field(default_factory=list)


@dataclass(frozen=True)
class CpuGated(StepOutput):
    STEP = "cpu-gate"
    verdicts: list[CpuVerdict] = field(default_factory=list)


@dataclass(frozen=True)
class HostsPrepared(StepOutput):
    STEP = "prepare-hosts"
    changed: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class K3sInstalled(StepOutput):
    STEP = "install-k3s"
    changed: dict[str, int] = field(default_factory=dict)
    version: str = ""  # the pinned k3s release the playbook installed ("": journalled before)
    version_checked: bool = False  # the playbook asserted `k3s --version` reports ``version``


@dataclass(frozen=True)
class ApiReachable(StepOutput):
    STEP = "fetch-kubeconfig"
    api_server: str = ""


@dataclass(frozen=True)
class RestoredKey:
    name: str
    fingerprint: str
    label: str
    not_before: str


@dataclass(frozen=True)
class KeysRestored(StepOutput):
    STEP = "restore-sealing-keys"
    restored: list[RestoredKey] = field(default_factory=list)
    foreign_keys: list[str] = field(default_factory=list)
    warning: str | None = None
    renewal_period_seconds: float | None = None  # the controller's key renewal period


@dataclass(frozen=True)
class SealedSecretsInstalled(StepOutput):
    STEP = "install-sealed-secrets"
    version: str = ""
    controller: str = ""


@dataclass(frozen=True)
class SealingKeyVerified(StepOutput):
    STEP = "verify-sealing-key"
    serving_fingerprint: str = ""
    source: str = "service proxy"
    # the controller serves a key it made by renewal after the restore (not escrowed yet)
    renewed_by_controller: bool = False
    warning: str | None = None


@dataclass(frozen=True)
class ReconcilerInstalled(StepOutput):
    STEP = "install-reconciler"
    reconciler: str = ""
    version: str = ""
    namespace: str = ""
    workloads: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RepoPointer:
    url: str
    revision: str
    path: str


@dataclass(frozen=True)
class RepoPointed(StepOutput):
    STEP = "point-at-repo"
    root: list[str] = field(default_factory=list)
    repo: RepoPointer | None = None


@dataclass(frozen=True)
class AppRecord:
    sync: str
    health: str
    ready: bool
    namespace: str = ""
    reason: str = ""
    revision: str = ""  # the commit it was synced at
    ready_since: float | None = None  # wall time it last turned ready (for the timeline)


@dataclass(frozen=True)
class AppsSynced(StepOutput):
    STEP = "wait-synced"
    apps: dict[str, AppRecord] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    seconds: float = 0.0
    ready_at: float | None = None  # wall time every app became ready (the RTO's end)
    stable_for: float = 0.0
    commit: str = ""  # the commit every app converged to ("" when no commit was verified)
    commit_verified: bool = False  # escrow-verified (preflight, or when the branch moved on)
    verified_commits: list[str] = field(default_factory=list)  # every commit drboot verified
    expected: list[str] = field(default_factory=list)  # ns/name of the apps Git declares
    strays: list[str] = field(default_factory=list)  # ns/name of apps not in Git
    requests: int = 0  # list + watch requests on the apps (and their sources)
    reconnects: int = 0  # watches resumed after the connection failed
    confirm_reads: int = 0  # fresh lists that confirmed the end of the stable window
    synced_by_drboot: list[str] = field(default_factory=list)  # ns/name@sha of manual syncs


def _listed(value: object) -> object:
    # drboot 0.1.0 journalled the report's warning *count* here; the text is in the report.
    return [] if isinstance(value, int) else value


@dataclass(frozen=True)
class Reported(StepOutput):
    STEP = "report"
    files: list[str] = field(default_factory=list)
    rto_seconds: float | None = None
    rto_objective_seconds: float = 0.0
    rto_met: bool | None = None
    warnings: Annotated[list[str], BeforeValidator(_listed)] = field(default_factory=list)
    # the part of the RTO drboot was running (a resumed run's wall time includes the pause)
    rto_active_seconds: float | None = None


@dataclass(frozen=True)
class TornDown(StepOutput):
    STEP = "teardown"
    changed: dict[str, int] = field(default_factory=dict)
    destroyed: list[str] = field(default_factory=list)
