"""``drboot rollout SITE...``: the same restore for many sites at once (a new region).

A thin command: it reads and validates every site file first (a bad one, or two files
naming one site, is exit 2 before any site starts), asks ``bootstrap.rollout`` what to do
with each site (from the journal), runs them, and writes the combined report
(``bootstrap.rolloutreport``). The exit code is 0 when every site is ok or already done,
4 when any site is not (each site's own code is in the report), 130 when interrupted.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from bootstrap.cli.app import deps_of, output_option
from bootstrap.cli.output import Line, Stderr, bold, refused
from bootstrap.cli.sitearg import read_site
from bootstrap.options import RunOptions


@click.command()
@click.argument(
    "sites", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="SITE..."
)
@click.option(
    "--parallel",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="How many sites are restored at the same time.",
)
@click.option(
    "--report-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where the combined report goes. [default: STATE/rollouts/ROLLOUT_ID]",
)
@click.option(
    "--accept-slow-disk",
    metavar="REASON",
    default=None,
    help="Go on past a disk slower than the gate, on every site run; the reason is audited.",
)
@click.option(
    "--accept-slow-cpu",
    metavar="REASON",
    default=None,
    help="Go on past a CPU the gate refuses, on every site run; the reason is audited.",
)
@click.option(
    "--trust-on-first-use",
    is_flag=True,
    help="Accept unknown SSH host keys once; they are journalled and audited.",
)
@output_option
@click.pass_context
def rollout(
    ctx: click.Context,
    sites: tuple[Path, ...],
    parallel: int,
    report_dir: Path | None,
    accept_slow_disk: str | None,
    accept_slow_cpu: str | None,
    trust_on_first_use: bool,
    output: str | None,
) -> None:
    """Restore many sites at once (SITE files, or folders of them), PARALLEL at a time.

    Run it again to go on: a site whose last restore finished ok is skipped, a failed or
    interrupted one is resumed. Exit 0 when every site is ok, 4 when any is not.
    """
    from bootstrap import rollout as ro
    from bootstrap import rolloutreport
    from bootstrap.fsutil import private_dir

    deps = deps_of(ctx, output)
    state = deps.state()
    specs = []
    for path in ro.site_files(list(sites)):
        given = read_site(path)
        specs.append(ro.SiteSpec(path, given.site, ro.digest(given.data)))
    ro.check_sites(specs)
    decisions = ro.decide(state, specs)
    rollout_id = f"rollout-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(2)}"
    folder = private_dir(private_dir(state.root / "rollouts") / rollout_id)
    req = ro.RolloutRequest(
        state=state,
        folder=folder,
        options=RunOptions(
            accept_slow_disk=accept_slow_disk or None,
            accept_slow_cpu=accept_slow_cpu or None,
            trust_on_first_use=trust_on_first_use,
        ),
        parallel=parallel,
        program=deps.program or ro.DEFAULT_PROGRAM,
    )
    out = deps.out()
    started = time.time()
    outcome = ro.run(req, decisions, _view(out.json))
    data = rolloutreport.build(
        rollout_id, req, outcome.sites, started, interrupted=outcome.interrupted
    )
    files = rolloutreport.write(data, report_dir or folder)
    data["report"] = [str(f) for f in files]
    if out.json:
        click.echo(_json_line({"kind": "rollout.finished", "ts": time.time(), **data}))
    else:
        for line in _summary(data):
            click.echo(
                line.text if isinstance(line, Stderr) else line, err=isinstance(line, Stderr)
            )
    sys.exit(int(data["exit_code"]))


def _view(json_output: bool) -> Any:
    from bootstrap import rolloutview

    if json_output:
        return rolloutview.JsonLinesView()
    if sys.stdout.isatty():
        return rolloutview.TableView()
    return rolloutview.LinesView()


def _json_line(data: dict[str, Any]) -> str:
    import json

    return json.dumps(data, default=str)


def _summary(data: dict[str, Any]) -> Iterator[Line]:
    counts = ", ".join(f"{v} {k}" for k, v in data["summary"].items() if k != "sites")
    yield bold(f"rollout {data['rollout']}: {counts}")
    for s in data["sites"]:
        if s["next"]:
            step = s["failed_step"] or "-"
            first = str(s["error"] or "").splitlines()[0] if s["error"] else "no error recorded"
            yield Stderr(refused(f"  {s['site']}: {s['result']} at {step}: {first}"))
            yield Stderr(f"    next: {s['next']}")
    for f in data["report"]:
        yield f"report: {f}"


COMMANDS: list[click.Command] = [rollout]
