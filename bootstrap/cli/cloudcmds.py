"""`drboot teardown RUN_ID` and `drboot janitor SITE`: cleaning up after drills.

Commands only: the logic is in ``bootstrap.teardown``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from bootstrap.cli.app import deps_of, output_option
from bootstrap.cli.sitearg import read_site, site_argument
from bootstrap.errors import ConfigError


@click.command()
@click.argument("run_id")
@output_option
@click.pass_context
def teardown(ctx: click.Context, run_id: str, output: str | None) -> None:
    """Destroy what drill RUN_ID created (finishes a teardown a crash interrupted)."""
    from bootstrap.teardown import teardown_run

    deps = deps_of(ctx, output)
    out = deps.out()
    said: list[str] = []
    done = teardown_run(deps.state(), run_id, said.append)
    out.show(
        {
            "run_id": done.run_id,
            "site": done.site,
            "provider": done.provider,
            "destroyed": done.destroyed,
            "progress": said,
        },
        lambda: [
            *said,
            f"run {done.run_id}: destroyed {len(done.destroyed)} {done.provider} host(s)"
            + (f": {', '.join(done.destroyed)}" if done.destroyed else ""),
        ],
    )


def _age(value: str) -> timedelta:
    from bootstrap.sitetypes.durations import parse_duration

    try:
        return parse_duration(value)
    except (ValueError, TypeError):
        raise ConfigError(
            f"--older-than {value!r}: expected a duration like 90m, 12h or 2d"
        ) from None


@click.command()
@site_argument
@click.option(
    "--older-than",
    "older_than",
    default="2d",
    show_default=True,
    metavar="AGE",
    help="List servers created longer ago than this (90m, 12h, 2d).",
)
@output_option
@click.pass_context
def janitor(ctx: click.Context, site: Path, older_than: str, output: str | None) -> None:
    """List drboot-labelled servers of SITE's cloud account older than AGE (read-only)."""
    from bootstrap.teardown import janitor as find_old

    age = _age(older_than)
    deps = deps_of(ctx, output)
    given = read_site(site)
    found = find_old(given.site, deps.state(), age)
    now = datetime.now(UTC)
    rows = [
        {
            "name": s.name,
            "site": s.site,
            "run": s.run,
            "status": s.status,
            "created": s.created.isoformat(),
            "age_hours": round(s.age(now).total_seconds() / 3600, 1),
            "provider_id": s.provider_id,
        }
        for s in found
    ]
    deps.out().show(
        {"older_than": older_than, "servers": rows},
        lambda: [
            f"{len(rows)} drboot-labelled server(s) older than {older_than}"
            + (" (read-only: destroy a drill's with `drboot teardown RUN_ID`)" if rows else ""),
            *(
                f"  {r['name']}  site {r['site']}  run {r['run'] or '-'}  {r['status']}  "
                f"{r['age_hours']} h  {r['provider_id']}"
                for r in rows
            ),
        ],
    )


COMMANDS: list[click.Command] = [teardown, janitor]
