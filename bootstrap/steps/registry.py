"""The pipelines that step modules register on.

A restore ends with its report. A drill is a restore of a throw-away copy, then teardown,
and only then the report, so the report a user keeps says what happened to the hosts.
"""

from __future__ import annotations

from bootstrap.engine.step import Pipeline

RESTORE = Pipeline("restore")
DRILL_EXTRA = Pipeline("drill-extra")
REPORT_STEP = "report"

step = RESTORE.step


def drill() -> Pipeline:
    """Restore (less its report), tear down, then report."""
    return (
        Pipeline("drill")
        .include(RESTORE, without=(REPORT_STEP,))
        .include(DRILL_EXTRA)
        .include(RESTORE, without=tuple(s for s in RESTORE.ids() if s != REPORT_STEP))
    )
