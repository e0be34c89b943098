"""Hosts that already exist: drboot takes them over SSH, and never creates or destroys them."""

from __future__ import annotations

from pathlib import Path

from bootstrap.errors import PermanentError
from bootstrap.providers.base import HostInfo, Progress
from bootstrap.settings import Site, StaticProvider


class StaticHosts:
    kind = "static"
    creates_hosts = False
    manages_ssh_key = False

    def __init__(
        self, site: Site, state_root: Path | None = None, drill_run: str | None = None
    ) -> None:
        assert isinstance(site.provider, StaticProvider)
        self.site = site
        self.cfg: StaticProvider = site.provider

    def wanted(self) -> list[str]:
        hosts = self.cfg.hosts
        return [h.name for h in hosts if h.role == "server"] + [
            h.name for h in hosts if h.role == "agent"
        ]

    def countries(self) -> dict[str, str | None]:
        """What the site file declares per host (``country:``); None where it says nothing."""
        return {h.name: h.country for h in self.cfg.hosts}

    def observe(self) -> list[HostInfo]:
        order = self.wanted()
        hosts = sorted(self.cfg.hosts, key=lambda h: order.index(h.name))
        return [
            HostInfo(
                name=h.name,
                address=str(h.address),
                role=h.role,
                ssh_port=h.ssh_port,
                host_key_fingerprint=h.host_key_fingerprint,
                labels=dict(h.labels),
                country=h.country,
            )
            for h in hosts
        ]

    def describe(self, names: list[str]) -> str | None:
        return None

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

    def close(self) -> None:
        return None
