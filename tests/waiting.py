"""Waiting for an observable condition, with a deadline (never a fixed sleep).

Why it exists: a test that sleeps "long enough" is either slow or flaky, and proves nothing
about what it waited for. ``wait_until`` polls a condition the test can see and fails, naming
what it waited for, when the deadline passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    fn: Callable[[], T | None],
    timeout: float = 40.0,
    what: str = "condition",
    interval: float = 0.2,
) -> T:
    """Poll ``fn`` until it returns something truthy; return that, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
