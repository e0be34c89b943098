"""The engine: an ordered set of small, registered steps run with a journal.

Nothing here knows about Kubernetes, SSH or click. Steps are registered on a
``Pipeline`` with ``@pipeline.step(...)``; ``runner.execute`` runs them in
order, journals every attempt, retries transient failures and resumes a
killed run from the first unfinished step.
"""

from bootstrap.engine.context import StepContext
from bootstrap.engine.step import Pipeline, RetryPolicy, Step

__all__ = ["Pipeline", "RetryPolicy", "Step", "StepContext"]
