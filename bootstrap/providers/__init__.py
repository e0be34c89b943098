"""Where hosts come from: static (hosts you have), lab (local nspawn hosts), clouds later.

``provider_for(site, state_root)`` returns the provider a site describes. Every
provider observes first: ``observe()`` lists what exists, and ``create()`` is
only ever asked for what is missing, so a re-run never duplicates a server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bootstrap.errors import ConfigError
from bootstrap.providers.base import HostInfo, Provider

__all__ = ["HostInfo", "Provider", "provider_for"]


def provider_for(site: Any, state_root: Path) -> Provider:
    kind = site.provider.type
    if kind == "static":
        from bootstrap.providers.static import StaticHosts

        return StaticHosts(site)
    if kind == "lab":
        from bootstrap.providers.lab import LabHosts

        return LabHosts(site, state_root)
    raise ConfigError(
        f"provider type {kind!r} is declared in the site schema but not implemented yet "
        "(tracked in the cloud-providers issue)",
        hint="use provider: static with hosts you created by hand, or provider: lab",
    )
