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
import shutil
import subprocess
import sys
import time
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


NetnsHttp = tuple[str, int, bytes, Path]


@pytest.fixture
def netns_http_server(tmp_path: Path) -> Iterator[NetnsHttp]:
    """An HTTP server in a network namespace this test creates, on a 10.200.254.x/30 veth link
    (the API server refuses loopback endpoints, and tests may only use loopback or 10.200/16).
    Serves ``/v1/cert.pem`` like the Sealed Secrets controller. Yields (ip, port, body, the
    served file: rewrite it to change what the server answers)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 for a network namespace")
    route = subprocess.run(["ip", "route", "show", "table", "all", "type", "blackhole"],
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    if "10.200.0.0/16" not in route:
        pytest.skip("10.200.0.0/16 is not blackholed on this machine")
    tag = os.getpid() % 10000
    base = 4 * (os.getpid() % 60)
    host_ip, ns_ip = f"10.200.254.{base + 1}", f"10.200.254.{base + 2}"
    ns, host_if, ns_if = f"drboot-kp{tag}", f"dkp{tag}h", f"dkp{tag}n"
    body = b"-----BEGIN CERTIFICATE-----\nnot-a-real-cert\n-----END CERTIFICATE-----\n"
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "cert.pem").write_bytes(body)
    port = 8080

    def sh(*cmd: str) -> None:
        subprocess.run(cmd, check=True, capture_output=True)

    sh("ip", "netns", "add", ns)
    server = None
    try:
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", ns)
        sh("ip", "addr", "add", f"{host_ip}/30", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "-n", ns, "addr", "add", f"{ns_ip}/30", "dev", ns_if)
        sh("ip", "-n", ns, "link", "set", ns_if, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        server = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "http.server", "--bind", ns_ip,
             "--directory", str(tmp_path), str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            probe = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c",
                                    f"import socket; socket.create_connection(('{ns_ip}', {port}),"
                                    " 1).close()"], capture_output=True)  # fmt: skip
            if probe.returncode == 0:
                break
            assert time.monotonic() < deadline, "http server in the netns did not start"
            time.sleep(0.2)
        yield ns_ip, port, body, tmp_path / "v1" / "cert.pem"
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", host_if], check=False, capture_output=True)
