"""Cluster plug-ins: what differs between the production path and a provider's own world.

Why it exists: the production path is the default. A k3s binary comes from the site's
download URL or air-gap directory, the Sealed Secrets certificate is read through the API
server's service proxy, and the restore waits for every node to be Ready. A provider whose
world differs (the lab, whose k3s is a stand-in with no kubelet and whose pods have no IPs)
registers a plug-in for its type here, so no step ever asks which provider it holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bootstrap.kubeapi import KubeAPI
from bootstrap.providers.base import HostInfo, Progress
from bootstrap.settings import Site


@dataclass(frozen=True)
class K3sBundle:
    """An air-gap bundle a plug-in supplies, and whether its k3s reports the wanted version."""

    path: Path
    reports_version: bool = True
    note: str | None = None  # said in the step's progress (a stand-in names itself)


class ClusterPlugin(Protocol):
    """The hooks of one provider's world into the restore."""

    name: str

    def k3s_bundle(self) -> K3sBundle | None:
        """An air-gap bundle this world supplies (None: the site's own download/air-gap)."""
        ...

    def on_api_ready(self, kubeconfig: Path, progress: Progress) -> None:
        """Called whenever a run opens its cluster client (start what must run beside it)."""
        ...

    def sealing_cert(
        self, kube: KubeAPI, namespace: str, service: str, port: int, progress: Progress
    ) -> bytes:
        """The PEM certificate the Sealed Secrets controller serves."""
        ...

    def nodes_to_wait_for(self, hosts: list[HostInfo]) -> int:
        """How many nodes must be Ready before the cluster counts as up (0: do not wait)."""
        ...

    def standins(self) -> list[str]:
        """What in this world is simulated rather than real (the report names each)."""
        ...

    def close(self) -> None: ...


class ProductionCluster:
    """The default: nothing supplied, the certificate through the service proxy, every node."""

    name = "production"

    def k3s_bundle(self) -> K3sBundle | None:
        return None

    def on_api_ready(self, kubeconfig: Path, progress: Progress) -> None:
        return None

    def sealing_cert(
        self, kube: KubeAPI, namespace: str, service: str, port: int, progress: Progress
    ) -> bytes:
        return kube.proxy_get(namespace, service, port, "/v1/cert.pem")

    def nodes_to_wait_for(self, hosts: list[HostInfo]) -> int:
        return len(hosts)

    def standins(self) -> list[str]:
        return []

    def close(self) -> None:
        return None


PluginFactory = Callable[[Site, Path], ClusterPlugin]
_PLUGINS: dict[str, PluginFactory] = {}


def register_plugin(provider_type: str, factory: PluginFactory) -> None:
    """Called by a provider module, at import, for the world it brings."""
    _PLUGINS[provider_type] = factory


def plugin_for(site: Site, state_root: Path) -> ClusterPlugin:
    """The plug-in the site's provider registered, or the production default."""
    from bootstrap.providers import load_provider_module

    load_provider_module(site.provider.type)  # its import registers its plug-in, if any
    factory = _PLUGINS.get(site.provider.type)
    return factory(site, state_root) if factory is not None else ProductionCluster()
