"""A drboot CLI whose restore is three quick steps, for testing ``drboot rollout`` for real.

The rollout starts this same program for each site (``Deps.program``), as real child
processes. ``disk-gate`` refuses the sites named in ``$ROLLFX_SLOW`` (comma separated) like
the real gate refuses a slow disk: exit 3, unless the run has ``--accept-slow-disk``. With
``ROLLFX_HOLD=<site>`` that site's ``disk-gate`` blocks on a FIFO in ``$ROLLFX_DIR`` until
the process is killed (a test of a killed rollout knows the child is running). Every step
appends ``<site> <step> <pid>`` to ``$ROLLFX_DIR/acts.log``, so a test sees what ran.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bootstrap.cli import Deps, cli
from bootstrap.engine.context import StepContext
from bootstrap.engine.step import Pipeline, RetryPolicy
from bootstrap.errors import PreflightError
from bootstrap.outputs import Reported

STEPS = ["preflight", "disk-gate", "report"]


def _act(ctx: StepContext, step: str) -> None:
    log = Path(os.environ["ROLLFX_DIR"]) / "acts.log"
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{ctx.site.name} {step} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def preflight(ctx: StepContext) -> None:
    _act(ctx, "preflight")


def disk_gate(ctx: StepContext) -> None:
    _act(ctx, "disk-gate")
    name = str(ctx.site.name)
    if os.environ.get("ROLLFX_HOLD") == name:
        gate = Path(os.environ["ROLLFX_DIR"]) / f"hold-{name}.fifo"
        os.mkfifo(gate, 0o600)
        ctx.progress("holding", target="disk", hold=True)
        with open(gate):  # blocks until the process is killed
            pass
    slow = os.environ.get("ROLLFX_SLOW", "").split(",")
    if name in slow and not ctx.options.accept_slow_disk:
        raise PreflightError(
            "p99 fdatasync 48.0 ms over the 10 ms limit",
            target="server-1",
            hint="use a faster disk, or --accept-slow-disk REASON",
        )


def report(ctx: StepContext) -> None:
    _act(ctx, "report")
    ctx.record(Reported(files=[], rto_seconds=12.5, rto_objective_seconds=1200.0, rto_met=True))


def pipelines() -> dict[str, Pipeline]:
    p = Pipeline("restore")
    prev: list[str] = []
    for name, fn in zip(STEPS, (preflight, disk_gate, report), strict=True):
        p.step(name, after=prev, retry=RetryPolicy.none(), timeout=60)(fn)
        prev = [name]
    return {"restore": p, "drill": p}


if __name__ == "__main__":
    cli(obj=Deps(pipelines=pipelines, program=(str(Path(__file__).resolve()),)))
    sys.exit(0)
