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

import contextlib
import fcntl
import hashlib
import os
import secrets
import shutil
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bootstrap.audit import AuditLog
from bootstrap.engine.context import RunScope
from bootstrap.engine.journal import Journal, RunRow, RunStatus, StepRow
from bootstrap.engine.lock import MachineLock, SiteLock
from bootstrap.engine.runner import RunResult, execute, execute_after_end, plan
from bootstrap.engine.step import Pipeline
from bootstrap.errors import BootstrapError, ConfigError, ExitCode, RtoMissed
from bootstrap.events import Event, EventBus, Observer
from bootstrap.fsutil import private_dir, write_atomic
from bootstrap.options import RunOptions
from bootstrap.procguard import CHILDREN_DIR, stop_leftovers
from bootstrap.render.recorders import AuditRecorder, JournalRecorder
from bootstrap.report import model, write
from bootstrap.settings import Site
from bootstrap.siteload import load_site_text

if TYPE_CHECKING:
    from bootstrap.history import Outcome

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
        result = _tear_down_failed_drill(
            pipeline, journal, scope, execute(pipeline, journal, scope)
        )
        return ended(req.state, journal, scope, result)
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
        _refuse_torn_down(journal, row)
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
            _reopen_early_report(journal, run_id)
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
            result = _tear_down_failed_drill(
                pipeline, journal, scope, execute(pipeline, journal, scope)
            )
            return ended(req.state, journal, scope, result)
        finally:
            machine.release()
            lock.release()
    finally:
        journal.close()


CLEANUP_STEPS = ("teardown", "report")  # what a failed drill still runs, in this order
PROVISION_STEP = "provision"  # the first step that can create anything billable


def _tear_down_failed_drill(
    pipeline: Pipeline, journal: Journal, scope: RunScope, result: RunResult
) -> RunResult:
    """A drill that failed or was interrupted still destroys its throw-away hosts and writes
    its report: a failed drill must not leave billable servers behind. The run stays failed,
    with its own error and exit code. ``--keep-on-failure`` keeps the hosts (to debug and
    resume); a teardown that fails itself is a warning naming ``drboot teardown RUN_ID``."""
    if (
        scope.pipeline != "drill"
        or result.status not in ("failed", "interrupted")
        or scope.options.keep_on_failure
        or result.failed_step in CLEANUP_STEPS
    ):
        return result
    ids = pipeline.ids()
    # A drill that failed before it provisioned anything (a preflight refusal) has nothing to
    # tear down, and may be resumed: only its report is written.
    created = PROVISION_STEP not in ids or (
        result.failed_step in ids and ids.index(result.failed_step) >= ids.index(PROVISION_STEP)
    )
    wanted = CLEANUP_STEPS if created else CLEANUP_STEPS[1:]
    cleanup = Pipeline("drill-cleanup").include(
        pipeline, without=tuple(i for i in ids if i not in wanted)
    )
    if created:
        scope.bus.emit(Event(
            kind="step.progress", run_id=scope.run_id, step="teardown",
            message=f"the drill failed at {result.failed_step}: tearing down its throw-away "
            "hosts (--keep-on-failure keeps them)", data={"after_failure": result.failed_step},
        ))  # fmt: skip
    again = replace(scope, until=None, outputs=dict(scope.outputs), shared={}, closers=[])
    try:
        done = execute_after_end(cleanup, journal, again)
    except KeyboardInterrupt:
        done = RunResult(scope.run_id, int(ExitCode.INTERRUPTED), "interrupted", "teardown")
    if done.status != "ok":
        why = done.error.message if done.error else done.status
        scope.bus.emit(Event(
            kind="warning", run_id=scope.run_id, step=done.failed_step,
            message=f"the failed drill's {done.failed_step} did not finish ({why}): "
            f"run `drboot teardown {scope.run_id}`",
        ))  # fmt: skip
    elif created and result.error is not None:
        result.error.hint = (
            "the drill's throw-away hosts were torn down: fix the cause and start a new drill "
            "(--keep-on-failure keeps a failed drill's hosts, to resume it)"
        )
    return result


def _reopen_early_report(journal: Journal, run_id: str) -> None:
    """A report written when the run failed (a drill refused before it provisioned) is
    written again at the end of the resume, so it tells how the run really ended."""
    from bootstrap.steps.registry import REPORT_STEP

    steps = {s.step_id: s.status for s in journal.steps(run_id)}
    finished = ("done", "skipped")
    unfinished = [i for i, st in steps.items() if i != REPORT_STEP and st not in finished]
    if steps.get(REPORT_STEP) == "done" and unfinished:
        journal.reopen_step(run_id, REPORT_STEP)


def _refuse_torn_down(journal: Journal, row: RunRow) -> None:
    """A failed drill whose hosts were torn down has nothing left to resume."""
    if row.pipeline != "drill" or row.status == "ok":
        return
    steps = {s.step_id: s.status for s in journal.steps(row.id)}
    if steps.get("teardown") == "done":
        raise ConfigError(
            f"drill {row.id} failed and its throw-away hosts were torn down: nothing to resume",
            hint="start a new drill (`drboot drill SITE_FILE`); to resume a failed drill, run "
            "it with --keep-on-failure, which keeps its hosts",
        )


def ended(state: StateDir, journal: Journal, scope: RunScope, result: RunResult) -> RunResult:
    """What every run does after its last step: the metrics textfile, the webhook, and the
    RTO verdict of a drill (exit 7 when it restored everything but missed the objective).

    A run stopped by ``--until`` has not ended and does none of it. A metrics file or webhook
    that fails is a journalled warning (the report is written again to show it), never a
    failure of the run.
    """
    from bootstrap import history, metrics, notify
    from bootstrap.steps.registry import REPORT_STEP

    row = journal.run(scope.run_id)
    if row is None or result.status == "stopped":
        return result
    site = scope.site
    outcome = history.outcome(
        row, journal.steps(row.id), site.rto.objective.total_seconds(), row.status
    )
    warnings: list[tuple[str, str]] = []
    if site.metrics.textfile is not None:
        path = Path(site.metrics.textfile)
        try:
            metrics.write(path, outcome)
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            warnings.append(("metrics", f"metrics not written to {path}: {why}"))
    if site.notify.webhook is not None:
        problem = notify.send(site.notify.webhook, outcome)
        if problem is not None:
            warnings.append(("notify", problem))
    for step_id, message in warnings:
        scope.bus.emit(Event(kind="warning", run_id=row.id, step=step_id, message=message))
    reported = journal.step(row.id, REPORT_STEP)
    if warnings and reported is not None and reported.status == "done":
        with contextlib.suppress(BootstrapError):  # the report of the run itself stands
            regenerate_report(state, row.id, None)
    if outcome.kind == "drill" and result.exit_code == 0 and outcome.objective_met is False:
        assert outcome.rto_seconds is not None and outcome.objective_seconds is not None
        err = RtoMissed(
            f"the restore succeeded but the RTO objective was missed: "
            f"{outcome.rto_seconds:.0f}s > {outcome.objective_seconds:.0f}s",
            target=row.site,
            hint=f"see the step timings in the report; `drboot history {row.site}` "
            "shows whether the RTO is growing",
        )
        scope.bus.emit(
            Event(kind="warning", run_id=row.id, message=err.message,
                  data={"exit_code": int(err.exit_code)})
        )  # fmt: skip
        return replace(result, exit_code=int(err.exit_code), error=err)
    return result


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


def regenerate_report(
    state: StateDir,
    run_id: str,
    directory: Path | None,
    formats: Sequence[str] = (),
) -> WrittenReport:
    """Write the report of ``run_id`` again, from the journal and the run's own site file.

    It goes to ``directory``, else the site's ``report.directory``, else the run folder; in
    ``formats``, else the site's ``report.formats``.
    """
    site = load_run_site(state, run_id)
    from bootstrap.providers.plugin import plugin_for
    from bootstrap.steps.finish import from_journal

    standins = plugin_for(site, state.root).standins()
    data = from_journal(state.journal_path, run_id, model.context_for(site, standins, time.time()))
    target = directory or site.report.directory or state.run_dir(run_id)
    try:
        files = write.write(data, target, list(formats or site.report.formats))
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


def site_history(state: StateDir, site: str, limit: int = 1000) -> list[Outcome]:
    """Every drill and restore of ``site`` (oldest first), each measured against the RTO
    objective of the site file it ran with (the run folder's copy)."""
    from bootstrap.history import outcome

    journal = state.journal()
    try:
        rows = journal.runs(site, limit=limit)
        found = []
        for row in reversed(rows):
            objective: float | None = None  # no site copy: the RTO stands without a verdict
            if (state.root / "runs" / row.id / SITE_COPY).is_file():
                with contextlib.suppress(ConfigError):
                    copy = _site_of(state, row, _journalled_options(row))
                    objective = copy.rto.objective.total_seconds()
            found.append(outcome(row, journal.steps(row.id), objective, view(state, row).status))
        return found
    finally:
        journal.close()
