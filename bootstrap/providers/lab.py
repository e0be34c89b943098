"""The lab provider: throw-away Debian hosts under systemd-nspawn on this machine (root).

Hosts live in a lab named after the site, in ``provider.state_dir`` (default
``/var/lib/drboot-lab/<site>``). The provider also supplies what a lab cannot
download: the k3s stand-in air-gap bundle, and, once the API answers, the
controller stand-ins (Sealed Secrets, Argo CD, Flux) as one background process
that talks to the lab cluster. All of it is a LAB SIMULATION except the hosts,
their systemd/sshd/apt, and the Kubernetes API server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bootstrap.errors import PermanentError
from bootstrap.lab.hosts import Lab, LabHost
from bootstrap.providers.base import HostInfo, Progress

DEFAULT_ROOT = Path("/var/lib/drboot-lab")
STANDINS_PID = "standins.pid"
STANDINS_CERT_PORT = "standins.cert-port"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LabHosts:
    kind = "lab"

    def __init__(self, site: Any, state_root: Path) -> None:
        self.site = site
        cfg = site.provider
        self.cfg = cfg
        self.state_dir = Path(cfg.state_dir) if cfg.state_dir else DEFAULT_ROOT / site.name
        self.lab_dir = self.state_dir / "lab"

    # ------------------------------------------------------------------ hosts
    def _roles(self) -> dict[str, str]:
        roles = {f"server-{i + 1}": "server" for i in range(self.cfg.servers)}
        roles.update({f"agent-{i + 1}": "agent" for i in range(self.cfg.agents)})
        return roles

    def wanted(self) -> list[str]:
        return list(self._roles())

    def _lab(self, create: bool = False) -> Lab | None:
        if (self.lab_dir / "lab.json").exists():
            return Lab.attach(self.lab_dir)
        if not create:
            return None
        return Lab.create(self.site.name, self.lab_dir)

    def _info(self, host: LabHost) -> HostInfo:
        return HostInfo(
            name=host.name,
            address=host.address,
            role="server" if self._roles().get(host.name) == "server" else "agent",
            ssh_port=22,
            ssh_user="root",
            host_public_key=host.host_public_key,
            provider_id=f"lab:{self.site.name}/{host.name}",
        )

    def observe(self) -> list[HostInfo]:
        lab = self._lab()
        if lab is None:
            return []
        wanted = self._roles()
        return [self._info(h) for h in lab.hosts() if h.name in wanted and h.is_running()]

    def create(self, names: list[str], progress: Progress) -> list[HostInfo]:
        lab = self._lab(create=True)
        assert lab is not None
        out = []
        etcd_dir = str(self.site.disk_gate.directory)
        for name in names:
            progress(f"booting lab host {name}")
            host = lab.create_host(name)
            if self._roles()[name] == "server" and not host.disks:
                if self.cfg.disk == "slow":
                    progress(f"throttling {etcd_dir} on {name} to {self.cfg.slow_disk_iops} IOPS")
                    host.slow_disk(etcd_dir, self.cfg.slow_disk_iops)
                else:
                    host.fast_disk(etcd_dir, size_mib=512)
            out.append(self._info(host))
        return out

    def destroy(self, progress: Progress) -> list[str]:
        self.stop_standins(progress)
        # The stand-ins' copy of the cluster credentials goes with the cluster.
        (self.state_dir / "standins.kubeconfig").unlink(missing_ok=True)
        lab = self._lab()
        if lab is None:
            return []
        names = [h.name for h in lab.hosts()]
        progress(f"destroying lab {lab.name} ({len(names)} hosts)")
        lab.down()
        return names

    def ssh_key_file(self) -> Path | None:
        lab = self._lab()
        return lab.ssh_key_path if lab else None

    # ------------------------------------------------------------- stand-ins
    def airgap_dir(self) -> Path | None:
        from bootstrap.lab.binaries import kube_bin_dir
        from bootstrap.lab.k3s_standin import build_bundle

        return build_bundle(self.state_dir / "k3s-airgap-standin", kube_bin_dir())

    def _pidfile(self) -> Path:
        return self.state_dir / STANDINS_PID

    def standins_pid(self) -> int | None:
        try:
            pid = int(self._pidfile().read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def on_cluster_ready(self, kubeconfig: Path, progress: Progress) -> None:
        """Start the controller stand-ins against the lab cluster (once; idempotent)."""
        if self.standins_pid() is not None:
            return
        log = self.state_dir / "standins.log"
        kc = self.state_dir / "standins.kubeconfig"
        kc.write_bytes(kubeconfig.read_bytes())
        kc.chmod(0o600)
        repo_root = self.state_dir
        port = _free_port()
        (self.state_dir / STANDINS_CERT_PORT).write_text(str(port))
        progress("starting the lab controller stand-ins (Sealed Secrets, Argo CD, Flux)")
        with log.open("ab") as fh:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bootstrap.lab.standins",
                    "--kubeconfig",
                    str(kc),
                    "--repo-root",
                    str(repo_root),
                    "--cert-port",
                    str(port),
                ],
                stdout=fh,
                stderr=fh,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=str(Path(__file__).resolve().parents[2]),
            )
        self._pidfile().write_text(str(proc.pid))
        time.sleep(0.5)
        if proc.poll() is not None:
            raise PermanentError(f"lab stand-ins exited at once; see {log}", hint=f"read {log}")

    def sealing_cert(self, namespace: str) -> bytes | None:
        """The Sealed Secrets stand-in's certificate. Lab pods have no IPs, so the service
        proxy a real cluster uses cannot reach it; the stand-in serves it on loopback."""
        try:
            port = int((self.state_dir / STANDINS_CERT_PORT).read_text())
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/cert.pem", timeout=5) as r:
                body: bytes = r.read()
                return body
        except (OSError, ValueError, urllib.error.URLError):
            return None

    def stop_standins(self, progress: Progress) -> None:
        pid = self.standins_pid()
        if pid is None:
            return
        progress("stopping the lab controller stand-ins")
        os.killpg(pid, signal.SIGTERM)
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.1)
        self._pidfile().unlink(missing_ok=True)
