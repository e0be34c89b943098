"""Per-host cgroups (v1 hybrid hierarchy) for lab containers.

Why: with PID 1 of this machine not being systemd, ``systemd-nspawn
--keep-unit`` builds its ``supervisor``/``payload`` cgroups *under the cgroup it
was started in*. Two containers started from the same cgroup would share one
``payload`` tree and their systemds would fight over it. So each host's launcher
first moves itself into its own cgroup, ``drboot-lab/drbN/HOST``, in the
``name=systemd`` and cgroup2 (``unified``) hierarchies the container uses, and
in ``blkio`` where its slow-disk throttle lives. Only a host given a "slow CPU" is moved
into a ``cpu`` cgroup of its own (``set_cpu_quota``): a v1 cpu cgroup competes with the
machine's other tasks as *one* task, so an uncapped host stays in the root cpu cgroup, where
its processes compete one by one, as they would on a VPS. An optional memory limit is a
child of the caller's own memory cgroup, so the lab never escapes the limits
the machine's owner put on us.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
# Hierarchies the container must be placed in; missing ones are skipped.
HIERARCHIES = ("systemd", "unified", "blkio")
CFS_PERIOD_US = 100_000


@dataclass(frozen=True)
class HostCgroups:
    """The cgroup directories of one host (absolute paths)."""

    dirs: tuple[Path, ...]
    blkio: Path | None
    memory: Path | None
    cpu: Path | None = None

    def procs_files(self) -> list[Path]:
        files = [d / "cgroup.procs" for d in self.dirs]
        if self.memory is not None:
            files.append(self.memory / "cgroup.procs")
        return files

    def pids(self) -> set[int]:
        """Every process still in any of this host's cgroups (recursively)."""
        found: set[int] = set()
        for top in [*self.dirs, *([self.memory] if self.memory else [])]:
            if not top.is_dir():
                continue
            for procs in top.rglob("cgroup.procs"):
                with contextlib.suppress(OSError):
                    found.update(int(x) for x in procs.read_text().split())
        return found


def relative_path(lab_index: int, host: str) -> Path:
    return Path("drboot-lab") / f"drb{lab_index}" / host


def own_memory_cgroup() -> Path | None:
    """This process's memory cgroup directory (v1), or None without a memory hierarchy."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return CGROUP_ROOT / "memory" / path.lstrip("/")
    return None


def host_cgroups(lab_index: int, host: str, memory_parent: Path | None) -> HostCgroups:
    rel = relative_path(lab_index, host)
    dirs = tuple(
        CGROUP_ROOT / h / rel for h in HIERARCHIES if (CGROUP_ROOT / h / "cgroup.procs").exists()
    )
    blkio = CGROUP_ROOT / "blkio" / rel if (CGROUP_ROOT / "blkio").is_dir() else None
    memory = memory_parent / f"drboot-lab-drb{lab_index}-{host}" if memory_parent else None
    cpu = CGROUP_ROOT / "cpu" / rel if (CGROUP_ROOT / "cpu" / "cpu.cfs_quota_us").exists() else None
    return HostCgroups(dirs=dirs, blkio=blkio, memory=memory, cpu=cpu)


def set_cpu_quota(cg: HostCgroups, fraction: float | None) -> None:
    """Cap the host at ``fraction`` of one core (CFS quota per 100 ms period); None lifts it.

    Capping moves every process of the host into its own cpu cgroup (children inherit it);
    lifting moves them back to the root cpu cgroup and removes the host's."""
    if cg.cpu is None:
        raise OSError("this machine has no cgroup v1 cpu controller with CFS quotas")
    if fraction is None and not cg.cpu.is_dir():
        return
    if fraction is not None:
        cg.cpu.mkdir(parents=True, exist_ok=True)
        (cg.cpu / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
        quota = max(1000, round(fraction * CFS_PERIOD_US))
        (cg.cpu / "cpu.cfs_quota_us").write_text(str(quota))
    target = cg.cpu if fraction is not None else CGROUP_ROOT / "cpu"
    for pid in sorted(cg.pids() | _pids_in(cg.cpu)):
        with contextlib.suppress(OSError):  # exited meanwhile
            (target / "cgroup.procs").write_text(str(pid))
    if fraction is None:
        with contextlib.suppress(OSError):
            os.rmdir(cg.cpu)


def _pids_in(d: Path) -> set[int]:
    try:
        return {int(x) for x in (d / "cgroup.procs").read_text().split()}
    except OSError:
        return set()


def create(cg: HostCgroups, memory_bytes: int | None) -> None:
    for d in cg.dirs:
        d.mkdir(parents=True, exist_ok=True)
    if cg.memory is not None and memory_bytes is not None:
        cg.memory.mkdir(exist_ok=True)
        (cg.memory / "memory.limit_in_bytes").write_text(str(memory_bytes))


def remove(cg: HostCgroups, timeout: float = 5.0) -> None:
    """rmdir the host's cgroups, deepest first (they must be empty of processes)."""
    deadline = time.monotonic() + timeout
    for top in [*cg.dirs, *([cg.memory] if cg.memory else []), *([cg.cpu] if cg.cpu else [])]:
        if not top.is_dir():
            continue
        subdirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for d in [*subdirs, top]:
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    # EBUSY while the kernel finishes tearing down exited tasks.
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
    # Tidy the per-lab parents when they become empty; another host may still use them.
    for top in cg.dirs:
        for parent in (top.parent, top.parent.parent):
            with contextlib.suppress(OSError):
                os.rmdir(parent)
