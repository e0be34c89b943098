"""The install manifests drboot ships (``bootstrap/manifests``), read as test data.

Why it exists: tests that need real CRD schemas take them from the files drboot itself
installs (the Argo CD and Flux installs carry their CRDs; Sealed Secrets ships its CRD file),
so the suite reads nothing outside the repository and tests exactly what a restore applies.
Provenance of every file is in ``bootstrap/manifests/SOURCES.json``.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import yaml

MANIFESTS = Path(__file__).resolve().parents[1] / "bootstrap" / "manifests"
SOURCES = MANIFESTS / "SOURCES.json"

# The CRDs the stand-ins and the kube adapter tests need, and the shipped file each lives in.
CRD_FILES = {
    "applications.argoproj.io": "argo-cd/install.yaml",
    "appprojects.argoproj.io": "argo-cd/install.yaml",
    "applicationsets.argoproj.io": "argo-cd/install.yaml",
    "sealedsecrets.bitnami.com": "sealed-secrets/crd.yaml",
    "gitrepositories.source.toolkit.fluxcd.io": "flux/install.yaml",
    "kustomizations.kustomize.toolkit.fluxcd.io": "flux/install.yaml",
}

# libyaml's loader when present: the Argo CD install (1.9 MB) takes ~4 s in pure Python.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def _load(rel: str) -> tuple[dict[str, Any], ...]:
    with open(MANIFESTS / rel, encoding="utf-8") as fh:
        return tuple(d for d in yaml.load_all(fh, Loader=_LOADER) if d)


def docs(rel: str) -> list[dict[str, Any]]:
    """The documents of the shipped manifest ``rel`` (a path under bootstrap/manifests); a
    fresh copy each call, so a test may change them."""
    return copy.deepcopy(list(_load(rel)))


def crd(name: str) -> dict[str, Any]:
    """The CustomResourceDefinition ``name`` as shipped (see ``CRD_FILES``)."""
    rel = CRD_FILES[name]
    found = [
        d for d in docs(rel)
        if d.get("kind") == "CustomResourceDefinition" and d["metadata"]["name"] == name
    ]  # fmt: skip
    assert len(found) == 1, f"{rel} holds {len(found)} CRDs named {name}"
    return found[0]


def crds(*names: str) -> list[dict[str, Any]]:
    """Several shipped CRDs, in the order asked for (all of ``CRD_FILES`` when none named)."""
    return [crd(n) for n in names or CRD_FILES]


def sources() -> dict[str, Any]:
    """``SOURCES.json``: per shipped file, its origin, upstream sources, license and sha256."""
    return dict(json.loads(SOURCES.read_text(encoding="utf-8")))
