"""One active run per site: a lock file held with flock for the life of the process.

The kernel drops a flock when its holder dies, so a live holder is told apart
from a dead one without trusting PIDs. A lock file whose holder is dead is
*stale*: it is refused with a clear message until the operator says
``--force-unlock`` (it says which run died, so they can ``resume`` it
instead). A live holder is never displaced.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path
from types import TracebackType

from bootstrap.errors import LockedError


class SiteLock:
    """The lock of one site, at ``<state_dir>/locks/<site>.lock``."""

    def __init__(self, state_dir: Path, site: str) -> None:
        self.path = Path(state_dir) / "locks" / f"{site}.lock"
        self.site = site
        self._fd: int | None = None

    def holder(self) -> dict[str, object]:
        try:
            data = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def acquire(self, run_id: str, *, force_unlock: bool = False) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        existed = self.path.exists() and self.path.stat().st_size > 0
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            h = self.holder()
            raise LockedError(
                f"site {self.site} is locked by run {h.get('run_id', '?')} "
                f"(pid {h.get('pid', '?')} on {h.get('host', '?')}), which is still running",
                hint="wait for it to finish, or watch it with `drboot status "
                f"{h.get('run_id', '')}`".rstrip(),
            ) from None
        if existed and not force_unlock:
            h = self.holder()
            # A resume of the very run that died may take its own stale lock.
            if h and h.get("run_id") != run_id:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
                raise LockedError(
                    f"site {self.site} has a stale lock from run {h.get('run_id', '?')} "
                    f"(pid {h.get('pid', '?')} on {h.get('host', '?')} is gone)",
                    hint=f"continue that run with `drboot resume {h.get('run_id', '?')}`, "
                    "or start over with `--force-unlock`",
                )
        info = {"run_id": run_id, "pid": os.getpid(), "host": socket.gethostname()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """Release on a clean end; the file is emptied so the next run sees no stale lock."""
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> SiteLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
