"""A lab stand-in whose start-up fails crash-loops until it starts, as a real controller does
(found by the reliability suite: stand-ins started while the server's link was cut gave up at
once and the restore then waited for a controller that never came)."""

from __future__ import annotations

import threading

from bootstrap.errors import TransientError
from bootstrap.lab.standins.common import Loop


class Flaky(Loop):
    name = "flaky"

    def __init__(self, failures: int) -> None:
        super().__init__(interval=0.01)
        self.failures = failures
        self.attempts = 0
        self.ticked = threading.Event()

    def setup(self) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise TransientError("cannot reach the API server", target="10.0.0.1:6443")

    def tick(self) -> None:
        self.ticked.set()


def test_a_stand_in_that_cannot_start_tries_again_until_it_runs() -> None:
    loop = Flaky(failures=3)
    loop.start()
    try:
        assert loop.ticked.wait(30), "never started"
        assert loop.attempts == 4 and loop.running
    finally:
        loop.stop()


def test_stopping_a_crash_looping_stand_in_ends_its_thread() -> None:
    loop = Flaky(failures=10**9)
    loop.start()
    thread = loop._thread
    assert thread is not None
    loop.stop()
    thread.join(30)
    assert not thread.is_alive() and not loop.ticked.is_set()
