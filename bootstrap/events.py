"""Progress events and the observer bus.

The engine emits events; renderers (terminal, JSON lines, audit log, journal)
subscribe. An event never carries a secret: only names, fingerprints, counts
and references.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

EventKind = Literal[
    "run.started",
    "run.finished",
    "step.started",
    "step.progress",
    "step.noop",
    "step.change",
    "step.retry",
    "step.done",
    "step.skipped",
    "step.failed",
    "audit",
    "warning",  # after the last step: a webhook or metrics file that failed, a missed RTO
]


@dataclass(frozen=True)
class Event:
    """One thing that happened in a run."""

    kind: EventKind
    run_id: str
    message: str = ""
    step: str | None = None
    target: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """A human line that names its unit: ``step install-k3s on lab-1: ...``."""
        unit = []
        if self.step:
            unit.append(f"step {self.step}")
        if self.target:
            unit.append(f"on {self.target}")
        head = " ".join(unit)
        return f"{head}: {self.message}" if head else self.message


Observer = Callable[[Event], None]


class EventBus:
    """Fan-out of events to observers. An observer that raises is a bug in that observer."""

    def __init__(self) -> None:
        self._observers: list[Observer] = []

    def subscribe(self, observer: Observer) -> None:
        self._observers.append(observer)

    def emit(self, event: Event) -> None:
        for observer in self._observers:
            observer(event)
