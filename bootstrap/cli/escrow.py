"""`drboot escrow …`: back up, verify and check the recovery kit.

Commands only: the logic is in ``bootstrap.escrow.service``; the Kubernetes client
is imported when a command needs it, never at startup.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bootstrap.cli.app import deps_of, output_option
from bootstrap.cli.output import Line, warning
from bootstrap.cli.sitearg import read_site, site_argument

if TYPE_CHECKING:
    from bootstrap.escrow.service import BackupResult
    from bootstrap.kubeapi import KubeAPI

_FILE = click.Path(path_type=Path, dir_okay=False, exists=True)


@click.group()
def escrow() -> None:
    """The recovery kit: Sealed Secrets keys, k3s token, deploy key (age or Shamir)."""


def _read_opt(path: Path | None, option: str) -> str | None:
    """An option's file as text; a directory, a binary or an unreadable file is exit 2."""
    from bootstrap.errors import ConfigError
    from bootstrap.fsutil import read_bounded, read_error

    if path is None:
        return None
    try:
        return read_bounded(path, 1 << 20).decode()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{option} {path} {read_error(exc)}") from None


@contextlib.contextmanager
def _kube(kubeconfig: Path) -> Iterator[KubeAPI]:
    """The cluster of ``--kubeconfig``; one that cannot be loaded is a usage error (exit 2)."""
    from bootstrap.adapters.kube import BadKubeconfig, KubeClient
    from bootstrap.errors import ConfigError

    try:
        client = KubeClient.from_kubeconfig(kubeconfig)
    except BadKubeconfig as exc:
        raise ConfigError(exc.message, hint=exc.hint) from None
    with client:
        yield client


@escrow.command("backup")
@site_argument
@click.option(
    "--kubeconfig",
    type=_FILE,
    required=True,
    help="A kubeconfig of the running cluster whose keys are escrowed.",
)
@click.option(
    "--k3s-token-file",
    type=_FILE,
    help="The cluster token (k3s server: /var/lib/rancher/k3s/server/token).",
)
@click.option(
    "--deploy-key-file",
    type=_FILE,
    help="The config repo's SSH deploy key (private key file).",
)
@click.option(
    "--known-hosts-file",
    type=_FILE,
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
    from bootstrap.escrow.service import backup

    deps = deps_of(ctx, output)
    model = read_site(site).site
    token = _read_opt(k3s_token_file, "--k3s-token-file")
    deploy_key = _read_opt(deploy_key_file, "--deploy-key-file")
    known_hosts = _read_opt(known_hosts_file, "--known-hosts-file")
    with _kube(kubeconfig) as kube:
        result = backup(
            model,
            kube,
            k3s_token=token.strip() if token else None,
            deploy_key=deploy_key,
            known_hosts=known_hosts,
        )
    deps.state().audit.append(
        "escrow.backup",
        None,
        {
            "site": model.name,
            "path": result.path,
            "fingerprints": [k["fingerprint"] for k in result.keys],
        },
    )

    deps.out().show(result.__dict__, lambda: _show_kit(result))


def _read_secret_file(path: Path | None, what: str) -> str | None:
    """A secret from a file, as text; a file that is not UTF-8 is a usage error (not a crash)."""
    if path is None:
        return None
    from bootstrap.errors import ConfigError

    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{what} {path} is not readable ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not UTF-8 text") from None
    if not text.strip():
        raise ConfigError(f"{what} {path} is empty")
    return text


def _show_kit(result: BackupResult) -> Iterator[Line]:
    yield f"escrow {result.path}: {len(result.keys)} key(s), {len(result.added)} new"
    for k in result.keys:
        new = " (new)" if k["fingerprint"] in result.added else ""
        yield f"  {k['fingerprint']}  {k['label']:<11} notBefore {k['not_before']}{new}"
    if result.lacks:
        yield warning(
            f"  the kit lacks: {', '.join(result.lacks)} (verify works; a restore needs the "
            "k3s token: `drboot escrow import SITE --k3s-token-file FILE`)"
            if "k3s_token" in result.lacks
            else f"  the kit lacks: {', '.join(result.lacks)}"
        )


@escrow.command("import")
@site_argument
@click.argument("key_files", nargs=-1, type=_FILE)
@click.option(
    "--k3s-token-file",
    type=_FILE,
    help="The cluster token (k3s server: /var/lib/rancher/k3s/server/token).",
)
@click.option("--deploy-key-file", type=_FILE, help="The config repo's SSH deploy key.")
@click.option("--known-hosts-file", type=_FILE, help="known_hosts for the git host.")
@output_option
@click.pass_context
def escrow_import(
    ctx: click.Context,
    site: Path,
    key_files: tuple[Path, ...],
    k3s_token_file: Path | None,
    deploy_key_file: Path | None,
    known_hosts_file: Path | None,
    output: str | None,
) -> None:
    """Build or extend the escrow offline from key backups you already have.

    KEY_FILES: the documented main.key (`kubectl get secret -n kube-system -l
    sealedsecrets.bitnami.com/sealed-secrets-key -o yaml`: a List or one Secret, YAML or
    JSON), or PEM private keys with their certificates. No cluster needed.
    """
    from bootstrap.escrow.service import import_keys

    deps = deps_of(ctx, output)
    model = read_site(site).site
    token = _read_secret_file(k3s_token_file, "k3s token file")
    result = import_keys(
        model,
        list(key_files),
        k3s_token=token.strip() if token else None,
        deploy_key=_read_secret_file(deploy_key_file, "deploy key file"),
        known_hosts=_read_secret_file(known_hosts_file, "known_hosts file"),
    )
    deps.state().audit.append(
        "escrow.import",
        None,
        {
            "site": model.name,
            "path": result.path,
            "fingerprints": [k["fingerprint"] for k in result.keys],
            "lacks": result.lacks,
        },
    )
    deps.out().show(result.__dict__, lambda: _show_kit(result))


@escrow.command("export")
@site_argument
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["main.key"]),
    required=True,
    help="main.key: the Sealed Secrets documented key backup (a v1 List of key Secrets).",
)
@click.option(
    "--to",
    "dest",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write to this file (created 0600, atomically; an existing file is not replaced).",
)
@click.option("--stdout", "to_stdout", is_flag=True, help="Print the private keys to stdout.")
@click.pass_context
def escrow_export(
    ctx: click.Context, site: Path, fmt: str, dest: Path | None, to_stdout: bool
) -> None:
    """Write the escrowed sealing keys back in the documented format (holds private keys).

    Restore by hand with `kubectl apply -f main.key`, then restart the controller.
    """
    from bootstrap.errors import ConfigError
    from bootstrap.escrow.service import export_main_key
    from bootstrap.fsutil import write_atomic

    deps = deps_of(ctx)
    if (dest is None) == (not to_stdout):
        raise ConfigError(
            "say where the private keys go: --to FILE (0600) or --stdout",
            hint="drboot escrow export SITE --format main.key --to main.key",
        )
    if dest is not None and (dest.exists() or dest.is_symlink()):
        raise ConfigError(f"{dest} exists; not replacing it", hint="choose another --to path")
    model = read_site(site).site
    text, fingerprints = export_main_key(model)
    if dest is not None:
        try:
            write_atomic(dest, text, 0o600)
        except OSError as exc:
            raise ConfigError(
                f"cannot write {dest} ({exc.strerror or type(exc).__name__})",
                hint="choose a --to path in a writable directory",
            ) from None
    deps.state().audit.append(
        "escrow.export",
        None,
        {
            "site": model.name,
            "format": fmt,
            "to": str(dest) if dest else "stdout",
            "fingerprints": fingerprints,
        },
    )
    if to_stdout:
        click.echo(text, nl=False)
    else:
        click.echo(f"wrote {len(fingerprints)} key(s) to {dest} (0600): {', '.join(fingerprints)}")


@escrow.command("verify")
@site_argument
@click.option(
    "--cache",
    "cache_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Incremental mode: remember which ciphertexts opened with which key (no plaintext; "
    "0600) and skip them next time.",
)
@output_option
@click.pass_context
def escrow_verify(
    ctx: click.Context, site: Path, cache_file: Path | None, output: str | None
) -> None:
    """Decrypt, in memory, every SealedSecret of the config repo with the escrowed keys."""
    from bootstrap.escrow.service import check_repo, open_kit

    deps = deps_of(ctx, output)
    model = read_site(site).site
    check = check_repo(model, open_kit(model), cache_file=cache_file)

    def lines() -> Iterator[Line]:
        yield f"{check.url}@{check.commit[:12]}:{check.path}: {check.report.summary()}"
        if check.renderer:
            yield f"  rendered with {check.renderer}"
        if cache_file is not None:
            yield (
                f"  incremental: {check.report.cache_hits} value(s) from the cache, "
                f"{check.report.rsa_operations} RSA operation(s)"
            )
        for fp, n in sorted(check.report.key_usage.items()):
            yield f"  key {fp}: opened {n}"
        yield from (warning(f"  warning: {w}") for w in check.warnings)

    deps.out().show(dict(check.to_dict(), ok=True), lines)


@escrow.command("status")
@site_argument
@click.option(
    "--kubeconfig",
    type=_FILE,
    help="Also compare with the keys in this running cluster.",
)
@output_option
@click.pass_context
def escrow_status(
    ctx: click.Context, site: Path, kubeconfig: Path | None, output: str | None
) -> None:
    """Is the escrow fresh? Warns past the key renewal period or when the cluster has newer keys."""
    from bootstrap.escrow.service import status as escrow_state

    deps = deps_of(ctx, output)
    model = read_site(site).site
    if kubeconfig is not None:
        with _kube(kubeconfig) as kube:
            st = escrow_state(model, kube)
    else:
        st = escrow_state(model)

    def lines() -> Iterator[Line]:
        yield (
            f"escrow of {model.name}: written {st.created_at} ({st.age_days} days ago), "
            f"{len(st.keys)} key(s)"
        )
        for k in st.keys:
            yield f"  {k['fingerprint']}  {k['label']:<11} notBefore {k['not_before']}"
        yield from (warning(f"warning: {w}") for w in st.warnings)

    deps.out().show(dict(st.__dict__, ok=st.ok), lines)


COMMANDS: list[click.Command] = [escrow]
