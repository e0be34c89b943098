"""The lab control plane (etcd + kube-apiserver + kube-controller-manager) and the k3s stand-in.

Real processes on loopback only: they prove the control plane is secure by default (TLS, RBAC,
0600 kubeconfig), that the controller-manager does its job (namespace deletion, garbage
collection, service-account tokens), that runs coexist and stop cleanly, and that the k3s
stand-in behaves like k3s where the playbooks look (flags, files, token, version, HA join).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bootstrap.adapters.kube import KubeClient
from bootstrap.lab.controlplane import ControlPlane, free_port
from bootstrap.lab.k3s_standin import build_bundle

if TYPE_CHECKING:
    from tests.integration.conftest_apiserver import ApiServer

pytestmark = [pytest.mark.integration, pytest.mark.apiserver]

REPO = Path(__file__).resolve().parents[2]
CONTROLPLANE_PY = REPO / "bootstrap" / "lab" / "controlplane.py"


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _wait_gone(pids: list[int], timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def _bearer_get(server: str, ca: Path, token: str, path: str) -> int:
    host, port = server.removeprefix("https://").rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(ca))
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        return conn.getresponse().status
    finally:
        conn.close()


# -- the control plane --------------------------------------------------------------------------


def test_kubeconfig_is_private_and_server_is_tls_rbac(apiserver: ApiServer) -> None:
    assert apiserver.kubeconfig.stat().st_mode & 0o777 == 0o600
    cp = apiserver.control_plane
    assert cp.server_url.startswith("https://127.0.0.1:")
    status, body = cp.request("GET", "/version")
    assert status == 200 and json.loads(body)["gitVersion"] == "v1.20.2"
    # Anonymous requests are refused (no client cert -> 401), RBAC is on.
    ctx = ssl.create_default_context(cafile=str(cp.pki.path("ca.crt")))
    conn = http.client.HTTPSConnection("127.0.0.1", cp.secure_port, context=ctx, timeout=5)
    conn.request("GET", "/api/v1/namespaces")
    assert conn.getresponse().status == 401
    conn.close()
    status, body = cp.request("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/admin")
    assert status == 200


def test_service_account_gets_a_working_token_secret(apiserver: ApiServer, namespace: str) -> None:
    k = apiserver.client
    k.create({"apiVersion": "v1", "kind": "ServiceAccount",
              "metadata": {"name": "robot", "namespace": namespace}})  # fmt: skip
    sa = k.wait_for("v1", "ServiceAccount", "robot", lambda o: bool(o and o.get("secrets")),
                    namespace, timeout=60, what="given a token secret")  # fmt: skip
    assert sa is not None
    secret = k.get("v1", "Secret", sa["secrets"][0]["name"], namespace)
    assert secret is not None
    assert secret["type"] == "kubernetes.io/service-account-token"
    token = base64.b64decode(secret["data"]["token"]).decode()
    ca = apiserver.control_plane.pki.path("ca.crt")
    server = apiserver.control_plane.server_url
    # The token authenticates (signed with the SA key the API server trusts) ...
    assert _bearer_get(server, ca, token, f"/api/v1/namespaces/{namespace}/secrets") == 403
    # ... and a forged one does not.
    assert _bearer_get(server, ca, token[:-4] + "AAAA", "/api") == 401


def test_namespace_deletion_completes(apiserver: ApiServer) -> None:
    k = apiserver.client
    name = f"t-nsdel-{os.getpid()}"
    k.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    k.create({"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": "c", "namespace": name}, "data": {"a": "b"}})  # fmt: skip
    assert k.delete("v1", "Namespace", name, wait=60)  # waits for the namespace controller
    assert k.get("v1", "Namespace", name) is None


def test_garbage_collector_deletes_dependents(apiserver: ApiServer, namespace: str) -> None:
    k = apiserver.client
    owner = k.create({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "owner", "namespace": namespace}})  # fmt: skip
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
           "uid": owner["metadata"]["uid"]}  # fmt: skip
    k.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "child", "namespace": namespace, "ownerReferences": [ref]},
        }
    )
    k.delete("v1", "ConfigMap", "owner", namespace)
    k.wait_for("v1", "ConfigMap", "child", lambda o: o is None, namespace, timeout=60,
               what="garbage-collected")  # fmt: skip


def test_second_control_plane_coexists_and_stops_cleanly(
    apiserver: ApiServer, kube_bin_dir: Path, tmp_path: Path
) -> None:
    t0 = time.monotonic()
    with ControlPlane(tmp_path / "cp2", kube_bin_dir) as cp2:
        took = time.monotonic() - t0
        assert cp2.secure_port != apiserver.control_plane.secure_port
        pids = [p.pid for p in cp2.procs.values()]
        assert len(pids) == 3
        with KubeClient.from_kubeconfig(cp2.kubeconfig) as k2:
            k2.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "only-2"}})
            assert apiserver.client.get("v1", "Namespace", "only-2") is None
    assert _wait_gone(pids, 1) == []
    assert took < 30, f"control plane took {took:.1f}s to become ready"


def test_restart_keeps_the_ca_and_the_data(kube_bin_dir: Path, tmp_path: Path) -> None:
    with (
        ControlPlane(tmp_path / "cp", kube_bin_dir) as cp,
        KubeClient.from_kubeconfig(cp.kubeconfig) as k,
    ):
        k.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kept"}})
        port = cp.secure_port
    old_kubeconfig = (tmp_path / "cp" / "admin.kubeconfig").read_text()
    with ControlPlane(tmp_path / "cp", kube_bin_dir, secure_port=port) as cp, \
            KubeClient.from_kubeconfig(cp.kubeconfig) as k:  # fmt: skip
        assert (tmp_path / "cp" / "admin.kubeconfig").read_text() == old_kubeconfig
        assert k.get("v1", "Namespace", "kept") is not None


def test_cli_foreground_runs_on_stdlib_python_and_stops_on_sigterm(
    kube_bin_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "cli"
    # -I -S: no site-packages at all, no cwd on sys.path: proves "stdlib only".
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", str(CONTROLPLANE_PY), "--data-dir", str(data),
         "--bin-dir", str(kube_bin_dir), "--foreground"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(2)]
        assert lines[0].startswith("controlplane: ready at https://127.0.0.1:"), lines
        assert lines[1].strip() == f"export KUBECONFIG={data / 'admin.kubeconfig'}"
        pids = list(json.loads((data / "pids.json").read_text()).values())
        assert all(_alive(p) for p in pids)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert _wait_gone(pids, 5) == []
        assert not (data / "pids.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_detached_then_stop(kube_bin_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "detached"
    cmd = [sys.executable, str(CONTROLPLANE_PY), "--data-dir", str(data)]
    out = subprocess.run([*cmd, "--bin-dir", str(kube_bin_dir)], capture_output=True,
                         text=True, timeout=120, check=True).stdout  # fmt: skip
    assert "export KUBECONFIG=" in out
    pids = list(json.loads((data / "pids.json").read_text()).values())
    try:
        with KubeClient.from_kubeconfig(data / "admin.kubeconfig") as k:
            k.wait_ready(10)
    finally:
        stopped = subprocess.run([*cmd, "--stop"], capture_output=True, text=True, timeout=60,
                                 check=True).stdout  # fmt: skip
    assert "kube-apiserver" in stopped
    assert _wait_gone(pids, 5) == []


def test_missing_binaries_are_named(tmp_path: Path) -> None:
    from bootstrap.lab.controlplane import ControlPlaneError

    with pytest.raises(ControlPlaneError, match=r"build-kube\.sh"):
        ControlPlane(tmp_path / "d", tmp_path / "no-bin").start()


# -- the k3s stand-in ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(kube_bin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("bundle") / "k3s-standin", kube_bin_dir)


class Standin:
    """One `k3s server` process of the stand-in, run on loopback with its own ports."""

    def __init__(self, bundle: Path, root: Path, *args: str, etcd_port: int) -> None:
        self.port = free_port()
        self.data_dir = root / "data"
        self.kubeconfig = root / "k3s.yaml"
        self.log = root / "k3s.log"
        cmd = [str(bundle / "k3s"), "server", "--bind-address", "127.0.0.1",
               "--https-listen-port", str(self.port), "--data-dir", str(self.data_dir),
               "--write-kubeconfig", str(self.kubeconfig), "--lab-etcd-port", str(etcd_port),
               *args]  # fmt: skip
        root.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while "API server ready" not in self.log.read_text():
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.2)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture
def standins() -> Iterator[list[Standin]]:
    started: list[Standin] = []
    yield started
    for s in reversed(started):
        s.stop()


def test_bundle_layout_and_version(bundle: Path) -> None:
    for rel in ("k3s", "bin/etcd", "bin/kube-apiserver", "bin/kube-controller-manager",
                "lib/controlplane.py", "STANDIN.txt"):  # fmt: skip
        assert (bundle / rel).is_file(), rel
    assert os.access(bundle / "k3s", os.X_OK)
    head = (bundle / "k3s").read_text().splitlines()[:3]
    assert head[0] == "#!/usr/bin/env python3" and "LAB STAND-IN FOR k3s" in head[2]
    out = subprocess.run([str(bundle / "k3s"), "--version"], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    assert out.splitlines()[0] == "k3s version v1.20.2+k3s-lab-standin (standin)"
    assert "LAB STAND-IN" in out
    agent = subprocess.run([str(bundle / "k3s"), "agent"], capture_output=True, text=True)
    assert agent.returncode == 1 and "not implemented by the lab stand-in" in agent.stderr


def test_standin_server_answers_and_keeps_its_token(
    bundle: Path, tmp_path: Path, standins: list[Standin]
) -> None:
    etcd_port = free_port()
    s = Standin(bundle, tmp_path / "s1", "--cluster-init", "--token", "lab-token-1",
                "--tls-san", "k3s.lab.invalid", "--disable", "traefik",
                "--write-kubeconfig-mode", "0600", etcd_port=etcd_port)  # fmt: skip
    standins.append(s)
    s.wait_ready()
    assert "ignoring flag not implemented by the stand-in: --disable" in s.log.read_text()
    text = s.kubeconfig.read_text()
    assert f"server: https://127.0.0.1:{s.port}" in text
    assert s.kubeconfig.stat().st_mode & 0o777 == 0o600
    token_file = s.data_dir / "server" / "token"
    assert token_file.read_text().strip() == "lab-token-1"
    assert token_file.stat().st_mode & 0o777 == 0o600
    with KubeClient.from_kubeconfig(s.kubeconfig) as k:
        k.wait_ready(10)
        assert k.server_minor() == 20
    assert s.stop() == 0
    # A re-run with another token on the same data is refused, like real k3s.
    again = Standin(bundle, tmp_path / "s1", "--token", "other", etcd_port=etcd_port)
    standins.append(again)
    assert again.proc.wait(30) == 1
    assert "different token" in again.log.read_text()


def test_standin_joining_server_shares_the_cluster(
    bundle: Path, tmp_path: Path, standins: list[Standin]
) -> None:
    etcd_port = free_port()
    first = Standin(bundle, tmp_path / "a", "--cluster-init", "--token", "t0ken",
                    etcd_port=etcd_port)  # fmt: skip
    standins.append(first)
    first.wait_ready()
    second = Standin(bundle, tmp_path / "b", "--server", f"https://127.0.0.1:{first.port}",
                     "--token", "t0ken", etcd_port=etcd_port)  # fmt: skip
    standins.append(second)
    second.wait_ready()
    wrong = Standin(bundle, tmp_path / "c", "--server", f"https://127.0.0.1:{first.port}",
                    "--token", "wrong", etcd_port=etcd_port)  # fmt: skip
    standins.append(wrong)
    with KubeClient.from_kubeconfig(first.kubeconfig) as a, \
            KubeClient.from_kubeconfig(second.kubeconfig) as b:  # fmt: skip
        a.create(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "shared", "namespace": "default"},
                "data": {"x": "1"},
            }
        )
        got = b.get("v1", "ConfigMap", "shared", "default")
        assert got is not None and got["data"] == {"x": "1"}
    assert wrong.proc.wait(30) == 1
    assert "different token" in wrong.log.read_text()
