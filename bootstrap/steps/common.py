"""What several steps share within one run: the run's resources, the hosts, Ansible.

The resources (kit, provider, plug-in, clients) are built once per process and kept in the
run's ``RunResources`` (never in the journal): a resumed run rebuilds them, re-opening the
escrow. Hosts and verified host keys come from the typed outputs of ``provision`` and
``connect``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bootstrap.engine.context import StepContext
from bootstrap.kubeapi import KubeAPI
from bootstrap.outputs import Connected, Provisioned
from bootstrap.procguard import CHILDREN_DIR
from bootstrap.providers.base import HostInfo, Provider
from bootstrap.providers.plugin import ClusterPlugin
from bootstrap.steps.resources import RunResources

if TYPE_CHECKING:
    from bootstrap.adapters.ansible import PlayResult
    from bootstrap.adapters.ssh import SSHClient
    from bootstrap.escrow.kit import RecoveryKit
    from bootstrap.hostkeys import TrustedKey


def resources(ctx: StepContext) -> RunResources:
    return ctx.shared(RunResources)


def kit(ctx: StepContext) -> RecoveryKit:
    """The decrypted recovery kit, opened once per process; never journalled."""
    return resources(ctx).kit()


def provider(ctx: StepContext) -> Provider:
    return resources(ctx).provider()


def plugin(ctx: StepContext) -> ClusterPlugin:
    return resources(ctx).plugin()


def hosts(ctx: StepContext) -> list[HostInfo]:
    """The hosts the provision step recorded, servers first."""
    return ctx.read(Provisioned).hosts


def servers(ctx: StepContext) -> list[HostInfo]:
    return ctx.read(Provisioned).servers()


def ssh_key_file(ctx: StepContext) -> Path:
    return resources(ctx).ssh_key_file()


def recorded_key(ctx: StepContext, host: HostInfo) -> str:
    """The host key the connect step verified (OpenSSH line); later steps accept only it."""
    return ctx.read(Connected).host_keys[host.name].key


def ssh(ctx: StepContext, host: HostInfo) -> SSHClient:
    """A connected SSH client that accepts only the host key recorded by the connect step."""
    return resources(ctx).ssh(host, recorded_key(ctx, host), ctx.step_id)


def trusted_keys(ctx: StepContext) -> list[TrustedKey]:
    """The verified host keys as ``TrustedKey`` records (for Ansible's known_hosts)."""
    from bootstrap.hostkeys import KeySource, PublicKey, TrustedKey

    return [
        TrustedKey(h.address, h.ssh_port, PublicKey.parse(recorded_key(ctx, h)), KeySource.PINNED)
        for h in hosts(ctx)
    ]


def inventory(ctx: StepContext, group_vars: dict[str, Any] | None = None) -> dict[str, Any]:
    from bootstrap.adapters.ansible import InventoryHost, build_inventory

    return build_inventory(
        [
            InventoryHost(
                h.name, h.address, h.ssh_port, h.ssh_user or ctx.site.ssh.user, h.role, h.labels
            )
            for h in hosts(ctx)
        ],
        group_vars,
    )


def playbook(
    ctx: StepContext,
    name: str,
    *,
    group_vars: dict[str, Any] | None = None,
    secret_vars: dict[str, Any] | None = None,
) -> PlayResult:
    """Run a playbook over the site's hosts; task progress becomes step progress."""
    from bootstrap.adapters.ansible import PlayEvent, run_playbook

    def on_event(ev: PlayEvent) -> None:
        if ev.kind == "task_start":
            ctx.progress(f"task: {ev.task}")
        elif ev.kind in ("failed", "unreachable"):
            ctx.progress(f"{ev.kind}: {ev.task}: {ev.message or ''}", target=ev.host)

    pdd = ctx.run_dir / "ansible" / ctx.step_id
    return run_playbook(
        name,
        inventory(ctx, group_vars),
        None,
        pdd,
        on_event=on_event,
        ssh_key_file=ssh_key_file(ctx),
        host_keys=trusted_keys(ctx),
        secret_vars=secret_vars,
        timeout=ctx.remaining(),
        step=ctx.step_id,
        children_dir=ctx.run_dir / CHILDREN_DIR,
    )


def kubeconfig_path(ctx: StepContext) -> Path:
    return resources(ctx).kubeconfig_path


def kube(ctx: StepContext) -> KubeAPI:
    """A client for the restored cluster. The kubeconfig lives in the run folder (0600) only
    while a drboot process runs; it is deleted when the run ends and fetched again on resume."""
    res = resources(ctx)
    client = res.kube(lambda m: ctx.progress(m, target=plugin(ctx).name))
    if client is None:
        from bootstrap.steps.kubernetes import write_kubeconfig

        write_kubeconfig(ctx)
        client = res.kube(lambda m: ctx.progress(m, target=plugin(ctx).name))
        assert client is not None
    return client
