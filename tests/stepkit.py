"""Run a step with some of its run's resources given (a fake at drboot's own boundary).

Steps reach the world through ``RunResources`` (kit, cluster client, SSH clients). A test
that runs a step's real code with, say, the real API server's client but no escrow hands
those in here; anything not given is built the production way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bootstrap.engine.context import RunScope, StepContext
from bootstrap.events import EventBus
from bootstrap.kubeapi import KubeAPI
from bootstrap.providers.base import HostInfo, Progress
from bootstrap.records import StepOutput
from bootstrap.settings import Site
from bootstrap.steps.resources import RunResources

if TYPE_CHECKING:
    from bootstrap.adapters.ssh import SSHClient
    from bootstrap.escrow.kit import RecoveryKit


class GivenResources(RunResources):
    """``RunResources`` with the kit, the cluster client and/or an SSH stand-in given."""

    def __init__(
        self,
        scope: RunScope,
        *,
        kit: RecoveryKit | None = None,
        kube: KubeAPI | None = None,
        shell: object | None = None,
    ) -> None:
        super().__init__(scope.info())
        self.given_kit, self.given_kube, self.given_shell = kit, kube, shell

    def kit(self) -> RecoveryKit:
        return self.given_kit if self.given_kit is not None else super().kit()

    def kube(self, progress: Progress) -> KubeAPI | None:
        return self.given_kube if self.given_kube is not None else super().kube(progress)

    def ssh(self, host: HostInfo, verified_key: str, step: str) -> SSHClient:
        if self.given_shell is not None:
            return self.given_shell  # type: ignore[return-value]  # duck-typed stand-in
        return super().ssh(host, verified_key, step)


def step_context(
    site: Site,
    run_dir: Path,
    step: str,
    *,
    bus: EventBus | None = None,
    kit: RecoveryKit | None = None,
    kube: KubeAPI | None = None,
    shell: object | None = None,
    timeout: float = 600,
    outputs: Sequence[StepOutput] = (),
) -> StepContext:
    """A context for running ``step`` of run ``r1`` with the given resources (and the outputs
    earlier steps recorded)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    scope = RunScope(run_id="r1", site=site, run_dir=run_dir, bus=bus or EventBus())
    scope.outputs.update({o.STEP: o.to_json() for o in outputs})
    scope.shared[RunResources] = GivenResources(scope, kit=kit, kube=kube, shell=shell)
    return StepContext(scope, step, timeout)
