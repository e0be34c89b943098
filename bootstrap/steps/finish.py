"""Finish: the report (RTO against the objective); for drills, teardown."""

from __future__ import annotations

from bootstrap.engine.context import StepContext
from bootstrap.steps.placeholder import not_yet
from bootstrap.steps.registry import DRILL_EXTRA, step


@step("report", after=["wait-synced"], timeout=300)
def report(ctx: StepContext) -> None:
    """Write the run report: steps, timings, RTO against the objective, warnings."""
    not_yet(ctx, "run reports", "the drills/reports issue")


@DRILL_EXTRA.step("teardown", timeout=1800)
def teardown(ctx: StepContext) -> None:
    """Destroy the throw-away hosts of a drill."""
    not_yet(ctx, "drill teardown", "the drills/reports issue")
