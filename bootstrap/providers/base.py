"""The provider interface and the host record every later step works from.

A provider answers four questions and no more: which hosts does the site want, which of them
exist (find), make the missing ones (create), remove the ones it made (destroy), and how to
connect to them (address, user, host key in ``HostInfo``; the operator key it manages, if any).
What only one provider's world needs (the lab's stand-ins) is a ``ClusterPlugin``, not a
method here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

Progress = Callable[[str], None]


@dataclass(frozen=True)
class HostInfo:
    """One host as the provider reports it. No secrets: the host key is public."""

    name: str
    address: str
    role: Literal["server", "agent"]
    ssh_port: int = 22
    ssh_user: str | None = None  # None: the site's ssh.user
    host_public_key: str | None = None  # OpenSSH line the provider reports (first trust source)
    host_key_fingerprint: str | None = None  # pinned in the site file (second source)
    provider_id: str | None = None
    labels: dict[str, str] = field(default_factory=dict)  # Kubernetes node labels
    country: str | None = None  # ISO 3166-1 alpha-2 of where the host is; None = unknown

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Provider(Protocol):
    """Creates, finds and destroys the hosts of one site, and says how to reach them."""

    kind: str
    # False: the hosts exist before drboot and outlive it (static); a drill's teardown then
    # uninstalls k3s from them instead of destroying them.
    creates_hosts: bool
    # True: the provider makes the operator's SSH key itself (``ssh_key_file`` once it exists);
    # False: the site's ``ssh.private_key_file`` must be readable before anything starts.
    manages_ssh_key: bool

    def wanted(self) -> list[str]:
        """Host names the site wants, servers first."""
        ...

    def countries(self) -> dict[str, str | None]:
        """The country (ISO 3166-1 alpha-2) each wanted host is or will be in, known *before*
        anything is created (read-only): a static site declares it per host; a cloud provider
        resolves the location it would create in (Hetzner's locations carry a country; for
        OpenStack the site states the region's). None: unknown."""
        ...

    def observe(self) -> list[HostInfo]:
        """The wanted hosts that exist now (read-only)."""
        ...

    def describe(self, names: list[str]) -> str | None:
        """What creating ``names`` would buy, for the plan: "3 x cx22 in hel1 at EUR 0.0071/h
        each" (read-only; None: nothing more to say than the names)."""
        ...

    def create(self, names: list[str], progress: Progress) -> list[HostInfo]:
        """Create the named missing hosts and return them."""
        ...

    def destroy(self, progress: Progress) -> list[str]:
        """Destroy every host of the site this provider created; returns their names."""
        ...

    def ssh_key_file(self) -> Path | None:
        """The operator's private key for these hosts, if the provider manages one
        (None: the site's ``ssh.private_key_file``)."""
        ...

    def close(self) -> None:
        """Release clients (API sessions); called once when the run ends."""
        ...
