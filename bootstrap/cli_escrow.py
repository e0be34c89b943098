"""`drboot escrow …`: back up, verify and check the recovery kit (commands only; logic in
``bootstrap.escrow.service``)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from bootstrap.cli import (
    _deps,
    _load,
    _state,
    cli,
    output_option,
)


@cli.group()
def escrow() -> None:
    """The recovery kit: Sealed Secrets keys, k3s token, deploy key (age or Shamir)."""


def _read_opt(path: Path | None) -> str | None:
    return path.read_text() if path is not None else None


@escrow.command("backup")
@click.argument("site", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--kubeconfig",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="A kubeconfig of the running cluster whose keys are escrowed.",
)
@click.option(
    "--k3s-token-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The cluster token (k3s server: /var/lib/rancher/k3s/server/token).",
)
@click.option(
    "--deploy-key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The config repo's SSH deploy key (private key file).",
)
@click.option(
    "--known-hosts-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="known_hosts for the git host.",
)
@output_option
@click.pass_context
def escrow_backup(
    ctx: click.Context,
    site: Path,
    kubeconfig: Path,
    k3s_token_file: Path | None,
    deploy_key_file: Path | None,
    known_hosts_file: Path | None,
    output: str | None,
) -> None:
    """Export every Sealed Secrets key of a running cluster into the site's escrow."""
    from bootstrap.adapters.kube import KubeClient
    from bootstrap.escrow.service import backup

    deps = _deps(ctx, output)
    model, _ = _load(site)
    token = _read_opt(k3s_token_file)
    with KubeClient.from_kubeconfig(kubeconfig) as kube:
        result = backup(
            model,
            kube,
            k3s_token=token.strip() if token else None,
            deploy_key=_read_opt(deploy_key_file),
            known_hosts=_read_opt(known_hosts_file),
        )
    _state(deps).audit.append(
        "escrow.backup",
        None,
        {
            "site": model.name,
            "path": result.path,
            "fingerprints": [k["fingerprint"] for k in result.keys],
        },
    )
    if deps.output == "json":
        click.echo(json.dumps(result.__dict__))
        return
    click.echo(f"escrow {result.path}: {len(result.keys)} key(s), {len(result.added)} new")
    for k in result.keys:
        new = " (new)" if k["fingerprint"] in result.added else ""
        click.echo(f"  {k['fingerprint']}  {k['label']:<11} notBefore {k['not_before']}{new}")


@escrow.command("verify")
@click.argument("site", type=click.Path(path_type=Path, dir_okay=False))
@output_option
@click.pass_context
def escrow_verify(ctx: click.Context, site: Path, output: str | None) -> None:
    """Decrypt, in memory, every SealedSecret of the config repo with the escrowed keys."""
    from bootstrap.escrow.service import check_repo, open_kit

    deps = _deps(ctx, output)
    model, _ = _load(site)
    kit = open_kit(model)
    check = check_repo(model, kit)
    if deps.output == "json":
        click.echo(json.dumps(dict(check.to_dict(), ok=True)))
        return
    click.echo(f"{check.url}@{check.commit[:12]}:{check.path}: {check.report.summary()}")
    for fp, n in sorted(check.report.key_usage.items()):
        click.echo(f"  key {fp}: opened {n}")
    for w in check.warnings:
        click.echo(click.style(f"  warning: {w}", fg="yellow"))


@escrow.command("status")
@click.argument("site", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--kubeconfig",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also compare with the keys in this running cluster.",
)
@output_option
@click.pass_context
def escrow_status(
    ctx: click.Context, site: Path, kubeconfig: Path | None, output: str | None
) -> None:
    """Is the escrow fresh? Warns past the key renewal period or when the cluster has newer keys."""
    from bootstrap.escrow.service import status as escrow_state

    deps = _deps(ctx, output)
    model, _ = _load(site)
    if kubeconfig is not None:
        from bootstrap.adapters.kube import KubeClient

        with KubeClient.from_kubeconfig(kubeconfig) as kube:
            st = escrow_state(model, kube)
    else:
        st = escrow_state(model)
    if deps.output == "json":
        click.echo(json.dumps(dict(st.__dict__, ok=st.ok)))
        return
    click.echo(
        f"escrow of {model.name}: written {st.created_at} ({st.age_days} days ago), "
        f"{len(st.keys)} key(s)"
    )
    for k in st.keys:
        click.echo(f"  {k['fingerprint']}  {k['label']:<11} notBefore {k['not_before']}")
    for w in st.warnings:
        click.echo(click.style(f"warning: {w}", fg="yellow"))
