"""Hosts: provision (or find) them, reach them over verified SSH, gate slow disks, prepare them."""

from __future__ import annotations

from bootstrap.engine.context import StepContext
from bootstrap.steps.placeholder import not_yet
from bootstrap.steps.registry import step


@step("provision", after=["preflight-escrow"], timeout=1800)
def provision(ctx: StepContext) -> None:
    """Create the hosts the provider describes, or find the ones that already exist."""
    not_yet(ctx, "host provisioning", "issue 3 (lab) and the cloud-provider issue")


@step("connect", after=["provision"], timeout=300)
def connect(ctx: StepContext) -> None:
    """Reach every host over SSH with a verified host key."""
    not_yet(ctx, "SSH with host-key verification", "issue 4")


@step("disk-gate", after=["connect"], timeout=900)
def disk_gate(ctx: StepContext) -> None:
    """Refuse a disk too slow for etcd (fio p99 fdatasync over the threshold)."""
    not_yet(ctx, "the fio disk-latency gate", "issue 4")


@step("prepare-hosts", after=["disk-gate"], timeout=1800)
def prepare_hosts(ctx: StepContext) -> None:
    """Base packages, time sync, swap off, kernel settings, firewall (Ansible prepare-host)."""
    not_yet(ctx, "host preparation with Ansible", "issue 4")
