"""What a step sees: its run, its settings, and the observe/act vocabulary.

A step observes reality first. If nothing differs it calls ``ctx.noop(why)``
and returns. Otherwise it asks ``ctx.will("what would change")``: in a dry run
(``drboot plan``) that records the change and returns ``False``; in a real run
it records the change and returns ``True``, and the step acts.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from bootstrap.errors import PermanentError
from bootstrap.events import Event, EventBus, EventKind
from bootstrap.options import RunOptions
from bootstrap.records import OutputFormatError, StepOutput
from bootstrap.settings import Site


class Unobservable(Exception):
    """Raised in a dry run when a step needs the output of a step that has not run."""

    def __init__(self, needs: str) -> None:
        super().__init__(needs)
        self.needs = needs


@dataclass(frozen=True)
class RunInfo:
    """What a run-wide shared object (clients, the provider) is built from."""

    run_id: str
    site: Site
    options: RunOptions
    run_dir: Path
    state_root: Path
    dry_run: bool
    pipeline: str = "restore"  # "drill": the provider owns only this run's servers


class Shared(Protocol):
    """A run-wide object built once, on first use, and closed once when the run ends."""

    def close(self) -> None: ...


S = TypeVar("S", bound=Shared)
Out = TypeVar("Out", bound=StepOutput)


@dataclass
class RunScope:
    """What all steps of one run share.

    ``outputs`` holds each finished step's journalled output (JSON); ``shared`` the
    run-wide objects built by ``StepContext.shared``, closed (with ``closers``) exactly
    once by ``close()``, on every exit path of the runner.
    """

    run_id: str
    site: Site
    run_dir: Path
    bus: EventBus
    options: RunOptions = field(default_factory=RunOptions)
    dry_run: bool = False
    until: str | None = None  # stop (resumably) after this step
    state_root: Path | None = None  # None: the run folder's grandparent (<state>/runs/<id>)
    pipeline: str = "restore"  # the pipeline's name: "restore" or "drill"
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    shared: dict[object, Shared] = field(default_factory=dict)
    closers: list[Callable[[], None]] = field(default_factory=list)

    def info(self) -> RunInfo:
        return RunInfo(
            run_id=self.run_id,
            site=self.site,
            options=self.options,
            run_dir=self.run_dir,
            state_root=self.state_root or self.run_dir.parent.parent,
            dry_run=self.dry_run,
            pipeline=self.pipeline,
        )

    def close(self) -> None:
        while self.closers:
            closer = self.closers.pop()
            with contextlib.suppress(Exception):
                closer()
        self.shared.clear()


class StepContext:
    """The handle a step function receives."""

    def __init__(self, scope: RunScope, step_id: str, timeout: float) -> None:
        self._scope = scope
        self.step_id = step_id
        self.outputs: dict[str, Any] = {}
        self.changes: list[str] = []
        self.noops: list[str] = []
        self.deadline = time.monotonic() + timeout

    # what the step can read ------------------------------------------------
    @property
    def run_id(self) -> str:
        return self._scope.run_id

    @property
    def site(self) -> Site:
        return self._scope.site

    @property
    def run_dir(self) -> Path:
        return self._scope.run_dir

    @property
    def state_root(self) -> Path:
        """The drboot state directory (journal, audit log, run folders)."""
        return self._scope.info().state_root

    @property
    def dry_run(self) -> bool:
        return self._scope.dry_run

    @property
    def options(self) -> RunOptions:
        return self._scope.options

    def shared(self, factory: Callable[[RunInfo], S]) -> S:
        """The run-wide object ``factory`` builds, built on first use and closed at the end."""
        found = self._scope.shared.get(factory)
        if found is None:
            built = factory(self._scope.info())
            self._scope.shared[factory] = built
            self._scope.closers.append(built.close)
            return built
        return found  # type: ignore[return-value]  # keyed by its own factory

    def on_close(self, closer: Callable[[], None]) -> None:
        """Close a client (SSH, API) when the run ends, however it ends."""
        self._scope.closers.append(closer)

    def read(self, kind: type[Out]) -> Out:
        """The typed output an earlier step recorded; in a dry run, ``Unobservable`` if absent."""
        data = self._scope.outputs.get(kind.STEP)
        if not data:
            if self.dry_run:
                raise Unobservable(kind.STEP)
            raise PermanentError(
                f"needs the output of step {kind.STEP}, which has none",
                step=self.step_id,
                hint="this is a pipeline ordering bug; report it with the run folder",
            )
        try:
            return kind.from_json(data)
        except OutputFormatError as exc:
            raise PermanentError(
                str(exc),
                step=self.step_id,
                hint="the run was journalled by another drboot version; start a new run",
            ) from None

    def read_optional(self, kind: type[Out]) -> Out | None:
        """The typed output an earlier step recorded, or None when it recorded none (a step
        that may legitimately have had nothing to record, e.g. a disabled check)."""
        if not self._scope.outputs.get(kind.STEP):
            return None
        return self.read(kind)

    def record(self, output: StepOutput) -> None:
        """Record this step's typed output (journalled; references only, never secrets)."""
        if self.step_id != output.STEP:
            raise ValueError(f"step {self.step_id} records {type(output).__name__}, "
                             f"which belongs to step {output.STEP}")  # fmt: skip
        self.outputs = output.to_json()

    def remaining(self) -> float:
        """Seconds left before this step's timeout; pass it to waits and subprocesses."""
        return max(0.0, self.deadline - time.monotonic())

    # what the step says ------------------------------------------------------
    def _emit(
        self, kind: EventKind, message: str, target: str | None, data: dict[str, Any]
    ) -> None:
        self._scope.bus.emit(
            Event(
                kind=kind,
                run_id=self.run_id,
                step=self.step_id,
                target=target,
                message=message,
                data=data,
            )
        )

    def will(self, change: str, *, target: str | None = None) -> bool:
        """Record a change this step makes; ``False`` in a dry run (do not act)."""
        self.changes.append(change if target is None else f"{target}: {change}")
        self._emit(
            "step.change",
            ("would " if self.dry_run else "") + change,
            target,
            {"dry_run": self.dry_run},
        )
        return not self.dry_run

    def changed(self, change: str, *, target: str | None = None) -> None:
        """Record a change a tool made while observing and acting in one go (Ansible)."""
        self.changes.append(change if target is None else f"{target}: {change}")
        self._emit("step.change", change, target, {"dry_run": False})

    def noop(self, reason: str, *, target: str | None = None) -> None:
        """Say why nothing needed doing."""
        self.noops.append(reason if target is None else f"{target}: {reason}")
        self._emit("step.noop", reason, target, {})

    def progress(self, message: str, *, target: str | None = None, **data: Any) -> None:
        """Report what the step is doing now (the live view's current sub-task)."""
        self._emit("step.progress", message, target, data)

    def audit(self, what: str, *, target: str | None = None, **data: Any) -> None:
        """Put a decision in the audit log (a trusted host key, an accepted slow disk)."""
        self._emit("audit", what, target, data)
