"""The restore, one module per stage, each a few small ``@step`` functions.

Import order is step order. ``pipelines()`` gives the pipelines the CLI runs:
``restore`` and ``drill`` (restore, then verify, report and tear down).
"""

from __future__ import annotations

from bootstrap.engine.step import Pipeline


def pipelines() -> dict[str, Pipeline]:
    from bootstrap.steps import finish, gitops, hosts, keys, kubernetes, preflight, registry  # noqa: F401

    return {"restore": registry.RESTORE, "drill": registry.drill()}
