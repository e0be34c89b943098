"""The sovereignty guard: where every host and the config repo are, against the allowed list.

Why it exists: a team under GDPR or a national regulator must not restore a payment platform
into another jurisdiction by mistake, and that mistake is one wrong ``location:`` in a site
file, made on the worst day. The countries come from the provider (``Provider.countries``:
declared per static host, resolved from a cloud location) and from ``repo.country``; the
check runs in preflight, before any host is created. Pure logic; the step is
``preflight-sovereignty``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bootstrap.errors import PreflightError

STEP = "preflight-sovereignty"
_SCP = re.compile(r"[^@/]+@([^:/]+):")


def repo_host(url: str) -> str:
    """The host serving the repository (``local`` for a path or file:// URL)."""
    scp = _SCP.match(url)
    if scp:
        return scp.group(1)
    parts = urlsplit(url)
    if parts.scheme in ("ssh", "https", "http") and parts.hostname:
        return parts.hostname
    return "local"


@dataclass(frozen=True)
class Locations:
    """Where every host and the repo are (None: unknown), and what the site allows."""

    hosts: dict[str, str | None] = field(default_factory=dict)
    repo_host: str = ""
    repo_country: str | None = None
    allowed: list[str] = field(default_factory=list)  # empty: no restriction

    def problems(self) -> list[str]:
        """What breaks the allowed list (empty when nothing does, or no list is set)."""
        if not self.allowed:
            return []
        allowed = ", ".join(self.allowed)
        out = []
        for name, country in self.hosts.items():
            if country is None:
                out.append(f"host {name}: country unknown (allowed: {allowed})")
            elif country not in self.allowed:
                out.append(f"host {name}: in {country}, not in the allowed {allowed}")
        if self.repo_country is None:
            out.append(f"repo on {self.repo_host}: country unknown, set repo.country")
        elif self.repo_country not in self.allowed:
            out.append(
                f"repo on {self.repo_host}: in {self.repo_country}, not in the allowed {allowed}"
            )
        return out

    def summary(self) -> str:
        hosts = ", ".join(f"{n} in {c or 'unknown country'}" for n, c in self.hosts.items())
        repo = f"repo on {self.repo_host} in {self.repo_country or 'unknown country'}"
        allowed = f"allowed: {', '.join(self.allowed)}" if self.allowed else "no country list"
        return f"{hosts}; {repo} ({allowed})"


def locate(
    hosts: Mapping[str, str | None],
    repo_url: str,
    repo_country: str | None,
    allowed: Sequence[str],
) -> Locations:
    return Locations(
        hosts=dict(hosts),
        repo_host=repo_host(repo_url),
        repo_country=repo_country,
        allowed=list(allowed),
    )


def enforce(where: Locations) -> None:
    """Refuse (exit 3) when a host or the repo is outside the allowed countries or unknown."""
    found = where.problems()
    if found:
        raise PreflightError(
            "data would land outside the allowed countries: " + "; ".join(found),
            step=STEP,
            hint="declare each host's country: (static hosts) and repo.country, choose a "
            "location in an allowed country, or change sovereignty.allowed_countries",
        )
