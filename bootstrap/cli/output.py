"""Everything the drboot commands print, in one place.

Each command hands over its result twice, as data and as a text view of that same
data; ``--output`` decides which one is printed. So ``-o json`` always prints one
JSON object (or, for a run, one per event line) and never a stray text line, and
the text never says something the JSON does not. Errors are shown here too, each
once, in the chosen format. The colour of the command output lives here (the live
view of a run is the terminal renderer's).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import click

from bootstrap.errors import BootstrapError, ExitCode

if TYPE_CHECKING:
    from bootstrap.engine.runner import RunResult
    from bootstrap.events import Observer

Format = Literal["text", "json"]
FORMATS: tuple[Format, ...] = ("text", "json")


@dataclass(frozen=True)
class Stderr:
    """A line of a text view that belongs on stderr (a problem, not the result)."""

    text: str


Line = str | Stderr
TextView = Callable[[], Iterable[Line]]


def bold(text: str) -> str:
    return click.style(text, bold=True)


def warning(text: str) -> str:
    return click.style(text, fg="yellow")


def refused(text: str) -> str:
    return click.style(text, fg="red")


def _error_prefix() -> str:
    return click.style("error: ", fg="red", bold=True)


@dataclass(frozen=True)
class Output:
    """Prints for one command in one format."""

    format: Format = "text"

    @property
    def json(self) -> bool:
        return self.format == "json"

    def show(self, data: Mapping[str, Any], text: TextView) -> None:
        """A command's result: ``data`` as one JSON object, or its text view."""
        if self.json:
            click.echo(json.dumps(data, default=str))
            return
        for line in text():
            if isinstance(line, Stderr):
                click.echo(line.text, err=True)
            else:
                click.echo(line)

    def document(self, data: Mapping[str, Any]) -> None:
        """A JSON document that is the result in every format (``drboot schema``)."""
        click.echo(json.dumps(data, indent=2))

    def text_document(self, text: str) -> None:
        """A text document that is the result in every format (``drboot schema --format
        markdown``): printed as it is, so ``> FILE`` writes exactly that document."""
        click.echo(text, nl=False)

    def note(self, text: str) -> None:
        """A remark for the person at the terminal; not part of the JSON result."""
        if not self.json:
            click.echo(text)

    def error(self, err: BootstrapError) -> None:
        """An error the operator can act on, shown once."""
        if self.json:
            click.echo(
                json.dumps(
                    {
                        "error": err.format(),
                        "exit_code": int(err.exit_code),
                        "step": err.step,
                        "target": err.target,
                        "hint": err.hint,
                    }
                    | ({"details": err.details} if err.details is not None else {}),
                    default=str,
                )
            )
        else:
            click.echo(_error_prefix() + err.format(), err=True)

    def internal_error(self, exc: BaseException, saved: Path) -> None:
        """A bug: say so, and where its traceback is."""
        message = f"internal error ({type(exc).__name__}); traceback saved to {saved}"
        hint = "report it with that file"
        if self.json:
            click.echo(
                json.dumps(
                    {
                        "error": message,
                        "exit_code": int(ExitCode.INTERNAL),
                        "traceback": str(saved),
                        "hint": hint,
                    }
                )
            )
        else:
            click.echo(f"{_error_prefix()}{message}\n  next: {hint}", err=True)

    def interrupted(self) -> None:
        click.echo("interrupted", err=True)

    def run_observers(self) -> list[Observer]:
        """What shows a run's events: JSON lines on stdout, or the live terminal view."""
        if self.json:
            from bootstrap.render.jsonlines import JsonLinesRenderer

            return [JsonLinesRenderer()]
        from bootstrap.render.terminal import TerminalRenderer

        return [TerminalRenderer()]

    def run_finished(self, result: RunResult) -> None:
        """The end of a run; in JSON the ``run.finished`` event already carried any error."""
        if result.error is not None and not self.json:
            click.echo(_error_prefix() + result.error.format(), err=True)
