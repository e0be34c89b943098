"""Plain typed records shared across layers: journal rows and the base of step outputs.

Why it exists: the engine writes these records, and the report (and the CLI) read them;
keeping them here, free of SQLite and of the runner, lets the report depend on the shapes
without importing the engine's internals (an import contract in pyproject.toml says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

RunStatus = Literal["running", "ok", "failed", "interrupted", "stopped"]
StepStatus = Literal["pending", "running", "done", "failed", "skipped"]


@dataclass(frozen=True)
class RunRow:
    id: str
    site: str
    pipeline: str
    status: RunStatus
    created: float
    ended: float | None
    pid: int | None
    exit_code: int | None
    error: str | None
    options: dict[str, Any]
    site_digest: str


@dataclass(frozen=True)
class StepRow:
    run_id: str
    step_id: str
    position: int
    status: StepStatus
    attempts: int
    started: float | None
    ended: float | None
    outputs: dict[str, Any]
    summary: str
    error: str | None

    @property
    def seconds(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started


class OutputFormatError(ValueError):
    """A journalled output does not have the shape this drboot expects (another version)."""


@dataclass(frozen=True)
class StepOutput:
    """Base of a step's typed outputs: a frozen dataclass journalled as JSON.

    ``STEP`` names the step that records it. Later steps and the report read it back with
    ``from_json``; fields hold references only (names, addresses, fingerprints, timings),
    never secret material. Subclasses give every field a default so that an output a
    step recorded before returning early (a disabled gate) still reads back.
    """

    STEP: ClassVar[str] = ""

    def to_json(self) -> dict[str, Any]:
        from pydantic import TypeAdapter

        data: dict[str, Any] = TypeAdapter(type(self)).dump_python(self, mode="json")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        from pydantic import TypeAdapter, ValidationError

        try:
            return TypeAdapter(cls).validate_python(data)
        except ValidationError as exc:
            raise OutputFormatError(
                f"the journalled output of step {cls.STEP} does not read as {cls.__name__}: "
                f"{exc.error_count()} problem(s), first at "
                f"{'.'.join(str(p) for p in exc.errors()[0]['loc']) or '(top)'}"
            ) from None
