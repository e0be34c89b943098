"""Where hosts come from: static (hosts you have), lab (local nspawn hosts), hcloud and
openstack (bought).

``provider_for(site, state_root)`` returns the provider a site describes, looked up by type in
``PROVIDERS``. Every provider observes first: ``observe()`` lists what exists, and ``create()``
is only ever asked for what is missing, so a re-run never duplicates a server.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from bootstrap.errors import ConfigError
from bootstrap.providers.base import HostInfo, Provider
from bootstrap.settings import Site

__all__ = ["HostInfo", "Provider", "provider_for"]

ProviderFactory = Callable[[Site, Path, str | None], Provider]

# type -> (module, class); modules are imported only when a site uses them.
PROVIDERS: dict[str, tuple[str, str]] = {
    "static": ("bootstrap.providers.static", "StaticHosts"),
    "lab": ("bootstrap.providers.lab", "LabHosts"),
    "hcloud": ("bootstrap.providers.hcloud", "HcloudHosts"),
    "openstack": ("bootstrap.providers.openstack", "OpenStackHosts"),
}


def load_provider_module(kind: str) -> object:
    """Import the module of provider ``kind`` (a ConfigError for a type not implemented)."""
    entry = PROVIDERS.get(kind)
    if entry is None:
        raise ConfigError(
            f"provider type {kind!r} is declared in the site schema but not implemented yet "
            "(tracked in the cloud-providers issue)",
            hint="use provider: static with hosts you created by hand, or provider: lab",
        )
    return importlib.import_module(entry[0])


def provider_for(site: Site, state_root: Path, drill_run: str | None = None) -> Provider:
    """The site's provider. ``drill_run``: the drill run that owns the servers it creates and
    destroys (None for a restore, which owns every server of the site). Providers that do
    not create servers (static) or keep them apart otherwise (lab) ignore it."""
    module = load_provider_module(site.provider.type)
    factory: ProviderFactory = getattr(module, PROVIDERS[site.provider.type][1])
    return factory(site, state_root, drill_run)
