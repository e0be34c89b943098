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
