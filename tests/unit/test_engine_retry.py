"""Retries per policy, permanent failures stop at once, step timeouts fire."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from bootstrap.engine.context import RunScope, StepContext
from bootstrap.engine.journal import Journal
from bootstrap.engine.runner import execute
from bootstrap.engine.step import Pipeline, RetryPolicy
from bootstrap.errors import ExitCode, PermanentError, TransientError
from bootstrap.events import Event, EventBus
from bootstrap.records import StepOutput


@dataclass(frozen=True)
class FlakyDone(StepOutput):
    STEP = "flaky"
    ok: bool = False


def _run(
    tmp_path: Path, pipeline: Pipeline, sleeps: list[float]
) -> tuple[int, Journal, list[Event]]:
    journal = Journal(tmp_path / "j.sqlite")
    journal.create_run("r1", "site", pipeline.name, pipeline.ids(), {}, "")
    events: list[Event] = []
    bus = EventBus()
    bus.subscribe(events.append)
    scope = RunScope(run_id="r1", site=None, run_dir=tmp_path, bus=bus)
    result = execute(pipeline, journal, scope, sleep=sleeps.append)
    return result.exit_code, journal, events


def test_transient_failures_are_retried_with_backoff(tmp_path: Path) -> None:
    calls: list[int] = []
    p = Pipeline("t")

    @p.step("flaky", retry=RetryPolicy(attempts=4, backoff_initial=1, backoff_max=3))
    def flaky(ctx: StepContext) -> None:
        calls.append(1)
        if len(calls) < 4:
            raise TransientError("API not ready", target="lab-1")
        ctx.record(FlakyDone(ok=True))

    sleeps: list[float] = []
    code, journal, events = _run(tmp_path, p, sleeps)
    assert code == 0
    assert len(calls) == 4
    assert sleeps == [1, 2, 3], "exponential backoff capped at backoff_max"
    assert [a[1] for a in journal.attempts("r1", "flaky")] == ["transient"] * 3 + ["ok"]
    assert sum(e.kind == "step.retry" for e in events) == 3
    assert journal.step("r1", "flaky").outputs == {"ok": True}  # type: ignore[union-attr]


def test_retry_after_is_honoured(tmp_path: Path) -> None:
    calls: list[int] = []
    p = Pipeline("t")

    @p.step("rate-limited", retry=RetryPolicy(attempts=2, backoff_initial=1, backoff_max=60))
    def limited(ctx: StepContext) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise TransientError("429", retry_after=17)

    sleeps: list[float] = []
    code, _, _ = _run(tmp_path, p, sleeps)
    assert code == 0 and sleeps == [17]


def test_transient_failure_exhausts_attempts(tmp_path: Path) -> None:
    p = Pipeline("t")

    @p.step("down", retry=RetryPolicy(attempts=3, backoff_initial=1))
    def down(ctx: StepContext) -> None:
        raise TransientError("connection refused", target="lab-2")

    code, journal, events = _run(tmp_path, p, [])
    assert code == ExitCode.STEP_FAILED
    assert len(journal.attempts("r1", "down")) == 3
    failed = [e for e in events if e.kind == "step.failed"]
    assert failed and failed[0].target == "lab-2"
    row = journal.step("r1", "down")
    assert row is not None and row.status == "failed"
    assert "resume r1" in (row.error or "")


def test_permanent_failure_stops_at_once_and_later_steps_do_not_run(tmp_path: Path) -> None:
    ran: list[str] = []
    p = Pipeline("t")

    @p.step("bad", retry=RetryPolicy(attempts=5))
    def bad(ctx: StepContext) -> None:
        ran.append("bad")
        raise PermanentError("credentials refused", hint="check HCLOUD_TOKEN")

    @p.step("after", after=["bad"])
    def after(ctx: StepContext) -> None:
        ran.append("after")

    sleeps: list[float] = []
    code, journal, _ = _run(tmp_path, p, sleeps)
    assert code == ExitCode.STEP_FAILED
    assert ran == ["bad"] and sleeps == []
    assert journal.step("r1", "after").status == "pending"  # type: ignore[union-attr]


def test_step_timeout_fires(tmp_path: Path) -> None:
    p = Pipeline("t")

    @p.step("hang", retry=RetryPolicy.none(), timeout=0.3)
    def hang(ctx: StepContext) -> None:
        time.sleep(30)

    started = time.monotonic()
    code, journal, _ = _run(tmp_path, p, [])
    assert code == ExitCode.TIMEOUT
    assert time.monotonic() - started < 10
    row = journal.step("r1", "hang")
    assert row is not None and "timeout" in (row.error or "")


def test_internal_error_saves_traceback(tmp_path: Path) -> None:
    p = Pipeline("t")

    @p.step("buggy")
    def buggy(ctx: StepContext) -> None:
        raise ZeroDivisionError("oops")

    code, _, _ = _run(tmp_path, p, [])
    assert code == ExitCode.INTERNAL
    tb = (tmp_path / "traceback.txt").read_text()
    assert "ZeroDivisionError" in tb
    assert (tmp_path / "traceback.txt").stat().st_mode & 0o777 == 0o600


def test_registration_checks_order() -> None:
    p = Pipeline("t")
    with pytest.raises(ValueError, match="unknown step"):
        p.step("b", after=["a"])(lambda ctx: None)
    p.step("a")(lambda ctx: None)
    with pytest.raises(ValueError, match="twice"):
        p.step("a")(lambda ctx: None)
