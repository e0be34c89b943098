"""Kubernetes: install k3s (single, HA, air-gapped) and fetch a working kubeconfig."""

from __future__ import annotations

from bootstrap.engine.context import StepContext
from bootstrap.steps.placeholder import not_yet
from bootstrap.steps.registry import step


@step("install-k3s", after=["prepare-hosts"], timeout=3600)
def install_k3s(ctx: StepContext) -> None:
    """Install k3s with the escrowed cluster token (Ansible k3s playbook)."""
    not_yet(ctx, "k3s installation", "issue 4")


@step("fetch-kubeconfig", after=["install-k3s"], timeout=600)
def fetch_kubeconfig(ctx: StepContext) -> None:
    """Fetch the kubeconfig from the first server (0600, run folder) and wait for /readyz."""
    not_yet(ctx, "kubeconfig fetch and API wait", "issue 4")
