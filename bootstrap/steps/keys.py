"""Sealed Secrets keys: restored from escrow before the controller ever starts."""

from __future__ import annotations

from bootstrap.engine.context import StepContext
from bootstrap.steps.placeholder import not_yet
from bootstrap.steps.registry import step


@step("restore-sealing-keys", after=["fetch-kubeconfig"], timeout=600)
def restore_sealing_keys(ctx: StepContext) -> None:
    """Create the escrowed key Secrets (labelled) in the controller namespace."""
    not_yet(ctx, "Sealed Secrets key restore", "issue 5")


@step("install-sealed-secrets", after=["restore-sealing-keys"], timeout=900)
def install_sealed_secrets(ctx: StepContext) -> None:
    """Install the Sealed Secrets controller, after its keys are in place."""
    not_yet(ctx, "Sealed Secrets controller install", "issue 5")


@step("verify-sealing-key", after=["install-sealed-secrets"], timeout=600)
def verify_sealing_key(ctx: StepContext) -> None:
    """The controller serves a certificate whose fingerprint is an escrowed key."""
    not_yet(ctx, "controller certificate check", "issue 5")
