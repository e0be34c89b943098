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

A host is ``unshare --mount`` (so the overlay mount dies with the host) running
``systemd-nspawn --boot --register=no --keep-unit`` on an overlay of the golden
image, in its own network namespace, in its own cgroups (see hostcgroup). Its
ed25519 host key is generated here before boot, so the provider can REPORT the
key: that is the first source of SSH host-key verification.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bootstrap.errors import PermanentError, PreflightError, WaitTimeout
from bootstrap.fsutil import write_atomic
from bootstrap.hostkeys import PublicKey
from bootstrap.lab import hostcgroup, hostdisk, net
from bootstrap.lab.hostdisk import DiskSpec
from bootstrap.lab.image import DEFAULT_CACHE, SETUP_SCRIPT, require_image

APT_PROXY_PORT = 3142
SSH_PORT = 22
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
_PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Runs as the launcher process: join the host's cgroups, record our pid (which
# becomes nspawn's pid through the execs), then a private mount namespace in
# which the overlay and pre-boot disks are mounted; they vanish with the host.
_LAUNCH = r"""
set -eu
printf '%s\n' "$DRB_CGROUP_PROCS" | while read -r f; do [ -z "$f" ] || echo $$ >"$f"; done
echo $$ >"$DRB_PIDFILE"
exec unshare --mount --propagation private -- /bin/sh -c "$DRB_INNER" drboot-lab-host "$@"
"""
_INNER = r"""
set -eu
layers="lowerdir=$DRB_LOWER,upperdir=$DRB_UPPER,workdir=$DRB_WORK"
mount -t overlay overlay -o "$layers" "$DRB_MERGED"
printf '%s\n' "$DRB_DISKS" | while IFS='|' read -r kind src target opts; do
  [ -n "$kind" ] || continue
  mkdir -p "$DRB_MERGED$target"
  mount -t "$kind" -o "$opts" "$src" "$DRB_MERGED$target"
done
exec systemd-nspawn "$@"
"""


def _proc_start_time(pid: int) -> int | None:
    """Kernel start time of a live (non-zombie) process, or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None  # our parent (PID 1 here) may never reap it
    return int(fields[19])


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _ssh_banner(address: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


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


@dataclass
class HostRecord:
    """hosts/NAME/host.json."""

    name: str
    index: int
    address: str
    host_public_key: str
    memory_bytes: int | None = None
    memory_cgroup_parent: str | None = None
    extra_nspawn_args: list[str] = field(default_factory=list)
    disks: list[DiskSpec] = field(default_factory=list)
    nspawn_pid: int | None = None
    nspawn_start: int | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["disks"] = [d.to_json() for d in self.disks]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HostRecord:
        disks = [DiskSpec.from_json(d) for d in data.pop("disks", [])]
        return cls(**data, disks=disks)


class LabHost:
    """One lab machine. Cheap to construct; state is re-read from host.json."""

    ssh_port = SSH_PORT
    ssh_user = "root"

    def __init__(self, lab: Lab, record: HostRecord) -> None:
        self._lab = lab
        self._rec = record

    def __repr__(self) -> str:
        return f"LabHost({self.name!r}, {self.address}, lab={self._lab.name!r})"

    # -- identity ---------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._rec.name

    @property
    def address(self) -> str:
        return self._rec.address

    @property
    def host_public_key(self) -> str:
        """The host's ed25519 key as an OpenSSH line (``ssh-ed25519 AAAA... root@NAME``)."""
        return self._rec.host_public_key

    @property
    def host_key_fingerprint(self) -> str:
        return PublicKey.parse(self._rec.host_public_key).fingerprint

    @property
    def known_hosts_line(self) -> str:
        kind, blob = self._rec.host_public_key.split()[:2]
        return f"{self.address} {kind} {blob}"

    @property
    def dir(self) -> Path:
        return self._lab.state_dir / "hosts" / self.name

    @property
    def upper_dir(self) -> Path:
        """The host's writable layer: what survives power cuts and reboots."""
        return self.dir / "upper"

    @property
    def console_log(self) -> Path:
        return self.dir / "console.log"

    @property
    def netns(self) -> str:
        return net.netns_name(self._lab.index, self.name)

    @property
    def disks(self) -> list[DiskSpec]:
        return list(self._rec.disks)

    def _save(self) -> None:
        write_atomic(
            self.dir / "host.json", json.dumps(self._rec.to_json(), indent=2, sort_keys=True)
        )

    def _cgroups(self) -> hostcgroup.HostCgroups:
        parent = self._rec.memory_cgroup_parent
        return hostcgroup.host_cgroups(self._lab.index, self.name, Path(parent) if parent else None)

    # -- process state ------------------------------------------------------------
    def is_running(self) -> bool:
        pid, start = self._rec.nspawn_pid, self._rec.nspawn_start
        return pid is not None and start is not None and _proc_start_time(pid) == start

    def init_pid(self) -> int:
        """Host pid of the container's PID 1 (systemd)."""
        if not self.is_running():
            raise PermanentError("host is not running", target=self.name, hint="reboot() it")
        assert self._rec.nspawn_pid is not None
        for child in _children(self._rec.nspawn_pid):
            with contextlib.suppress(OSError):
                status = Path(f"/proc/{child}/status").read_text()
                nspid = next(ln for ln in status.splitlines() if ln.startswith("NSpid:"))
                if nspid.split()[-1] == "1":
                    return child
        raise PermanentError("container PID 1 not found", target=self.name)

    def start(self, *, timeout: float = 30.0) -> None:
        """Boot the host on its existing upper dir and wait until sshd answers."""
        if self.is_running():
            return
        self._kill_leftovers()
        net.ensure_host_net(self._lab.index, self.name, self._rec.index)
        for disk in self._rec.disks:
            if disk.kind == "slow":
                self._plug_slow(disk)
        self._save()
        cg = self._cgroups()
        hostcgroup.create(cg, self._rec.memory_bytes)
        merged = self.dir / "merged"
        merged.mkdir(exist_ok=True)
        (self.dir / "work").mkdir(exist_ok=True)
        pidfile = self.dir / "nspawn.pid"
        pidfile.unlink(missing_ok=True)
        env = {
            "PATH": _PATH_ENV,
            "LANG": "C.UTF-8",
            "DRB_CGROUP_PROCS": "\n".join(str(p) for p in cg.procs_files()),
            "DRB_PIDFILE": str(pidfile),
            "DRB_INNER": _INNER,
            "DRB_LOWER": self._lab.record.image,
            "DRB_UPPER": str(self.upper_dir),
            "DRB_WORK": str(self.dir / "work"),
            "DRB_MERGED": str(merged),
            "DRB_DISKS": "\n".join(hostdisk.preboot_line(d) for d in self._rec.disks),
        }
        nspawn_args = [
            "--boot",
            "--register=no",
            "--keep-unit",
            f"--directory={merged}",
            f"--machine={self.name}",
            f"--network-namespace-path={net.NETNS_DIR / self.netns}",
            "--resolv-conf=off",
            "--timezone=off",
            "--link-journal=no",
            "--console=read-only",
            *self._rec.extra_nspawn_args,
        ]
        with open(self.console_log, "ab") as console:
            # setsid -f: the launcher is nobody's child here, so it outlives this process.
            subprocess.run(
                ["setsid", "-f", "/bin/sh", "-c", _LAUNCH, "drboot-lab-launch", *nspawn_args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=30,
            )
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(FileNotFoundError, ValueError):
                pid = int(pidfile.read_text().strip())
                start = _proc_start_time(pid)
                if start is not None:
                    self._rec.nspawn_pid, self._rec.nspawn_start = pid, start
                    break
            if time.monotonic() > deadline:
                raise WaitTimeout(
                    "launcher never started", target=self.name, hint=f"see {self.console_log}"
                )
            time.sleep(0.02)
        self._save()
        self.wait_ssh(timeout=max(1.0, deadline - time.monotonic()))

    def wait_ssh(self, *, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not _ssh_banner(self.address, self.ssh_port):
            if not self.is_running():
                raise PermanentError(
                    "host exited during boot", target=self.name, hint=f"see {self.console_log}"
                )
            if time.monotonic() > deadline:
                raise WaitTimeout(
                    f"sshd on {self.address}:{self.ssh_port} not ready after {timeout:.0f}s",
                    target=self.name,
                    hint=f"see {self.console_log}",
                )
            time.sleep(0.05)

    def _wait_stopped(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.is_running():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _kill_leftovers(self) -> None:
        """SIGKILL anything still in the host's cgroups (stray exec()s, a wedged nspawn)."""
        for _ in range(50):
            pids = self._cgroups().pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)

    def _stopped(self) -> None:
        self._kill_leftovers()
        self._rec.nspawn_pid = self._rec.nspawn_start = None
        self._save()

    # -- faults -------------------------------------------------------------------
    def power_cut(self) -> None:
        """Pull the plug: SIGKILL the container's PID 1 (nspawn then exits)."""
        if not self.is_running():
            self._kill_leftovers()
            return
        # PID 1 may not exist yet (or just died): the nspawn kill below covers that.
        with contextlib.suppress(PermanentError, ProcessLookupError):
            os.kill(self.init_pid(), signal.SIGKILL)
        if not self._wait_stopped(10.0) and self._rec.nspawn_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._rec.nspawn_pid, signal.SIGKILL)
        self._stopped()

    def shutdown(self, *, timeout: float = 20.0) -> None:
        """Clean poweroff (SIGRTMIN+4 to systemd); a power cut if it takes too long."""
        if not self.is_running():
            return
        os.kill(self.init_pid(), signal.SIGRTMIN + 4)
        if not self._wait_stopped(timeout):
            self.power_cut()
            return
        self._stopped()

    def reboot(self, *, timeout: float = 30.0) -> None:
        """Boot again on the same upper dir (after a power cut, or cleanly if running)."""
        self.shutdown()
        self.start(timeout=timeout)

    def net_down(self) -> None:
        """Unplug the cable: the bridge side of the host's veth goes down."""
        net.set_link(self._lab.index, self._rec.index, up=False)

    def net_up(self) -> None:
        net.set_link(self._lab.index, self._rec.index, up=True)

    def slow_disk(self, mountpoint: str, iops: int, *, size_mib: int = 256) -> None:
        """An ext4 at ``mountpoint`` whose writes are throttled to ``iops`` write IOPS.

        Persistent across reboots (its image lives in the host dir). On a running
        host it is hot-plugged; on a stopped one it is mounted at next boot.
        """
        self._add_disk(
            DiskSpec(hostdisk.check_mountpoint(mountpoint), "slow", size_mib, write_iops=iops)
        )

    def fast_disk(self, mountpoint: str, *, size_mib: int = 256) -> None:
        """A tmpfs at ``mountpoint`` (contents do not survive a power cut, like a cache)."""
        self._add_disk(DiskSpec(hostdisk.check_mountpoint(mountpoint), "fast", size_mib))

    def _plug_slow(self, disk: DiskSpec) -> None:
        slug = disk.mountpoint.strip("/").replace("/", "_")
        backing = self.dir / "disks" / f"{slug}.img"
        hostdisk.make_backing(backing, disk.size_mib)
        disk.backing = str(backing)
        disk.loop = hostdisk.attach_loop(backing)
        assert disk.write_iops is not None
        hostdisk.throttle(disk.loop, disk.write_iops, self._cgroups().blkio)

    def _add_disk(self, disk: DiskSpec) -> None:
        if any(d.mountpoint == disk.mountpoint for d in self._rec.disks):
            raise PermanentError(
                f"a disk is already mounted at {disk.mountpoint}",
                target=self.name,
                hint="use another mountpoint or a new host",
            )
        if disk.kind == "slow":
            self._plug_slow(disk)
        self._rec.disks.append(disk)
        self._save()
        if self.is_running():
            cmd = hostdisk.hot_mount_command(self.init_pid(), disk)
            net.run(cmd, what=f"mount {disk.kind} disk at {disk.mountpoint} in {self.name}")

    def _unplug_disks(self) -> None:
        for disk in self._rec.disks:
            if disk.kind == "slow" and disk.loop and disk.backing:
                hostdisk.unthrottle(disk.loop, self._cgroups().blkio)
                hostdisk.detach_loop(disk.loop, Path(disk.backing))
                disk.loop = None

    # -- commands -----------------------------------------------------------------
    def exec(
        self,
        cmd: str | Sequence[str],
        *,
        check: bool = False,
        timeout: float | None = 300.0,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the host as root (no SSH; for tests and lab plumbing).

        The process joins the host's cgroups first, so its disk writes are
        throttled like the host's own and a power cut kills it too.
        """
        argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        env_argv = ["/usr/bin/env", "-i", f"PATH={_PATH_ENV}", "HOME=/root", "LANG=C.UTF-8"]
        nsenter = ["nsenter", "-t", str(self.init_pid()), "-m", "-u", "-i", "-n", "-p", "-C"]
        nsenter += ["-r", "-w", "--", *env_argv, *argv]
        join = 'printf "%s\\n" "$DRB_CG" | while read -r f; do [ -z "$f" ] || echo $$ >"$f"; done'
        procs = "\n".join(str(p) for p in self._cgroups().procs_files() if p.parent.is_dir())
        proc = subprocess.run(
            ["/bin/sh", "-c", f'{join}; exec "$@"', "drboot-lab-exec", *nsenter],
            env={"PATH": _PATH_ENV, "DRB_CG": procs},
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise PermanentError(
                f"command exited {proc.returncode}: {proc.stderr.strip()[-400:]}",
                target=self.name,
            )
        return proc


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
    def create(cls, name: str, state_dir: Path | str, *, cache_root: Path = DEFAULT_CACHE) -> Lab:
        """Make a lab (or re-attach to the one already in ``state_dir``) and bring it up."""
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
                index = net.pick_free_index(exclude=_indexes_in_state_dirs(state_dir))
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
    ) -> LabHost:
        """Create and boot a host; an existing host is started if needed and returned."""
        _check_name("host", name)
        with self._locked():
            try:
                host = self.host(name)
            except PermanentError:
                host = self._new_host(name, memory_mib, list(extra_nspawn_args))
            host.start(timeout=timeout)
            self._write_known_hosts()
            return host

    def _new_host(self, name: str, memory_mib: int | None, extra: list[str]) -> LabHost:
        taken = {h._rec.index for h in self.hosts()}
        index = next(i for i in range(net.MAX_HOSTS + 1) if i not in taken)
        if index >= net.MAX_HOSTS:
            raise PermanentError(f"lab {self.name} is full", target=name)
        hdir = self.state_dir / "hosts" / name
        upper = hdir / "upper"
        upper.mkdir(parents=True, exist_ok=True)
        lower = Path(self.record.image)
        pub = _prepare_upper(upper, lower, name, self.gateway, self._operator_pubkey())
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
            self.known_hosts_path, "".join(f"{h.known_hosts_line}\n" for h in self.hosts())
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


def _mkdirs_like(upper: Path, lower: Path, rel: str) -> Path:
    """mkdir -p in the upper layer, copying mode/owner from the lower one.

    An upper directory hides the lower one's metadata: creating ``/root`` with
    the default 0755 would open root's home to everyone.
    """
    cur_u, cur_l = upper, lower
    for part in Path(rel).parts:
        cur_u, cur_l = cur_u / part, cur_l / part
        if not cur_u.exists():
            cur_u.mkdir()
            if cur_l.is_dir():
                st = cur_l.stat()
                os.chown(cur_u, st.st_uid, st.st_gid)
                os.chmod(cur_u, st.st_mode & 0o7777)
    return cur_u


def _put(upper: Path, lower: Path, rel: str, content: str, mode: int = 0o644) -> None:
    write_atomic(_mkdirs_like(upper, lower, str(Path(rel).parent)) / Path(rel).name, content, mode)


def _prepare_upper(upper: Path, lower: Path, name: str, gateway: str, operator_pub: str) -> str:
    """Write the host's identity into its upper layer before first boot; returns its public key."""
    _put(upper, lower, "etc/hostname", f"{name}\n")
    _put(upper, lower, "etc/hosts", f"127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n")
    _put(upper, lower, "etc/machine-id", f"{uuid.uuid4().hex}\n", 0o444)
    _put(
        upper,
        lower,
        "etc/apt/apt.conf.d/01drboot-lab-proxy",
        f'Acquire::http::Proxy "http://{gateway}:{APT_PROXY_PORT}";\n',
    )
    ssh_dir = _mkdirs_like(upper, lower, "root/.ssh")
    os.chmod(ssh_dir, 0o700)
    _put(upper, lower, "root/.ssh/authorized_keys", f"{operator_pub}\n", 0o600)
    key = _mkdirs_like(upper, lower, "etc/ssh") / "ssh_host_ed25519_key"
    if not key.exists():
        for p in (key, Path(f"{key}.pub")):
            p.unlink(missing_ok=True)
        net.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{name}", "-f", str(key)],
            what=f"host key for {name}",
        )
        os.chmod(key, 0o600)
    return Path(f"{key}.pub").read_text().strip()
