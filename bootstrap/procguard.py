"""Child processes that die with drboot, and a resume that stops what a dead run left running.

Why a module of its own: ``kill -9`` of drboot during ``install-k3s`` used to leave its
``ansible-playbook`` running; it went on changing the host while a ``resume`` ran a second
playbook against it (issue 13, defect 8). Two things close that hole:

* Every child tree drboot starts is marked: a random token in its environment
  (``DRBOOT_CHILD_MARK``), which each descendant inherits, and a record of it in the run
  folder (``children/<token>.json``), written *before* the child starts. Descendants that
  rewrite their own environment block (an ssh ControlPersist master sets its title over it)
  are matched by a string recorded with the mark (their control-socket directory, a fresh
  ``mkdtemp`` name) that stays in their command line.
* The child itself is a small guard (:func:`guard_main`) that asks the kernel for a signal
  when drboot dies (``prctl(PR_SET_PDEATHSIG)``), starts the real command and, on that signal
  (or on ansible-runner's own SIGTERM), kills every process carrying the mark.

A resume calls :func:`stop_leftovers` before it acts: whatever a run folder's records still
find alive (the guard itself was killed too, say) is stopped. A process is only ever
matched by the random token or the fresh directory name, so a recycled pid is never killed.
Only the standard library here: the guard runs before anything else is imported.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MARK_ENV = "DRBOOT_CHILD_MARK"
MATCH_ENV = "DRBOOT_CHILD_MATCH"  # a string the mark's processes have in their command line
PARENT_ENV = "DRBOOT_CHILD_PARENT"  # the drboot pid the guard must outlive no longer than
CHILDREN_DIR = "children"  # in a run folder
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ChildMark:
    """How the processes of one child tree are found again: by environment or command line."""

    token: str
    match: str | None = None
    what: str = ""

    def env(self) -> dict[str, str]:
        out = {MARK_ENV: self.token, PARENT_ENV: str(os.getpid())}
        if self.match:
            out[MATCH_ENV] = self.match
        return out


def new_mark(record_dir: Path, what: str, *, match: str | None = None) -> ChildMark:
    """A fresh mark, recorded in ``record_dir`` (0600, atomic) before any child carries it."""
    mark = ChildMark(token=f"drb-{secrets.token_hex(16)}", match=match, what=what)
    record_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = record_dir / f"{mark.token}.json"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        doc = {"token": mark.token, "match": match, "what": what, "started": time.time(),
               "pid": os.getpid()}  # fmt: skip
        os.write(fd, json.dumps(doc).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return mark


def forget(record_dir: Path, mark: ChildMark) -> None:
    """The child tree ended normally: its record goes."""
    (record_dir / f"{mark.token}.json").unlink(missing_ok=True)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # gone, a kernel thread, or not ours to read
        return b""


def marked_pids(mark: ChildMark) -> list[int]:
    """Live processes of ``mark`` (never this process)."""
    needle = f"{MARK_ENV}={mark.token}".encode()
    match = mark.match.encode() if mark.match else None
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        marked = needle in _read(entry / "environ").split(b"\0")
        if marked or (match is not None and match in _read(entry / "cmdline")):
            found.append(int(entry.name))
    return found


def describe(pid: int) -> str:
    cmd = _read(Path(f"/proc/{pid}/cmdline")).replace(b"\0", b" ").decode(errors="replace")
    return f"pid {pid} ({cmd.strip()[:120] or '?'})"


def stop_marked(mark: ChildMark, *, rounds: int = 50) -> list[str]:
    """SIGKILL every process of ``mark`` until none is left (a dying parent may still fork)."""
    stopped: list[str] = []
    for _ in range(rounds):
        pids = marked_pids(mark)
        if not pids:
            break
        for pid in pids:
            desc = describe(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            stopped.append(desc)
        time.sleep(0.02)  # let the kernel tear them down before looking again
    return stopped


def stop_leftovers(record_dir: Path) -> list[str]:
    """Stop every process a dead run's records still find, and drop the records.

    Called by ``resume`` while it holds the site lock, so the run that wrote the records
    is known to be dead: anything still carrying its marks is a leftover.
    """
    stopped: list[str] = []
    if not record_dir.is_dir():
        return stopped
    for path in sorted(record_dir.glob("*.json")):
        try:
            doc = json.loads(path.read_text())
            mark = ChildMark(token=str(doc["token"]), match=doc.get("match"),
                             what=str(doc.get("what", "")))  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)
            continue
        stopped.extend(f"{mark.what}: {d}" for d in stop_marked(mark))
        path.unlink(missing_ok=True)
    for tmp in record_dir.glob("*.tmp"):
        tmp.unlink(missing_ok=True)
    return stopped


def _set_parent_death_signal(sig: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def guard_main(argv: Sequence[str]) -> int:
    """Run ``argv`` as a marked child tree that dies with drboot; return its exit code.

    The guard stays the parent of the command: when drboot dies the kernel sends it SIGTERM
    (``PR_SET_PDEATHSIG``), as does ansible-runner on a timeout; either way every process
    of the mark is killed, the command's workers and ssh connections included.
    """
    mark = ChildMark(token=os.environ[MARK_ENV], match=os.environ.get(MATCH_ENV))
    expected_parent = int(os.environ.get(PARENT_ENV, "0") or 0)

    def die(signum: int, _frame: object) -> None:
        stop_marked(mark)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, die)
    signal.signal(signal.SIGHUP, die)
    _set_parent_death_signal(signal.SIGTERM)
    if expected_parent and os.getppid() != expected_parent:
        die(signal.SIGTERM, None)  # drboot died before the kernel could be asked to tell us
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        try:
            os.execvp(argv[0], list(argv))
        finally:
            os._exit(127)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except InterruptedError:
            continue
        code = os.waitstatus_to_exitcode(status)
        return 128 - code if code < 0 else code


def write_guard_script(path: Path, command: str) -> Path:
    """An executable that runs ``command ARGS...`` under :func:`guard_main` with this Python."""
    package_parent = Path(__file__).resolve().parents[1]
    text = (
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(package_parent)!r})\n"
        "from bootstrap.procguard import guard_main\n"
        f"sys.exit(guard_main([{command!r}, *sys.argv[1:]]))\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(0o700)
    os.replace(tmp, path)
    return path
