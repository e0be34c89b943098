"""The labels that make a cloud server drboot's, and the names drboot gives servers.

Why: a restore must find before it buys, and a drill's teardown must destroy only what it
made. Both questions are answered by labels (Hetzner labels, OpenStack server metadata):
``drboot.dev/site`` says which site a server belongs to, ``drboot.dev/role`` whether it is
a k3s server or agent, and ``drboot.dev/run`` which run created it. A restore owns every
server of its site; a drill owns only the servers of its own run, so a drill of a site never
touches the site's production servers (nor another drill's).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol, runtime_checkable

from bootstrap.errors import ConfigError

SITE_LABEL = "drboot.dev/site"
ROLE_LABEL = "drboot.dev/role"
RUN_LABEL = "drboot.dev/run"
DRBOOT_LABELS = (SITE_LABEL, ROLE_LABEL, RUN_LABEL)

Role = Literal["server", "agent"]

# Hetzner's label values (and a safe subset of OpenStack metadata): at most 63 characters,
# letters, digits, '-', '_' and '.', starting and ending with a letter or digit.
_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_HOSTNAME_MAX = 63


def label_value(value: str, what: str) -> str:
    """``value`` if it is a valid label value, else a ConfigError naming ``what``."""
    if _LABEL_VALUE.fullmatch(value) is None:
        raise ConfigError(
            f"{what} {value!r} cannot be a cloud label value (at most 63 letters, digits, "
            "'-', '_' or '.', starting and ending with a letter or digit)",
            hint="use a shorter site name",
        )
    return value


@dataclass(frozen=True)
class Ownership:
    """Whose servers a provider may see and destroy: a site's, or one drill run's of it.

    ``run_id`` is set for drills (their servers are throw-away and theirs alone) and None
    for restores (every server of the site is the restore's, whichever run created it).
    """

    site: str
    run_id: str | None = None

    def __post_init__(self) -> None:
        label_value(self.site, "site name")
        if self.run_id is not None:
            label_value(self.run_id, "run id")

    def labels(self, role: Role, creating_run: str | None = None) -> dict[str, str]:
        """The labels a new server of ``role`` carries (the run that created it, if known)."""
        out = {SITE_LABEL: self.site, ROLE_LABEL: role}
        run = self.run_id or creating_run
        if run is not None:
            out[RUN_LABEL] = label_value(run, "run id")
        return out

    def selector(self) -> str:
        """A Kubernetes-style label selector (Hetzner's ``label_selector``) for owned servers."""
        parts = [f"{SITE_LABEL}={self.site}"]
        if self.run_id is not None:
            parts.append(f"{RUN_LABEL}={self.run_id}")
        return ",".join(parts)

    def owns(self, labels: Mapping[str, str]) -> bool:
        """Whether a server with ``labels`` is this site's (and, for a drill, this run's)."""
        if labels.get(SITE_LABEL) != self.site:
            return False
        return self.run_id is None or labels.get(RUN_LABEL) == self.run_id

    def role_of(self, labels: Mapping[str, str]) -> Role | None:
        role = labels.get(ROLE_LABEL)
        return role if role in ("server", "agent") else None  # type: ignore[return-value]

    def server_name(self, role: Role, index: int) -> str:
        """``<site>-<role>-<n>``, or for a drill ``<site>-<run suffix>-<role>-<n>``.

        A drill's names carry its run's timestamp and random suffix, so a forgotten drill
        server is recognisable in the cloud console and never collides with production."""
        base = f"{self.site}-{role}-{index}"
        if self.run_id is not None:
            suffix = self.run_id.removeprefix(f"{self.site}-").lower()
            base = f"{self.site}-{suffix}-{role}-{index}"
        name = re.sub(r"[^a-z0-9-]", "-", base.lower())
        if len(name) > _HOSTNAME_MAX:
            raise ConfigError(
                f"server name {name!r} is longer than {_HOSTNAME_MAX} characters",
                hint="use a shorter site name",
            )
        return name


def wanted_names(owner: Ownership, servers: int, agents: int) -> dict[str, Role]:
    """Server name -> role for ``servers`` k3s servers and ``agents`` agents, servers first."""
    out: dict[str, Role] = {owner.server_name("server", i + 1): "server" for i in range(servers)}
    out.update({owner.server_name("agent", i + 1): "agent" for i in range(agents)})
    return out


@dataclass(frozen=True)
class LabelledServer:
    """A server carrying drboot's site label, of any site or run (the janitor's listing)."""

    name: str
    site: str
    run: str | None
    status: str
    created: datetime  # timezone-aware
    provider_id: str

    def age(self, now: datetime | None = None) -> timedelta:
        return (now or datetime.now(UTC)) - self.created


@runtime_checkable
class LabelledInventory(Protocol):
    """A provider that can list every drboot-labelled server of its account (read-only)."""

    def labelled(self) -> list[LabelledServer]: ...
