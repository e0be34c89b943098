"""The install manifests drboot ships are the pinned upstream files, byte for byte."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

UPSTREAM = Path(os.environ.get("DRBOOT_UPSTREAM_DIR", REPO.parent / "shared" / "upstream"))
SHIPPED = REPO / "bootstrap" / "manifests"

PAIRS = {
    "argo-cd/install.yaml": "argo-cd/manifests/install.yaml",
    "flux/install.yaml": "flux/assembled/install.yaml",
    "sealed-secrets/crd.yaml": (
        "sealed-secrets/helm/sealed-secrets/crds/bitnami.com_sealedsecrets.yaml"
    ),
}


@pytest.mark.parametrize(("shipped", "pinned"), list(PAIRS.items()))
def test_shipped_manifest_is_the_pinned_upstream_file(shipped: str, pinned: str) -> None:
    if not UPSTREAM.exists():
        pytest.fail(f"pinned upstream fixtures missing at {UPSTREAM} (set DRBOOT_UPSTREAM_DIR)")
    assert (SHIPPED / shipped).read_bytes() == (UPSTREAM / pinned).read_bytes()


def test_sealed_secrets_controller_manifest_matches_the_chart_defaults() -> None:
    docs = list(yaml.safe_load_all((SHIPPED / "sealed-secrets" / "controller.yaml").read_text()))
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("Deployment", "sealed-secrets-controller") in kinds
    assert ("Service", "sealed-secrets-controller") in kinds
    dep = next(d for d in docs if d["kind"] == "Deployment")
    assert dep["metadata"]["namespace"] == "kube-system"
    image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith(":0.36.6")
