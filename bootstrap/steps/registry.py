"""The pipelines that step modules register on."""

from __future__ import annotations

from bootstrap.engine.step import Pipeline

RESTORE = Pipeline("restore")
DRILL_EXTRA = Pipeline("drill-extra")

step = RESTORE.step


def drill() -> Pipeline:
    """A drill is a restore of a throw-away copy, then verification, report and teardown."""
    return Pipeline("drill").include(RESTORE).include(DRILL_EXTRA)
