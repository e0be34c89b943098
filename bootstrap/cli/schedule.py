"""`drboot schedule install|remove|list|due` and `drboot history`.

Commands only: the unit files are ``bootstrap.schedule``'s, the history is
``bootstrap.runs.site_history`` and ``bootstrap.history``'s.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bootstrap.cli.app import deps_of, output_option
from bootstrap.cli.output import Line, bold, warning
from bootstrap.cli.sitearg import read_site, site_argument
from bootstrap.errors import ConfigError

if TYPE_CHECKING:
    import datetime as dt

    from bootstrap.history import Outcome, Trend
    from bootstrap.schedule.install import Systemctl

unit_dir_option = click.option(
    "--unit-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default="/etc/systemd/system",
    show_default=True,
    help="Where the timer and service files go.",
)
no_systemctl_option = click.option(
    "--no-systemctl",
    is_flag=True,
    help="Only write/delete the files: no daemon-reload, no enable/disable.",
)


def _duration(option: str, value: str) -> dt.timedelta:
    from pydantic_core import PydanticCustomError

    from bootstrap.sitetypes.durations import parse_duration

    try:
        return parse_duration(value)
    except PydanticCustomError as exc:
        raise ConfigError(f"{option} {value}: {exc.message()}") from None


def _systemctl(skip: bool) -> Systemctl | None:
    from bootstrap.schedule.install import run_systemctl

    return None if skip else run_systemctl


def _self_command() -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """How the unit runs this very drboot: its console script, or ``python -m bootstrap.cli``
    with the folder holding this ``bootstrap`` package on PYTHONPATH."""
    import bootstrap

    script = Path(sys.argv[0])
    if script.name == "drboot" and script.exists():
        return (str(script.absolute()),), ()
    package_root = Path(bootstrap.__file__).resolve().parent.parent
    return (sys.executable, "-m", "bootstrap.cli"), (("PYTHONPATH", str(package_root)),)


def _given(command: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    import shlex

    argv = tuple(shlex.split(command))
    if not argv or not Path(argv[0]).is_absolute():
        raise ConfigError(
            f"--drboot {command!r}: the command must start with an absolute path",
            hint="systemd runs it without your PATH: give e.g. /usr/local/bin/drboot",
        )
    return argv, ()


@click.group()
def schedule() -> None:
    """Scheduled drills: a systemd timer that runs `drboot drill SITE`."""


@schedule.command("install")
@site_argument
@click.option("--every", required=True, metavar="DURATION", help="Drill interval: 30d, 12h, ...")
@click.option(
    "--randomized-delay",
    metavar="DURATION",
    default=None,
    help="RandomizedDelaySec. [default: a tenth of --every, at most 1h]",
)
@click.option(
    "--drboot",
    "drboot_command",
    metavar="COMMAND",
    default=None,
    help="The command the unit runs drboot with (absolute; split like a shell). "
    "[default: this drboot]",
)
@unit_dir_option
@no_systemctl_option
@output_option
@click.pass_context
def schedule_install(
    ctx: click.Context,
    site: Path,
    every: str,
    randomized_delay: str | None,
    drboot_command: str | None,
    unit_dir: Path,
    no_systemctl: bool,
    output: str | None,
) -> None:
    """Install (or update) the timer and service that drill SITE every DURATION."""
    import datetime as dt

    from bootstrap.schedule.install import install
    from bootstrap.schedule.units import Schedule, default_delay

    deps = deps_of(ctx, output)
    if not site.is_file():
        raise ConfigError(
            f"{site} is not a regular file: the timer reads the site file again at every drill",
            hint="give the path of a site file (decrypt it to a 0600 file if it is encrypted)",
        )
    given = read_site(site)  # a site file that does not validate is refused now, not in 30d
    interval = _duration("--every", every)
    delay = (
        _duration("--randomized-delay", randomized_delay)
        if randomized_delay
        else default_delay(interval)
    )
    if interval < dt.timedelta(minutes=1):
        raise ConfigError(f"--every {every}: a drill at most every minute", hint="try --every 30d")
    command, env = _self_command() if drboot_command is None else _given(drboot_command)
    sched = Schedule(
        site=str(given.site.name),
        site_file=str(site.absolute()),
        every=interval,
        delay=delay,
        drboot=command,
        state_dir=str(deps.state().root.absolute()),
        environment=env,
    )
    done = install(sched, unit_dir, _systemctl(no_systemctl))
    deps.out().show(
        done.to_json() | {"every": every, "command": sched.command("drill", sched.site_file)},
        lambda: [
            f"{bold(done.timer)}: drill of {sched.site} every {every}",
            *(f"  wrote {p}" for p in done.changed),
            *([] if done.changed else ["  unit files unchanged"]),
            *(f"  systemctl {c}" for c in done.systemctl),
        ],
    )


def _site_name(site: str) -> str:
    """A site file's name, or ``site`` itself when it is a name (no such file)."""
    path = Path(site)
    return str(read_site(path).site.name) if path.is_file() else site


@schedule.command("remove")
@click.argument("site")
@unit_dir_option
@no_systemctl_option
@output_option
@click.pass_context
def schedule_remove(
    ctx: click.Context, site: str, unit_dir: Path, no_systemctl: bool, output: str | None
) -> None:
    """Stop the scheduled drill of SITE (a site file or name) and delete its units."""
    from bootstrap.schedule.install import remove

    deps = deps_of(ctx, output)
    done = remove(_site_name(site), unit_dir, _systemctl(no_systemctl))
    deps.out().show(
        done.to_json(),
        lambda: [f"removed {p}" for p in done.changed] or [f"no scheduled drill of {done.site}"],
    )


@schedule.command("list")
@unit_dir_option
@output_option
@click.pass_context
def schedule_list(ctx: click.Context, unit_dir: Path, output: str | None) -> None:
    """The scheduled drills installed in the unit directory."""
    from bootstrap.schedule.install import listing

    deps = deps_of(ctx, output)
    found = listing(unit_dir)
    deps.out().show(
        {"schedules": [s.to_json() for s in found]},
        lambda: [f"{s.timer}  every {s.every}  {' '.join(s.command)}" for s in found]
        or ["no scheduled drills"],
    )


@schedule.command("due")
@site_argument
@click.option("--every", required=True, metavar="DURATION")
@output_option
@click.pass_context
def schedule_due(ctx: click.Context, site: Path, every: str, output: str | None) -> None:
    """Exit 0 if no drill of SITE started within DURATION, else 1 (the timer's ExecCondition)."""
    from bootstrap.history import due
    from bootstrap.runs import site_history

    deps = deps_of(ctx, output)
    name = str(read_site(site).site.name)
    interval = _duration("--every", every)
    is_due = due(site_history(deps.state(), name), interval, time.time())
    deps.out().show(
        {"site": name, "every": every, "due": is_due},
        lambda: [f"a drill of {name} is {'due' if is_due else 'not due'} (every {every})"],
    )
    sys.exit(0 if is_due else 1)


@click.command()
@click.argument("site")
@click.option("--window", default=3, show_default=True, help="Runs per side of the trend.")
@output_option
@click.pass_context
def history(ctx: click.Context, site: str, window: int, output: str | None) -> None:
    """Every drill and restore of SITE (a site file or name): RTO against the objective, the
    step that failed, and whether the RTO is growing."""
    from bootstrap.history import trend
    from bootstrap.runs import site_history

    if window < 1:
        raise ConfigError(f"--window {window}: at least 1")
    deps = deps_of(ctx, output)
    name = _site_name(site)
    runs = site_history(deps.state(), name)
    measured = trend(runs, window)
    deps.out().show(
        {"site": name, "runs": [r.to_json() for r in runs], "trend": measured.to_json()},
        lambda: _history_lines(name, runs, measured),
    )


def _history_lines(name: str, runs: list[Outcome], measured: Trend) -> Iterator[Line]:
    from bootstrap.report.model import iso

    if not runs:
        yield f"no drill or restore of site {name} in the journal"
        return
    yield bold(f"{'when':<26} {'kind':<8} {'outcome':<12} {'RTO':>8} {'objective':>10}  failed")
    for r in runs:
        rto = f"{r.rto_seconds:.0f}s" if r.rto_seconds is not None else "-"
        objective = f"{r.objective_seconds:.0f}s" if r.objective_seconds is not None else "-"
        line = f"{iso(r.started):<26} {r.kind:<8} {r.outcome:<12} {rto:>8} {objective:>10}"
        if r.failed_step:
            line += f"  {r.failed_step}: {r.error or ''}"
        yield warning(line) if r.outcome != "restored" else line
    yield measured.sentence()


COMMANDS: list[click.Command] = [schedule, history]
