"""Extra disks for lab hosts: a deliberately slow one and a fast one.

Why: drboot refuses to put etcd on a disk whose fdatasync p99 is too high, and
that refusal must be tested against a real slow disk with real fio. This kernel
has neither ``tc netem``-style disk delay (dm-delay) nor device-mapper, so the
slow disk is an ext4 on a loop device throttled with the cgroup v1 knob
``blkio.throttle.write_iops_device``. The fast disk is a tmpfs.

The throttle is written twice, on purpose: v1 blk-throttle is not hierarchical,
so a limit in the host's blkio cgroup only slows the container's own data
writes, while the ext4 journal commits that every fdatasync waits for are
issued by the kernel's jbd2 thread in the ROOT blkio cgroup. The loop device is
dedicated to one host, so a per-device limit in the root cgroup touches nothing
else; it is removed when the disk is detached.

A disk is mounted before boot (by the host launcher) or, on a running host,
hot-plugged into the container's mount namespace with nsenter: a temporary
device node is made inside it, because nspawn's /dev has no loop nodes.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from bootstrap.errors import PermanentError
from bootstrap.lab.net import run

ROOT_BLKIO = Path("/sys/fs/cgroup/blkio")
DiskKind = Literal["slow", "fast"]


@dataclass
class DiskSpec:
    """One extra disk of a host, as persisted in host.json."""

    mountpoint: str
    kind: DiskKind
    size_mib: int
    write_iops: int | None = None  # slow disks only
    backing: str | None = None  # slow disks: the image file
    loop: str | None = None  # slow disks: /dev/loopN while attached

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DiskSpec:
        return cls(**data)


_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/-]+$")


def check_mountpoint(mountpoint: str) -> str:
    """Absolute, below /, no ``..`` and only plain characters (it goes into a shell line)."""
    path = PurePosixPath(mountpoint)
    if not _SAFE_PATH.match(mountpoint) or ".." in path.parts or str(path) == "/":
        raise PermanentError(
            f"disk mountpoint {mountpoint!r} must be an absolute path below / "
            "made of letters, digits, '.', '_', '-' and '/'",
            target="lab",
        )
    return str(path)


def make_backing(path: Path, size_mib: int) -> None:
    """A sparse image with a fully initialised ext4 (no lazy init writes during fio)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        fh.truncate(size_mib * 1024 * 1024)
    run(
        ["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", str(tmp)],
        what=f"mkfs.ext4 {path}",
    )
    os.replace(tmp, path)


def loop_for(backing: Path) -> str | None:
    """The loop device currently backed by this file, if any."""
    out = run(["losetup", "-n", "-O", "NAME", "-j", str(backing)], what="losetup -j").stdout
    names = out.split()
    return names[0] if names else None


def attach_loop(backing: Path) -> str:
    existing = loop_for(backing)
    if existing:
        return existing
    return run(
        ["losetup", "--find", "--show", str(backing)], what=f"losetup {backing}"
    ).stdout.strip()


def detach_loop(loop: str, backing: Path) -> None:
    """Detach only if the device is still ours (the number may have been reused)."""
    if loop_for(backing) == loop:
        run(["losetup", "-d", loop], what=f"losetup -d {loop}", check=False)


def dev_numbers(dev: str) -> tuple[int, int]:
    st = os.stat(dev)
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def _write_throttle(cgroup: Path, dev: str, iops: int) -> None:
    major, minor = dev_numbers(dev)
    knob = cgroup / "blkio.throttle.write_iops_device"
    if knob.exists():
        knob.write_text(f"{major}:{minor} {iops}\n")


def throttle(dev: str, iops: int, host_blkio: Path | None) -> None:
    _write_throttle(ROOT_BLKIO, dev, iops)
    if host_blkio is not None:
        host_blkio.mkdir(parents=True, exist_ok=True)
        _write_throttle(host_blkio, dev, iops)


def unthrottle(dev: str, host_blkio: Path | None) -> None:
    with contextlib.suppress(OSError):
        _write_throttle(ROOT_BLKIO, dev, 0)  # 0 removes the rule
    if host_blkio is not None and host_blkio.is_dir():
        with contextlib.suppress(OSError):
            _write_throttle(host_blkio, dev, 0)


def preboot_line(spec: DiskSpec) -> str:
    """One ``kind|source|target|options`` line for the launcher script."""
    if spec.kind == "fast":
        return f"tmpfs|tmpfs|{spec.mountpoint}|size={spec.size_mib}m,mode=0755"
    if spec.loop is None:
        raise PermanentError(f"slow disk {spec.mountpoint} has no loop device", target="lab")
    return f"ext4|{spec.loop}|{spec.mountpoint}|rw"


def hot_mount_command(pid1: int, spec: DiskSpec) -> list[str]:
    """nsenter argv that mounts the disk inside a running container."""
    target = spec.mountpoint
    if spec.kind == "fast":
        opts = f"size={spec.size_mib}m,mode=0755"
        script = f'mkdir -p "{target}" && mount -t tmpfs -o {opts} tmpfs "{target}"'
    else:
        if spec.loop is None:
            raise PermanentError(f"slow disk {target} has no loop device", target="lab")
        major, minor = dev_numbers(spec.loop)
        node = f"/dev/.drboot-{os.path.basename(spec.loop)}"
        script = (
            f'mkdir -p "{target}" && rm -f {node} && mknod {node} b {major} {minor} && '
            f'mount -t ext4 {node} "{target}"; rc=$?; rm -f {node}; exit $rc'
        )
    return ["nsenter", "-t", str(pid1), "-m", "--", "/bin/sh", "-c", script]
