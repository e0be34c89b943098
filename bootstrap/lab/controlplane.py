"""A real Kubernetes control plane (etcd + kube-apiserver + kube-controller-manager) for the lab.

Why it exists: drboot's integration tests and the lab's k3s stand-in need a *real* API server
(RBAC, CRD validation, server-side apply, status subresources, namespace finalization,
service-account tokens), not a fake. This module starts one from the binaries built by
``bootstrap/lab/scripts/build-kube.sh``: a generated CA, TLS serving and client certificates
(made with the ``openssl`` CLI), a service-account key pair, an admin kubeconfig (0600).

It is STDLIB ONLY on purpose: the k3s stand-in copies this file onto lab hosts that have
Debian's ``python3`` and nothing else. Do not import ``bootstrap`` or any third-party package.

Lab use only: etcd speaks plain HTTP (on loopback, or on the node address when other lab
servers join it).

CLI::

    python3 -m bootstrap.lab.controlplane --data-dir D --bin-dir B --foreground
    python3 -m bootstrap.lab.controlplane --data-dir D --bin-dir B          # detach, print env
    python3 -m bootstrap.lab.controlplane --data-dir D --stop
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import http.client
import ipaddress
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

SERVICE_CIDR = "10.43.0.0/16"
SERVICE_IP = "10.43.0.1"  # first address of SERVICE_CIDR: the `kubernetes` Service
CLUSTER_DOMAIN = "cluster.local"
ADMIN_USER = "drboot-admin"
PIDS_FILE = "pids.json"


class ControlPlaneError(RuntimeError):
    """The control plane could not be started; the message names the component and its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host`` (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# A copy of bootstrap.fsutil.write_atomic, on purpose: this module runs on lab hosts (inside the
# k3s stand-in) where only the standard library exists, so it cannot import the package.
def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` atomically (tmp -> fsync -> rename) with ``mode`` from the start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, umask=0o077, check=False
    )
    if proc.returncode != 0:
        raise ControlPlaneError(f"openssl {args[0]} failed in {cwd}: {proc.stderr.strip()[-400:]}")


class Pki:
    """The certificates and keys of one control plane, generated once and then reused.

    Reuse matters: a restarted control plane (or the k3s stand-in under systemd) keeps its CA,
    so kubeconfigs handed out earlier stay valid, as with real k3s.
    """

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def path(self, name: str) -> Path:
        return self.dir / name

    def ensure_ca(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)
        if not self.path("ca.crt").exists():
            _openssl(
                "req", "-x509", "-new", "-nodes",
                "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650",
                "-subj", "/CN=drboot-lab-ca",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
                cwd=self.dir,
            )  # fmt: skip
        if not self.path("sa.key").exists():
            _openssl(
                "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-out", "sa.key", cwd=self.dir,
            )  # fmt: skip
            _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=self.dir)

    def issue(self, name: str, subject: str, *, server_sans: Sequence[str] = ()) -> None:
        """Sign ``name``.crt/``name``.key with the CA (serverAuth if SANs are given)."""
        sans_file = self._sans_file(name)
        wanted = ",".join(server_sans)
        crt = self.path(f"{name}.crt")
        if crt.exists() and sans_file.exists() and sans_file.read_text() == wanted:
            return
        ext = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature"]
        if server_sans:
            ext.append("extendedKeyUsage=serverAuth")
            ext.append("subjectAltName=" + ",".join(server_sans))
        else:
            ext.append("extendedKeyUsage=clientAuth")
        extfile = self.dir / f"{name}.ext"
        extfile.write_text("[v3]\n" + "\n".join(ext) + "\n")
        _openssl(
            "req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=self.dir,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-set_serial", "0x" + secrets.token_hex(16), "-days", "3650",
            "-extfile", extfile.name, "-extensions", "v3", "-out", f"{name}.crt",
            cwd=self.dir,
        )  # fmt: skip
        self.path(f"{name}.csr").unlink()
        extfile.unlink()
        sans_file.write_text(wanted)

    def _sans_file(self, name: str) -> Path:
        return self.dir / f"{name}.sans"


def kubeconfig_text(server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, user: str) -> str:
    """A kubeconfig in YAML (every value is base64 or a URL, so no quoting is needed)."""

    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode()

    return (
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        "- name: default\n"
        "  cluster:\n"
        f"    server: {server}\n"
        f"    certificate-authority-data: {b64(ca_pem)}\n"
        "contexts:\n"
        "- name: default\n"
        "  context:\n"
        "    cluster: default\n"
        f"    user: {user}\n"
        "current-context: default\n"
        "users:\n"
        f"- name: {user}\n"
        "  user:\n"
        f"    client-certificate-data: {b64(cert_pem)}\n"
        f"    client-key-data: {b64(key_pem)}\n"
    )


def _die_with_parent() -> None:
    """preexec hook: the child gets SIGTERM if the thread that started it dies (Linux)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager, as child processes.

    ``bind_address`` is where the API server listens (``0.0.0.0`` = every address);
    ``server_host`` is the host name/IP written into the admin kubeconfig (defaults to the bind
    address, or 127.0.0.1 for a wildcard bind). Ports default to free ones so runs coexist.
    With ``etcd_servers`` the control plane uses that (remote) etcd and starts none of its own:
    the k3s stand-in's joining servers do that. ``etcd_listen_address`` additionally exposes
    the local etcd on a node address so such servers can join.
    """

    def __init__(
        self,
        data_dir: Path | str,
        bin_dir: Path | str,
        *,
        bind_address: str = "127.0.0.1",
        server_host: str | None = None,
        secure_port: int = 0,
        advertise_address: str | None = None,
        sans: Sequence[str] = (),
        etcd_servers: Sequence[str] = (),
        etcd_client_port: int = 0,
        etcd_peer_port: int = 0,
        etcd_listen_address: str | None = None,
        controller_manager: bool = True,
        leader_elect: bool = False,
        kubeconfig_path: Path | str | None = None,
        kubeconfig_mode: int = 0o600,
        die_with_parent: bool = True,
        ready_timeout: float = 90.0,
        wait_for_controllers: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.bin_dir = Path(bin_dir).resolve()
        self.bind_address = bind_address
        wildcard = bind_address in ("0.0.0.0", "::")
        self.server_host = server_host or ("127.0.0.1" if wildcard else bind_address)
        self.secure_port = secure_port
        self.advertise_address = advertise_address or ("127.0.0.1" if wildcard else bind_address)
        self.sans = list(sans)
        self.external_etcd = list(etcd_servers)
        self.etcd_client_port = etcd_client_port
        self.etcd_peer_port = etcd_peer_port
        self.etcd_listen_address = etcd_listen_address
        self.controller_manager = controller_manager
        self.leader_elect = leader_elect
        self.kubeconfig = (
            Path(kubeconfig_path) if kubeconfig_path else self.data_dir / "admin.kubeconfig"
        )
        self.kubeconfig_mode = kubeconfig_mode
        self.die_with_parent = die_with_parent
        self.ready_timeout = ready_timeout
        self.wait_for_controllers = wait_for_controllers
        self.pki = Pki(self.data_dir / "pki")
        self.log_dir = self.data_dir / "logs"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.etcd_url = ""

    # -- public API ---------------------------------------------------------------------------

    @property
    def server_url(self) -> str:
        return f"https://{_url_host(self.server_host)}:{self.secure_port}"

    def start(self) -> Path:
        """Start everything and wait until /readyz answers (see ``wait_ready``).

        Returns the admin kubeconfig path. On failure every child is stopped and the error
        names the component and the tail of its log.
        """
        for name in ("etcd", "kube-apiserver", "kube-controller-manager"):
            if not (self.bin_dir / name).is_file():
                raise ControlPlaneError(
                    f"{self.bin_dir / name} is missing: run bootstrap/lab/scripts/build-kube.sh"
                )
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.log_dir.mkdir(exist_ok=True)
        port_host = "127.0.0.1" if self.bind_address in ("0.0.0.0", "::") else self.bind_address
        if not self.secure_port:
            self.secure_port = free_port(port_host)
        self._make_pki()
        try:
            if self.external_etcd:
                self.etcd_url = ",".join(self.external_etcd)
            else:
                self._start_etcd()
            self._start_apiserver()
            if self.controller_manager:
                self._start_controller_manager()
            self._record_pids()
            self.wait_ready(self.ready_timeout)
        except BaseException:
            self.stop()
            raise
        return self.kubeconfig

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the children in reverse order: SIGTERM, then SIGKILL after ``timeout``."""
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            proc = self.procs.pop(name, None)
            if proc is not None:
                _terminate(proc, timeout)
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / PIDS_FILE).unlink()

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def wait_ready(self, timeout: float, *, controllers: bool | None = None) -> None:
        """Wait for /readyz = 200; with ``controllers`` also for the `default` ServiceAccount.

        That ServiceAccount is made by the controller-manager's serviceaccount controller, which
        starts ~10 s after the API server is ready (the controllers start one by one, each
        waiting for its own service-account token), so it is not waited for by default.
        """
        deadline = time.monotonic() + timeout
        checks = ["/readyz"]
        if self.controller_manager and (
            self.wait_for_controllers if controllers is None else controllers
        ):
            checks.append("/api/v1/namespaces/default/serviceaccounts/default")
        for check in checks:
            last = ""
            while True:
                self._check_children()
                try:
                    status, body = self.request("GET", check)
                    if status == 200:
                        break
                    last = f"HTTP {status}: {body[:300]!r}"
                except (OSError, http.client.HTTPException) as e:
                    last = f"{type(e).__name__}: {e}"
                if time.monotonic() > deadline:
                    raise ControlPlaneError(
                        f"control plane at {self.server_url} not ready after {timeout:.0f}s "
                        f"(GET {check}: {last}); logs in {self.log_dir}"
                    )
                time.sleep(0.2)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """One HTTPS request as the admin (stdlib only; for readiness checks and tests)."""
        ctx = ssl.create_default_context(cafile=str(self.pki.path("ca.crt")))
        ctx.load_cert_chain(str(self.pki.path("admin.crt")), str(self.pki.path("admin.key")))
        conn = http.client.HTTPSConnection(
            self.server_host, self.secure_port, context=ctx, timeout=5
        )
        try:
            headers = {"Content-Type": "application/json"} if body else {}
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    # -- internals ------------------------------------------------------------------------------

    def _make_pki(self) -> None:
        self.pki.ensure_ca()
        sans = ["DNS:localhost", "DNS:kubernetes", "DNS:kubernetes.default",
                "DNS:kubernetes.default.svc", f"DNS:kubernetes.default.svc.{CLUSTER_DOMAIN}",
                "IP:127.0.0.1", f"IP:{SERVICE_IP}"]  # fmt: skip
        for host in [self.bind_address, self.server_host, self.advertise_address, *self.sans]:
            if host in ("0.0.0.0", "::"):
                continue
            entry = f"IP:{host}" if _is_ip(host) else f"DNS:{host}"
            if entry not in sans:
                sans.append(entry)
        self.pki.issue("apiserver", "/CN=kube-apiserver", server_sans=sans)
        self.pki.issue("admin", f"/O=system:masters/CN={ADMIN_USER}")
        self.pki.issue("controller-manager", "/CN=system:kube-controller-manager")
        ca = self.pki.path("ca.crt").read_bytes()
        write_private(
            self.kubeconfig,
            kubeconfig_text(
                self.server_url, ca, self.pki.path("admin.crt").read_bytes(),
                self.pki.path("admin.key").read_bytes(), ADMIN_USER,
            ).encode(),
            self.kubeconfig_mode,
        )  # fmt: skip
        # The controller-manager always talks to the API server over loopback.
        local = "127.0.0.1" if self.bind_address in ("0.0.0.0", "127.0.0.1") else self.bind_address
        write_private(
            self.data_dir / "controller-manager.kubeconfig",
            kubeconfig_text(
                f"https://{_url_host(local)}:{self.secure_port}", ca,
                self.pki.path("controller-manager.crt").read_bytes(),
                self.pki.path("controller-manager.key").read_bytes(),
                "system:kube-controller-manager",
            ).encode(),
        )  # fmt: skip

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        try:
            self.procs[name] = subprocess.Popen(
                [str(self.bin_dir / name), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
                preexec_fn=_die_with_parent if self.die_with_parent else None,
            )
        finally:
            log.close()

    def _start_etcd(self) -> None:
        client_port = self.etcd_client_port or free_port()
        peer_port = self.etcd_peer_port or free_port()
        extra = self.etcd_listen_address
        local = f"http://127.0.0.1:{client_port}"
        if extra in ("0.0.0.0", "::"):
            listen, advertise = [f"http://{_url_host(extra)}:{client_port}"], local
        elif extra and extra != "127.0.0.1":
            listen = [local, f"http://{_url_host(extra)}:{client_port}"]
            advertise = listen[-1]
        else:
            listen, advertise = [local], local
        peer = f"http://127.0.0.1:{peer_port}"
        self.etcd_url = local
        self._spawn(
            "etcd",
            [
                "--name=default",
                f"--data-dir={self.data_dir / 'etcd'}",
                f"--listen-client-urls={','.join(listen)}",
                f"--advertise-client-urls={advertise}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                "--initial-cluster-state=new",
                "--logger=zap",
                "--log-outputs=stderr",
                "--quota-backend-bytes=2147483648",
            ],
        )

    def _start_apiserver(self) -> None:
        p = self.pki.path
        issuer = f"https://kubernetes.default.svc.{CLUSTER_DOMAIN}"
        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers={self.etcd_url}",
                f"--bind-address={self.bind_address}",
                f"--secure-port={self.secure_port}",
                f"--advertise-address={self.advertise_address}",
                "--insecure-port=0",
                "--endpoint-reconciler-type=none",
                "--authorization-mode=Node,RBAC",
                "--anonymous-auth=false",
                "--allow-privileged=true",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--tls-cert-file={p('apiserver.crt')}",
                f"--tls-private-key-file={p('apiserver.key')}",
                f"--client-ca-file={p('ca.crt')}",
                f"--service-account-key-file={p('sa.pub')}",
                f"--service-account-signing-key-file={p('sa.key')}",
                f"--service-account-issuer={issuer}",
                f"--api-audiences={issuer}",
                f"--cert-dir={self.data_dir / 'apiserver-certs'}",
                "--profiling=false",
                "--v=1",
            ],
        )

    def _start_controller_manager(self) -> None:
        p = self.pki.path
        self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={self.data_dir / 'controller-manager.kubeconfig'}",
                "--port=0",
                "--secure-port=0",
                "--use-service-account-credentials=true",
                f"--root-ca-file={p('ca.crt')}",
                f"--service-account-private-key-file={p('sa.key')}",
                f"--cluster-signing-cert-file={p('ca.crt')}",
                f"--cluster-signing-key-file={p('ca.key')}",
                "--controllers=*,bootstrapsigner,tokencleaner",
                f"--leader-elect={'true' if self.leader_elect else 'false'}",
                "--profiling=false",
                "--v=1",
            ],
        )

    def _check_children(self) -> None:
        for name, proc in self.procs.items():
            code = proc.poll()
            if code is not None:
                tail = _tail(self.log_dir / f"{name}.log")
                raise ControlPlaneError(
                    f"{name} exited with {code} during start-up; last log lines:\n{tail}"
                )

    def _record_pids(self) -> None:
        pids = {name: proc.pid for name, proc in self.procs.items()}
        write_private(self.data_dir / PIDS_FILE, json.dumps(pids).encode())


def stop_recorded(data_dir: Path, timeout: float = 15.0) -> list[str]:
    """Stop a detached control plane from the pids it recorded in ``data_dir``."""
    pids_path = Path(data_dir) / PIDS_FILE
    try:
        pids: dict[str, int] = json.loads(pids_path.read_text())
    except FileNotFoundError:
        return []
    stopped = []
    for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
        pid = pids.get(name)
        if pid is None or not _pid_runs(pid, name):
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_runs(pid, name) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid_runs(pid, name):
            os.kill(pid, signal.SIGKILL)
        stopped.append(name)
    pids_path.unlink()
    return stopped


def _pid_runs(pid: int, name: str) -> bool:
    """Is ``pid`` alive and still the ``name`` binary (not a recycled pid)?"""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    zombie = stat.rsplit(")", 1)[-1].split()[0] == "Z"
    return not zombie and Path(exe).name == name


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m bootstrap.lab.controlplane",
        description="Run a lab Kubernetes control plane (etcd, kube-apiserver, "
        "kube-controller-manager).",
    )
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--bin-dir", type=Path, help="dir with etcd, kube-apiserver, ...")
    parser.add_argument("--bind-address", default="127.0.0.1")
    parser.add_argument("--server-host", help="host written into the kubeconfig")
    parser.add_argument("--secure-port", type=int, default=0, help="0 = a free port")
    parser.add_argument("--kubeconfig", type=Path, help="default: DATA_DIR/admin.kubeconfig")
    parser.add_argument("--foreground", action="store_true", help="run until SIGTERM/SIGINT")
    parser.add_argument("--stop", action="store_true", help="stop a detached control plane")
    args = parser.parse_args(argv)

    if args.stop:
        stopped = stop_recorded(args.data_dir)
        print("stopped: " + (", ".join(stopped) or "nothing was running"))
        return 0
    if args.bin_dir is None:
        parser.error("--bin-dir is required unless --stop")
    cp = ControlPlane(
        args.data_dir,
        args.bin_dir,
        bind_address=args.bind_address,
        server_host=args.server_host,
        secure_port=args.secure_port,
        kubeconfig_path=args.kubeconfig,
        die_with_parent=args.foreground,
    )
    stop = threading.Event()
    if args.foreground:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: stop.set())
    t0 = time.monotonic()
    try:
        kubeconfig = cp.start()
    except ControlPlaneError as e:
        print(f"controlplane: {e}", file=sys.stderr)
        return 1
    print(f"controlplane: ready at {cp.server_url} in {time.monotonic() - t0:.1f}s", flush=True)
    print(f"export KUBECONFIG={kubeconfig}", flush=True)
    if not args.foreground:
        print(f"# stop with: python3 -m bootstrap.lab.controlplane --data-dir {cp.data_dir} --stop")
        return 0
    while not stop.is_set():
        if any(p.poll() is not None for p in cp.procs.values()):
            dead = [n for n, p in cp.procs.items() if p.poll() is not None]
            print(f"controlplane: {', '.join(dead)} exited; stopping", file=sys.stderr)
            cp.stop()
            return 1
        stop.wait(1.0)
    cp.stop()
    print("controlplane: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
