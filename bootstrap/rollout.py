"""A new-region rollout: the same restore for many sites at once, each in its own process.

Why each site is its own ``drboot restore`` / ``drboot resume`` child process, not a thread:

* a site that crashes (an internal error, a SIGKILL, an OOM) takes only its own process
  down; the others' journal rows, locks and reports are untouched;
* a step's timeout is a ``SIGALRM`` in the run's main thread, and the site and machine locks
  are ``flock``s held for the life of a process: both mean one run, one process;
* the child is exactly what an operator would type, so ``drboot resume RUN_ID`` of one site
  later is the same thing the rollout does, and its ``-o json`` events are the interface.

The rollout process itself runs nothing of a restore. It decides per site from the journal
(``decide``: a site whose last restore ended ok with the same site file is done and skipped;
a failed or interrupted one is resumed; anything else is a new run), starts at most
``parallel`` children, reads their JSON events in one loop in the main thread, and hands
progress to an observer (``bootstrap.rolloutview``) and the outcome to the combined report
(``bootstrap.rolloutreport``).

No child outlives the rollout: every child is started from the main thread with a
parent-death signal (``bootstrap.rolloutchild``: the kernel sends it SIGTERM when the
rollout dies, even by SIGKILL; drboot's own Ansible guards then stop their playbooks), and
an interrupted rollout (Ctrl-C, SIGTERM) interrupts its children (they journal
``interrupted``, resumable) and kills those that do not end within ``STOP_GRACE`` seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any, Literal

from bootstrap.errors import ConfigError, ExitCode
from bootstrap.options import RunOptions
from bootstrap.runs import StateDir, effective_status
from bootstrap.settings import Site

Action = Literal["restore", "resume", "skip", "locked"]
SiteState = Literal["waiting", "running", "ok", "failed", "skipped", "locked", "interrupted"]
PIPELINE = "restore"
STOP_GRACE = 30.0
SITE_SUFFIXES = (".yaml", ".yml")
DEFAULT_PROGRAM = ("-m", "bootstrap.cli")


# --------------------------------------------------------------------------- the sites


@dataclass(frozen=True)
class SiteSpec:
    """One site of the rollout: its file, validated model and the digest a run journals."""

    path: Path
    site: Site
    digest: str  # sha256 of what a run of it keeps (the file, or its flattened extends)

    @property
    def name(self) -> str:
        return str(self.site.name)


def site_files(arguments: list[Path]) -> list[Path]:
    """The site files named: files as given, a directory as its ``*.yaml``/``*.yml`` files
    (sorted; a file whose name starts with ``_`` or ``.`` is a shared base, not a site)."""
    out: list[Path] = []
    for arg in arguments:
        if arg.is_dir():
            found = sorted(
                p
                for p in arg.iterdir()
                if p.suffix in SITE_SUFFIXES and p.is_file() and not p.name.startswith(("_", "."))
            )
            if not found:
                raise ConfigError(
                    f"{arg}: no site files (*.yaml) in this folder",
                    path=str(arg),
                    hint="name the site files, or the folder that holds them",
                )
            out.extend(found)
        elif arg.exists() and not arg.is_file():
            raise ConfigError(
                f"{arg}: not a regular file (a pipe?)",
                path=str(arg),
                hint="each site of a rollout is read again by its own drboot process: "
                "give site files, not pipes",
            )
        else:
            out.append(arg)
    seen: set[Path] = set()
    unique = []
    for p in out:
        key = p.absolute()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def check_sites(specs: list[SiteSpec]) -> None:
    """Two files naming one site would fight over its lock and journal: refuse before anything."""
    by_name: dict[str, Path] = {}
    for spec in specs:
        other = by_name.get(spec.name)
        if other is not None:
            raise ConfigError(
                f"site {spec.name!r} is named by both {other} and {spec.path}",
                path=str(spec.path),
                hint="each site of a rollout needs its own `name:`",
            )
        by_name[spec.name] = spec.path


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- deciding


@dataclass(frozen=True)
class Decision:
    """What the rollout does with one site, and why (observed in the journal)."""

    spec: SiteSpec
    action: Action
    run_id: str | None  # the run resumed, skipped (done) or locked; None for a new run
    why: str


def decide(state: StateDir, specs: list[SiteSpec]) -> list[Decision]:
    """Per site, from its last ``restore`` run in the journal: skip, resume, or start."""
    journal = state.journal()
    try:
        out = []
        for spec in specs:
            rows = [r for r in journal.runs(site=spec.name) if r.pipeline == PIPELINE]
            out.append(_decide_one(state, spec, rows[0] if rows else None))
        return out
    finally:
        journal.close()


def _decide_one(state: StateDir, spec: SiteSpec, last: Any) -> Decision:
    if last is None:
        return Decision(spec, "restore", None, "no earlier restore of this site")
    status = effective_status(state, last)
    same = last.site_digest == spec.digest
    if status == "running":
        return Decision(spec, "locked", last.id, f"run {last.id} of this site is running")
    if status == "ok" and same:
        return Decision(spec, "skip", last.id, f"done: run {last.id} finished ok")
    if status == "ok":
        return Decision(spec, "restore", None, f"the site file changed since run {last.id}")
    if same:
        return Decision(spec, "resume", last.id, f"run {last.id} is {status}")
    return Decision(
        spec,
        "restore",
        None,
        f"the site file changed since run {last.id} ({status}): a new run uses the file "
        "as it is now",
    )


# --------------------------------------------------------------------------- progress


@dataclass
class SiteProgress:
    """One site as the rollout sees it, updated from its child's events."""

    name: str
    path: str
    action: Action
    why: str
    run_id: str | None = None
    state: SiteState = "waiting"
    step: str | None = None
    step_since: float | None = None
    started: float | None = None
    ended: float | None = None
    exit_code: int | None = None
    failed_step: str | None = None
    error: str | None = None
    log: str | None = None

    @property
    def elapsed(self) -> float | None:
        if self.started is None:
            return None
        return (self.ended or time.time()) - self.started

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.name,
            "file": self.path,
            "action": self.action,
            "why": self.why,
            "run_id": self.run_id,
            "state": self.state,
            "step": self.step,
            "elapsed": round(self.elapsed, 1) if self.elapsed is not None else None,
            "exit_code": self.exit_code,
            "failed_step": self.failed_step,
            "error": self.error,
            "log": self.log,
        }


@dataclass(frozen=True)
class RolloutEvent:
    """``rollout.started``, ``site.started``, ``site.step``, ``site.finished``,
    ``rollout.finished``: what a view shows."""

    kind: str
    site: SiteProgress | None = None
    data: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "ts": self.ts}
        if self.site is not None:
            out.update(self.site.to_json())
        out.update(self.data)
        return out


RolloutObserver = Callable[[RolloutEvent], None]


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class RolloutRequest:
    """How to run the children: the state directory, their options, how many at once."""

    state: StateDir
    folder: Path  # the rollout's own folder: each child's stderr log
    options: RunOptions = field(default_factory=RunOptions)
    parallel: int = 2
    program: tuple[str, ...] = DEFAULT_PROGRAM  # the drboot a child runs (after the python)


def child_argv(req: RolloutRequest, decision: Decision) -> list[str]:
    """The command of one site: ``drboot -o json restore FILE`` or ``resume RUN_ID``."""
    head = [
        sys.executable,
        "-m",
        "bootstrap.rolloutchild",
        str(os.getpid()),
        *req.program,
        "--state-dir",
        str(req.state.root),
        "-o",
        "json",
    ]
    if req.state.audit_anchor is not None:
        head += ["--audit-anchor", str(req.state.audit_anchor)]
    if decision.action == "resume":
        assert decision.run_id is not None
        head += ["resume", decision.run_id]
    else:
        head += ["restore", str(decision.spec.path.absolute())]
    opts = req.options
    if opts.accept_slow_disk:
        head += ["--accept-slow-disk", opts.accept_slow_disk]
    if opts.accept_slow_cpu:
        head += ["--accept-slow-cpu", opts.accept_slow_cpu]
    if opts.trust_on_first_use:
        head.append("--trust-on-first-use")
    return head


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    return env


@dataclass
class _Child:
    progress: SiteProgress
    proc: subprocess.Popen[bytes]
    stdout: IO[bytes]
    buffer: bytes = b""
    eof: bool = False


class Interrupted(Exception):
    """The rollout itself was asked to stop (SIGINT / SIGTERM)."""


@dataclass(frozen=True)
class Outcome:
    """Every site as the rollout left it; ``interrupted`` when the rollout was stopped."""

    sites: list[SiteProgress]
    interrupted: bool = False


def run(req: RolloutRequest, decisions: list[Decision], observer: RolloutObserver) -> Outcome:
    """Run every decision, at most ``req.parallel`` children at a time; every site's outcome.

    Stopped by SIGINT/SIGTERM, it interrupts the children and says so (``interrupted``).
    """
    sites = [
        SiteProgress(d.spec.name, str(d.spec.path), d.action, d.why, run_id=d.run_id)
        for d in decisions
    ]
    observer(RolloutEvent("rollout.started", data={"sites": [s.to_json() for s in sites],
                                                    "parallel": req.parallel}))  # fmt: skip
    todo: deque[tuple[Decision, SiteProgress]] = deque()
    for decision, site in zip(decisions, sites, strict=True):
        if decision.action == "skip":
            site.state = "skipped"
            observer(RolloutEvent("site.finished", site))
        elif decision.action == "locked":
            site.state, site.exit_code = "locked", int(ExitCode.LOCKED)
            site.error = decision.why
            observer(RolloutEvent("site.finished", site))
        else:
            todo.append((decision, site))
    try:
        with _Supervisor(req, observer) as supervisor:
            supervisor.run(todo)
    except Interrupted:
        return Outcome(sites, interrupted=True)
    return Outcome(sites)


class _Supervisor:
    """Starts children, reads their events, stops them all if the rollout is stopped."""

    def __init__(self, req: RolloutRequest, observer: RolloutObserver) -> None:
        self.req = req
        self.observer = observer
        self.selector = selectors.DefaultSelector()
        self.running: dict[int, _Child] = {}
        self.stop_signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Supervisor:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._stop_all()
        finally:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
            self.selector.close()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stop_signal = signum

    def run(self, todo: deque[tuple[Decision, SiteProgress]]) -> None:
        while todo or self.running:
            if self.stop_signal is not None:
                raise Interrupted()
            while todo and len(self.running) < self.req.parallel:
                self._start(*todo.popleft())
            self._pump(timeout=0.5)
            self.observer(RolloutEvent("tick"))

    def _start(self, decision: Decision, site: SiteProgress) -> None:
        self.req.folder.mkdir(parents=True, exist_ok=True)
        log = self.req.folder / f"{site.name}.stderr.log"
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            proc = subprocess.Popen(
                child_argv(self.req, decision),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=fd,
                env=_child_env(),
                start_new_session=True,  # the rollout's Ctrl-C reaches it through the rollout
            )
        finally:
            os.close(fd)
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        child = _Child(site, proc, proc.stdout)
        self.running[proc.pid] = child
        self.selector.register(proc.stdout, selectors.EVENT_READ, proc.pid)
        site.state, site.started, site.log = "running", time.time(), str(log)
        self.observer(RolloutEvent("site.started", site, {"pid": proc.pid}))

    def _pump(self, timeout: float) -> None:
        for key, _ in self.selector.select(timeout):
            child = self.running[int(key.data)]
            try:
                chunk = os.read(child.stdout.fileno(), 65536)
            except BlockingIOError:
                continue
            if not chunk:
                child.eof = True
                self.selector.unregister(child.stdout)
                continue
            child.buffer += chunk
            *lines, child.buffer = child.buffer.split(b"\n")
            for line in lines:
                self._event(child.progress, line)
        for pid, child in list(self.running.items()):
            if child.proc.poll() is not None:
                # what it wrote before it ended is in the pipe; a grandchild that kept the
                # pipe open must not keep the site "running"
                self._read_rest(child)
                self._finished(child)
                del self.running[pid]

    def _event(self, site: SiteProgress, line: bytes) -> None:
        try:
            ev = json.loads(line)
        except ValueError:
            return
        if not isinstance(ev, dict):
            return
        kind = ev.get("kind")
        raw = ev.get("data")
        data: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if kind == "run.started":
            site.run_id = str(ev.get("run_id"))
            self.observer(RolloutEvent("site.run", site))
        elif kind == "step.started":
            site.step, site.step_since = ev.get("step"), time.time()
            self.observer(RolloutEvent("site.step", site))
        elif kind == "step.failed":
            site.failed_step = ev.get("step")
            target = f" on {ev['target']}" if ev.get("target") else ""
            site.error = f"{ev.get('message', '')}{target}"
        elif kind == "run.finished":
            site.exit_code = _int(data.get("exit_code"))
            if data.get("error"):
                site.error = str(data["error"])
        elif kind is None and "error" in ev:  # the command failed before a run existed
            site.exit_code = _int(ev.get("exit_code"))
            site.error = str(ev["error"])

    def _finished(self, child: _Child) -> None:
        site = child.progress
        code = child.proc.returncode
        site.ended = time.time()
        if site.exit_code is None:
            site.exit_code = code if code >= 0 else 128 - code
            if site.error is None:
                site.error = f"drboot ended with code {code} without saying why; see {site.log}"
        if site.exit_code == 0:
            site.state = "ok"
        elif site.exit_code == ExitCode.INTERRUPTED or code < 0:
            site.state = "interrupted"
        elif site.exit_code == ExitCode.LOCKED:
            site.state = "locked"
        else:
            site.state = "failed"
        self.observer(RolloutEvent("site.finished", site))

    def _stop_all(self) -> None:
        """Interrupt every child still running; kill those that do not end in time."""
        if not self.running:
            return
        for child in self.running.values():
            _signal(child.proc, signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE
        while self.running and time.monotonic() < deadline:
            self._pump(timeout=0.2)
        for child in self.running.values():
            _signal(child.proc, signal.SIGKILL)
            child.proc.wait()
        self._pump(timeout=0)

    def _read_rest(self, child: _Child) -> None:
        rest = b""
        if not child.eof:
            while True:
                try:
                    chunk = os.read(child.stdout.fileno(), 65536)
                except (BlockingIOError, OSError):
                    break
                if not chunk:
                    break
                rest += chunk
            self.selector.unregister(child.stdout)
            child.eof = True
        for line in (child.buffer + rest).split(b"\n"):
            self._event(child.progress, line)
        child.buffer = b""
        child.stdout.close()


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def iter_failed(sites: list[SiteProgress]) -> Iterator[SiteProgress]:
    return (s for s in sites if s.state not in ("ok", "skipped"))


def exit_code(sites: list[SiteProgress]) -> int:
    """0 when every site is ok (or was already done); 4 when any site is not."""
    return int(ExitCode.STEP_FAILED) if any(iter_failed(sites)) else int(ExitCode.OK)
