"""The ``drboot`` group: global options, what commands get from outside, and the error edge.

Every command runs inside ``DrbootGroup.invoke``, the one place an exception becomes
an exit code: a ``BootstrapError`` is shown once with its own code; anything else is
an internal error whose traceback is saved (exit 70). The commands themselves live
in the sibling modules and are added to the group by ``bootstrap.cli``.

Startup imports no vendor library (kubernetes, paramiko, ansible_runner, git):
commands import what they need when they run.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from bootstrap import __version__
from bootstrap.cli.output import FORMATS, Format, Output
from bootstrap.errors import BootstrapError, ExitCode

if TYPE_CHECKING:
    from bootstrap.engine.step import Pipeline
    from bootstrap.runs import StateDir


@dataclass
class Deps:
    """What commands get from outside; tests swap the pipelines (click's ``obj``)."""

    pipelines: Callable[[], dict[str, Pipeline]] | None = None
    state_dir: Path | None = None
    audit_anchor: Path | None = None
    output: Format = "text"
    # the drboot a rollout starts for each site, after the python: tests give a fixture CLI
    program: tuple[str, ...] | None = None

    def get_pipelines(self) -> dict[str, Pipeline]:
        if self.pipelines is not None:
            return self.pipelines()
        from bootstrap.steps import pipelines

        return pipelines()

    def state(self) -> StateDir:
        from bootstrap.runs import StateDir, default_state_dir

        return StateDir(self.state_dir or default_state_dir(), audit_anchor=self.audit_anchor)

    def out(self) -> Output:
        return Output(self.output)


def deps_of(ctx: click.Context, output: str | None = None) -> Deps:
    """The command's ``Deps``, with its own ``--output`` (if given) over the group's."""
    deps = ctx.ensure_object(Deps)
    if output:
        deps.output = cast(Format, output)
    return deps


output_option = click.option(
    "--output",
    "-o",
    type=click.Choice(FORMATS),
    default=None,
    help="text (live view on a terminal) or json (JSON lines on stdout).",
)


class DrbootGroup(click.Group):
    """Shows a ``BootstrapError`` once with its exit code; saves anything else as a crash."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BootstrapError as err:
            deps_of(ctx).out().error(err)
            sys.exit(int(err.exit_code))
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            deps_of(ctx).out().interrupted()
            sys.exit(ExitCode.INTERRUPTED)
        except Exception as exc:
            deps = deps_of(ctx)
            deps.out().internal_error(exc, _save_crash(deps.state_dir))
            sys.exit(ExitCode.INTERNAL)


def _save_crash(state_dir: Path | None) -> Path:
    """Save the traceback in ``STATE/crashes/``, or in a private temp file if that is unusable."""
    import tempfile

    from bootstrap.fsutil import private_dir, write_atomic
    from bootstrap.runs import default_state_dir

    name = f"crash-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.txt"
    try:
        crash_dir = private_dir((state_dir or default_state_dir()) / "crashes")
        return write_atomic(crash_dir / name, traceback.format_exc())
    except (BootstrapError, OSError):
        fd, tmp = tempfile.mkstemp(prefix="drboot-", suffix=f"-{name}")
        with os.fdopen(fd, "w") as fh:
            fh.write(traceback.format_exc())
        return Path(tmp)


@click.group(cls=DrbootGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="drboot")
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    envvar="DRBOOT_STATE_DIR",
    help="Journal, audit log, locks and run folders. [default: ~/.local/state/drboot]",
)
@click.option(
    "--audit-anchor",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="DRBOOT_AUDIT_ANCHOR",
    help="A file outside the state directory where each audit record's hash is also appended "
    "(make it append-only: chattr +a). [default: none]",
)
@click.option(
    "--output",
    "-o",
    type=click.Choice(FORMATS),
    default="text",
    help="Output format for every command.",
)
@click.pass_context
def cli(
    ctx: click.Context, state_dir: Path | None, audit_anchor: Path | None, output: Format
) -> None:
    """drboot: from nothing to a working GitOps cluster, on the worst day.

    Exit codes: 0 ok, 2 usage or site-file error, 3 preflight refused, 4 step
    failed (resumable), 5 timed out waiting, 6 site locked by another run,
    7 drill restored everything but missed the RTO objective, 70 internal
    error (traceback saved), 130 interrupted (resumable).
    """
    deps = ctx.ensure_object(Deps)
    if state_dir is not None:
        deps.state_dir = state_dir
    if audit_anchor is not None:
        deps.audit_anchor = audit_anchor
    deps.output = output


def main() -> None:
    """The ``drboot`` console script."""
    cli(obj=Deps())
