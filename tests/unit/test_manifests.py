"""The install manifests drboot ships are the files SOURCES.json says they are.

``bootstrap/manifests/SOURCES.json`` records, per shipped file, where it comes from (upstream
repository, tag, commit, paths, license) and the sha256 of the shipped bytes. These tests fail
when a file drifts from its recorded hash, when a file is shipped without provenance, and when
an image in a manifest does not carry the version of the upstream source recorded for it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests import shipped

SOURCES = shipped.sources()
FILES: dict[str, dict[str, Any]] = SOURCES["files"]
NOT_MANIFESTS = {"README.md", "SOURCES.json"}


def _images(obj: Any) -> Iterator[str]:
    """Every container image named anywhere in a manifest document."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (c["image"] for c in value)
            else:
                yield from _images(value)
    elif isinstance(obj, list):
        for item in obj:
            yield from _images(item)


def _split(image: str) -> tuple[str, str]:
    repo, _, tag = image.rpartition(":")
    assert repo and "/" not in tag, f"image {image!r} has no tag"
    return repo, tag


def test_every_shipped_file_has_provenance_and_every_listed_file_ships() -> None:
    on_disk = {
        p.relative_to(shipped.MANIFESTS).as_posix()
        for p in shipped.MANIFESTS.rglob("*")
        if p.is_file() and p.name not in NOT_MANIFESTS and "__pycache__" not in p.parts
    }
    assert on_disk == set(FILES), (
        f"not in SOURCES.json: {sorted(on_disk - set(FILES))}; "
        f"listed but not shipped: {sorted(set(FILES) - on_disk)}"
    )


@pytest.mark.parametrize("rel", sorted(FILES))
def test_shipped_file_matches_its_recorded_sha256(rel: str) -> None:
    got = hashlib.sha256((shipped.MANIFESTS / rel).read_bytes()).hexdigest()
    assert got == FILES[rel]["sha256"], (
        f"bootstrap/manifests/{rel} drifted from SOURCES.json: a deliberate update records the "
        "new upstream tag, commit and sha256 there"
    )


@pytest.mark.parametrize("rel", sorted(FILES))
def test_provenance_record_is_complete(rel: str) -> None:
    entry = FILES[rel]
    assert entry["origin"] in ("upstream", "assembled", "drboot")
    assert entry["license"] and re.fullmatch(r"[0-9a-f]{64}", entry["sha256"])
    assert entry["sources"], "every file names the upstream it comes from or mirrors"
    for src in entry["sources"]:
        assert src["repository"].startswith("https://github.com/")
        assert src["tag"] and re.fullmatch(r"[0-9a-f]{40}", src["commit"])
        assert src["paths"]
    if entry["origin"] == "upstream":  # a byte-for-byte copy of exactly one upstream file
        (src,) = entry["sources"]
        assert len(src["paths"]) == 1 and "*" not in src["paths"][0]
    else:  # say plainly that it is not an upstream file
        word = {"assembled": "ASSEMBLED", "drboot": "WRITTEN BY DRBOOT"}[entry["origin"]]
        assert word in entry["notes"]


@pytest.mark.parametrize("rel", sorted(FILES))
def test_images_carry_the_recorded_source_versions(rel: str) -> None:
    entry = FILES[rel]
    images = [i for d in shipped.docs(rel) for i in _images(d)]
    assert sorted(set(images)) == sorted(entry["images"]), "images differ from SOURCES.json"
    for src in entry["sources"]:
        if "image" not in src:
            continue
        version = src.get("app_version") or src["tag"]
        tags = {_split(i)[1] for i in images if _split(i)[0] == src["image"]}
        assert tags, f"{rel} runs no {src['image']} image"
        assert {t.removeprefix("v") for t in tags} == {version.removeprefix("v")}, (
            f"{src['image']} tags {sorted(tags)} in {rel}, but SOURCES.json pins "
            f"{src['repository']} {version}"
        )


# The versions drboot is pinned to (the lab stand-ins recognise these images by name):
# a version bump changes the manifest, SOURCES.json and this table together.
PINNED_IMAGES = [
    ("argo-cd/install.yaml", "quay.io/argoproj/argocd:v3.5.1"),
    ("flux/install.yaml", "ghcr.io/fluxcd/source-controller:v1.9.1"),
    ("flux/install.yaml", "ghcr.io/fluxcd/kustomize-controller:v1.9.4"),
    ("sealed-secrets/controller.yaml", "docker.io/bitnami/sealed-secrets-controller:0.36.6"),
]


@pytest.mark.parametrize(("rel", "image"), PINNED_IMAGES)
def test_pinned_versions_are_the_shipped_ones(rel: str, image: str) -> None:
    assert image in FILES[rel]["images"]
    assert image in {i for d in shipped.docs(rel) for i in _images(d)}


def test_the_crds_tests_use_are_in_the_shipped_files() -> None:
    for name, rel in shipped.CRD_FILES.items():
        crd = shipped.crd(name)
        assert name == f"{crd['spec']['names']['plural']}.{crd['spec']['group']}", rel


def test_sealed_secrets_controller_manifest_matches_the_chart_defaults() -> None:
    docs = shipped.docs("sealed-secrets/controller.yaml")
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("Deployment", "sealed-secrets-controller") in kinds
    assert ("Service", "sealed-secrets-controller") in kinds
    dep = next(d for d in docs if d["kind"] == "Deployment")
    assert dep["metadata"]["namespace"] == "kube-system"
    image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith(":0.36.6")
