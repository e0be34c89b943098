"""The drboot command line. Thin: parse options, build settings, call one function in ``runs``.

Startup imports no vendor library (kubernetes, paramiko, ansible_runner, git):
commands import what they need when they run.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from bootstrap import __version__
from bootstrap.errors import BootstrapError, ConfigError, ExitCode

if TYPE_CHECKING:
    from bootstrap.engine.runner import RunResult
    from bootstrap.engine.step import Pipeline
    from bootstrap.runs import RunRequest, StateDir


@dataclass
class Deps:
    """What commands get from outside; tests swap the pipelines (click's ``obj``)."""

    pipelines: Callable[[], dict[str, Pipeline]] | None = None
    state_dir: Path | None = None
    output: str = "text"
    extra: dict[str, Any] = field(default_factory=dict)

    def get_pipelines(self) -> dict[str, Pipeline]:
        if self.pipelines is not None:
            return self.pipelines()
        from bootstrap.steps import pipelines

        return pipelines()


def _fail(err: BootstrapError, output: str) -> NoReturn:
    if output == "json":
        click.echo(
            json.dumps(
                {
                    "error": err.format(),
                    "exit_code": int(err.exit_code),
                    "step": err.step,
                    "target": err.target,
                    "hint": err.hint,
                }
            )
        )
    else:
        click.echo(click.style("error: ", fg="red", bold=True) + err.format(), err=True)
    sys.exit(int(err.exit_code))


class DrbootGroup(click.Group):
    """Shows a ``BootstrapError`` once with its exit code; saves anything else as a crash."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BootstrapError as err:
            deps = ctx.find_object(Deps)
            _fail(err, deps.output if deps else "text")
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(ExitCode.INTERRUPTED)
        except Exception as exc:
            deps = ctx.find_object(Deps)
            root = deps.state_dir if deps and deps.state_dir else None
            from bootstrap.runs import default_state_dir

            crash_dir = (root or default_state_dir()) / "crashes"
            crash_dir.mkdir(parents=True, exist_ok=True)
            path = crash_dir / f"crash-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.txt"
            from bootstrap.fsutil import write_atomic

            write_atomic(path, traceback.format_exc())
            click.echo(
                f"error: internal error ({type(exc).__name__}); traceback saved to {path}\n"
                "  next: report it with that file",
                err=True,
            )
            sys.exit(ExitCode.INTERNAL)


output_option = click.option(
    "--output",
    "-o",
    type=click.Choice(["text", "json"]),
    default=None,
    help="text (live view on a terminal) or json (JSON lines on stdout).",
)


@click.group(cls=DrbootGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="drboot")
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    envvar="DRBOOT_STATE_DIR",
    help="Journal, audit log, locks and run folders. [default: ~/.local/state/drboot]",
)
@click.option(
    "--output",
    "-o",
    type=click.Choice(["text", "json"]),
    default="text",
    help="Output format for every command.",
)
@click.pass_context
def cli(ctx: click.Context, state_dir: Path | None, output: str) -> None:
    """drboot: from nothing to a working GitOps cluster, on the worst day.

    Exit codes: 0 ok, 2 usage or site-file error, 3 preflight refused, 4 step
    failed (resumable), 5 timed out waiting, 6 site locked by another run,
    70 internal error (traceback saved), 130 interrupted (resumable).
    """
    deps = ctx.ensure_object(Deps)
    if state_dir is not None:
        deps.state_dir = state_dir
    deps.output = output


def _deps(ctx: click.Context, output: str | None) -> Deps:
    deps = ctx.ensure_object(Deps)
    if output:
        deps.output = output
    return deps


def _state(deps: Deps) -> StateDir:
    from bootstrap.runs import StateDir, default_state_dir

    return StateDir(deps.state_dir or default_state_dir())


def _load(path: Path) -> tuple[Any, str]:
    """The validated site and its exact text (the run folder keeps a copy for resume)."""
    from bootstrap.siteload import load_site

    site = load_site(path)
    return site, path.read_text()


def _request(deps: Deps, options: dict[str, Any], force_unlock: bool = False) -> RunRequest:
    from bootstrap.runs import RunRequest

    observers: list[Any] = []
    if deps.output == "json":
        from bootstrap.render.jsonlines import JsonLinesRenderer

        observers.append(JsonLinesRenderer())
    else:
        from bootstrap.render.terminal import TerminalRenderer

        observers.append(TerminalRenderer())
    return RunRequest(
        state=_state(deps), observers=observers, options=options, force_unlock=force_unlock
    )


def _finish(result: RunResult, deps: Deps) -> None:
    if result.error is not None:
        if deps.output == "json":
            sys.exit(result.exit_code)  # the run.finished event already carries the error
        click.echo(click.style("error: ", fg="red", bold=True) + result.error.format(), err=True)
    sys.exit(result.exit_code)


@cli.command()
@click.argument("site", type=click.Path(path_type=Path, dir_okay=False))
@output_option
@click.pass_context
def validate(ctx: click.Context, site: Path, output: str | None) -> None:
    """Check a site file; errors name the file, line and column."""
    deps = _deps(ctx, output)
    model, _ = _load(site)
    if deps.output == "json":
        click.echo(json.dumps({"ok": True, "site": model.name}))
    else:
        click.echo(f"{site}: ok (site {model.name})")


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the site file (for editors)."""
    from bootstrap.siteload import site_schema

    click.echo(json.dumps(site_schema(), indent=2))


@cli.command()
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False), default="site.yaml")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(path: Path, force: bool) -> None:
    """Write a commented example site file."""
    from bootstrap.fsutil import write_atomic
    from bootstrap.site_example import EXAMPLE_SITE

    if path.exists() and not force:
        raise ConfigError(f"{path} exists", hint="choose another path or pass --force")
    write_atomic(path, EXAMPLE_SITE, mode=0o644)
    click.echo(f"wrote {path}; edit it, then `drboot validate {path}`")


def _run_options(accept_slow_disk: str | None, trust_on_first_use: bool) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if accept_slow_disk:
        opts["accept_slow_disk"] = accept_slow_disk
    if trust_on_first_use:
        opts["trust_on_first_use"] = True
    return opts


run_options = [
    click.option(
        "--accept-slow-disk",
        metavar="REASON",
        default=None,
        help="Go on past a disk slower than the gate; the reason is audited.",
    ),
    click.option(
        "--trust-on-first-use",
        is_flag=True,
        help="Accept unknown SSH host keys once; they are journalled and audited.",
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


def _with(options: list[Callable[[Any], Any]]) -> Callable[[Any], Any]:
    def deco(f: Any) -> Any:
        for opt in reversed(options):
            f = opt(f)
        return f

    return deco


def _check_until(until: str | None, pipelines: list[Pipeline]) -> str | None:
    if until is None:
        return None
    known = [sid for p in pipelines for sid in p.ids()]
    if until not in known:
        raise ConfigError(
            f"--until {until}: no such step", hint="steps: " + ", ".join(dict.fromkeys(known))
        )
    return until


@cli.command()
@click.argument("site", type=click.Path(path_type=Path, dir_okay=False))
@_with(run_options)
@click.pass_context
def restore(
    ctx: click.Context,
    site: Path,
    accept_slow_disk: str | None,
    trust_on_first_use: bool,
    until: str | None,
    force_unlock: bool,
    output: str | None,
) -> None:
    """Restore SITE: from nothing to every application Synced and Healthy."""
    _run_site(
        ctx, "restore", site, accept_slow_disk, trust_on_first_use, until, force_unlock, output
    )


@cli.command()
@click.argument("site", type=click.Path(path_type=Path, dir_okay=False))
@_with(run_options)
@click.pass_context
def drill(
    ctx: click.Context,
    site: Path,
    accept_slow_disk: str | None,
    trust_on_first_use: bool,
    until: str | None,
    force_unlock: bool,
    output: str | None,
) -> None:
    """Rehearse: provision a throw-away copy of SITE, restore, verify, report, tear down."""
    _run_site(ctx, "drill", site, accept_slow_disk, trust_on_first_use, until, force_unlock, output)


def _run_site(
    ctx: click.Context,
    pipeline_name: str,
    site: Path,
    accept_slow_disk: str | None,
    trust_on_first_use: bool,
    until: str | None,
    force_unlock: bool,
    output: str | None,
    *,
    before: Callable[[Any, Deps], None] | None = None,
) -> None:
    """The body of restore, drill and demo: load the site, run the pipeline, exit with its code."""
    from bootstrap.runs import start

    deps = _deps(ctx, output)
    model, text = _load(site)
    if before is not None:
        before(model, deps)
    pipeline = deps.get_pipelines()[pipeline_name]
    req = _request(deps, _run_options(accept_slow_disk, trust_on_first_use), force_unlock)
    req.until = _check_until(until, [pipeline])
    _finish(start(pipeline, model, text, req, site), deps)


@cli.command()
@click.argument("run_id")
@_with(run_options)
@click.pass_context
def resume(
    ctx: click.Context,
    run_id: str,
    accept_slow_disk: str | None,
    trust_on_first_use: bool,
    until: str | None,
    force_unlock: bool,
    output: str | None,
) -> None:
    """Continue a failed or killed run from its first unfinished step."""
    from bootstrap.runs import resume as resume_run
    from bootstrap.siteload import load_site_text

    def load(text: str, source: str, base: Path) -> Any:
        return load_site_text(text, source, base_dir=base)

    deps = _deps(ctx, output)
    req = _request(deps, _run_options(accept_slow_disk, trust_on_first_use), force_unlock)
    req.until = _check_until(until, list(deps.get_pipelines().values()))
    _finish(resume_run(run_id, deps.get_pipelines(), load, req), deps)


@cli.command()
@click.argument("site", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--pipeline", type=click.Choice(["restore", "drill"]), default="restore")
@output_option
@click.pass_context
def plan(ctx: click.Context, site: Path, pipeline: str, output: str | None) -> None:
    """Dry run: observe only, and list what each step would change."""
    from bootstrap.runs import RunRequest, dry_run

    deps = _deps(ctx, output)
    model, _ = _load(site)
    result = dry_run(deps.get_pipelines()[pipeline], model, RunRequest(state=_state(deps)))
    if deps.output == "json":
        click.echo(
            json.dumps(
                {
                    "site": model.name,
                    "exit_code": result.exit_code,
                    "steps": [e.to_dict() for e in result.plan],
                }
            )
        )
    else:
        for e in result.plan:
            click.echo(click.style(f"{e.step}", bold=True) + f"  {e.title}")
            for c in e.changes:
                click.echo(f"    would {c}")
            for n in e.noops:
                click.echo(f"    no change: {n}")
            if e.unknown:
                click.echo(f"    would run ({e.unknown})")
            if e.error:
                click.echo(click.style(f"    refused: {e.error}", fg="red"))
    sys.exit(result.exit_code)


@cli.command()
@click.argument("run_id", required=False)
@output_option
@click.pass_context
def status(ctx: click.Context, run_id: str | None, output: str | None) -> None:
    """List runs, or show one run's steps with timings."""
    from bootstrap.runs import status as get_status

    deps = _deps(ctx, output)
    runs, steps = get_status(_state(deps), run_id)
    if deps.output == "json":
        click.echo(
            json.dumps(
                {
                    "runs": [r.__dict__ for r in runs],
                    "steps": [dict(s.__dict__, seconds=s.seconds) for s in steps],
                },
                default=str,
            )
        )
        return
    for r in runs:
        took = f"{r.ended - r.created:.1f}s" if r.ended else "-"
        click.echo(f"{r.id}  {r.site}  {r.pipeline}  {r.status}  exit={r.exit_code}  {took}")
    for s in steps:
        secs = f"{s.seconds:.1f}s" if s.seconds is not None else ""
        line = f"  {s.step_id:<24} {s.status:<8} {secs:>8}  attempts={s.attempts}  {s.summary}"
        click.echo(line + (f"\n      {s.error}" if s.error else ""))


@cli.command("report")
@click.argument("run_id")
@click.option(
    "--directory",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where to write. [default: the site's report.directory, or the run folder]",
)
@output_option
@click.pass_context
def report_cmd(ctx: click.Context, run_id: str, directory: Path | None, output: str | None) -> None:
    """Write (again) the report of a run from the journal: steps, timings, RTO, warnings."""
    import time as _time

    from bootstrap.report import model, write
    from bootstrap.siteload import load_site_text

    deps = _deps(ctx, output)
    state = _state(deps)
    from bootstrap.runs import status as get_status

    runs, _ = get_status(state, run_id)
    run_dir = state.run_dir(run_id)
    base = runs[0].options.get("site_dir")
    site = load_site_text(
        (run_dir / "site.yaml").read_text(),
        str(run_dir / "site.yaml"),
        base_dir=Path(base) if base else run_dir,
    )
    info = model.Context(
        objective_seconds=site.rto.objective.total_seconds(),
        provider=str(site.provider.type),
        reconciler=str(site.reconciler.type),
        now=_time.time(),
    )
    from bootstrap.steps.finish import from_journal

    data = from_journal(state.journal_path, run_id, info)
    target = directory or site.report.directory or run_dir
    paths = write.write(data, target, list(site.report.formats))
    if deps.output == "json":
        click.echo(
            json.dumps(
                {
                    "run_id": run_id,
                    "files": [str(p) for p in paths],
                    "rto": data["rto"],
                    "warnings": data["warnings"],
                }
            )
        )
        return
    for p in paths:
        click.echo(f"wrote {p}")
    rto = data["rto"]
    if rto["seconds"] is not None:
        verdict = "met" if rto["met"] else "MISSED"
        click.echo(
            f"RTO {rto['seconds']:.0f}s vs objective {rto['objective_seconds']:.0f}s: {verdict}"
        )


@cli.group()
def audit() -> None:
    """The append-only, hash-chained audit log."""


@audit.command("verify")
@output_option
@click.pass_context
def audit_verify(ctx: click.Context, output: str | None) -> None:
    """Check that no audit record was edited, reordered or deleted."""
    deps = _deps(ctx, output)
    log = _state(deps).audit
    problems = log.verify()
    if deps.output == "json":
        click.echo(
            json.dumps(
                {
                    "ok": not problems,
                    "path": str(log.path),
                    "problems": [p.__dict__ for p in problems],
                }
            )
        )
    else:
        for p in problems:
            click.echo(f"{log.path}:{p.line}: {p.reason}", err=True)
        if not problems:
            click.echo(f"{log.path}: intact")
    if problems:
        sys.exit(ExitCode.PREFLIGHT)


# The command groups in their own modules register themselves on ``cli`` when imported.
from bootstrap import cli_escrow, cli_lab  # noqa: E402, F401


def main() -> None:
    cli(obj=Deps())


if __name__ == "__main__":
    # `python -m bootstrap.cli`: run the imported module's group, on which the command
    # modules registered, not this __main__ copy of it.
    from bootstrap.cli import main as _main

    _main()
