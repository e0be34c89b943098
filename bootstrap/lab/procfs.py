"""Reading /proc: a process's start time and its children.

Why a module of its own: a lab host is found again by a later ``drboot`` process through
the pid recorded in host.json, and a pid alone can be reused; the pair (pid, kernel start
time) cannot. Finding the container's PID 1 starts from nspawn's children.
"""

from __future__ import annotations

from pathlib import Path


def proc_start_time(pid: int) -> int | None:
    """Kernel start time of a live (non-zombie) process, or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None  # our parent (PID 1 here) may never reap it
    return int(fields[19])


def children(pid: int) -> list[int]:
    """Pids whose parent is ``pid``."""
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
