"""The restore, one module per stage, each a few small ``@step`` functions.

``STAGES`` is the step order (modules register in import order).
``pipelines()`` gives the pipelines the CLI runs: ``restore`` and ``drill``
(restore, then verify, report and tear down).
"""

from __future__ import annotations

import importlib

from bootstrap.engine.step import Pipeline

STAGES = ("preflight", "hosts", "kubernetes", "keys", "gitops", "finish")


def pipelines() -> dict[str, Pipeline]:
    for stage in STAGES:
        importlib.import_module(f"bootstrap.steps.{stage}")
    from bootstrap.steps import registry

    return {"restore": registry.RESTORE, "drill": registry.drill()}
