"""Finish: the report (RTO against the objective); for drills, teardown before it.

The report step is the last of a run, so the report it writes is final: for a drill it shows
what teardown did to the throw-away hosts. It writes the site's ``report.formats`` (by
default JSON, Markdown, JUnit XML and the self-contained HTML page with its timeline).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bootstrap.engine.context import StepContext
from bootstrap.engine.journal import Journal
from bootstrap.engine.step import RetryPolicy
from bootstrap.errors import PermanentError
from bootstrap.outputs import Connected, Reported, TornDown
from bootstrap.report import model
from bootstrap.steps import common
from bootstrap.steps.registry import DRILL_EXTRA, REPORT_STEP, step


def from_journal(journal_path: Path, run_id: str, ctx: model.Context) -> dict[str, Any]:
    """The report of ``run_id`` built from the journal (``KeyError`` for an unknown run)."""
    journal = Journal(journal_path)
    try:
        run = journal.run(run_id)
        if run is None:
            raise KeyError(run_id)
        return model.build(run, journal.steps(run_id), journal.events(run_id), ctx)
    finally:
        journal.close()


@step(REPORT_STEP, after=["wait-synced"], timeout=300, retry=RetryPolicy.none())
def report(ctx: StepContext) -> None:
    """Write the run report: steps, timings, RTO against the objective, contents, warnings."""
    from bootstrap.report import write

    site = ctx.site
    directory = site.report.directory or ctx.run_dir
    formats = list(site.report.formats)
    if not ctx.will(f"write the {', '.join(formats)} report into {directory}"):
        return
    info = model.context_for(
        site, common.plugin(ctx).standins(), time.time(), writing_step=ctx.step_id
    )
    try:
        data = from_journal(ctx.state_root / "journal.sqlite", ctx.run_id, info)
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
        if rto["attempts"] > 1 and rto["active_seconds"] is not None:
            ctx.progress(
                f"the RTO is wall time from the first start; drboot was running "
                f"{rto['active_seconds']:.0f}s of it over {rto['attempts']} attempts"
            )
    warnings = [str(w) for w in data["warnings"]]
    for w in warnings:
        ctx.progress(f"warning: {w}")
    # One event the end-of-run summary reads (text view; a JSON line like any progress).
    ctx.progress(
        f"report written: {', '.join(str(p) for p in paths)}",
        report={
            "files": [str(p) for p in paths],
            "rto_seconds": rto["seconds"],
            "rto_objective_seconds": rto["objective_seconds"],
            "rto_met": rto["met"],
            "rto_active_seconds": rto["active_seconds"],
            "warnings": warnings,
            "lab_standins": list(info.standins),
        },
    )
    ctx.record(
        Reported(
            files=[str(p) for p in paths],
            rto_seconds=rto["seconds"],
            rto_objective_seconds=rto["objective_seconds"],
            rto_met=rto["met"],
            warnings=warnings,
            rto_active_seconds=rto["active_seconds"],
        )
    )


@DRILL_EXTRA.step("teardown", timeout=1800)
def teardown(ctx: StepContext) -> None:
    """Destroy the throw-away hosts of a drill (hosts drboot did not create: uninstall k3s)."""
    site = ctx.site
    prov = common.provider(ctx)
    if not prov.creates_hosts:
        if not ctx.dry_run and ctx.read_optional(Connected) is None:
            ctx.noop("the drill never reached its hosts: no k3s to remove")
            ctx.record(TornDown())
            return
        n = len(common.hosts(ctx))
        if ctx.will(f"run teardown.yml on {n} host(s): remove k3s and its data"):
            result = common.playbook(
                ctx, "teardown.yml", group_vars={"k3s_data_dir": str(site.kubernetes.data_dir)}
            )
            ctx.record(TornDown(changed=dict(result.changed)))
        return
    hosts = prov.observe()
    if not hosts:
        # observe() lists the hosts that run; a server still building, or in error, after a
        # failed drill is the drill's too: destroy() finds every one by its labels.
        destroyed = [] if ctx.dry_run else prov.destroy(lambda m: ctx.progress(m, target=site.name))
        if destroyed:
            ctx.changed(f"destroyed {len(destroyed)} {prov.kind} host(s) that were not running: "
                        f"{', '.join(destroyed)}")  # fmt: skip
        else:
            ctx.noop(f"no {prov.kind} hosts of site {site.name} are left")
        ctx.record(TornDown(destroyed=destroyed))
        return
    names = ", ".join(h.name for h in hosts)
    if ctx.will(f"destroy {len(hosts)} {prov.kind} host(s): {names}"):
        destroyed = prov.destroy(lambda m: ctx.progress(m, target=site.name))
        ctx.record(TornDown(destroyed=destroyed))
