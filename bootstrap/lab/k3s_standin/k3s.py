#!/usr/bin/env python3
# =====================================================================================
#  LAB STAND-IN FOR k3s -- THIS IS NOT k3s.
#  It runs a real etcd + kube-apiserver + kube-controller-manager (Kubernetes v1.20.2,
#  built from Debian source) with k3s's command line, files and ports, so drboot's
#  Ansible k3s playbooks can be exercised on lab hosts without the real k3s air-gap
#  bundle. There is no kubelet, no containerd, no CNI: nodes never appear, pods never run.
# =====================================================================================
"""LAB STAND-IN for the k3s binary (stdlib python3 only).

Why it exists: the lab hosts cannot download k3s, and drboot's k3s playbooks must still be
exercised end to end against a real Kubernetes API. This script accepts the k3s flags drboot
uses and starts the lab control plane (``controlplane.py``) instead:

``k3s server [--cluster-init] [--server URL] [--token T | --token-file F] [--tls-san X]...
[--node-ip IP] [--bind-address IP] [--https-listen-port 6443] [--data-dir D]
[--write-kubeconfig F] [--write-kubeconfig-mode 0600]``

* The API server listens on ``--bind-address`` (default 0.0.0.0: the host's address and
  loopback) on port 6443; ``/etc/rancher/k3s/k3s.yaml`` says ``server: https://127.0.0.1:6443``
  like real k3s. ``<data-dir>/server/token`` holds the token (0600), so a re-run can compare it;
  a different token on existing data is refused, as real k3s does.
* ``--cluster-init`` also exposes the local etcd (plain HTTP, lab only) on the node IP, port
  2379, and stores the cluster CA and service-account keys in it, encrypted with the token.
* A joining server (``--server https://first:6443``) runs no etcd of its own: it fetches the CA
  and keys from the first server's etcd (port 2379, decrypting them with its token) and runs
  kube-apiserver + kube-controller-manager (leader-elected) against that etcd. Simple, not HA
  in the etcd sense: the first server's etcd is a single point of failure.
* Unimplemented flags are accepted, logged and ignored. Under systemd ``Type=notify`` it sends
  READY=1 once the API server is ready.
* ``--lab-etcd-port`` (stand-in only) moves etcd off 2379/2380 so tests can run several.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

VERSION = "v1.20.2+k3s-lab-standin"
VERSION_LINE = f"k3s version {VERSION} (standin)"
DEFAULT_HOME = Path("/usr/local/lib/k3s-standin")
BOOTSTRAP_KEY = "/k3s-standin/bootstrap"
SHARED_PKI = ("ca.crt", "ca.key", "sa.key", "sa.pub")


def log(msg: str) -> None:
    print(f"k3s-standin: {msg}", file=sys.stderr, flush=True)


def standin_home() -> Path:
    """Where bin/ and lib/controlplane.py are: $K3S_STANDIN_HOME, beside the (resolved)
    script, or /usr/local/lib/k3s-standin (where the playbook installs the bundle)."""
    env = os.environ.get("K3S_STANDIN_HOME")
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parent, DEFAULT_HOME]
    for c in candidates:
        if (c / "lib" / "controlplane.py").is_file():
            return c
    sys.exit(f"k3s-standin: payload not found in {', '.join(map(str, candidates))}")


def server_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="k3s server", add_help=True)
    p.add_argument("--data-dir", "-d", default="/var/lib/rancher/k3s")
    p.add_argument("--token", "-t", default=os.environ.get("K3S_TOKEN"))
    p.add_argument("--token-file", default=os.environ.get("K3S_TOKEN_FILE"))
    p.add_argument("--server", "-s", default=os.environ.get("K3S_URL"))
    p.add_argument("--cluster-init", action="store_true")
    p.add_argument("--tls-san", action="append", default=[])
    p.add_argument("--node-ip", "-i", action="append", default=[])
    p.add_argument("--advertise-address")
    p.add_argument("--bind-address", default="0.0.0.0")
    p.add_argument("--https-listen-port", type=int, default=6443)
    p.add_argument("--write-kubeconfig", "-o", default="/etc/rancher/k3s/k3s.yaml")
    p.add_argument("--write-kubeconfig-mode", default="0600")
    p.add_argument("--lab-etcd-port", type=int, default=2379, help="stand-in only")
    return p


def read_token(args: argparse.Namespace) -> str | None:
    if args.token:
        return str(args.token).strip()
    if args.token_file:
        return Path(args.token_file).read_text().strip()
    return None


def sd_notify(state: str) -> None:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(addr)
        s.sendall(state.encode())


def _etcd_call(url: str, op: str, payload: dict[str, str]) -> dict[str, Any]:
    req = urllib.request.Request(
        f"{url}/v3/kv/{op}", data=json.dumps(payload).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=5) as resp:
        result: dict[str, Any] = json.loads(resp.read())
        return result


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _crypt(data: bytes, token: str, decrypt: bool) -> bytes:
    env = dict(os.environ, K3S_STANDIN_TOKEN=token)
    args = ["openssl", "enc", "-aes-256-cbc", "-pbkdf2", "-salt", "-pass", "env:K3S_STANDIN_TOKEN"]
    if decrypt:
        args.append("-d")
    proc = subprocess.run(args, input=data, capture_output=True, env=env, check=False)
    if proc.returncode != 0:
        raise ValueError("openssl enc failed (wrong token?)")
    return proc.stdout


def publish_bootstrap(etcd_url: str, pki_dir: Path, token: str) -> None:
    """Store the shared CA and service-account keys in etcd, encrypted with the token."""
    blob = json.dumps({n: (pki_dir / n).read_text() for n in SHARED_PKI}).encode()
    key = _b64(BOOTSTRAP_KEY.encode())
    _etcd_call(etcd_url, "put", {"key": key, "value": _b64(_crypt(blob, token, decrypt=False))})


def fetch_bootstrap(etcd_url: str, pki_dir: Path, token: str, timeout: float = 120) -> None:
    """Fetch the shared CA and keys from the first server's etcd (waits for them)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            kvs = _etcd_call(etcd_url, "range", {"key": _b64(BOOTSTRAP_KEY.encode())}).get("kvs")
            if kvs:
                break
            last = "no bootstrap data yet"
        except (OSError, urllib.error.URLError) as e:
            last = str(e)
        if time.monotonic() > deadline:
            sys.exit(f"k3s-standin: cannot fetch bootstrap data from {etcd_url}: {last}")
        time.sleep(1)
    try:
        files = json.loads(_crypt(base64.b64decode(kvs[0]["value"]), token, decrypt=True))
    except ValueError:
        sys.exit("k3s-standin: bootstrap data was encrypted with a different token: check --token")
    pki_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name in SHARED_PKI:
        (pki_dir / name).write_text(files[name])
        os.chmod(pki_dir / name, 0o600)


def cmd_server(argv: list[str]) -> int:
    args, unknown = server_parser().parse_known_args(argv)
    for flag in unknown:
        if flag.startswith("-"):
            log(f"ignoring flag not implemented by the stand-in: {flag}")
    home = standin_home()
    sys.path.insert(0, str(home / "lib"))
    import controlplane as cpmod  # the payload is found at run time

    data_dir = Path(args.data_dir)
    token_path = data_dir / "server" / "token"
    state_dir = data_dir / "server" / "standin"
    token = read_token(args)
    if token_path.exists():
        old = token_path.read_text().strip()
        if token is not None and token != old:
            log(f"{token_path} holds a different token; refusing (as k3s does): "
                "use the original token or wipe the data dir")  # fmt: skip
            return 1
        token = old
    if token is None:
        if args.server:
            log("a joining server needs --token or --token-file")
            return 1
        token = secrets.token_hex(16)
    cpmod.write_private(token_path, (token + "\n").encode())

    node_ip = args.node_ip[0].split(",")[0] if args.node_ip else None
    advertise = args.advertise_address or node_ip
    port = args.https_listen_port
    etcd_port = args.lab_etcd_port
    joining = bool(args.server)
    etcd_servers: list[str] = []
    if joining:
        host = urllib.parse.urlsplit(args.server).hostname or "127.0.0.1"
        etcd_url = f"http://{cpmod._url_host(host)}:{etcd_port}"
        etcd_servers = [etcd_url]
        log(f"joining {args.server}: using its etcd at {etcd_url}")
        fetch_bootstrap(etcd_url, state_dir / "pki", token)
    sans = [s for v in args.tls_san for s in v.split(",") if s]
    sans += [socket.gethostname()]
    if node_ip:
        sans.append(node_ip)
    cp = cpmod.ControlPlane(
        state_dir,
        home / "bin",
        bind_address=args.bind_address,
        server_host="127.0.0.1",
        secure_port=port,
        advertise_address=advertise,
        sans=sans,
        etcd_servers=etcd_servers,
        etcd_client_port=etcd_port,
        etcd_peer_port=2380 if etcd_port == 2379 else 0,  # peer: loopback-only, one member
        etcd_listen_address=(node_ip or "0.0.0.0") if args.cluster_init else None,
        leader_elect=True,
        kubeconfig_path=args.write_kubeconfig,
        kubeconfig_mode=int(args.write_kubeconfig_mode, 8),
        ready_timeout=180,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    log(f"{VERSION_LINE}: starting the lab control plane in {state_dir}")
    try:
        cp.start()
    except cpmod.ControlPlaneError as e:
        log(str(e))
        return 1
    if args.cluster_init or not joining:
        publish_bootstrap(cp.etcd_url.split(",")[0], cp.pki.dir, token)
    log(f"API server ready on {args.bind_address}:{port}; kubeconfig {args.write_kubeconfig}")
    sd_notify("READY=1")
    code = 0
    while not stop.is_set():
        dead = [n for n, p in cp.procs.items() if p.poll() is not None]
        if dead:
            log(f"{', '.join(dead)} exited; stopping (logs in {cp.log_dir})")
            code = 1
            break
        stop.wait(1.0)
    sd_notify("STOPPING=1")
    cp.stop()
    log("stopped")
    return code


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("--version", "-v", "version"):
        print(VERSION_LINE)
        print("LAB STAND-IN for k3s: etcd + kube-apiserver + kube-controller-manager only")
        return 0 if argv else 1
    if argv[0] == "server":
        return cmd_server(argv[1:])
    log(f"`k3s {argv[0]}` is not implemented by the lab stand-in (only `server`, `--version`)")
    return 1


if __name__ == "__main__":
    sys.exit(main())
