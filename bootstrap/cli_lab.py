"""`drboot lab …` and `drboot demo`: the local lab (commands only; logic in
``bootstrap.lab.manage``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from bootstrap.cli import (
    Deps,
    _deps,
    _load,
    _run_site,
    _state,
    _with,
    cli,
    output_option,
    run_options,
)


@cli.group()
def lab() -> None:
    """The local lab (provider: lab): seed its escrow and repo, show it, tear it down."""


@lab.command("seed")
@click.argument("site", type=click.Path(path_type=Path, dir_okay=False))
@output_option
@click.pass_context
def lab_seed(ctx: click.Context, site: Path, output: str | None) -> None:
    """Make the escrow and config repo a lab site needs (what the lost site left behind)."""
    from bootstrap.lab.manage import seed_site

    deps = _deps(ctx, output)
    model, _ = _load(site)
    info = seed_site(model, _state(deps).root)
    if deps.output == "json":
        click.echo(json.dumps(info))
    else:
        click.echo(
            f"seeded {info['state_dir']}: repo {info['repo']}, escrow {info['bundle']} "
            f"(key {info['fingerprint']})"
        )


@lab.command("status")
@click.argument("site", type=click.Path(path_type=Path, dir_okay=False))
@output_option
@click.pass_context
def lab_status(ctx: click.Context, site: Path, output: str | None) -> None:
    """The lab's hosts and whether the controller stand-ins run."""
    from bootstrap.lab.manage import status as lab_state

    deps = _deps(ctx, output)
    model, _ = _load(site)
    info = lab_state(model, _state(deps).root)
    if deps.output == "json":
        click.echo(json.dumps(info))
        return
    pid = info["standins_pid"]
    standins = f"running (pid {pid})" if pid else "stopped"
    click.echo(
        f"lab {info['site']} in {info['state_dir']}: {len(info['hosts'])} host(s); "
        f"stand-ins {standins}"
    )
    for h in info["hosts"]:
        state = "running" if h["running"] else "stopped"
        click.echo(f"  {h['name']:<12} {h['address']:<15} {state:<8} {h['host_key_fingerprint']}")


@lab.command("down")
@click.argument("site", type=click.Path(path_type=Path, dir_okay=False))
@click.pass_context
def lab_down(ctx: click.Context, site: Path) -> None:
    """Destroy the lab's hosts, network and stand-ins (the escrow and repo stay)."""
    from bootstrap.lab.manage import down

    deps = _deps(ctx, None)
    model, _ = _load(site)
    names = down(model, _state(deps).root)
    click.echo(f"destroyed {len(names)} host(s): {', '.join(names) or '-'}")


@cli.command()
@_with(run_options)
@click.pass_context
def demo(
    ctx: click.Context,
    accept_slow_disk: str | None,
    trust_on_first_use: bool,
    until: str | None,
    force_unlock: bool,
    output: str | None,
) -> None:
    """A full local DR drill on the lab, with the embedded default site (root)."""
    from bootstrap.lab.manage import demo_site_file, seed_site

    def seed(model: Any, deps: Deps) -> None:
        info = seed_site(model, _state(deps).root)
        if deps.output != "json":
            click.echo(f"demo: site file {site}; escrow and config repo in {info['state_dir']}")

    site = demo_site_file()
    _run_site(
        ctx,
        "drill",
        site,
        accept_slow_disk,
        trust_on_first_use,
        until,
        force_unlock,
        output,
        before=seed,
    )
