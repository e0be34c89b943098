"""A drboot CLI whose drill and restore pipelines are four small steps: tests of what happens
at the end of a run (metrics, webhook, RTO verdict, history) without hosts.

The steps: ``preflight`` (fails when ``$DRILLKIT_FAIL`` names it), ``wait-synced`` (records
``AppsSynced`` with ``ready_at`` ``$DRILLKIT_RTO`` seconds after the run's journalled start,
so the RTO is exactly that), ``teardown`` (drill only) and drboot's real ``report`` step.
Run as a script (``python -m tests.engine_fixtures.drillkit ...``) it is the drboot command
line with these pipelines, which the systemd lab test installs as a scheduled drill.
"""

from __future__ import annotations

import os

from bootstrap.cli import Deps, cli
from bootstrap.engine.context import StepContext
from bootstrap.engine.journal import Journal
from bootstrap.engine.step import Pipeline, RetryPolicy
from bootstrap.errors import PermanentError
from bootstrap.outputs import AppsSynced
from bootstrap.steps import finish


def _failing(name: str):  # type: ignore[no-untyped-def]
    def fn(ctx: StepContext) -> None:
        if os.environ.get("DRILLKIT_FAIL") == name:
            raise PermanentError(f"{name} refused (DRILLKIT_FAIL)", target="drillkit")
        ctx.noop(f"{name}: nothing to do")

    return fn


def _synced(ctx: StepContext) -> None:
    journal = Journal(ctx.state_root / "journal.sqlite")
    try:
        run = journal.run(ctx.run_id)
    finally:
        journal.close()
    assert run is not None
    rto = float(os.environ.get("DRILLKIT_RTO", "30"))
    ctx.record(AppsSynced(ready_at=run.created + rto))
    ctx.noop("every app Synced+Healthy")


def pipelines() -> dict[str, Pipeline]:
    made = {}
    for name in ("restore", "drill"):
        p = Pipeline(name)
        p.step("preflight", retry=RetryPolicy.none(), timeout=60)(_failing("preflight"))
        p.step("wait-synced", after=["preflight"], retry=RetryPolicy.none(), timeout=60)(_synced)
        last = "wait-synced"
        if name == "drill":
            p.step("teardown", after=[last], retry=RetryPolicy.none(), timeout=60)(
                _failing("teardown")
            )
            last = "teardown"
        p.step("report", after=[last], retry=RetryPolicy.none(), timeout=60)(finish.report)
        made[name] = p
    return made


if __name__ == "__main__":
    cli(obj=Deps(pipelines=pipelines))
