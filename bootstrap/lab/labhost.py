"""One lab host: its record (host.json) and what can be done to it.

Why a module of its own: a host is the unit a drill faults. It boots, powers off
(cleanly or by a cut), reboots on the same disk, loses its network, gets a disk too
slow for etcd and runs commands, and each of those is a method here. The lab
(``bootstrap.lab.hosts.Lab``) creates, finds and destroys hosts; it is the only caller
that constructs a ``LabHost``.

A host is ``unshare --mount`` (so the overlay mount dies with the host) running
``systemd-nspawn --boot --register=no --keep-unit`` on an overlay of the golden
image, in its own network namespace, in its own cgroups (see hostcgroup).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bootstrap.errors import PermanentError, WaitTimeout
from bootstrap.fsutil import write_atomic
from bootstrap.hostkeys import PublicKey
from bootstrap.lab import hostcgroup, hostdisk, net
from bootstrap.lab.hostdisk import DiskSpec
from bootstrap.lab.procfs import children, proc_start_time

if TYPE_CHECKING:
    from bootstrap.lab.hosts import Lab

SSH_PORT = 22
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


def _ssh_banner(address: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


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
    cpu_fraction: float | None = None  # slow_cpu: CFS quota in cores; None = unlimited
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
        return pid is not None and start is not None and proc_start_time(pid) == start

    def init_pid(self) -> int:
        """Host pid of the container's PID 1 (systemd)."""
        if not self.is_running():
            raise PermanentError("host is not running", target=self.name, hint="reboot() it")
        assert self._rec.nspawn_pid is not None
        for child in children(self._rec.nspawn_pid):
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
                start = proc_start_time(pid)
                if start is not None:
                    self._rec.nspawn_pid, self._rec.nspawn_start = pid, start
                    break
            if time.monotonic() > deadline:
                raise WaitTimeout(
                    "launcher never started", target=self.name, hint=f"see {self.console_log}"
                )
            time.sleep(0.02)
        self._save()
        if self._rec.cpu_fraction is not None:  # before sshd and the host's services start
            hostcgroup.set_cpu_quota(cg, self._rec.cpu_fraction)
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

    def slow_cpu(self, fraction: float) -> None:
        """Cap the whole host at ``fraction`` of one core (its cgroup's CFS quota), like a
        VPS whose plan or neighbours leave it a sliver of the cores it reports.

        Persistent across reboots; applied at once on a running host."""
        if not 0 < fraction <= 64:
            raise PermanentError(
                f"slow_cpu fraction {fraction!r} must be above 0 (cores, e.g. 0.1)",
                target=self.name,
            )
        self._set_cpu(fraction)

    def full_cpu(self) -> None:
        """Lift the CPU cap of ``slow_cpu``."""
        self._set_cpu(None)

    def _set_cpu(self, fraction: float | None) -> None:
        self._rec.cpu_fraction = fraction
        self._save()
        if self.is_running():
            hostcgroup.set_cpu_quota(self._cgroups(), fraction)

    def throttle_disk(self, mountpoint: str, iops: int) -> None:
        """Change the write-IOPS limit of the slow disk at ``mountpoint``, at once (also while
        a job runs on it): a cloud volume whose burst credits have run out."""
        disk = next(
            (d for d in self._rec.disks if d.mountpoint == mountpoint and d.kind == "slow"), None
        )
        if disk is None:
            raise PermanentError(f"no slow disk at {mountpoint}", target=self.name)
        disk.write_iops = iops
        self._save()
        if disk.loop:
            hostdisk.throttle(disk.loop, iops, self._cgroups().blkio)

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
