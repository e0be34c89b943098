"""GitOps: install the reconciler, point it at the config repo, wait for every app."""

from __future__ import annotations

from bootstrap.engine.context import StepContext
from bootstrap.steps.placeholder import not_yet
from bootstrap.steps.registry import step


@step("install-reconciler", after=["verify-sealing-key"], timeout=1800)
def install_reconciler(ctx: StepContext) -> None:
    """Install Argo CD or Flux from the pinned upstream manifests."""
    not_yet(ctx, "reconciler install", "the reconciler-install issue")


@step("point-at-repo", after=["install-reconciler"], timeout=600)
def point_at_repo(ctx: StepContext) -> None:
    """Give the reconciler the deploy key and the root Application / Kustomization."""
    not_yet(ctx, "pointing the reconciler at the config repo", "the reconciler-install issue")


@step("wait-synced", after=["point-at-repo"], timeout=7200)
def wait_synced(ctx: StepContext) -> None:
    """Wait until every application is Synced and Healthy; record the RTO."""
    not_yet(ctx, "the all-apps sync wait", "the sync-wait issue")
