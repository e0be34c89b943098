"""The one allowed placeholder: a declared step whose issue has not landed yet.

It refuses at run time, naming itself and the issue, so nobody mistakes a
partial restore for a finished one.
"""

from __future__ import annotations

from bootstrap.engine.context import StepContext
from bootstrap.errors import NotImplementedStep


def not_yet(ctx: StepContext, what: str, issue: str) -> None:
    raise NotImplementedStep(
        f"not implemented yet: {what} (tracked in {issue}); the run stopped here on purpose",
        step=ctx.step_id,
        hint=f"use a drboot release that includes {issue}, then `drboot resume {ctx.run_id}`",
    )
