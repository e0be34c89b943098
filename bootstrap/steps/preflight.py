"""Preflight: everything checkable before a billable resource exists.

The site file was validated at the edge; here the references it makes must
resolve (env vars set, files readable), the escrow must open, every
SealedSecret in the repo must decrypt with the escrowed keys, and the repo
must render.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from bootstrap import secretrefs
from bootstrap.engine.context import StepContext
from bootstrap.engine.step import RetryPolicy
from bootstrap.errors import PreflightError
from bootstrap.outputs import EscrowChecked, RepoSummary, SovereigntyChecked
from bootstrap.sitetypes.secretrefs import EscrowRef
from bootstrap.steps import common
from bootstrap.steps.registry import step

_SUMMARY_FIELDS = frozenset(f.name for f in dataclasses.fields(RepoSummary))


@step("preflight-references", retry=RetryPolicy.none(), timeout=60)
def check_references(ctx: StepContext) -> None:
    """Every secret reference in the site file resolves (without reading it into the journal).

    All unresolved references are reported at once. ``{escrow: ...}`` references are checked
    by preflight-escrow, which opens the kit."""
    refs = list(secretrefs.references(ctx.site))
    problems = [(where, why) for where, ref in refs if (why := secretrefs.problem(ref))]
    # A notification must never stop a restore: its reference is a warning here, and the
    # end of the run says the webhook was not sent.
    for where, why in problems:
        if where.startswith("notify."):
            ctx.progress(f"warning: {where}: {why}; the run goes on without it", target=where)
    missing = [f"{where}: {why}" for where, why in problems if not where.startswith("notify.")]
    if not common.provider(ctx).manages_ssh_key:
        key = Path(ctx.site.ssh.private_key_file).expanduser()
        if not os.access(key, os.R_OK):
            missing.append(f"ssh.private_key_file: {key} is not readable")
    if missing:
        raise PreflightError(
            "unresolved secret references: " + "; ".join(missing),
            hint="set the variables / create the files, then run again",
        )
    escrowed = sum(1 for _, ref in refs if isinstance(ref, EscrowRef))
    ctx.noop(
        f"{len(refs) - escrowed} env/file secret reference(s) resolve"
        + (f"; {escrowed} escrow reference(s) are read when the kit opens" if escrowed else "")
    )


@step("preflight-sovereignty", after=["preflight-references"], retry=RetryPolicy.none(), timeout=60)
def check_sovereignty(ctx: StepContext) -> None:
    """Every host and the repo are in a country the site allows (before anything is created)."""
    from bootstrap import sovereignty

    site = ctx.site
    where = sovereignty.locate(
        common.provider(ctx).countries(),
        site.repo.url,
        site.repo.country,
        site.sovereignty.allowed_countries,
    )
    sovereignty.enforce(where)
    ctx.record(
        SovereigntyChecked(
            hosts=where.hosts,
            repo_host=where.repo_host,
            repo_country=where.repo_country,
            allowed=where.allowed,
        )
    )
    ctx.noop(where.summary())


@step("preflight-escrow", after=["preflight-sovereignty"], retry=RetryPolicy.none(), timeout=900)
def check_escrow(ctx: StepContext) -> None:
    """The escrow opens and every SealedSecret in the repo decrypts with its keys."""
    from bootstrap.escrow.service import check_repo
    from bootstrap.steps.common import kit

    recovery = kit(ctx)
    ctx.progress(
        f"escrow opened: {len(recovery.sealing_keys)} sealing key(s)",
        target=str(ctx.site.escrow.bundle),
    )
    lacking = [
        (where, ref.escrow)
        for where, ref in secretrefs.references(ctx.site)
        if isinstance(ref, EscrowRef) and not secretrefs.resolve(ref, lambda: recovery)
    ]
    for where, item in lacking:
        if item != "k3s_token":  # git falls back to its own defaults; said, not fatal
            ctx.progress(f"the recovery kit has no {item} for {where}", target=where)
    if any(item == "k3s_token" for _, item in lacking):
        items = sorted({item for _, item in lacking})
        flags = {
            "k3s_token": "--k3s-token-file FILE",
            "deploy_key": "--deploy-key-file FILE",
            "known_hosts": "--known-hosts-file FILE",
        }
        raise PreflightError(
            f"the recovery kit lacks {', '.join(items)}, which the site file takes from it ("
            + ", ".join(f"{where}: {{escrow: {item}}}" for where, item in lacking)
            + ")",
            target=str(ctx.site.escrow.bundle),
            hint="add it: `drboot escrow import SITE "
            + " ".join(flags[i] for i in items if i in flags)
            + "` (on a k3s server the token is /var/lib/rancher/k3s/server/token), or give "
            "those fields as {env: VAR} / {file: PATH}; then run again",
        )
    if not ctx.site.sealed_secrets.verify_in_preflight:
        ctx.noop("SealedSecret verification disabled (sealed_secrets.verify_in_preflight)")
        return
    ctx.progress("cloning and rendering the config repo", target=ctx.site.repo.url)
    check = check_repo(ctx.site, recovery)
    for warning in check.warnings:
        ctx.audit("preflight warning", target=ctx.site.repo.url, warning=warning)
    ctx.record(
        EscrowChecked(
            escrow_fingerprints=recovery.fingerprints(),
            repo=RepoSummary(**{k: v for k, v in check.to_dict().items() if k in _SUMMARY_FIELDS}),
        )
    )
    ctx.noop(
        f"escrow opens; {check.report.summary()} at {check.commit[:12]}"
        + (f", rendered with {check.renderer}" if check.renderer else "")
    )
