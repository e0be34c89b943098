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
from typing import Any

from bootstrap.errors import PermanentError
from bootstrap.events import Event, EventBus, EventKind


class Unobservable(Exception):
    """Raised in a dry run when a step needs the output of a step that has not run."""

    def __init__(self, needs: str) -> None:
        super().__init__(needs)
        self.needs = needs


@dataclass
class RunScope:
    """What all steps of one run share. ``resources`` holds clients to close at the end."""

    run_id: str
    site: Any
    run_dir: Path
    bus: EventBus
    dry_run: bool = False
    until: str | None = None  # stop (resumably) after this step
    options: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        while self.closers:
            closer = self.closers.pop()
            with contextlib.suppress(Exception):
                closer()


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
    def site(self) -> Any:
        return self._scope.site

    @property
    def run_dir(self) -> Path:
        return self._scope.run_dir

    @property
    def dry_run(self) -> bool:
        return self._scope.dry_run

    @property
    def options(self) -> dict[str, Any]:
        return self._scope.options

    @property
    def resources(self) -> dict[str, Any]:
        return self._scope.resources

    def on_close(self, closer: Callable[[], None]) -> None:
        """Close a client (SSH, API) when the run ends, however it ends."""
        self._scope.closers.append(closer)

    def output_of(self, step_id: str, key: str | None = None) -> Any:
        """An output an earlier step recorded; in a dry run, raise ``Unobservable`` if absent."""
        outs = self._scope.outputs.get(step_id)
        if outs is None or (key is not None and key not in outs):
            if self.dry_run:
                raise Unobservable(step_id)
            raise PermanentError(
                f"needs the output {key or '*'} of step {step_id}, which has none",
                step=self.step_id,
                hint="this is a pipeline ordering bug; report it with the run folder",
            )
        return outs if key is None else outs[key]

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

    def output(self, key: str, value: Any) -> None:
        """Record an output (JSON; references only, never secret material)."""
        self.outputs[key] = value
