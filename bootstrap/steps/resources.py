"""The resources one run holds: the recovery kit, the provider and its plug-in, SSH and API
clients. Built lazily (a step that needs none opens none), closed once when the run ends.

Why it exists: these are per-process (a resumed run builds them again from the journal and
the escrow) and never journalled; holding them in one typed object with one ``close`` means
every exit path of the runner (success, failure, Ctrl-C) closes every client exactly once,
and deletes the run's kubeconfig, the only cluster credential drboot keeps, and only while a
drboot process runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bootstrap.engine.context import RunInfo
from bootstrap.hostkeys import HostKeyExpectation, PublicKey
from bootstrap.kubeapi import KubeAPI
from bootstrap.providers.base import HostInfo, Progress, Provider
from bootstrap.providers.plugin import ClusterPlugin

if TYPE_CHECKING:
    from bootstrap.adapters.ssh import SSHClient
    from bootstrap.escrow.kit import RecoveryKit

KUBECONFIG = "kubeconfig"


class RunResources:
    """Everything a run opens, keyed to that run; ``close()`` is idempotent."""

    def __init__(self, info: RunInfo) -> None:
        self.info = info
        self._kit: RecoveryKit | None = None
        self._provider: Provider | None = None
        self._plugin: ClusterPlugin | None = None
        self._kube: KubeAPI | None = None
        self._ssh: dict[str, SSHClient] = {}
        self._closers: list[Callable[[], None]] = []

    # ------------------------------------------------------------ what steps ask for
    def kit(self) -> RecoveryKit:
        """The decrypted recovery kit, opened once per process; never journalled."""
        if self._kit is None:
            from bootstrap.escrow.service import open_kit

            self._kit = open_kit(self.info.site)
        return self._kit

    def provider(self) -> Provider:
        if self._provider is None:
            from bootstrap.providers import provider_for

            drill_run = self.info.run_id if self.info.pipeline == "drill" else None
            self._provider = provider_for(self.info.site, self.info.state_root, drill_run)
        return self._provider

    def plugin(self) -> ClusterPlugin:
        """The provider's cluster plug-in, or the production default."""
        if self._plugin is None:
            from bootstrap.providers.plugin import plugin_for

            self._plugin = plugin_for(self.info.site, self.info.state_root)
        return self._plugin

    def ssh_key_file(self) -> Path:
        managed = self.provider().ssh_key_file()
        return managed if managed is not None else Path(self.info.site.ssh.private_key_file)

    def new_ssh(self, host: HostInfo, expected: HostKeyExpectation, step: str) -> SSHClient:
        """An SSH client (not yet connected) with the site's SSH settings."""
        from bootstrap.adapters.ssh import SSHClient

        cfg = self.info.site.ssh
        return SSHClient(
            host.address,
            host.ssh_port,
            host.ssh_user or cfg.user,
            self.ssh_key_file(),
            expected=expected,
            sudo=cfg.use_sudo(),
            connect_timeout=cfg.connect_timeout.total_seconds(),
            command_timeout=cfg.command_timeout.total_seconds(),
            keepalive_interval=cfg.keepalive_interval.total_seconds(),
            step=step,
        )

    def ssh(self, host: HostInfo, verified_key: str, step: str) -> SSHClient:
        """A connected client that accepts only ``verified_key``; one per host per run."""
        if host.name not in self._ssh:
            expected = HostKeyExpectation(provider_key=PublicKey.parse(verified_key))
            self._ssh[host.name] = self.new_ssh(host, expected, step).connect()
        return self._ssh[host.name]

    @property
    def kubeconfig_path(self) -> Path:
        return self.info.run_dir / KUBECONFIG

    def kube(self, progress: Progress) -> KubeAPI | None:
        """The client of the restored cluster, or None before its kubeconfig was fetched.

        Opening it tells the provider's plug-in the API answers (the lab starts its
        controller stand-ins then; a resumed run may find them stopped)."""
        if self._kube is None:
            path = self.kubeconfig_path
            if not path.exists():
                return None
            from bootstrap.adapters.kube import KubeClient

            self._kube = KubeClient.from_kubeconfig(path)
            self.plugin().on_api_ready(path, progress)
        return self._kube

    # ------------------------------------------------------------ the end
    def close(self) -> None:
        clients: list[Callable[[], None]] = [c.close for c in self._ssh.values()]
        if self._kube is not None:
            clients.append(self._kube.close)
        for part in (self._plugin, self._provider):
            if part is not None:
                clients.append(part.close)
        # The kubeconfig is the one cluster credential drboot holds: only while it runs.
        clients.append(lambda: self.kubeconfig_path.unlink(missing_ok=True))
        for close in clients + self._closers:
            with contextlib.suppress(Exception):
                close()
        self._ssh.clear()
        self._closers.clear()
        self._kube = self._plugin = self._provider = None
        self._kit = None


def remove_dead_run_leftovers(run_dir: Path) -> list[str]:
    """What a killed run left that only a live run may hold: the cluster's kubeconfig, Ansible
    secret vars files, runner ``env/`` folders, the environment in runner's ``command`` files.

    Called by ``resume`` once it holds the site lock (so the run that wrote them is dead).
    Returns the paths removed or scrubbed, relative to ``run_dir``; never their contents.
    """
    from bootstrap.adapters.ansible import remove_leftovers

    done: list[Path] = []
    kubeconfig = run_dir / KUBECONFIG
    if kubeconfig.exists():
        kubeconfig.unlink()
        done.append(kubeconfig)
    done += remove_leftovers(run_dir / "ansible")
    return [str(p.relative_to(run_dir)) for p in done]
