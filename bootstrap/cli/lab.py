"""`drboot lab …` and `drboot demo`: the local lab.

Commands only: the logic is in ``bootstrap.lab.manage``. ``demo`` is a drill of the
embedded lab site, so it shares the run options and run body of ``runcmds``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bootstrap.cli.app import Deps, deps_of, output_option
from bootstrap.cli.output import Line
from bootstrap.cli.runcmds import RunArgs, run_options, run_site
from bootstrap.cli.sitearg import read_site, site_argument

if TYPE_CHECKING:
    from bootstrap.settings import Site


@click.group()
def lab() -> None:
    """The local lab (provider: lab): seed its escrow and repo, show it, tear it down."""


@lab.command("seed")
@site_argument
@output_option
@click.pass_context
def lab_seed(ctx: click.Context, site: Path, output: str | None) -> None:
    """Make the escrow and config repo a lab site needs (what the lost site left behind)."""
    from bootstrap.lab.manage import seed_site

    deps = deps_of(ctx, output)
    info = seed_site(read_site(site).site, deps.state().root)
    deps.out().show(
        info,
        lambda: [
            f"seeded {info['state_dir']}: repo {info['repo']} ({info['layout']}), escrow "
            f"{info['bundle']} (key {info['fingerprint']})",
            *(
                [f"forge host {info['forge']['host']} at {info['forge']['address']} serves it "
                 f"over SSH; escrowed known_hosts: {info['forge']['known_hosts']}"]
                if "forge" in info else []
            ),
        ],
    )


@lab.command("status")
@site_argument
@output_option
@click.pass_context
def lab_status(ctx: click.Context, site: Path, output: str | None) -> None:
    """The lab's hosts and whether the controller stand-ins run."""
    from bootstrap.lab.manage import status as lab_state

    deps = deps_of(ctx, output)
    info = lab_state(read_site(site).site, deps.state().root)

    def lines() -> Iterator[Line]:
        pid = info["standins_pid"]
        standins = f"running (pid {pid})" if pid else "stopped"
        yield (
            f"lab {info['site']} in {info['state_dir']}: {len(info['hosts'])} host(s); "
            f"stand-ins {standins}"
        )
        for h in info["hosts"]:
            state = "running" if h["running"] else "stopped"
            yield f"  {h['name']:<12} {h['address']:<15} {state:<8} {h['host_key_fingerprint']}"

    deps.out().show(info, lines)


@lab.command("down")
@site_argument
@output_option
@click.pass_context
def lab_down(ctx: click.Context, site: Path, output: str | None) -> None:
    """Destroy the lab's hosts, network and stand-ins (the escrow and repo stay)."""
    from bootstrap.lab.manage import down

    deps = deps_of(ctx, output)
    names = down(read_site(site).site, deps.state().root)
    deps.out().show(
        {"destroyed": names},
        lambda: [f"destroyed {len(names)} host(s): {', '.join(names) or '-'}"],
    )


@click.command()
@click.option(
    "--reconciler",
    type=click.Choice(["argocd", "flux"]),
    default="argocd",
    show_default=True,
    help="The GitOps reconciler the demo restores (its app-of-apps path in the repo).",
)
@run_options
@click.pass_context
def demo(ctx: click.Context, reconciler: str, run: RunArgs) -> None:
    """A full local DR drill on the lab, with the embedded default site (root)."""
    from bootstrap.lab.manage import demo_site_file, seed_site

    path = demo_site_file(reconciler)

    def seed(site: Site, deps: Deps) -> None:
        info = seed_site(site, deps.state().root)
        deps.out().note(
            f"demo: site file {path}; escrow in {info['state_dir']}/escrow; the payment "
            f"platform's config repo served over SSH by the lab forge as {info['repo']}, "
            f"restored with {reconciler}"
        )

    run_site(ctx, "drill", path, run, before=seed)


COMMANDS: list[click.Command] = [lab, demo]
