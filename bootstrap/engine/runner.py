"""Run, resume and plan a pipeline against the journal.

``execute`` walks the steps in order. A step already ``done`` in the journal is
not run again (its outputs are loaded); the first unfinished step runs with a
fresh observation of reality, so a step that was killed half-way finds what it
had already changed and does only the rest. Every attempt, outcome and event
is journalled as it happens.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from bootstrap.engine.context import RunScope, StepContext, Unobservable
from bootstrap.engine.journal import Journal, RunStatus
from bootstrap.engine.retry import retrying
from bootstrap.engine.step import Pipeline, Step
from bootstrap.errors import BootstrapError, ExitCode, TransientError, WaitTimeout
from bootstrap.events import Event
from bootstrap.fsutil import write_atomic


class StepTimeout(WaitTimeout):
    """A step ran past its timeout."""


@dataclass
class PlanEntry:
    step: str
    title: str
    changes: list[str] = field(default_factory=list)
    noops: list[str] = field(default_factory=list)
    unknown: str | None = None  # why it cannot be observed before earlier steps run
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "title": self.title,
            "changes": self.changes,
            "noops": self.noops,
            "unknown": self.unknown,
            "error": self.error,
        }


@dataclass
class RunResult:
    run_id: str
    exit_code: int
    status: str
    failed_step: str | None = None
    error: BootstrapError | None = None
    plan: list[PlanEntry] = field(default_factory=list)


@contextlib.contextmanager
def _alarm(seconds: float, step: Step) -> Iterator[None]:
    """Interrupt the step when its timeout passes (main thread only; elsewhere cooperative)."""
    if threading.current_thread() is not threading.main_thread() or seconds <= 0:
        yield
        return

    def fire(signum: int, frame: FrameType | None) -> None:
        raise StepTimeout(
            f"did not finish within its timeout of {seconds:.0f}s",
            step=step.id,
            hint="look at the step's last progress line; then `drboot resume RUN_ID`",
        )

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _run_step(
    step: Step,
    scope: RunScope,
    journal: Journal | None,
    sleep: Callable[[float], None] | None,
) -> StepContext:
    """Run one step with its retry policy; returns the context of the successful attempt."""

    def on_retry(attempt: int, exc: BaseException, delay: float) -> None:
        scope.bus.emit(
            Event(
                kind="step.retry",
                run_id=scope.run_id,
                step=step.id,
                target=getattr(exc, "target", None),
                message=f"attempt {attempt} failed ({_plain(exc)}); retrying in {delay:.1f}s",
                data={"attempt": attempt, "delay": delay},
            )
        )

    last_ctx: StepContext | None = None
    for attempt in retrying(step.retry, before_sleep=on_retry, sleep=sleep):
        with attempt:
            n = journal.start_attempt(scope.run_id, step.id) if journal else 0
            ctx = StepContext(scope, step.id, step.timeout)
            last_ctx = ctx
            try:
                with _alarm(step.timeout, step):
                    step.func(ctx)
            except BaseException as exc:
                if journal:
                    journal.end_attempt(scope.run_id, step.id, n, _outcome(exc), _plain(exc))
                raise
            if journal:
                journal.end_attempt(scope.run_id, step.id, n, "ok", None)
    assert last_ctx is not None
    return last_ctx


def _outcome(exc: BaseException) -> str:
    if isinstance(exc, TransientError):
        return "transient"
    if isinstance(exc, BootstrapError):
        return "failed"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return "internal-error"


def _plain(exc: BaseException) -> str:
    if isinstance(exc, BootstrapError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def _summary(ctx: StepContext) -> str:
    if ctx.changes:
        return "; ".join(ctx.changes)
    if ctx.noops:
        return "no change: " + "; ".join(ctx.noops)
    return "done"


def _final_status(result: RunResult) -> RunStatus:
    if result.status == "stopped":
        return "stopped"
    if result.exit_code == 0:
        return "ok"
    if result.exit_code == ExitCode.INTERRUPTED:
        return "interrupted"
    return "failed"


def execute(
    pipeline: Pipeline,
    journal: Journal,
    scope: RunScope,
    *,
    sleep: Callable[[float], None] | None = None,
) -> RunResult:
    """Run (or continue) ``scope.run_id``: every step not yet done, in order."""
    bus = scope.bus
    run_id = scope.run_id
    for row in journal.steps(run_id):
        if row.status in ("done", "skipped"):
            scope.outputs[row.step_id] = row.outputs
    bus.emit(
        Event(
            kind="run.started",
            run_id=run_id,
            message=f"{pipeline.name} started",
            data={"pipeline": pipeline.name, "steps": pipeline.ids()},
        )
    )
    started = time.monotonic()
    result: RunResult
    try:
        result = _walk(pipeline, journal, scope, sleep)
    finally:
        scope.close()
    journal.finish_run(
        run_id,
        _final_status(result),
        result.exit_code,
        result.error.message if result.error else None,
    )
    bus.emit(
        Event(
            kind="run.finished",
            run_id=run_id,
            step=result.failed_step,
            message=result.status,
            data={
                "exit_code": result.exit_code,
                "seconds": round(time.monotonic() - started, 3),
                "error": result.error.format() if result.error else None,
            },
        )
    )
    return result


def execute_after_end(pipeline: Pipeline, journal: Journal, scope: RunScope) -> RunResult:
    """Run ``pipeline``'s unfinished steps for a run that has already ended (a failed drill's
    teardown and report). The run keeps the status, exit code and error it ended with."""
    row = journal.run(scope.run_id)
    try:
        return _walk(pipeline, journal, scope, None)
    finally:
        scope.close()
        if row is not None:
            code = row.exit_code if row.exit_code is not None else 0
            journal.finish_run(row.id, row.status, code, row.error)


def _walk(
    pipeline: Pipeline,
    journal: Journal,
    scope: RunScope,
    sleep: Callable[[float], None] | None,
) -> RunResult:
    run_id = scope.run_id
    done = {r.step_id for r in journal.steps(run_id) if r.status in ("done", "skipped")}
    for step in pipeline:
        if step.id in done:
            scope.bus.emit(
                Event(
                    kind="step.skipped",
                    run_id=run_id,
                    step=step.id,
                    message="done in an earlier attempt of this run",
                )
            )
            continue
        scope.bus.emit(Event(kind="step.started", run_id=run_id, step=step.id, message=step.title))
        try:
            ctx = _run_step(step, scope, journal, sleep)
        except KeyboardInterrupt:
            journal.finish_step(run_id, step.id, "failed", {}, "", "interrupted")
            err = BootstrapError(
                "interrupted", step=step.id, hint=f"continue with `drboot resume {run_id}`"
            )
            err.exit_code = ExitCode.INTERRUPTED
            scope.bus.emit(
                Event(kind="step.failed", run_id=run_id, step=step.id, message="interrupted")
            )
            return RunResult(run_id, ExitCode.INTERRUPTED, "interrupted", step.id, err)
        except BootstrapError as exc:
            exc.located(step=step.id)
            if exc.hint is None:
                exc.hint = f"fix the cause, then `drboot resume {run_id}`"
            journal.finish_step(run_id, step.id, "failed", {}, "", exc.format())
            scope.bus.emit(
                Event(
                    kind="step.failed",
                    run_id=run_id,
                    step=step.id,
                    target=exc.target,
                    message=exc.message,
                    data={"exit_code": int(exc.exit_code), "hint": exc.hint},
                )
            )
            return RunResult(run_id, int(exc.exit_code), "failed", step.id, exc)
        except Exception as exc:
            path = scope.run_dir / "traceback.txt"
            write_atomic(path, traceback.format_exc())
            err = BootstrapError(
                f"internal error ({type(exc).__name__}); traceback saved to {path}",
                step=step.id,
                hint="report it with the run folder; the run can be resumed after a fix",
            )
            err.exit_code = ExitCode.INTERNAL
            journal.finish_step(run_id, step.id, "failed", {}, "", err.message)
            scope.bus.emit(
                Event(
                    kind="step.failed",
                    run_id=run_id,
                    step=step.id,
                    message=err.message,
                    data={"exit_code": 70},
                )
            )
            return RunResult(run_id, ExitCode.INTERNAL, "failed", step.id, err)
        journal.finish_step(run_id, step.id, "done", ctx.outputs, _summary(ctx))
        scope.outputs[step.id] = ctx.outputs
        scope.bus.emit(
            Event(
                kind="step.done",
                run_id=run_id,
                step=step.id,
                message=_summary(ctx),
                data={"changed": bool(ctx.changes)},
            )
        )
        if scope.until == step.id and step.id != pipeline.ids()[-1]:
            return RunResult(run_id, 0, "stopped")
    return RunResult(run_id, 0, "ok")


def plan(pipeline: Pipeline, scope: RunScope) -> RunResult:
    """Observe-only dry run: what each step would change. Writes nothing to the journal."""
    scope.dry_run = True
    entries: list[PlanEntry] = []
    exit_code = 0
    try:
        for step in pipeline:
            entry = PlanEntry(step.id, step.title)
            entries.append(entry)
            ctx = StepContext(scope, step.id, step.timeout)
            try:
                with _alarm(step.timeout, step):
                    step.func(ctx)
            except Unobservable as exc:
                entry.unknown = f"cannot be observed before step {exc.needs} has run"
            except BootstrapError as exc:
                exc.located(step=step.id)
                entry.error = exc.format()
                exit_code = exit_code or int(exc.exit_code)
            entry.changes = ctx.changes
            entry.noops = ctx.noops
            scope.outputs[step.id] = ctx.outputs
    finally:
        scope.close()
    return RunResult(
        scope.run_id, exit_code, "planned" if exit_code == 0 else "failed", plan=entries
    )
