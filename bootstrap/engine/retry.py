"""The one place that turns a step's ``RetryPolicy`` into a tenacity ``Retrying``.

Steps never import tenacity. ``TransientError`` is retried with capped
exponential backoff (or the error's own ``retry_after``); anything else stops
at once.
"""

from __future__ import annotations

from collections.abc import Callable

import tenacity

from bootstrap.engine.step import RetryPolicy
from bootstrap.errors import TransientError


def _wait(policy: RetryPolicy) -> Callable[[tenacity.RetryCallState], float]:
    exp = tenacity.wait_exponential(
        multiplier=policy.backoff_initial,
        exp_base=policy.backoff_multiplier,
        max=policy.backoff_max,
    )

    def wait(state: tenacity.RetryCallState) -> float:
        outcome = state.outcome
        if outcome is not None and outcome.failed:
            exc = outcome.exception()
            if isinstance(exc, TransientError) and exc.retry_after is not None:
                return min(exc.retry_after, policy.backoff_max)
        return float(exp(state))

    return wait


def retrying(
    policy: RetryPolicy,
    *,
    before_sleep: Callable[[int, BaseException, float], None],
    sleep: Callable[[float], None] | None = None,
) -> tenacity.Retrying:
    """A ``Retrying`` for ``policy``; ``before_sleep(attempt, error, delay)`` reports retries."""

    def report(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        if exc is not None:
            before_sleep(state.attempt_number, exc, float(delay))

    kwargs = {}
    if sleep is not None:
        kwargs["sleep"] = sleep
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max(1, policy.attempts)),
        wait=_wait(policy),
        retry=tenacity.retry_if_exception_type(TransientError),
        before_sleep=report,
        reraise=True,
        **kwargs,  # type: ignore[arg-type]
    )
