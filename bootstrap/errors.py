"""One error tree for drboot, shown once at the CLI edge.

Every error a user can act on is a ``BootstrapError`` leaf that knows its exit
code and renders a message naming the step, the target and the next action.
Anything else that escapes is an internal error (exit 70): the CLI saves the
traceback in the run folder instead of dumping it on the operator.

Steps raise ``TransientError`` (retried by the engine according to the step's
policy) or ``PermanentError`` (not retried). Vendor exceptions are translated
into these at the adapter that imports the vendor library.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """The exit-code table documented in the README."""

    OK = 0
    USAGE = 2  # bad command line or bad site file
    PREFLIGHT = 3  # refused before anything billable was created (disk, escrow, repo, credentials)
    STEP_FAILED = 4  # a step failed; the run is resumable with `drboot resume RUN_ID`
    TIMEOUT = 5  # gave up waiting (API, sync, step timeout)
    LOCKED = 6  # another run holds the site lock
    RTO_MISSED = 7  # a drill restored everything, but later than the site's RTO objective
    INTERNAL = 70  # a bug: traceback saved in the run folder
    INTERRUPTED = 130  # Ctrl-C; resumable


class BootstrapError(Exception):
    """Base of every error the operator can act on."""

    exit_code: ExitCode = ExitCode.STEP_FAILED
    # a structured result that `-o json` carries with the error (never secret values)
    details: dict[str, Any] | None = None

    def __init__(
        self,
        message: str,
        *,
        step: str | None = None,
        target: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.step = step
        self.target = target
        self.hint = hint

    def located(self, *, step: str | None = None, target: str | None = None) -> BootstrapError:
        """Fill in the step/target if the raiser did not know them; returns self."""
        if self.step is None:
            self.step = step
        if self.target is None:
            self.target = target
        return self

    def format(self) -> str:
        """Render as one operator-facing message: where, what, and what to do next."""
        where = []
        if self.step:
            where.append(f"step {self.step}")
        if self.target:
            where.append(f"on {self.target}")
        head = " ".join(where)
        text = f"{head}: {self.message}" if head else self.message
        if self.hint:
            text += f"\n  next: {self.hint}"
        return text

    def __str__(self) -> str:
        return self.format()


class ConfigError(BootstrapError):
    """The site file or the command line is wrong. Nothing was done."""

    exit_code = ExitCode.USAGE

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        column: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.column = column
        super().__init__(message, hint=hint)

    def format(self) -> str:
        loc = ""
        if self.path:
            loc = self.path
            if self.line is not None:
                loc += f":{self.line}"
                if self.column is not None:
                    loc += f":{self.column}"
            loc += ": "
        text = f"{loc}{self.message}"
        if self.hint:
            text += f"\n  next: {self.hint}"
        return text


class PreflightError(BootstrapError):
    """A check refused the restore before anything billable was created."""

    exit_code = ExitCode.PREFLIGHT


class EscrowError(PreflightError):
    """The escrow cannot be opened or does not match what the site needs."""


class LockedError(BootstrapError):
    """Another live run holds the lock of this site."""

    exit_code = ExitCode.LOCKED


class RtoMissed(BootstrapError):
    """A drill succeeded but took longer than the site's RTO objective (not resumable: done)."""

    exit_code = ExitCode.RTO_MISSED


class WaitTimeout(BootstrapError):
    """Gave up waiting for something to become ready."""

    exit_code = ExitCode.TIMEOUT


class StepError(BootstrapError):
    """Raised by a step. Subclasses decide whether the engine retries."""

    exit_code = ExitCode.STEP_FAILED


class TransientError(StepError):
    """Worth retrying: a network blip, an API not ready yet, a lock held elsewhere."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        step: str | None = None,
        target: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, step=step, target=target, hint=hint)
        self.retry_after = retry_after


class PermanentError(StepError):
    """Not worth retrying: wrong input, refused credentials, a changed host key."""


class HostKeyMismatch(PermanentError):
    """An SSH host key differs from the one expected (possible MITM)."""
