"""The restore, one module per stage, each a few small ``@step`` functions.

``STAGES`` is the step order: the stage modules register their steps as they
are imported, so they are imported here, in order, whenever any of them is.
``pipelines()`` gives the pipelines the CLI runs: ``restore`` and ``drill``
(restore, then verify, report and tear down).
"""

from __future__ import annotations

import importlib

from bootstrap.engine.step import Pipeline

STAGES = ("preflight", "hosts", "kubernetes", "keys", "gitops", "finish")

for _stage in STAGES:
    importlib.import_module(f"bootstrap.steps.{_stage}")


def pipelines() -> dict[str, Pipeline]:
    from bootstrap.steps import registry

    return {"restore": registry.RESTORE, "drill": registry.drill()}
