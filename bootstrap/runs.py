"""Start, resume, plan and inspect runs: the functions the CLI calls.

This module joins the pieces for one command: the site file, the state
directory (journal, audit log, run folders, locks), the pipeline, and the
observers. It knows nothing of click; it returns ``RunResult`` and raises
``BootstrapError``.

It is also the one place that knows a run folder: how a run's own copy of its
site file is loaded again (``load_run_site``, for resume and report), how a
report is written again (``regenerate_report``), and what a journalled status
means now (``RunView``: a run whose row says running but whose process is gone
was interrupted).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bootstrap.audit import AuditLog
from bootstrap.engine.context import RunScope
from bootstrap.engine.journal import Journal, RunRow, RunStatus, StepRow
from bootstrap.engine.lock import MachineLock, SiteLock
from bootstrap.engine.runner import RunResult, execute, plan
from bootstrap.engine.step import Pipeline
from bootstrap.errors import ConfigError
from bootstrap.events import Event, EventBus, Observer
from bootstrap.fsutil import private_dir, write_atomic
from bootstrap.options import RunOptions
from bootstrap.procguard import CHILDREN_DIR, stop_leftovers
from bootstrap.render.recorders import AuditRecorder, JournalRecorder
from bootstrap.report import model, write
from bootstrap.settings import Site
from bootstrap.siteload import load_site_text

SITE_COPY = "site.yaml"
RESUMABLE: frozenset[RunStatus] = frozenset({"failed", "interrupted", "stopped"})


def default_state_dir() -> Path:
    env = os.environ.get("DRBOOT_STATE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "drboot"


@dataclass
class StateDir:
    """Where drboot keeps its journal, audit log, locks and run folders."""

    root: Path
    audit_anchor: Path | None = None  # outside ``root``: see ``bootstrap.audit``

    def __post_init__(self) -> None:
        private_dir(self.root)
        if self.audit_anchor is not None:
            anchor = self.audit_anchor.absolute()
            if anchor.resolve().is_relative_to(self.root.resolve()):
                raise ConfigError(
                    f"the audit anchor {anchor} is inside the state directory {self.root}",
                    hint="DRBOOT_AUDIT_ANCHOR must be outside it: whoever can write the state "
                    "directory must not be able to rewrite the anchor",
                )
            self.audit_anchor = anchor

    @property
    def journal_path(self) -> Path:
        return self.root / "journal.sqlite"

    @property
    def audit(self) -> AuditLog:
        return AuditLog(self.root / "audit.jsonl", anchor=self.audit_anchor)

    def run_dir(self, run_id: str) -> Path:
        return private_dir(self.root / "runs" / run_id)

    def journal(self) -> Journal:
        return Journal(self.journal_path)


@dataclass
class RunRequest:
    """Everything one restore/resume/plan needs besides the pipeline."""

    state: StateDir
    observers: list[Observer] = field(default_factory=list)
    options: RunOptions = field(default_factory=RunOptions)
    force_unlock: bool = False
    until: str | None = None


def new_run_id(site: str) -> str:
    return f"{site}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(2)}"


def _bus(req: RunRequest, journal: Journal, *, dry_run: bool = False) -> EventBus:
    bus = EventBus()
    if not dry_run:
        bus.subscribe(JournalRecorder(journal))
        bus.subscribe(AuditRecorder(req.state.audit))
    for obs in req.observers:
        bus.subscribe(obs)
    return bus


def start(
    pipeline: Pipeline,
    site: Site,
    site_data: bytes,
    req: RunRequest,
    site_dir: Path | None = None,
) -> RunResult:
    """A new run of ``pipeline`` for ``site`` (its validated model and the exact bytes).

    The run folder keeps ``site_data`` as it was validated. ``site_dir`` is where
    relative paths in it were resolved; a resume resolves them there again.
    """
    name = str(site.name)
    options = req.options
    if site_dir is not None and options.site_dir is None:
        options = replace(options, site_dir=str(site_dir))
    run_id = new_run_id(name)
    journal = req.state.journal()
    lock = SiteLock(req.state.root, name)
    machine = MachineLock(name)
    try:
        lock.acquire(run_id, force_unlock=req.force_unlock)
        machine.acquire(run_id, req.state.root)
        run_dir = req.state.run_dir(run_id)
        write_atomic(run_dir / SITE_COPY, site_data)
        digest = hashlib.sha256(site_data).hexdigest()
        journal.create_run(run_id, name, pipeline.name, pipeline.ids(), options.to_json(), digest)
        scope = RunScope(
            run_id=run_id,
            site=site,
            run_dir=run_dir,
            bus=_bus(req, journal),
            options=options,
            until=req.until,
            pipeline=pipeline.name,
        )
        return execute(pipeline, journal, scope)
    finally:
        machine.release()
        lock.release()
        journal.close()


def resume(run_id: str, pipelines: dict[str, Pipeline], req: RunRequest) -> RunResult:
    """Continue ``run_id`` from its first unfinished step, with the site file it started with.

    The options it was started with stay; what ``req`` sets goes on top of them.
    """
    journal = req.state.journal()
    try:
        row = _known_run(journal, req.state, run_id)
        if row.status == "ok":
            raise ConfigError(
                f"run {run_id} already finished ok; nothing to resume",
                hint="start a new run with `drboot restore SITE`",
            )
        pipeline = pipelines.get(row.pipeline)
        if pipeline is None:
            raise ConfigError(
                f"run {run_id} used pipeline {row.pipeline!r}, unknown to this drboot"
            )
        journalled = _journalled_options(row)
        site = _site_of(req.state, row, journalled)
        options = journalled.overridden_by(req.options)
        lock = SiteLock(req.state.root, row.site)
        machine = MachineLock(row.site)
        try:
            lock.acquire(run_id, force_unlock=req.force_unlock)
            machine.acquire(run_id, req.state.root)
            run_dir = req.state.run_dir(run_id)
            # The run is dead (we hold its lock): stop what it left running before acting.
            stopped = stop_leftovers(run_dir / CHILDREN_DIR)
            journal.reopen_run(run_id, pipeline.ids())
            bus = _bus(req, journal)
            for what in stopped:
                bus.emit(Event(kind="audit", run_id=run_id, message=f"stopped leftover {what}",
                               data={"action": "stop-leftover"}))  # fmt: skip
            scope = RunScope(
                run_id=run_id,
                site=site,
                run_dir=run_dir,
                bus=bus,
                options=options,
                until=req.until,
                pipeline=pipeline.name,
            )
            _remove_leftovers(scope)
            return execute(pipeline, journal, scope)
        finally:
            machine.release()
            lock.release()
    finally:
        journal.close()


def _remove_leftovers(scope: RunScope) -> None:
    """Secrets a killed run left on disk go before the resume acts; the audit log says which
    files (never what they held)."""
    from bootstrap.steps.resources import remove_dead_run_leftovers

    removed = remove_dead_run_leftovers(scope.run_dir)
    if removed:
        scope.bus.emit(
            Event(
                kind="audit",
                run_id=scope.run_id,
                message="removed secrets a dead run left on disk",
                data={"files": removed},
            )
        )


def load_run_site(state: StateDir, run_id: str) -> Site:
    """The site of ``run_id``, from the copy in its run folder, as it was when the run started."""
    journal = state.journal()
    try:
        row = _known_run(journal, state, run_id)
    finally:
        journal.close()
    return _site_of(state, row, _journalled_options(row))


@dataclass(frozen=True)
class WrittenReport:
    """A report written again from the journal: its data and the files it went to."""

    report: dict[str, Any]
    files: list[Path]


def regenerate_report(state: StateDir, run_id: str, directory: Path | None) -> WrittenReport:
    """Write the report of ``run_id`` again, from the journal and the run's own site file.

    It goes to ``directory``, else the site's ``report.directory``, else the run folder.
    """
    site = load_run_site(state, run_id)
    from bootstrap.providers.plugin import plugin_for
    from bootstrap.steps.finish import from_journal

    standins = plugin_for(site, state.root).standins()
    data = from_journal(state.journal_path, run_id, model.context_for(site, standins, time.time()))
    target = directory or site.report.directory or state.run_dir(run_id)
    try:
        files = write.write(data, target, list(site.report.formats))
    except OSError as exc:
        raise ConfigError(
            f"cannot write the report into {target}: {exc.strerror or type(exc).__name__}",
            hint="choose a writable folder with --directory",
        ) from None
    return WrittenReport(data, files)


def _known_run(journal: Journal, state: StateDir, run_id: str) -> RunRow:
    row = journal.run(run_id)
    if row is None:
        raise ConfigError(
            f"no run {run_id} in {state.root}",
            hint="list runs with `drboot status` (and check --state-dir)",
        )
    return row


def _journalled_options(row: RunRow) -> RunOptions:
    try:
        return RunOptions.from_json(row.options)
    except ValueError as exc:
        raise ConfigError(
            f"run {row.id} was journalled by another drboot version and cannot be resumed ({exc})",
            hint="start a new run with `drboot restore SITE`",
        ) from None


def _site_of(state: StateDir, row: RunRow, options: RunOptions) -> Site:
    """Load the run folder's copy of the site file, resolving paths where the original was."""
    path = state.run_dir(row.id) / SITE_COPY
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"run {row.id} has no copy of its site file",
            path=str(path),
            hint="the run folder was removed; start a new run with `drboot restore SITE`",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read the run's copy of its site file ({exc})",
            path=str(path),
            hint="start a new run with `drboot restore SITE`",
        ) from None
    base = Path(options.site_dir) if options.site_dir else path.parent
    return load_site_text(text, str(path), base_dir=base)


def dry_run(pipeline: Pipeline, site: Site, req: RunRequest) -> RunResult:
    """``drboot plan``: observe only; no journal rows, no lock, no audit records."""
    run_id = f"plan-{new_run_id(str(site.name))}"
    journal = req.state.journal()
    run_dir = req.state.run_dir(run_id)
    try:
        scope = RunScope(
            run_id=run_id,
            site=site,
            run_dir=run_dir,
            bus=_bus(req, journal, dry_run=True),
            options=req.options,
            pipeline=pipeline.name,
        )
        return plan(pipeline, scope)
    finally:
        journal.close()
        shutil.rmtree(run_dir, ignore_errors=True)  # a plan leaves nothing behind


@dataclass(frozen=True)
class RunView:
    """A journalled run as it stands now.

    The journal says ``running`` until the run's process records its end; a
    process killed with SIGKILL (or a lost machine) never does. ``status`` is
    ``interrupted`` for such a run, and ``process_gone`` says why.
    """

    row: RunRow
    status: RunStatus
    process_gone: bool = False

    @property
    def next_command(self) -> str | None:
        """What the operator can do about this run, if anything."""
        return f"drboot resume {self.row.id}" if self.status in RESUMABLE else None

    def to_json(self) -> dict[str, Any]:
        return dict(
            asdict(self.row),
            status=self.status,
            journal_status=self.row.status,
            process_gone=self.process_gone,
            next=self.next_command,
        )


def view(state: StateDir, row: RunRow) -> RunView:
    """The run of ``row`` as it stands now (see ``effective_status``)."""
    gone = row.status == "running" and _process_gone(state, row)
    return RunView(row, "interrupted" if gone else row.status, gone)


def effective_status(state: StateDir, row: RunRow) -> RunStatus:
    """The journalled status, except that a running run whose process is gone is interrupted."""
    return view(state, row).status


def _process_gone(state: StateDir, row: RunRow) -> bool:
    """Is the process of a run the journal says is running gone?

    Decided by the site lock, which a run holds (flock) for the whole life of
    its process and the kernel drops when the process dies. When the lock file
    cannot tell (missing, or last written by another run), the journalled pid
    decides, on this host only.
    """
    lock = SiteLock(state.root, row.site)
    holder = lock.holder()
    holder_run = holder.get("run_id")
    held = _lock_held(lock.path)
    if held is True:
        # One run per site: a lock a live process holds for another run means this one is gone.
        return holder_run is not None and holder_run != row.id
    if held is False and holder_run in (None, row.id):
        return True
    host = holder.get("host")
    if row.pid is None or (host is not None and host != socket.gethostname()):
        return False
    return not _pid_alive(row.pid)


def _lock_held(path: Path) -> bool | None:
    """Does a live process hold the lock file? ``None`` when it cannot be probed.

    The probe takes a shared flock without waiting and drops it at once.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # closing drops the probe's own lock, if it got one
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def status(state: StateDir, run_id: str | None) -> tuple[list[RunView], list[StepRow]]:
    """Every run (newest first), or one run and its steps."""
    journal = state.journal()
    try:
        if run_id is None:
            return [view(state, r) for r in journal.runs()], []
        row = _known_run(journal, state, run_id)
        return [view(state, row)], journal.steps(run_id)
    finally:
        journal.close()


def wait_apps(
    site: Site, kubeconfig: Path, progress: Callable[..., None]
) -> dict[str, Any]:
    """``drboot wait``: every app of an already running cluster Synced+Healthy at a verified
    commit (the wait-synced step's semantics); the record as JSON-able data."""
    from bootstrap.adapters.kube import KubeClient
    from bootstrap.steps.gitops import wait_cluster

    with KubeClient.from_kubeconfig(kubeconfig) as kube:
        return wait_cluster(site, kube, progress).to_json()
