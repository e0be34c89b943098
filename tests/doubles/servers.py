"""Where a cloud double's servers come from.

``PaperServers``: nothing boots; a server is a record with a TEST-NET address (RFC 5737),
for unit tests of the provider against the double.

``LabServers``: each server is a REAL lab host (``bootstrap.lab.hosts.Lab``), a Debian
bookworm under systemd-nspawn with the real cloud-init. The double hands it the user data
drboot sent through cloud-init's NoCloud seed (``/var/lib/cloud/seed/nocloud``) written into
the host's root before boot, and nothing of the lab's own: no lab operator key, no lab host
key. What the user data says (host key, authorised keys, users, hostname) is what the host
gets, applied by cloud-init at first boot. Lab host names are ``<prefix>-<server id>`` (a
lab host name is at most 32 characters; a server name with a run id is longer).
"""

from __future__ import annotations

import threading
from typing import Protocol

from bootstrap.lab.hosts import Lab
from bootstrap.lab.rootfs import CloudSeed

ServerId = int | str  # Hetzner: an integer; OpenStack: a UUID


class ServerBackend(Protocol):
    """What boots and removes a double's servers. ``boot`` may block (it runs in a thread)
    and returns the server's public IPv4 address."""

    def boot(self, server_id: ServerId, name: str, user_data: str | None) -> str: ...

    def destroy(self, server_id: ServerId) -> None: ...

    def exists(self, server_id: ServerId) -> bool: ...


class PaperServers:
    """Servers that are records only (no host boots); addresses from TEST-NET-1."""

    def __init__(self) -> None:
        self._ids: set[ServerId] = set()
        self._lock = threading.Lock()

    def boot(self, server_id: ServerId, name: str, user_data: str | None) -> str:
        with self._lock:
            self._ids.add(server_id)
        return f"192.0.2.{hash(server_id) % 250 + 1}"

    def destroy(self, server_id: ServerId) -> None:
        with self._lock:
            self._ids.discard(server_id)

    def exists(self, server_id: ServerId) -> bool:
        with self._lock:
            return server_id in self._ids


class LabServers:
    """Servers that are real lab hosts booted with the user data as their NoCloud seed."""

    def __init__(self, lab: Lab, boot_timeout: float = 120.0, prefix: str = "hc") -> None:
        self.lab = lab
        self.boot_timeout = boot_timeout
        self.prefix = prefix

    def host_name(self, server_id: ServerId) -> str:
        """``<prefix>-<id>``: a lab host name is at most 32 characters (a UUID is cut)."""
        return f"{self.prefix}-{str(server_id).replace('-', '')[:16]}"

    def boot(self, server_id: ServerId, name: str, user_data: str | None) -> str:
        seed = CloudSeed(
            instance_id=f"{self.prefix}-double-{server_id}",
            hostname=name,
            user_data=user_data or "",
        )
        host = self.lab.create_host(
            self.host_name(server_id), cloud_seed=seed, timeout=self.boot_timeout
        )
        return host.address

    def destroy(self, server_id: ServerId) -> None:
        self.lab.destroy_host(self.host_name(server_id))

    def exists(self, server_id: ServerId) -> bool:
        return any(h.name == self.host_name(server_id) for h in self.lab.hosts())
