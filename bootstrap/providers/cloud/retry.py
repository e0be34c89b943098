"""One capped, polite retry loop for cloud API calls.

Why: a cloud API that says "slow down" (429 with ``RateLimit-Reset`` / ``Retry-After``), "try
again" (5xx) or "busy" (``locked``, ``conflict``) should be asked again, but patiently and not
for ever: a tool that retried without a cap and in parallel got a hetzner-k3s user's account
shut down. So every call goes through ``call()``: one call at a time, at most
``policy.attempts`` tries, a wait that honours the API's own reset header (capped at
``policy.max_delay``), and a total waiting budget. Anything else (bad token, unknown image,
quota) is not retried: the provider turns it into a located error at once.

The provider module (the only importer of its vendor library) translates a vendor exception
into a ``CloudFault``; this module never sees a vendor type.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import tenacity

T = TypeVar("T")

# Answers worth asking again (HTTP status, or the API's error code).
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_CODES = frozenset(
    {
        "rate_limit_exceeded",  # Hetzner 429
        "locked",  # Hetzner: the resource is busy with another action
        "conflict",  # Hetzner / OpenStack 409: changed meanwhile
        "timeout",
        "bad_gateway",
        "service_error",  # Hetzner 5xx
        "unavailable",  # Hetzner 503
    }
)
# A reset header above this is a Unix timestamp (Hetzner); below, delta seconds (IETF draft).
_EPOCH_THRESHOLD = 1_000_000_000


@dataclass(frozen=True)
class CloudRetryPolicy:
    """How patient a provider is with one API call. The defaults are the stated cap."""

    attempts: int = 6  # tries of one call, the first included
    base_delay: float = 1.0  # first backoff when the API gives no header
    max_delay: float = 30.0  # longest single wait, even if a header asks for more
    budget: float = 120.0  # most time spent waiting on one call


@dataclass(frozen=True)
class CloudFault:
    """A failed API call in provider-neutral terms (never a credential in ``message``)."""

    status: int | None  # HTTP status, None for a network error
    code: str | None  # the API's error code (``rate_limit_exceeded``, ``resource_limit_exceeded``)
    message: str
    retry_after: float | None = None  # seconds the API asked us to wait, from its headers

    @property
    def retryable(self) -> bool:
        if self.status is None and self.code in (None, "network"):
            return True  # connection refused/reset, read timeout
        return self.status in RETRY_STATUSES or (self.code or "") in RETRY_CODES


class CloudCallError(Exception):
    """A call failed for good: not retryable, or the cap was reached. Carries the fault."""

    def __init__(self, what: str, fault: CloudFault, attempts: int) -> None:
        self.what = what
        self.fault = fault
        self.attempts = attempts
        tail = f" after {attempts} attempts" if attempts > 1 else ""
        code = f" {fault.code}" if fault.code else ""
        status = f"HTTP {fault.status}" if fault.status is not None else "no answer"
        super().__init__(f"{what}: {status}{code}: {fault.message}{tail}")


def delay_from_headers(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait before asking again, from the answer's headers (None: no header).

    ``Retry-After`` (delta seconds or an HTTP date) wins; otherwise ``RateLimit-Reset``
    (Hetzner: a Unix timestamp; the IETF draft: delta seconds)."""
    now = time.time() if now is None else now
    lower = {k.lower(): v for k, v in headers.items()}
    value = lower.get("retry-after")
    if value is not None:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            return max(0.0, when.timestamp() - now)
    reset = lower.get("ratelimit-reset")
    if reset is not None:
        try:
            number = float(reset.strip())
        except ValueError:
            return None
        return max(0.0, number - now) if number > _EPOCH_THRESHOLD else max(0.0, number)
    return None


Translate = Callable[[BaseException], CloudFault | None]
OnRetry = Callable[[int, CloudFault, float], None]


def call(
    fn: Callable[[], T],
    *,
    what: str,
    translate: Translate,
    policy: CloudRetryPolicy = CloudRetryPolicy(),
    on_retry: OnRetry | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``fn``; retry it on a retryable fault, within ``policy``; else raise CloudCallError.

    ``translate`` turns the vendor's exception into a ``CloudFault`` (None: not an API
    failure, re-raised as is). ``on_retry(attempt, fault, delay)`` reports each wait."""
    waited = 0.0
    tries = 0

    class _Retry(Exception):
        def __init__(self, fault: CloudFault) -> None:
            self.fault = fault

    def attempt() -> T:
        nonlocal tries
        tries += 1
        try:
            return fn()
        except Exception as exc:
            fault = translate(exc)
            if fault is None:
                raise
            if fault.retryable:
                raise _Retry(fault) from None
            raise CloudCallError(what, fault, 1) from None

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        fault = exc.fault if isinstance(exc, _Retry) else None
        if fault is not None and fault.retry_after is not None:
            # the API said when; never earlier, a little after (clock skew), never over cap
            delay = min(fault.retry_after + 0.05, policy.max_delay)
        else:
            delay = min(policy.base_delay * 2 ** (state.attempt_number - 1), policy.max_delay)
        return max(0.0, delay)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        nonlocal waited
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        waited += delay
        if on_retry is not None and isinstance(exc, _Retry):
            on_retry(state.attempt_number, exc.fault, float(delay))

    class _OverBudget(tenacity.stop.stop_base):
        def __call__(self, state: tenacity.RetryCallState) -> bool:
            return waited >= policy.budget

    retrying = tenacity.Retrying(
        stop=tenacity.stop_any(tenacity.stop_after_attempt(max(1, policy.attempts)), _OverBudget()),
        wait=wait,
        retry=tenacity.retry_if_exception_type(_Retry),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )
    try:
        return retrying(attempt)
    except _Retry as last:
        raise CloudCallError(what, last.fault, tries) from None
