"""Preflight: everything checkable before a billable resource exists.

The site file was validated at the edge; here the references it makes must
resolve (env vars set, files readable), the escrow must open, every
SealedSecret in the repo must decrypt with the escrowed keys, and the repo
must render.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bootstrap.engine.context import StepContext
from bootstrap.engine.step import RetryPolicy
from bootstrap.errors import PreflightError
from bootstrap.outputs import EscrowChecked, RepoSummary
from bootstrap.steps.registry import step


def _refs(obj: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every ``{env: ...}`` / ``{file: ...}`` reference in the site model, with its field path."""
    found: list[tuple[str, dict[str, Any]]] = []
    data = obj.model_dump() if hasattr(obj, "model_dump") else obj
    if isinstance(data, dict):
        keys = set(data)
        if keys and keys <= {"env", "file"} and len([v for v in data.values() if v]) == 1:
            found.append((path, data))
            return found
        for k, v in data.items():
            found.extend(_refs(v, f"{path}.{k}" if path else str(k)))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            found.extend(_refs(v, f"{path}[{i}]"))
    return found


@step("preflight-references", retry=RetryPolicy.none(), timeout=60)
def check_references(ctx: StepContext) -> None:
    """Every secret reference in the site file resolves (without reading it into the journal)."""
    missing: list[str] = []
    refs = _refs(ctx.site)
    for where, ref in refs:
        if ref.get("env"):
            if not os.environ.get(str(ref["env"])):
                missing.append(f"{where}: environment variable {ref['env']} is not set")
        elif ref.get("file"):
            p = Path(str(ref["file"])).expanduser()
            if not os.access(p, os.R_OK):
                missing.append(f"{where}: file {p} is not readable")
    if ctx.site.provider.type != "lab":  # the lab makes its own operator key
        key = Path(ctx.site.ssh.private_key_file).expanduser()
        if not os.access(key, os.R_OK):
            missing.append(f"ssh.private_key_file: {key} is not readable")
    if missing:
        raise PreflightError(
            "unresolved secret references: " + "; ".join(missing),
            hint="set the variables / create the files, then run again",
        )
    ctx.noop(f"{len(refs)} secret reference(s) resolve")


@step("preflight-escrow", after=["preflight-references"], retry=RetryPolicy.none(), timeout=900)
def check_escrow(ctx: StepContext) -> None:
    """The escrow opens and every SealedSecret in the repo decrypts with its keys."""
    from bootstrap.escrow.service import check_repo
    from bootstrap.steps.common import kit

    recovery = kit(ctx)
    ctx.progress(
        f"escrow opened: {len(recovery.sealing_keys)} sealing key(s)",
        target=str(ctx.site.escrow.bundle),
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
            repo=RepoSummary(**check.to_dict()),
        )
    )
    ctx.noop(f"escrow opens; {check.report.summary()} at {check.commit[:12]}")
