"""The end-of-run webhook: outcome, RTO and the failed step, as drboot JSON or a Slack text.

Why it exists: a scheduled drill has nobody at the terminal. The site's ``notify.webhook``
is told how each drill and restore ended. The URL is a secret reference (a Slack incoming
webhook URL *is* a credential), so it is resolved here, used for one POST, and never
appears in a message: every failure is described by what happened (HTTP status, refused,
timed out), never by where. A webhook that fails does not fail the run; ``send`` returns
the warning to record instead.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from bootstrap import secretrefs
from bootstrap.errors import BootstrapError
from bootstrap.history import Outcome
from bootstrap.settings import Webhook

SCHEMA = "drboot.dev/notify/v1"
FIELD = "notify.webhook.url"


def body(outcome: Outcome, fmt: str) -> dict[str, Any]:
    """The JSON body for ``fmt``: drboot's own record, or Slack's ``{"text": ...}``."""
    if fmt == "slack":
        return {"text": headline(outcome)}
    return {
        "schema": SCHEMA,
        "site": outcome.site,
        "run_id": outcome.run_id,
        "kind": outcome.kind,
        "outcome": outcome.outcome,
        "succeeded": outcome.succeeded,
        "rto_seconds": outcome.rto_seconds,
        "rto_objective_seconds": outcome.objective_seconds,
        "rto_objective_met": outcome.objective_met,
        "failed_step": outcome.failed_step,
        "error": outcome.error,
        "started_at": outcome.to_json()["started_at"],
        "ended_at": outcome.to_json()["ended_at"],
    }


def headline(o: Outcome) -> str:
    """One line a human reads in a chat channel."""
    if o.rto_seconds is not None and o.objective_seconds is not None:
        verdict = "met" if o.objective_met else "MISSED"
        rto = f"RTO {o.rto_seconds:.0f}s vs objective {o.objective_seconds:.0f}s: {verdict}"
    else:
        rto = "RTO not measured"
    if o.succeeded:
        head = f"drboot {o.kind} of site {o.site}: {o.outcome}"
    else:
        head = f"drboot {o.kind} of site {o.site} {o.status} at step {o.failed_step or '?'}"
        if o.error:
            head += f" ({o.error})"
    return f"{head}; {rto} (run {o.run_id})"


def send(hook: Webhook, outcome: Outcome) -> str | None:
    """POST the body for ``outcome``; None when the webhook answered 2xx, else a warning that
    names the field and what happened, never the URL."""
    try:
        url = secretrefs.resolve(hook.url, field=FIELD)
    except BootstrapError as exc:
        return f"webhook not sent: {exc.message}"
    if not url.startswith(("http://", "https://")):
        return f"webhook not sent: {FIELD} is not an http:// or https:// URL"
    data = json.dumps(body(outcome, hook.format)).encode()
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    timeout = hook.timeout.total_seconds()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(65536)
    except urllib.error.HTTPError as exc:
        return f"webhook ({FIELD}) answered HTTP {exc.code}; the run's outcome stands"
    except urllib.error.URLError as exc:
        return f"webhook ({FIELD}) unreachable: {_why(exc.reason, timeout)}"
    except TimeoutError:
        return f"webhook ({FIELD}) unreachable: no answer within {timeout:.0f}s"
    except (OSError, ValueError) as exc:
        return f"webhook ({FIELD}) failed: {_why(exc, timeout)}"
    return None


def _why(reason: object, timeout: float) -> str:
    """What went wrong, in words that hold no part of the URL."""
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:.0f}s"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return type(reason).__name__
