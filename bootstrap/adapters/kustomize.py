"""Render a kustomization with ``kubectl kustomize`` (a subprocess, no Python vendor lib).

The SealedSecrets a GitOps tool applies are the rendered ones: names and namespaces
may come from the kustomization, not from the raw files.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from bootstrap.errors import PermanentError, PreflightError

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


def has_kustomization(path: str | Path) -> bool:
    """True if ``path`` is a directory with a kustomization file."""
    p = Path(path)
    return p.is_dir() and any((p / f).is_file() for f in KUSTOMIZATION_FILES)


def build(path: str | Path, *, kubectl: str = "kubectl", timeout: float = 120.0) -> str:
    """Return the rendered multi-document YAML of the kustomization at ``path``."""
    exe = shutil.which(kubectl)
    if exe is None:
        raise PreflightError(
            f"{kubectl} not found; it is needed to render kustomizations",
            hint="install kubectl (it bundles kustomize) and retry",
        )
    try:
        proc = subprocess.run(
            [exe, "kustomize", str(path)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise PermanentError(
            f"kubectl kustomize {path} took longer than {timeout:.0f}s",
            hint="check for remote bases in the kustomization",
        ) from None
    if proc.returncode != 0:
        detail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "no output"
        raise PermanentError(
            f"kustomize could not render {path}: {detail}",
            target=str(path),
            hint="run `kubectl kustomize` on that path and fix the kustomization",
        )
    return proc.stdout
