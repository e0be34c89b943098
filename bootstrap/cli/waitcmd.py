"""``drboot wait SITE``: the restore's last wait, for a cluster that is already up.

After a manual fix, or a cluster restored by other means: every app Git declares, Synced and
Healthy at a verified commit of the config repo, watched (not polled), for the site's
``sync_wait.stable_for``. Exit 0 when they are, 5 when ``sync_wait.timeout`` passes (the
apps not ready named). A thin command: it parses, then calls ``bootstrap.runs.wait_apps``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from bootstrap.cli.app import deps_of, output_option
from bootstrap.cli.sitearg import read_site, site_argument
from bootstrap.errors import ConfigError


@click.command("wait")
@site_argument
@click.option(
    "--kubeconfig",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    envvar="KUBECONFIG",
    required=True,
    help="The cluster to wait on. [env: KUBECONFIG]",
)
@output_option
@click.pass_context
def wait(ctx: click.Context, site: Path, kubeconfig: Path, output: str | None) -> None:
    """Wait until every app of SITE's config repo is Synced+Healthy at a verified commit."""
    from bootstrap.runs import wait_apps

    deps = deps_of(ctx, output)
    out = deps.out()
    given = read_site(site).site

    def progress(message: str, **data: Any) -> None:
        if out.json:
            click.echo(json.dumps({"progress": message, **data}, default=str))
        else:
            target = data.get("target")
            click.echo(f"wait on {target or given.name}: {message}")

    from bootstrap.adapters.kube import BadKubeconfig

    try:
        result = wait_apps(given, kubeconfig, progress)
    except BadKubeconfig as exc:  # a kubeconfig that cannot be loaded is usage (exit 2)
        raise ConfigError(exc.message, hint=exc.hint) from None

    def lines() -> list[str]:
        at = result.get("commit") or "?"
        state = "verified" if result.get("commit_verified") else "NOT verified"
        waited = f"stable for {result['stable_for']:.0f}s (waited {result['seconds']:.0f}s)"
        text = [f"{len(result['apps'])} app(s) Synced+Healthy at {at[:12]} ({state}), {waited}"]
        if result.get("strays"):
            text.append("not declared in Git (strays): " + ", ".join(result["strays"]))
        return text

    out.show(result, lines)


COMMANDS = [wait]
