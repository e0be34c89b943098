"""The commands that look and write files but run nothing: validate, schema, init, status,
report, audit verify.

Each reads one thing (a site file, the journal, the audit log), asks ``bootstrap.runs``
or the module that owns it, and shows the answer through ``bootstrap.cli.output``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bootstrap.cli.app import deps_of, output_option
from bootstrap.cli.output import Line, Stderr, warning
from bootstrap.cli.sitearg import read_site, site_argument
from bootstrap.errors import ConfigError, ExitCode

if TYPE_CHECKING:
    from bootstrap.engine.journal import StepRow
    from bootstrap.runs import RunView


@click.command()
@site_argument
@output_option
@click.pass_context
def validate(ctx: click.Context, site: Path, output: str | None) -> None:
    """Check a site file; errors name the file, line and column."""
    deps = deps_of(ctx, output)
    name = read_site(site).site.name
    deps.out().show({"ok": True, "site": name}, lambda: [f"{site}: ok (site {name})"])


@click.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "markdown"]),
    default="json",
    help="json: the JSON Schema, for editors; markdown: the field reference "
    "(docs/SITE-REFERENCE.md is this output).",
)
@click.pass_context
def schema(ctx: click.Context, fmt: str) -> None:
    """Print the JSON Schema of the site file (for editors), or its Markdown reference."""
    if fmt == "markdown":
        from bootstrap.sitefile.reference import site_reference

        deps_of(ctx).out().text_document(site_reference())
        return
    from bootstrap.siteload import site_schema

    deps_of(ctx).out().document(site_schema())


@click.command()
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False), default="site.yaml")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.pass_context
def init(ctx: click.Context, path: Path, force: bool) -> None:
    """Write a commented example site file."""
    from bootstrap.fsutil import shown_path, write_atomic
    from bootstrap.site_example import EXAMPLE_SITE

    try:
        if path.exists() and not force:
            raise ConfigError(f"{path} exists", hint="choose another path or pass --force")
        write_atomic(path, EXAMPLE_SITE, mode=0o644)
    except (OSError, ValueError) as exc:
        if isinstance(exc, FileExistsError | NotADirectoryError):
            why = "a part of the path is a file, not a folder"
        elif isinstance(exc, OSError):
            why = exc.strerror or type(exc).__name__
        else:
            why = "the path contains a NUL byte"
        raise ConfigError(
            f"cannot write {shown_path(path)}: {why}",
            hint="choose a path in a folder you can write to",
        ) from None
    deps_of(ctx).out().show(
        {"ok": True, "path": str(path)},
        lambda: [f"wrote {path}; edit it, then `drboot validate {path}`"],
    )


@click.command()
@click.argument("run_id", required=False)
@output_option
@click.pass_context
def status(ctx: click.Context, run_id: str | None, output: str | None) -> None:
    """List runs, or show one run's steps with timings.

    A run whose process is gone (killed, machine lost) shows as interrupted, with
    the command that resumes it.
    """
    from bootstrap.runs import status as get_status

    deps = deps_of(ctx, output)
    runs, steps = get_status(deps.state(), run_id)
    deps.out().show(
        {
            "runs": [r.to_json() for r in runs],
            "steps": [dict(s.__dict__, seconds=s.seconds) for s in steps],
        },
        lambda: _status_lines(runs, steps),
    )


def _status_lines(runs: list[RunView], steps: list[StepRow]) -> Iterator[Line]:
    for v in runs:
        r = v.row
        took = f"{r.ended - r.created:.1f}s" if r.ended else "-"
        shown = f"{v.status} (process gone)" if v.process_gone else v.status
        yield f"{r.id}  {r.site}  {r.pipeline}  {shown}  exit={r.exit_code}  {took}"
        if v.next_command:
            yield f"    next: {v.next_command}"
    for s in steps:
        secs = f"{s.seconds:.1f}s" if s.seconds is not None else ""
        yield f"  {s.step_id:<24} {s.status:<8} {secs:>8}  attempts={s.attempts}  {s.summary}"
        if s.error:
            yield f"      {s.error}"


@click.command("report")
@click.argument("run_id")
@click.option(
    "--directory",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where to write. [default: the site's report.directory, or the run folder]",
)
@click.option(
    "--format",
    "formats",
    type=click.Choice(["json", "markdown", "junit", "html"]),
    multiple=True,
    help="A format to write (repeat for more). [default: the site's report.formats]",
)
@output_option
@click.pass_context
def report_cmd(
    ctx: click.Context,
    run_id: str,
    directory: Path | None,
    formats: tuple[str, ...],
    output: str | None,
) -> None:
    """Write (again) the report of a run from the journal: steps, timings, RTO, warnings.

    Formats: report.json, report.md, report.junit.xml and report.html (one self-contained
    page with the timeline picture embedded).
    """
    from bootstrap.runs import regenerate_report

    deps = deps_of(ctx, output)
    written = regenerate_report(deps.state(), run_id, directory, formats)
    data = written.report
    deps.out().show(
        {
            "run_id": run_id,
            "files": [str(p) for p in written.files],
            "rto": data["rto"],
            "warnings": data["warnings"],
        },
        lambda: _report_lines(written.files, data),
    )


def _report_lines(files: list[Path], data: dict[str, Any]) -> Iterator[Line]:
    yield from (f"wrote {p}" for p in files)
    rto = data["rto"]
    if rto["seconds"] is not None:
        verdict = "met" if rto["met"] else "MISSED"
        yield f"RTO {rto['seconds']:.0f}s vs objective {rto['objective_seconds']:.0f}s: {verdict}"
    yield from (warning(f"warning: {w}") for w in data["warnings"])


@click.group()
def audit() -> None:
    """The append-only, hash-chained audit log."""


@audit.command("verify")
@click.option(
    "--against",
    type=click.Path(path_type=Path, dir_okay=False),
    help="An anchor file to check the log against [default: --audit-anchor / DRBOOT_AUDIT_ANCHOR].",
)
@output_option
@click.pass_context
def audit_verify(ctx: click.Context, against: Path | None, output: str | None) -> None:
    """Check that no audit record was edited, reordered or deleted.

    Without an anchor only the hash chain is checked: whoever can write the state directory
    can re-chain a forgery. With one, a record that differs from its anchored hash is found.
    A missing audit log is reported as such (exit 3), never as intact.
    """
    deps = deps_of(ctx, output)
    log = deps.state().audit
    anchor = against or log.anchor
    problems = log.verify(against=against)

    def lines() -> Iterator[Line]:
        for p in problems:
            yield Stderr(f"{log.path}: {p.reason}" if p.line == 0 else
                         f"{log.path}:{p.line}: {p.reason}")  # fmt: skip
        if not problems:
            if anchor is None:
                yield f"{log.path}: hash chain intact (not anchored: a re-chained forgery by "
                yield "  whoever can write the state directory is not detected; see --against)"
            else:
                yield f"{log.path}: intact, and every record matches the anchor {anchor}"

    deps.out().show(
        {
            "ok": not problems,
            "path": str(log.path),
            "exists": log.path.exists(),
            "anchor": str(anchor) if anchor is not None else None,
            "problems": [p.__dict__ for p in problems],
        },
        lines,
    )
    if problems:
        sys.exit(ExitCode.PREFLIGHT)


COMMANDS: list[click.Command] = [validate, schema, init, status, report_cmd, audit]
