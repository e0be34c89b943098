"""What several steps share within one run: the provider, the hosts, the recovery kit.

Shared objects are built once per process and kept in the run's resources
(never in the journal): a resumed run rebuilds them, re-opening the escrow.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bootstrap.engine.context import StepContext

if TYPE_CHECKING:
    from bootstrap.escrow.kit import RecoveryKit
    from bootstrap.providers.base import HostInfo, Provider


def kit(ctx: StepContext) -> RecoveryKit:
    """The decrypted recovery kit, opened once per process; never journalled."""
    if "kit" not in ctx.resources:
        from bootstrap.escrow.service import open_kit

        ctx.resources["kit"] = open_kit(ctx.site)
    found: RecoveryKit = ctx.resources["kit"]
    return found


def state_root(ctx: StepContext) -> Path:
    """The drboot state directory (the run folder is ``<root>/runs/<id>``)."""
    return ctx.run_dir.parent.parent


def provider(ctx: StepContext) -> Provider:
    if "provider" not in ctx.resources:
        from bootstrap.providers import provider_for

        ctx.resources["provider"] = provider_for(ctx.site, state_root(ctx))
    found: Provider = ctx.resources["provider"]
    return found


def hosts(ctx: StepContext) -> list[HostInfo]:
    """The hosts the provision step recorded, servers first."""
    from bootstrap.providers.base import HostInfo

    return [HostInfo.from_dict(h) for h in ctx.output_of("provision", "hosts")]


def servers(ctx: StepContext) -> list[HostInfo]:
    return [h for h in hosts(ctx) if h.role == "server"]


def opt(ctx: StepContext, name: str, default: Any = None) -> Any:
    return ctx.options.get(name, default)


def ssh_key_file(ctx: StepContext) -> Path:
    managed = provider(ctx).ssh_key_file()
    return managed if managed is not None else Path(ctx.site.ssh.private_key_file)


def recorded_key(ctx: StepContext, host: HostInfo) -> str:
    """The host key the connect step verified (OpenSSH line); later steps accept only it."""
    keys: dict[str, dict[str, str]] = ctx.output_of("connect", "host_keys")
    return keys[host.name]["key"]


def ssh(ctx: StepContext, host: HostInfo) -> Any:
    """A connected SSH client that accepts only the host key recorded by the connect step."""
    cache: dict[str, Any] = ctx.resources.setdefault("ssh", {})
    if host.name not in cache:
        from bootstrap.adapters.ssh import SSHClient
        from bootstrap.hostkeys import HostKeyExpectation, PublicKey

        expected = HostKeyExpectation(provider_key=PublicKey.parse(recorded_key(ctx, host)))
        client = SSHClient(
            host.address,
            host.ssh_port,
            host.ssh_user or ctx.site.ssh.user,
            ssh_key_file(ctx),
            expected=expected,
            sudo=ctx.site.ssh.use_sudo(),
            connect_timeout=ctx.site.ssh.connect_timeout.total_seconds(),
            step=ctx.step_id,
        ).connect()
        cache[host.name] = client
        ctx.on_close(client.close)
    return cache[host.name]


def trusted_keys(ctx: StepContext) -> list[Any]:
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
            InventoryHost(h.name, h.address, h.ssh_port, h.ssh_user or ctx.site.ssh.user, h.role)
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
) -> Any:
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
    )


KUBECONFIG = "kubeconfig"


def kubeconfig_path(ctx: StepContext) -> Path:
    return ctx.run_dir / KUBECONFIG


def kube(ctx: StepContext) -> Any:
    """A client for the restored cluster. The kubeconfig lives in the run folder (0600) only
    while a drboot process runs; it is deleted when the run ends and fetched again on resume."""
    if "kube" not in ctx.resources:
        from bootstrap.adapters.kube import KubeClient

        path = kubeconfig_path(ctx)
        if not path.exists():
            from bootstrap.steps.kubernetes import write_kubeconfig

            write_kubeconfig(ctx)
        client = KubeClient.from_kubeconfig(path)
        ctx.resources["kube"] = client
        ctx.on_close(client.close)
        # The lab runs its controller stand-ins beside the cluster (a no-op elsewhere);
        # a resumed run may find them stopped.
        provider(ctx).on_cluster_ready(path, lambda m: ctx.progress(m, target="lab"))
    return ctx.resources["kube"]
