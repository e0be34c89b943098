"""Waiting: poll an observation until a judgement says done, within one deadline.

Why it exists: several steps wait for the cluster (the reconciler's own workloads, every app
Synced+Healthy, the Sealed Secrets controller, the nodes). Each used to carry its own loop with
its own deadline, progress and timeout handling. This is the one loop; a wait says only what
to look at (``observe``), how to judge what it saw (``judge``) and how to give up (``give_up``).

What every wait gets from it:

- a deadline (``timeout`` from the first look) and a poll ``interval``, never sleeping past the
  deadline; the last look before giving up is marked ``final`` (worth a closer diagnosis);
- progress when the judgement's text changes, and a heartbeat with the same text every
  ``heartbeat`` seconds when nothing changes, so a long wait is never silent;
- an optional stable window: done only once the judgement has said done for ``stable_for``
  seconds in a row (a new not-done look restarts it);
- a ``TransientError`` from ``observe`` (the API not answering for a moment) is reported and
  polled on, keeping the previous observation; the deadline still bounds the wait;
- on the deadline, the typed ``WaitTimeout`` that ``give_up`` builds from the last observation
  (None if there never was one): it names what was not ready and what to do next.

No Kubernetes here: observations are whatever ``observe`` returns, so the loop is tested with
a fake clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from bootstrap.errors import TransientError, WaitTimeout

T = TypeVar("T")

HEARTBEAT = 30.0  # seconds between progress events when nothing changes
MIN_SLEEP = 0.05


@dataclass(frozen=True)
class Look:
    """When a look happens: ``now`` (monotonic) and whether it is the ``final`` one before
    giving up."""

    now: float
    final: bool


@dataclass(frozen=True)
class Judgement:
    """What a look showed. ``text`` is compared between looks (a change is reported at once);
    ``detail`` follows it in the progress message without counting as a change; ``data`` are
    the progress event's fields."""

    done: bool
    text: str
    detail: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Waited(Generic[T]):
    """A wait that ended well: the last observation, seconds from the first look to the end,
    and the wall-clock time the final done streak began."""

    last: T
    seconds: float
    ready_at: float


class Progress(Protocol):
    """Where progress goes (``ctx.progress`` with the target bound)."""

    def __call__(self, message: str, **data: Any) -> None: ...


def wait_until(
    observe: Callable[[Look], T],
    judge: Callable[[T], Judgement],
    *,
    timeout: float,
    interval: float,
    progress: Progress,
    give_up: Callable[[T | None, float], WaitTimeout],
    stable_for: float = 0.0,
    confirm: Callable[[], bool] | None = None,
    heartbeat: float = HEARTBEAT,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Waited[T]:
    """Poll ``observe`` until ``judge`` says done (for ``stable_for`` seconds in a row), or
    raise ``give_up(last observation or None, seconds waited)`` once ``timeout`` has passed.

    ``confirm``, when given, is asked before a done streak ends the wait: an observer fed by
    a watch sees a still picture when the link to the API is cut, so the end is confirmed
    by a fresh read (``False``: not done after all; ``TransientError``: the API does not
    answer). Either restarts the streak."""
    started = clock()
    deadline = started + timeout
    latest: tuple[T] | None = None  # the last observation (a tuple: T itself may be None)
    verdict: Judgement | None = None
    since: float | None = None  # monotonic time the current done streak began
    ready_at = 0.0
    said, said_at = "", float("-inf")
    while True:
        now = clock()
        final = now >= deadline
        try:
            observed = observe(Look(now, final))
        except TransientError as e:
            progress(f"API not answering ({e.message}); polling on")
        else:
            latest, verdict = (observed,), judge(observed)
            if not verdict.done:
                since = None
            elif since is None:
                since, ready_at = now, wall()
        if verdict is not None and (verdict.text != said or now - said_at >= heartbeat):
            message = verdict.text + (f"; {verdict.detail}" if verdict.detail else "")
            if since is not None and stable_for > 0:
                message += f" (stable for {now - since:.0f}/{stable_for:.0f}s)"
            progress(message, **verdict.data)
            said, said_at = verdict.text, now
        if since is not None and now - since >= stable_for:
            assert latest is not None  # a streak begins only with an observation
            try:
                confirmed = confirm is None or confirm()
            except TransientError as e:
                progress(f"API not answering ({e.message}); polling on")
                confirmed = False
            if confirmed:
                return Waited(latest[0], clock() - started, ready_at)
            since = None
        if final:
            raise give_up(latest[0] if latest is not None else None, clock() - started)
        pause = min(interval, deadline - clock())
        if since is not None:  # wake when the stable window would be over, not a poll later
            pause = min(pause, since + stable_for - clock())
        sleep(max(MIN_SLEEP, pause))
