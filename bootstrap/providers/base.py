"""The provider interface and the host record every later step works from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HostInfo:
        return cls(**data)


class Provider(Protocol):
    """Creates, finds and destroys the hosts of one site."""

    kind: str

    def wanted(self) -> list[str]:
        """Host names the site wants, servers first."""
        ...

    def observe(self) -> list[HostInfo]:
        """The wanted hosts that exist now (read-only)."""
        ...

    def create(self, names: list[str], progress: Progress) -> list[HostInfo]:
        """Create the named missing hosts and return them."""
        ...

    def destroy(self, progress: Progress) -> list[str]:
        """Destroy every host of the site this provider created; returns their names."""
        ...

    def ssh_key_file(self) -> Path | None:
        """The operator's private key for these hosts, if the provider manages one."""
        ...

    def airgap_dir(self) -> Path | None:
        """An air-gap bundle the provider supplies (the lab's k3s stand-in), if any."""
        ...

    def sealing_cert(self, namespace: str) -> bytes | None:
        """The Sealed Secrets certificate if the provider serves it itself (the lab stand-in);
        None means: ask the controller through the API server's service proxy."""
        ...

    def on_cluster_ready(self, kubeconfig: Path, progress: Progress) -> None:
        """Called once the API answers (the lab starts its controller stand-ins here)."""
        ...
