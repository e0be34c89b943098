"""Pytest plugin: a real Kubernetes 1.20 API server for integration tests.

Why it exists: tests of anything that talks to Kubernetes run against the real kube-apiserver
(and kube-controller-manager, etcd) built by ``bootstrap/lab/scripts/build-kube.sh``, not a
fake. tests/integration/conftest.py re-exports its fixtures.

Fixtures:
  kube_bin_dir  (session)  the bin dir of the built binaries (runs build-kube.sh: instant when
                           cached). Skips if they cannot be built, but FAILS when ``CI=true``.
  apiserver     (session)  a running control plane: ``.kubeconfig``, ``.client`` (KubeClient),
                           ``.control_plane``.
  namespace     (function) a fresh namespace, deleted (not waited for) afterwards.

Real CRD schemas come from the manifests drboot ships: ``tests/shipped.py``.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bootstrap.adapters.kube import KubeClient
from bootstrap.lab.controlplane import ControlPlane

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_KUBE = REPO_ROOT / "bootstrap" / "lab" / "scripts" / "build-kube.sh"


@dataclass
class ApiServer:
    """A running control plane and an admin client for it."""

    kubeconfig: Path
    client: KubeClient
    control_plane: ControlPlane
    bin_dir: Path


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"kube binaries unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"kube binaries unavailable: {reason}")


def find_kube_bin_dir() -> Path:
    """Run build-kube.sh (instant when cached) and return the bin dir it prints last."""
    override = os.environ.get("DRBOOT_KUBE_BIN_DIR")
    if override:
        return Path(override)
    try:
        proc = subprocess.run(
            ["bash", str(BUILD_KUBE)], capture_output=True, text=True, timeout=1800, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        _unavailable(f"{BUILD_KUBE}: {e}")
        raise AssertionError("unreachable") from e
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        _unavailable(f"{BUILD_KUBE} exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
    return Path(lines[-1])


@pytest.fixture(scope="session")
def kube_bin_dir() -> Path:
    bin_dir = find_kube_bin_dir()
    for name in ("etcd", "kube-apiserver", "kube-controller-manager"):
        if not (bin_dir / name).is_file():
            _unavailable(f"{bin_dir / name} is missing")
    return bin_dir


@pytest.fixture(scope="session")
def apiserver(kube_bin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    cp = ControlPlane(tmp_path_factory.mktemp("apiserver"), kube_bin_dir)
    kubeconfig = cp.start()
    try:
        client = KubeClient.from_kubeconfig(kubeconfig)
        try:
            yield ApiServer(kubeconfig, client, cp, kube_bin_dir)
        finally:
            client.close()
    finally:
        cp.stop()


@pytest.fixture
def namespace(apiserver: ApiServer, request: pytest.FixtureRequest) -> Iterator[str]:
    slug = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{slug}-{secrets.token_hex(3)}"
    apiserver.client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    apiserver.client.delete("v1", "Namespace", name)
