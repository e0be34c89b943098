"""Lab hosts: fresh Debian machines under systemd-nspawn, with fault injection.

Why: a disaster-recovery drill needs machines that can be created from
nothing, reached over real SSH, starved of network, powered off mid-write and
given a disk too slow for etcd, all on one Linux box as root. This module is
both the integration test bed and the ``provider: lab`` feature, so it is
process-independent: everything a later ``drboot`` process needs to find,
fault or destroy a lab is persisted as JSON in the lab's state directory.

Layout of a lab state directory::

    lab.json                  LabRecord (bridge index, image, name)
    id_ed25519{,.pub}         operator SSH key (0600), authorised on every host
    known_hosts               the hosts' reported keys, for StrictHostKeyChecking
    hosts/NAME/host.json      HostRecord (address, pids, disks, ...)
    hosts/NAME/upper|work     the host's overlay (its "disk"; survives reboot)
    hosts/NAME/merged         where the overlay is mounted, in a private mount ns
    hosts/NAME/console.log    the container's console
    hosts/NAME/disks/*.img    slow-disk images

This module is the lab: one bridge, its hosts and its state directory
(``Lab``, ``LabRecord``). A host and its faults are ``bootstrap.lab.labhost``;
seeding a host's root filesystem before first boot (its identity and ed25519
host key, so the provider can REPORT the key: the first source of SSH host-key
verification) is ``bootstrap.lab.rootfs``; telling a live host process from a
reused pid is ``bootstrap.lab.procfs``.
``Lab`` and ``LabHost`` are both imported from here.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bootstrap.errors import PermanentError, PreflightError
from bootstrap.fsutil import write_atomic
from bootstrap.lab import hostcgroup, net
from bootstrap.lab.image import DEFAULT_CACHE, SETUP_SCRIPT, require_image
from bootstrap.lab.labhost import HostRecord, LabHost
from bootstrap.lab.rootfs import CloudSeed, prepare_cloud_upper, prepare_upper

__all__ = ["APT_PROXY_PORT", "HostRecord", "Lab", "LabHost", "LabRecord", "tcp_port_open"]

APT_PROXY_PORT = 3142
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")


def tcp_port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1.0):
            return True
    except OSError:
        return False


def _check_name(kind: str, name: str) -> str:
    if not _NAME.match(name):
        raise PermanentError(
            f"{kind} name {name!r} must be 1-32 of a-z, 0-9 and '-' (not at the ends)",
            target="lab",
        )
    return name


@dataclass
class LabRecord:
    """lab.json: what another process needs to re-attach to the lab."""

    name: str
    index: int
    image: str
    created: float


class Lab:
    """One bridge (10.200.N.0/24), its hosts, and a state dir another process can attach to."""

    def __init__(self, state_dir: Path, record: LabRecord) -> None:
        self.state_dir = state_dir
        self.record = record

    def __repr__(self) -> str:
        return f"Lab({self.name!r}, {net.subnet(self.index)}, {str(self.state_dir)!r})"

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def index(self) -> int:
        return self.record.index

    @property
    def bridge(self) -> str:
        return net.bridge_name(self.index)

    @property
    def gateway(self) -> str:
        """The bridge address: what hosts can reach (apt proxy on :3142)."""
        return net.gateway(self.index)

    @property
    def apt_proxy(self) -> str:
        return f"http://{self.gateway}:{APT_PROXY_PORT}"

    @property
    def ssh_key_path(self) -> Path:
        """The operator's private key (0600), authorised for root on every host."""
        return self.state_dir / "id_ed25519"

    @property
    def known_hosts_path(self) -> Path:
        return self.state_dir / "known_hosts"

    # -- lifecycle ----------------------------------------------------------------
    @classmethod
    def create(
        cls,
        name: str,
        state_dir: Path | str,
        *,
        cache_root: Path = DEFAULT_CACHE,
        index: int | None = None,
    ) -> Lab:
        """Make a lab (or re-attach to the one already in ``state_dir``) and bring it up.

        ``index`` asks for 10.200.<index>.0/24 (refused if another lab holds it); None picks
        the lowest free one."""
        state_dir = Path(state_dir).resolve()
        _check_name("lab", name)
        if (state_dir / "lab.json").exists():
            lab = cls.attach(state_dir)
            if lab.name != name:
                raise PermanentError(
                    f"{state_dir} already holds lab {lab.name!r}",
                    target=name,
                    hint="use another state dir, or `down()` that lab first",
                )
        else:
            _require_root()
            image = require_image(cache_root)
            state_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(state_dir, 0o700)
            with net.allocation_lock():
                net.ensure_blackhole()
                index = net.pick_free_index(
                    exclude=_indexes_in_state_dirs(state_dir), wanted=index
                )
                net.ensure_bridge(index)
                record = LabRecord(name=name, index=index, image=str(image), created=time.time())
                write_atomic(
                    state_dir / "lab.json", json.dumps(asdict(record), indent=2, sort_keys=True)
                )
            lab = cls(state_dir, record)
        lab.up()
        return lab

    @classmethod
    def attach(cls, state_dir: Path | str) -> Lab:
        """Re-attach to a lab created by another process."""
        state_dir = Path(state_dir).resolve()
        try:
            data = json.loads((state_dir / "lab.json").read_text())
        except FileNotFoundError as exc:
            raise PermanentError(
                f"no lab in {state_dir} (lab.json missing)",
                target="lab",
                hint="create it with Lab.create(name, state_dir)",
            ) from exc
        return cls(state_dir, LabRecord(**data))

    def up(self) -> None:
        """Make sure blackhole, bridge, operator key and apt proxy are in place."""
        _require_root()
        net.ensure_blackhole()
        net.ensure_bridge(self.index)
        if not Path(self.record.image).is_dir():
            raise PreflightError(
                f"golden image {self.record.image} is gone",
                target=self.name,
                hint=f"run `sudo {SETUP_SCRIPT}`, then recreate the lab",
            )
        if not self.ssh_key_path.exists():
            tmp = self.state_dir / ".id_ed25519.tmp"
            for p in (tmp, Path(f"{tmp}.pub")):
                p.unlink(missing_ok=True)
            net.run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    f"drboot-lab-{self.name}",
                    "-f",
                    str(tmp),
                ],
                what="operator ssh key",
            )
            os.chmod(tmp, 0o600)
            os.replace(f"{tmp}.pub", f"{self.ssh_key_path}.pub")
            os.replace(tmp, self.ssh_key_path)
        if not tcp_port_open("127.0.0.1", APT_PROXY_PORT):
            raise PreflightError(
                f"nothing listens on :{APT_PROXY_PORT}; lab hosts would have no apt",
                target=self.name,
                hint=f"run `sudo {SETUP_SCRIPT}` (starts apt-cacher-ng)",
            )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.state_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def host(self, name: str) -> LabHost:
        path = self.state_dir / "hosts" / name / "host.json"
        try:
            return LabHost(self, HostRecord.from_json(json.loads(path.read_text())))
        except FileNotFoundError as exc:
            raise PermanentError(f"no host {name!r} in lab {self.name}", target=name) from exc

    def hosts(self) -> list[LabHost]:
        root = self.state_dir / "hosts"
        if not root.is_dir():
            return []
        names = sorted(p.name for p in root.iterdir() if (p / "host.json").exists())
        return [self.host(n) for n in names]

    def create_host(
        self,
        name: str,
        *,
        memory_mib: int | None = None,
        extra_nspawn_args: Sequence[str] = (),
        timeout: float = 30.0,
        cloud_seed: CloudSeed | None = None,
        index: int | None = None,
    ) -> LabHost:
        """Create and boot a host; an existing host is started if needed and returned.

        ``cloud_seed``: the host is a cloud double's server. It gets cloud-init's NoCloud
        seed instead of the lab's operator key and host key (its ``host_public_key`` is
        empty: the lab does not know the key the user data gives it).
        ``index`` asks for host index ``index`` (its address: ``net.host_address``), for a
        host whose address must be known before it exists; None picks the lowest free one."""
        _check_name("host", name)
        with self._locked():
            try:
                host = self.host(name)
            except PermanentError:
                host = self._new_host(
                    name, memory_mib, list(extra_nspawn_args), cloud_seed, index
                )
            host.start(timeout=timeout)
            self._write_known_hosts()
            return host

    def _new_host(
        self,
        name: str,
        memory_mib: int | None,
        extra: list[str],
        seed: CloudSeed | None = None,
        wanted: int | None = None,
    ) -> LabHost:
        taken = {h._rec.index for h in self.hosts()}
        if wanted is not None and wanted in taken:
            raise PermanentError(f"host index {wanted} of lab {self.name} is taken", target=name)
        index = wanted if wanted is not None else next(
            i for i in range(net.MAX_HOSTS + 1) if i not in taken)  # fmt: skip
        if index >= net.MAX_HOSTS:
            raise PermanentError(f"lab {self.name} is full", target=name)
        hdir = self.state_dir / "hosts" / name
        upper = hdir / "upper"
        upper.mkdir(parents=True, exist_ok=True)
        lower = Path(self.record.image)
        if seed is None:
            pub = prepare_upper(upper, lower, name, self.apt_proxy, self._operator_pubkey())
        else:
            prepare_cloud_upper(upper, lower, self.apt_proxy, seed)
            pub = ""
        memory_parent = hostcgroup.own_memory_cgroup() if memory_mib else None
        record = HostRecord(
            name=name,
            index=index,
            address=net.host_address(self.index, index),
            host_public_key=pub,
            memory_bytes=memory_mib * 1024 * 1024 if memory_mib else None,
            memory_cgroup_parent=str(memory_parent) if memory_parent else None,
            extra_nspawn_args=extra,
        )
        host = LabHost(self, record)
        host._save()
        return host

    def _operator_pubkey(self) -> str:
        return Path(f"{self.ssh_key_path}.pub").read_text().strip()

    def _write_known_hosts(self) -> None:
        write_atomic(
            self.known_hosts_path,
            "".join(f"{h.known_hosts_line}\n" for h in self.hosts() if h.host_public_key),
        )

    def destroy_host(self, name: str) -> None:
        """Power off and remove one host: processes, mounts, loop disks, netns, veth, files."""
        with self._locked():
            try:
                host = self.host(name)
            except PermanentError:
                return
            host.power_cut()
            host._kill_leftovers()
            host._unplug_disks()
            hostcgroup.remove(host._cgroups())
            net.delete_host_net(self.index, name, host._rec.index)
            shutil.rmtree(host.dir)
            self._write_known_hosts()

    def down(self, *, remove_state: bool = True) -> None:
        """Remove everything this lab made except the blackhole route (shared by all labs)."""
        for host in self.hosts():
            self.destroy_host(host.name)
        net.delete_bridge(self.index)
        if remove_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)


def _require_root() -> None:
    if os.geteuid() != 0:
        raise PreflightError(
            "the lab needs root (network namespaces, mounts, cgroups)",
            target="lab",
            hint="run as root on a Linux box prepared with setup-lab.sh",
        )


def _indexes_in_state_dirs(state_dir: Path) -> set[int]:
    """Indexes recorded by sibling labs whose bridge is momentarily absent (not yet up())."""
    found: set[int] = set()
    parent = state_dir.parent
    with contextlib.suppress(OSError):
        for sib in parent.iterdir():
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                found.add(int(json.loads((sib / "lab.json").read_text())["index"]))
    return found
