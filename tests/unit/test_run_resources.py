"""The run's resources: built on first use, closed exactly once on every exit path, and the
kubeconfig (the one cluster credential drboot holds) gone when the run ends."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootstrap.engine.context import RunInfo, RunScope, StepContext
from bootstrap.engine.journal import Journal
from bootstrap.engine.runner import execute
from bootstrap.engine.step import Pipeline, RetryPolicy
from bootstrap.errors import PermanentError
from bootstrap.events import EventBus
from bootstrap.siteload import load_site_text
from bootstrap.steps.resources import RunResources
from tests.conftest import MINIMAL_SITE

BUILT: list[str] = []
CLOSED: list[str] = []


class Clients:
    """A run-wide object like RunResources, counting what happens to it."""

    def __init__(self, info: RunInfo) -> None:
        BUILT.append(info.run_id)

    def close(self) -> None:
        CLOSED.append("closed")


def _run(tmp_path: Path, fail: BaseException | None) -> int:
    BUILT.clear()
    CLOSED.clear()
    p = Pipeline("t")

    @p.step("one", retry=RetryPolicy.none())
    def one(ctx: StepContext) -> None:
        assert ctx.shared(Clients) is ctx.shared(Clients), "built once, then shared"

    @p.step("two", after=["one"], retry=RetryPolicy.none())
    def two(ctx: StepContext) -> None:
        ctx.shared(Clients)
        if fail is not None:
            raise fail

    journal = Journal(tmp_path / "j.sqlite")
    journal.create_run("r1", "s", p.name, p.ids(), {}, "")
    scope = RunScope(run_id="r1", site=None, run_dir=tmp_path, bus=EventBus())  # type: ignore[arg-type]
    try:
        return execute(p, journal, scope).exit_code
    finally:
        journal.close()


@pytest.mark.parametrize(
    ("fail", "code"),
    [(None, 0), (PermanentError("no"), 4), (RuntimeError("bug"), 70), (KeyboardInterrupt(), 130)],
)
def test_shared_objects_are_built_once_and_closed_once_on_every_exit(
    tmp_path: Path, fail: BaseException | None, code: int
) -> None:
    assert _run(tmp_path, fail) == code
    assert BUILT == ["r1"] and CLOSED == ["closed"]


def test_closing_the_resources_removes_the_kubeconfig_and_is_idempotent(tmp_path: Path) -> None:
    site = load_site_text(MINIMAL_SITE.format(name="res"), "s.yaml", base_dir=tmp_path)
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    info = RunInfo("r1", site, RunScope("r1", site, run_dir, EventBus()).options, run_dir,
                   tmp_path, False)  # fmt: skip
    res = RunResources(info)
    res.kubeconfig_path.write_text("apiVersion: v1\n")
    res.close()
    assert not res.kubeconfig_path.exists()
    res.close()  # a second close is harmless
    assert res.kube(lambda m, **d: None) is None, "no kubeconfig: no client"
