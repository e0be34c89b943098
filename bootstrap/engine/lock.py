"""One active run per site: lock files held with flock for the life of the process.

Two locks, both taken by every run: the state directory's (``<state_dir>/locks/<site>.lock``,
which also tells a dead run apart, below) and the machine's (``/run/lock/drboot/<site>.lock``,
:class:`MachineLock`), which every user of the machine sees, so two restores of one site from
two accounts, each with its own state directory, cannot run at once.

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
import pwd
import socket
import stat
from pathlib import Path
from types import TracebackType

from bootstrap.errors import ConfigError, LockedError

LOCK_DIR_ENV = "DRBOOT_LOCK_DIR"
DEFAULT_LOCK_DIR = Path("/run/lock/drboot")


def machine_lock_dir() -> Path:
    """Where the machine-wide site locks live: ``$DRBOOT_LOCK_DIR`` or ``/run/lock/drboot``."""
    return Path(os.environ.get(LOCK_DIR_ENV) or DEFAULT_LOCK_DIR)


def _user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid {os.getuid()}"


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


class MachineLock:
    """The machine-wide lock of one site, shared by every user: ``<lock dir>/<site>.lock``.

    The directory is created mode 1777 (sticky, like /tmp) so any account can take a lock in
    it; a lock file is 0666 so whoever holds it can say who they are. Only a live holder
    counts (flock): a killed run's file is simply taken over, as the state directory's lock
    already decides whether a dead run must be resumed first.
    """

    def __init__(self, site: str, directory: Path | None = None) -> None:
        self.dir = directory or machine_lock_dir()
        self.path = self.dir / f"{site}.lock"
        self.site = site
        self._fd: int | None = None
        self._writable = False

    def _ensure_dir(self) -> None:
        try:
            os.mkdir(self.dir, 0o700)
            os.chmod(self.dir, 0o1777)  # mkdir's mode is narrowed by the umask
        except FileExistsError:
            pass
        except OSError as e:
            raise ConfigError(
                f"cannot create the machine-wide lock directory {self.dir}: {e.strerror}",
                hint=f"create it mode 1777, or point {LOCK_DIR_ENV} at a directory every "
                "drboot user of this machine can write",
            ) from None
        st = os.lstat(self.dir)
        if not stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"the machine-wide lock directory {self.dir} is not a directory",
                              hint=f"remove it, or set {LOCK_DIR_ENV}")  # fmt: skip

    def _open(self) -> int:
        flags = os.O_NOFOLLOW | os.O_CLOEXEC
        while True:
            try:  # no O_CREAT on another user's file: fs.protected_regular refuses it
                fd = os.open(self.path, os.O_RDWR | flags)
                self._writable = True
                return fd
            except PermissionError:
                self._writable = False
                return os.open(self.path, os.O_RDONLY | flags)
            except FileNotFoundError:
                pass
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | flags, 0o666)
            except FileExistsError:
                continue  # another process created it first: open theirs
            os.fchmod(fd, 0o666)
            self._writable = True
            return fd

    def holder(self) -> dict[str, object]:
        try:
            data = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def acquire(self, run_id: str, state_dir: Path) -> None:
        self._ensure_dir()
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            h = self.holder()
            raise LockedError(
                f"site {self.site} is being restored on this machine by run "
                f"{h.get('run_id', '?')} of user {h.get('user', '?')} (pid {h.get('pid', '?')}, "
                f"state directory {h.get('state_dir', '?')}), which is still running",
                hint=f"wait for it to finish; the machine-wide lock is {self.path}",
            ) from None
        if self._writable:
            info = {"run_id": run_id, "pid": os.getpid(), "host": socket.gethostname(),
                    "user": _user(), "uid": os.getuid(), "state_dir": str(state_dir)}  # fmt: skip
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        if self._writable:
            os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
