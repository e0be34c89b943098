"""The one polling loop: deadline, interval, progress on change plus a heartbeat, the stable
window, tolerated TransientErrors and the typed timeout, run against a fake clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bootstrap.errors import TransientError, WaitTimeout
from bootstrap.steps.polling import Judgement, Look, Waited, wait_until


class Clock:
    """Monotonic and wall time that move only when the loop sleeps."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def wall(self) -> float:
        return 1_000_000.0 + self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


def run(
    script: Callable[[float], int | None],
    *,
    timeout: float = 60.0,
    interval: float = 5.0,
    stable_for: float = 0.0,
    want: int = 3,
) -> tuple[Waited[int | None] | WaitTimeout, list[tuple[float, str, dict[str, Any]]], list[Look]]:
    """Wait for ``script(t)`` (a count, None: raise TransientError) to reach ``want``."""
    clock = Clock()
    said: list[tuple[float, str, dict[str, Any]]] = []
    looks: list[Look] = []

    def observe(look: Look) -> int | None:
        looks.append(look)
        n = script(clock.t)
        if n is None:
            raise TransientError("connection refused")
        return n

    def judge(n: int | None) -> Judgement:
        return Judgement(n == want, f"{n}/{want} ready", "waiting for x" if n != want else "",
                         {"ready": n})  # fmt: skip

    def give_up(last: int | None, waited: float) -> WaitTimeout:
        return WaitTimeout(f"{last}/{want} ready after {waited:.0f}s", target="t")

    try:
        result: Waited[int | None] | WaitTimeout = wait_until(
            observe, judge, timeout=timeout, interval=interval, stable_for=stable_for,
            progress=lambda m, **d: said.append((clock.t, m, d)), give_up=give_up,
            clock=clock, wall=clock.wall, sleep=clock.sleep,
        )  # fmt: skip
    except WaitTimeout as e:
        result = e
    assert all(s <= interval for s in clock.sleeps)
    return result, said, looks


def test_done_at_once_says_so_once() -> None:
    result, said, looks = run(lambda t: 3)
    assert isinstance(result, Waited)
    assert (result.last, result.seconds, result.ready_at) == (3, 0.0, 1_000_000.0)
    assert said == [(0.0, "3/3 ready", {"ready": 3})]
    assert looks == [Look(0.0, False)]


def test_progress_on_change_and_a_heartbeat_when_nothing_changes() -> None:
    result, said, _ = run(lambda t: 1 if t < 70 else 3, timeout=120)
    assert isinstance(result, Waited) and result.seconds == 70
    assert [(t, m) for t, m, _ in said] == [
        (0, "1/3 ready; waiting for x"),
        (30, "1/3 ready; waiting for x"),  # heartbeat
        (60, "1/3 ready; waiting for x"),  # heartbeat
        (70, "3/3 ready"),  # change
    ]


def test_stable_window_restarts_on_a_relapse() -> None:
    # ready at 10, relapse at 20, ready again from 25: done at 25 + 15
    result, said, _ = run(lambda t: 1 if t < 10 or 20 <= t < 25 else 3, stable_for=15)
    assert isinstance(result, Waited)
    assert result.seconds == 40 and result.ready_at == 1_000_000.0 + 25
    assert [m for _, m, _ in said] == [
        "1/3 ready; waiting for x",
        "3/3 ready (stable for 0/15s)",
        "1/3 ready; waiting for x",
        "3/3 ready (stable for 0/15s)",
    ]


def test_transient_errors_are_polled_through_keeping_the_last_observation() -> None:
    result, said, _ = run(lambda t: 2 if t < 10 else None, timeout=20)
    assert isinstance(result, WaitTimeout)
    assert result.message == "2/3 ready after 20s"  # the last observation before the blips
    assert [m for _, m, _ in said] == [
        "2/3 ready; waiting for x",
        "API not answering (connection refused); polling on",
        "API not answering (connection refused); polling on",
        "API not answering (connection refused); polling on",
    ]


def test_never_observed_gives_up_with_none() -> None:
    result, _, _ = run(lambda t: None, timeout=12)
    assert isinstance(result, WaitTimeout) and result.message == "None/3 ready after 12s"
    assert result.exit_code == 5


@pytest.mark.parametrize(("timeout", "times"), [(12, [0, 5, 10, 12]), (0, [0])])
def test_never_sleeps_past_the_deadline_and_marks_the_final_look(
    timeout: float, times: list[float]
) -> None:
    result, _, looks = run(lambda t: 1, timeout=timeout)
    assert isinstance(result, WaitTimeout)
    assert [lk.now for lk in looks] == times
    assert [lk.final for lk in looks] == [False] * (len(times) - 1) + [True]


def _confirmed_wait(
    answers: list[bool | None],
) -> tuple[Waited[int] | WaitTimeout, list[str], int]:
    """Always ready by the (watch-fed) look; ``answers`` are what each fresh read says:
    True still ready, False not ready after all, None the API does not answer."""
    clock = Clock()
    said: list[str] = []
    asked: list[float] = []

    def confirm() -> bool:
        asked.append(clock.t)
        answer = answers.pop(0)
        if answer is None:
            raise TransientError("timed out reading the Applications")
        return answer

    try:
        waited: Waited[int] | WaitTimeout = wait_until(
            lambda look: 1,
            lambda n: Judgement(True, "1/1 ready"),
            timeout=120,
            interval=5,
            stable_for=10,
            confirm=confirm,
            progress=lambda m, **d: said.append(m),
            give_up=lambda last, w: WaitTimeout("gave up", target="t"),
            clock=clock,
            wall=clock.wall,
            sleep=clock.sleep,
        )
    except WaitTimeout as e:
        waited = e
    return waited, said, len(asked)


def test_a_stable_window_ends_only_when_a_fresh_read_confirms_it() -> None:
    """A watch over a cut link shows a still picture: the end of the window is confirmed."""
    waited, said, asked = _confirmed_wait([None, False, True])
    assert isinstance(waited, Waited) and asked == 3
    assert any("API not answering (timed out reading the Applications)" in m for m in said)
    # three windows of 10 s: cut link, a dip the fresh read saw, then confirmed
    assert waited.seconds >= 30


def test_without_a_confirmation_the_wait_gives_up_at_its_timeout() -> None:
    waited, said, asked = _confirmed_wait([None] * 100)
    assert isinstance(waited, WaitTimeout) and asked > 1
    assert sum("API not answering" in m for m in said) == asked
