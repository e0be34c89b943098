"""The commands that run a pipeline: restore, drill, resume, and plan (a dry run).

restore, drill, resume (and ``drboot demo``) take the same options, declared once
by ``@run_options`` and handed to the command as one frozen ``RunArgs``; their
shared body is ``run_site``. Each command parses, builds a ``RunRequest`` and calls
one function in ``bootstrap.runs``; the exit code is the run's.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bootstrap.cli.app import Deps, deps_of, output_option
from bootstrap.cli.output import Line, bold, refused
from bootstrap.cli.sitearg import read_site, site_argument
from bootstrap.errors import ConfigError
from bootstrap.options import RunOptions

if TYPE_CHECKING:
    from bootstrap.engine.runner import RunResult
    from bootstrap.engine.step import Pipeline
    from bootstrap.runs import RunRequest
    from bootstrap.settings import Site


@dataclass(frozen=True)
class RunArgs:
    """The command line of a run command, gathered by ``@run_options``."""

    options: RunOptions  # journalled with the run
    until: str | None = None  # stop (resumably) after this step
    force_unlock: bool = False  # take over the stale lock of a dead run
    output: str | None = None  # the command's own --output, over the group's


_RUN_OPTIONS = [
    click.option(
        "--accept-slow-disk",
        metavar="REASON",
        default=None,
        help="Go on past a disk slower than the gate; the reason is audited.",
    ),
    click.option(
        "--accept-slow-cpu",
        metavar="REASON",
        default=None,
        help="Go on past a CPU the gate finds stolen or throttled; the reason is audited.",
    ),
    click.option(
        "--trust-on-first-use",
        is_flag=True,
        help="Accept unknown SSH host keys once; they are journalled and audited.",
    ),
    click.option(
        "--keep-on-failure",
        is_flag=True,
        help="A drill that fails keeps its throw-away hosts (to debug and `drboot resume`); "
        "`drboot teardown RUN_ID` removes them later. Without it a failed drill tears down.",
    ),
    click.option(
        "--until",
        metavar="STEP",
        default=None,
        help="Stop (resumably) after this step; `drboot resume RUN_ID` goes on from there.",
    ),
    click.option(
        "--force-unlock",
        is_flag=True,
        help="Take over the site lock of a run whose process is gone.",
    ),
    output_option,
]


def run_options(command: Callable[..., None]) -> Callable[..., None]:
    """Add the run options to ``command``, which receives them as ``run: RunArgs``."""

    @functools.wraps(command)
    def gather(
        *args: Any,
        accept_slow_disk: str | None,
        accept_slow_cpu: str | None,
        trust_on_first_use: bool,
        keep_on_failure: bool,
        until: str | None,
        force_unlock: bool,
        output: str | None,
        **kwargs: Any,
    ) -> None:
        options = RunOptions(
            accept_slow_disk=accept_slow_disk or None,
            accept_slow_cpu=accept_slow_cpu or None,
            trust_on_first_use=trust_on_first_use,
            keep_on_failure=keep_on_failure,
        )
        command(*args, run=RunArgs(options, until, force_unlock, output), **kwargs)

    decorated: Callable[..., None] = gather
    for option in reversed(_RUN_OPTIONS):
        decorated = option(decorated)
    return decorated


def run_site(
    ctx: click.Context,
    pipeline_name: str,
    path: Path,
    run: RunArgs,
    *,
    before: Callable[[Site, Deps], None] | None = None,
) -> None:
    """The body of restore, drill and demo: read the site, run the pipeline, exit with its code."""
    from bootstrap.runs import start

    deps = deps_of(ctx, run.output)
    given = read_site(path)
    if before is not None:
        before(given.site, deps)
    pipeline = deps.get_pipelines()[pipeline_name]
    req = _request(deps, run, [pipeline])
    _finish(deps, start(pipeline, given.site, given.data, req, given.base_dir))


@click.command()
@site_argument
@run_options
@click.pass_context
def restore(ctx: click.Context, site: Path, run: RunArgs) -> None:
    """Restore SITE: from nothing to every application Synced and Healthy."""
    run_site(ctx, "restore", site, run)


@click.command()
@site_argument
@run_options
@click.pass_context
def drill(ctx: click.Context, site: Path, run: RunArgs) -> None:
    """Rehearse: provision a throw-away copy of SITE, restore, verify, report, tear down."""
    run_site(ctx, "drill", site, run)


@click.command()
@click.argument("run_id")
@run_options
@click.pass_context
def resume(ctx: click.Context, run_id: str, run: RunArgs) -> None:
    """Continue a failed or killed run from its first unfinished step."""
    from bootstrap.runs import resume as resume_run

    deps = deps_of(ctx, run.output)
    pipelines = deps.get_pipelines()
    req = _request(deps, run, list(pipelines.values()))
    _finish(deps, resume_run(run_id, pipelines, req))


@click.command()
@site_argument
@click.option("--pipeline", type=click.Choice(["restore", "drill"]), default="restore")
@output_option
@click.pass_context
def plan(ctx: click.Context, site: Path, pipeline: str, output: str | None) -> None:
    """Dry run: observe only, and list what each step would change."""
    from bootstrap.runs import RunRequest, dry_run

    deps = deps_of(ctx, output)
    given = read_site(site)
    result = dry_run(deps.get_pipelines()[pipeline], given.site, RunRequest(state=deps.state()))
    steps = [e.to_dict() for e in result.plan]
    deps.out().show(
        {"site": given.site.name, "exit_code": result.exit_code, "steps": steps},
        lambda: _plan_lines(steps),
    )
    sys.exit(result.exit_code)


def _plan_lines(steps: list[dict[str, Any]]) -> Iterator[Line]:
    for e in steps:
        yield bold(str(e["step"])) + f"  {e['title']}"
        yield from (f"    would {c}" for c in e["changes"])
        yield from (f"    no change: {n}" for n in e["noops"])
        if e["unknown"]:
            yield f"    would run ({e['unknown']})"
        if e["error"]:
            yield refused(f"    refused: {e['error']}")


def _request(deps: Deps, run: RunArgs, pipelines: list[Pipeline]) -> RunRequest:
    from bootstrap.runs import RunRequest

    return RunRequest(
        state=deps.state(),
        observers=deps.out().run_observers(),
        options=run.options,
        force_unlock=run.force_unlock,
        until=_check_until(run.until, pipelines),
    )


def _check_until(until: str | None, pipelines: list[Pipeline]) -> str | None:
    if until is None:
        return None
    known = [sid for p in pipelines for sid in p.ids()]
    if until not in known:
        raise ConfigError(
            f"--until {until}: no such step", hint="steps: " + ", ".join(dict.fromkeys(known))
        )
    return until


def _finish(deps: Deps, result: RunResult) -> None:
    deps.out().run_finished(result)
    sys.exit(result.exit_code)


COMMANDS: list[click.Command] = [restore, drill, resume, plan]
