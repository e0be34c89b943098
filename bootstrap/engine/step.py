"""Steps: small functions with a frozen spec, registered on a pipeline.

A step id is a stable string; the journal is keyed by it, so renaming the
Python function never strands a half-done run. The decorator returns the
function unchanged, like kopf's handler decorators.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from bootstrap.engine.context import StepContext

StepFunc = Callable[["StepContext"], None]
F = TypeVar("F", bound=StepFunc)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a step is retried on ``TransientError``."""

    attempts: int = 3
    backoff_initial: float = 2.0
    backoff_max: float = 30.0
    backoff_multiplier: float = 2.0

    @classmethod
    def none(cls) -> RetryPolicy:
        return cls(attempts=1)


@dataclass(frozen=True)
class Step:
    """The frozen spec of one registered step."""

    id: str
    func: StepFunc
    after: tuple[str, ...] = ()
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float = 600.0
    title: str = ""


def _first_sentence(doc: str | None) -> str:
    """A docstring's first sentence, over however many lines it runs (a step's title)."""
    paragraph = " ".join((doc or "").strip().split("\n\n")[0].split())
    end = paragraph.find(". ")
    return paragraph if end < 0 else paragraph[: end + 1]


class Pipeline:
    """An ordered, validated set of steps (the restore, a drill, a test pipeline)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._steps: dict[str, Step] = {}

    def step(
        self,
        step_id: str,
        *,
        after: tuple[str, ...] | list[str] = (),
        retry: RetryPolicy | None = None,
        timeout: float = 600.0,
        title: str = "",
    ) -> Callable[[F], F]:
        """Register ``func`` as step ``step_id``; returns ``func`` unchanged."""

        def register(func: F) -> F:
            if step_id in self._steps:
                raise ValueError(f"step id {step_id!r} registered twice in {self.name}")
            unknown = [dep for dep in after if dep not in self._steps]
            if unknown:
                raise ValueError(
                    f"step {step_id!r} runs after unknown step(s) {unknown}: register them first"
                )
            self._steps[step_id] = Step(
                id=step_id,
                func=func,
                after=tuple(after),
                retry=retry or RetryPolicy(),
                timeout=timeout,
                title=title or _first_sentence(func.__doc__) or step_id,
            )
            return func

        return register

    def include(self, other: Pipeline, *, without: tuple[str, ...] = ()) -> Pipeline:
        """Add every step of ``other`` (in order, less ``without``) to this pipeline."""
        for spec in other:
            if spec.id in without:
                continue
            if spec.id in self._steps:
                raise ValueError(f"step id {spec.id!r} registered twice in {self.name}")
            self._steps[spec.id] = spec
        return self

    def get(self, step_id: str) -> Step:
        return self._steps[step_id]

    def ids(self) -> list[str]:
        return list(self._steps)

    def __iter__(self) -> Iterator[Step]:
        # Registration order already respects `after` (checked at registration).
        return iter(self._steps.values())

    def __len__(self) -> int:
        return len(self._steps)
