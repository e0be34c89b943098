"""Finish: the report (RTO against the objective); for drills, teardown."""

from __future__ import annotations

import time

from bootstrap.engine.context import StepContext
from bootstrap.engine.step import RetryPolicy
from bootstrap.errors import PermanentError
from bootstrap.steps import common
from bootstrap.steps.registry import DRILL_EXTRA, step


@step("report", after=["wait-synced"], timeout=300, retry=RetryPolicy.none())
def report(ctx: StepContext) -> None:
    """Write the run report: steps, timings, RTO against the objective, warnings."""
    from bootstrap.report import model, write

    site = ctx.site
    directory = site.report.directory or ctx.run_dir
    formats = list(site.report.formats)
    if not ctx.will(f"write the {', '.join(formats)} report into {directory}"):
        return
    info = model.Context(
        objective_seconds=site.rto.objective.total_seconds(),
        provider=str(site.provider.type),
        reconciler=str(site.reconciler.type),
        now=time.time(),
    )
    try:
        data = write.from_journal(common.state_root(ctx) / "journal.sqlite", ctx.run_id, info)
    except KeyError:
        raise PermanentError(
            f"run {ctx.run_id} is not in the journal", hint="report it with the run folder"
        ) from None
    paths = write.write(data, directory, formats)
    rto = data["rto"]
    if rto["seconds"] is not None:
        verdict = "met" if rto["met"] else "MISSED"
        ctx.progress(
            f"RTO {rto['seconds']:.0f}s vs objective {rto['objective_seconds']:.0f}s: {verdict}"
        )
    for w in data["warnings"]:
        ctx.progress(f"warning: {w}")
    ctx.output("files", [str(p) for p in paths])
    ctx.output("rto_seconds", rto["seconds"])
    ctx.output("rto_objective_seconds", rto["objective_seconds"])
    ctx.output("rto_met", rto["met"])
    ctx.output("warnings", len(data["warnings"]))


@DRILL_EXTRA.step("teardown", timeout=1800)
def teardown(ctx: StepContext) -> None:
    """Destroy the throw-away hosts of a drill."""
    site = ctx.site
    if site.provider.type == "static":
        n = len(common.hosts(ctx))
        if ctx.will(f"run teardown.yml on {n} host(s): remove k3s and its data"):
            result = common.playbook(ctx, "teardown.yml")
            changed: dict[str, int] = getattr(result, "changed", {})
            ctx.output("changed", changed)
        return
    prov = common.provider(ctx)
    hosts = prov.observe()
    if not hosts:
        ctx.noop(f"no {site.provider.type} hosts of site {site.name} are left")
        ctx.output("destroyed", [])
        return
    names = ", ".join(h.name for h in hosts)
    if ctx.will(f"destroy {len(hosts)} {site.provider.type} host(s): {names}"):
        destroyed = prov.destroy(lambda m: ctx.progress(m, target=site.name))
        ctx.output("destroyed", destroyed)
