"""Hosts that already exist: drboot takes them over SSH, and never creates or destroys them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bootstrap.errors import PermanentError
from bootstrap.providers.base import HostInfo, Progress


class StaticHosts:
    kind = "static"

    def __init__(self, site: Any) -> None:
        self.site = site

    def wanted(self) -> list[str]:
        hosts = self.site.provider.hosts
        return [h.name for h in hosts if h.role == "server"] + [
            h.name for h in hosts if h.role == "agent"
        ]

    def observe(self) -> list[HostInfo]:
        order = self.wanted()
        hosts = sorted(self.site.provider.hosts, key=lambda h: order.index(h.name))
        return [
            HostInfo(
                name=h.name,
                address=str(h.address),
                role=h.role,
                ssh_port=h.ssh_port,
                host_key_fingerprint=h.host_key_fingerprint,
            )
            for h in hosts
        ]

    def create(self, names: list[str], progress: Progress) -> list[HostInfo]:
        raise PermanentError(
            f"static provider cannot create hosts {names}",
            hint="add the hosts to the site file, or use a provider that creates servers",
        )

    def destroy(self, progress: Progress) -> list[str]:
        progress("static hosts are not destroyed; run the teardown playbook to uninstall k3s")
        return []

    def ssh_key_file(self) -> Path | None:
        return None

    def airgap_dir(self) -> Path | None:
        return None

    def sealing_cert(self, namespace: str) -> bytes | None:
        return None

    def on_cluster_ready(self, kubeconfig: Path, progress: Progress) -> None:
        return None
