"""The outcome of a finished run, and the history of a site's drills and restores.

Why it exists: the end of every drill or restore feeds three readers that must agree (the
Prometheus textfile, the webhook, the RTO-missed exit code), and ``drboot history`` lists
the same facts for every run of a site with a trend. All of them read one typed
``Outcome`` built here from journal rows, with the RTO measured exactly as the report
measures it (``bootstrap.report.model.rto``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from bootstrap.records import RunRow, RunStatus, StepRow
from bootstrap.report import model

Kind = Literal["drill", "restore"]
Verdict = Literal["growing", "shrinking", "steady", "not enough runs"]

TREND_WINDOW = 3  # the last N measured runs against the N before them
STEADY_PERCENT = 10.0  # a change of the mean RTO within this is "steady"


def kind_of(pipeline: str) -> Kind:
    """A drill rehearses on throw-away hosts (``drill``, ``demo``); anything else restores."""
    return "drill" if pipeline in ("drill", "demo") else "restore"


@dataclass(frozen=True)
class Outcome:
    """One run of a site as its end left it: what the metrics, the webhook and history say."""

    run_id: str
    site: str
    kind: Kind
    status: RunStatus
    started: float
    ended: float | None
    rto_seconds: float | None  # start to every app Synced+Healthy; None: never got there
    objective_seconds: float | None
    failed_step: str | None
    error: str | None
    step_seconds: dict[str, float]  # steps that ran to an end, in pipeline order

    @property
    def succeeded(self) -> bool:
        return self.status == "ok"

    @property
    def objective_met(self) -> bool | None:
        """Met, missed, or None when nothing was measured (the run never got that far)."""
        if self.rto_seconds is None or self.objective_seconds is None:
            return None
        return self.rto_seconds <= self.objective_seconds

    @property
    def outcome(self) -> str:
        """``restored`` (ok, objective met or unknown), ``rto-missed``, or the run's status."""
        if self.status != "ok":
            return self.status
        return "rto-missed" if self.objective_met is False else "restored"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            started_at=model.iso(self.started),
            ended_at=model.iso(self.ended),
            outcome=self.outcome,
            objective_met=self.objective_met,
        )
        return data


def outcome(
    run: RunRow, steps: Sequence[StepRow], objective: float | None, status: RunStatus
) -> Outcome:
    """The ``Outcome`` of ``run`` from its journal rows. ``status`` is the run's status as it
    stands now (a journalled ``running`` whose process is gone is ``interrupted``)."""
    measured = model.rto(run, steps, objective if objective is not None else 0.0)
    failed = next((s for s in steps if s.status == "failed"), None)
    error = run.error or (failed.error if failed else None)
    return Outcome(
        run_id=run.id,
        site=run.site,
        kind=kind_of(run.pipeline),
        status=status,
        started=run.created,
        ended=run.ended,
        rto_seconds=measured["seconds"],
        objective_seconds=objective,
        failed_step=failed.step_id if failed else None,
        error=error.splitlines()[0] if error else None,
        step_seconds={s.step_id: round(s.seconds, 3) for s in steps if s.seconds is not None},
    )


@dataclass(frozen=True)
class Trend:
    """Is the RTO growing? The mean of the last ``window`` measured runs against the mean of
    the ``window`` before them, and the least-squares slope over every measured run."""

    verdict: Verdict
    window: int
    measured_runs: int
    recent_mean_seconds: float | None = None
    previous_mean_seconds: float | None = None
    change_percent: float | None = None
    slope_seconds_per_run: float | None = None

    def sentence(self) -> str:
        if self.verdict == "not enough runs":
            return (
                f"trend: not enough runs with a measured RTO ({self.measured_runs}; "
                f"{2 * self.window} needed)"
            )
        assert self.recent_mean_seconds is not None and self.previous_mean_seconds is not None
        return (
            f"trend: RTO {self.verdict}: last {self.window} runs average "
            f"{self.recent_mean_seconds:.0f}s, the {self.window} before "
            f"{self.previous_mean_seconds:.0f}s "
            f"({self.change_percent:+.0f}%); slope {self.slope_seconds_per_run:+.1f}s per run"
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"sentence": self.sentence()}


def trend(outcomes: Sequence[Outcome], window: int = TREND_WINDOW) -> Trend:
    """The trend of the RTO over ``outcomes`` (oldest first); runs without a measured RTO
    (failed before every app was Synced) do not count."""
    rtos = [o.rto_seconds for o in outcomes if o.rto_seconds is not None]
    if len(rtos) < 2 * window:
        return Trend("not enough runs", window, len(rtos))
    recent = sum(rtos[-window:]) / window
    previous = sum(rtos[-2 * window : -window]) / window
    change = (recent - previous) / previous * 100 if previous > 0 else 0.0
    verdict: Verdict = "steady"
    if change > STEADY_PERCENT:
        verdict = "growing"
    elif change < -STEADY_PERCENT:
        verdict = "shrinking"
    return Trend(
        verdict,
        window,
        len(rtos),
        round(recent, 3),
        round(previous, 3),
        round(change, 1),
        round(_slope(rtos), 3),
    )


def _slope(values: Sequence[float]) -> float:
    """Least-squares slope of ``values`` against their index."""
    n = len(values)
    mean_x = (n - 1) / 2
    mean_y = sum(values) / n
    num = sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values))
    den = sum((i - mean_x) ** 2 for i in range(n))
    return num / den if den else 0.0


def due(outcomes: Sequence[Outcome], every: dt.timedelta, now: float) -> bool:
    """Is a drill due: no drill started within ``every`` before ``now``? Any drill counts,
    failed ones too (a failing drill pages through its metrics; it is not retried hourly)."""
    drills = [o.started for o in outcomes if o.kind == "drill"]
    return not drills or now - max(drills) >= every.total_seconds()
