"""A drboot CLI whose restore pipeline is five steps with real side effects on disk.

Each step observes ``acts.log`` in $SIDEFX_DIR and appends its own line only
if it is not there yet. It pauses (``SIDEFX_DELAY``) before acting and after
acting, announcing both with progress events, so a test can SIGKILL the
process before the act, after the act but before the journal records the
step, or at a step boundary.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bootstrap.cli import Deps, cli
from bootstrap.engine.context import StepContext
from bootstrap.engine.step import Pipeline, RetryPolicy

STEPS = [f"s{i}" for i in range(1, 6)]


def _log() -> Path:
    return Path(os.environ["SIDEFX_DIR"]) / "acts.log"


def _make(name: str):  # type: ignore[no-untyped-def]
    def fn(ctx: StepContext) -> None:
        log = _log()
        done = log.read_text().splitlines() if log.exists() else []
        if name in done:
            ctx.noop(f"{name} already in acts.log")
            return
        delay = float(os.environ.get("SIDEFX_DELAY", "0.3"))
        ctx.progress("before-act", target="disk")
        time.sleep(delay)
        if not ctx.will(f"append {name} to acts.log", target="disk"):
            return
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{name}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        ctx.progress("after-act", target="disk")
        time.sleep(delay)

    return fn


def pipelines() -> dict[str, Pipeline]:
    p = Pipeline("restore")
    prev: list[str] = []
    for name in STEPS:
        p.step(name, after=prev, retry=RetryPolicy.none(), timeout=60)(_make(name))
        prev = [name]
    return {"restore": p, "drill": p}


if __name__ == "__main__":
    cli(obj=Deps(pipelines=pipelines))
