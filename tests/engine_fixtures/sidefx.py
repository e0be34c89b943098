"""A drboot CLI whose restore pipeline is five steps with real side effects on disk.

Each step observes ``acts.log`` in $SIDEFX_DIR and appends its own line only if it is not
there yet. It announces three points with progress events: ``enter`` (before it looks at
anything), ``before-act`` and ``after-act``. With ``SIDEFX_HOLD=<step>:<point>`` the step
stops at that point until the test releases it (``release(dir)``), so a test that SIGKILLs
the process there knows exactly where the kill landed, and a test of concurrent runs knows
the first run holds the lock. Nothing waits on a clock.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from bootstrap.cli import Deps, cli
from bootstrap.engine.context import StepContext
from bootstrap.engine.step import Pipeline, RetryPolicy

STEPS = [f"s{i}" for i in range(1, 6)]
POINTS = ("enter", "before-act", "after-act")
GATE = "release.fifo"


def _dir() -> Path:
    return Path(os.environ["SIDEFX_DIR"])


def _log() -> Path:
    return _dir() / "acts.log"


def release(sidefx_dir: Path) -> None:
    """Let the process holding at ``SIDEFX_HOLD`` go on (blocks until it is there)."""
    with open(sidefx_dir / GATE, "w"):
        pass


def _point(ctx: StepContext, name: str, point: str) -> None:
    if os.environ.get("SIDEFX_HOLD") != f"{name}:{point}":
        ctx.progress(point, target="disk")
        return
    gate = _dir() / GATE
    with contextlib.suppress(FileExistsError):
        os.mkfifo(gate, 0o600)
    ctx.progress(point, target="disk", hold=True)
    with open(gate):  # blocks until release() opens the other end (or the process is killed)
        pass


def _make(name: str):  # type: ignore[no-untyped-def]
    def fn(ctx: StepContext) -> None:
        _point(ctx, name, "enter")
        log = _log()
        done = log.read_text().splitlines() if log.exists() else []
        if name in done:
            ctx.noop(f"{name} already in acts.log")
            return
        _point(ctx, name, "before-act")
        if not ctx.will(f"append {name} to acts.log", target="disk"):
            return
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{name}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        _point(ctx, name, "after-act")

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
