"""The lab's cluster plug-in: what the lab supplies and does differently from production.

Why it exists: a lab cluster is the real API server under a k3s STAND-IN, with no kubelet
and no pod network. So the lab supplies the stand-in's air-gap bundle, starts the controller
stand-ins once the API answers, reads the Sealed Secrets certificate from the stand-in on
loopback (the service proxy a real cluster uses cannot reach a pod without an IP), and does
not wait for nodes (no kubelet registers any). Registered by ``bootstrap.providers.lab``.
"""

from __future__ import annotations

import time
from pathlib import Path

from bootstrap.errors import TransientError
from bootstrap.kubeapi import KubeAPI
from bootstrap.lab.standins.process import StandinProcess
from bootstrap.providers.base import HostInfo, Progress
from bootstrap.providers.plugin import K3sBundle
from bootstrap.settings import Site

# What runs for real and what is simulated in the lab (the run report lists them).
LAB_STANDINS = {
    "k3s": "LAB STAND-IN: the real kube-apiserver and kube-controller-manager v1.20 run under "
    "a k3s stand-in (no kubelet, no container runtime)",
    "pods": "LAB STAND-IN: a kubelet shim writes Pod status after checking referenced "
    "Secrets/ConfigMaps; no container runs",
    "sealed-secrets": "LAB STAND-IN of the Sealed Secrets controller (real key handling and "
    "decryption, no container)",
    "argocd": "LAB STAND-IN of the Argo CD application controller (same objects and status "
    "fields, no container)",
    "flux": "LAB STAND-IN of Flux's source- and kustomize-controller (same objects and status "
    "fields, no container)",
}
LAB_REAL = "real: the hosts (systemd-nspawn), systemd, sshd, apt, Ansible, fio, the API server"


CERT_WAIT = 30.0  # seconds the stand-in may take to serve its certificate


def lab_state_dir(site: Site) -> Path:
    """Where a lab site's hosts, stand-ins and seeded material live."""
    from bootstrap.settings import LabProvider

    cfg = site.provider
    assert isinstance(cfg, LabProvider)
    return Path(cfg.state_dir) if cfg.state_dir else Path("/var/lib/drboot-lab") / site.name


class LabCluster:
    name = "lab"

    def __init__(self, site: Site, state_root: Path) -> None:
        self.state_dir = lab_state_dir(site)
        self.process = StandinProcess(self.state_dir)
        self.reconciler = str(site.reconciler.type)

    def k3s_bundle(self) -> K3sBundle | None:
        from bootstrap.lab.binaries import kube_bin_dir
        from bootstrap.lab.k3s_standin import build_bundle

        path = build_bundle(self.state_dir / "k3s-airgap-standin", kube_bin_dir())
        return K3sBundle(
            path, reports_version=False, note="using the LAB STAND-IN for the k3s binary"
        )

    def on_api_ready(self, kubeconfig: Path, progress: Progress) -> None:
        if self.process.pid() is None:
            progress("starting the lab controller stand-ins (Sealed Secrets, Argo CD, Flux)")
            self.process.start(kubeconfig)

    def sealing_cert(
        self, kube: KubeAPI, namespace: str, service: str, port: int, progress: Progress
    ) -> bytes:
        # The stand-in serves its certificate once it has loaded the keys (a second or two
        # after its Deployment appears), as the real controller does once it is up.
        deadline = time.monotonic() + CERT_WAIT
        pem = self.process.cert()
        while pem is None and time.monotonic() < deadline and self.process.pid() is not None:
            time.sleep(0.2)
            pem = self.process.cert()
        if pem is None:
            raise TransientError(
                "the LAB STAND-IN Sealed Secrets controller does not answer on loopback",
                target=f"{namespace}/{service}",
                hint=f"read {self.process.log}; `drboot lab status SITE`",
            )
        progress("certificate read from the LAB STAND-IN controller (lab pods have no IPs)")
        return pem

    def nodes_to_wait_for(self, hosts: list[HostInfo]) -> int:
        return 0  # the k3s stand-in runs no kubelet: no node ever registers

    def standins(self) -> list[str]:
        parts = ["k3s", "pods", "sealed-secrets", self.reconciler]
        return [f"{p}: {LAB_STANDINS[p]}" for p in parts if p in LAB_STANDINS] + [LAB_REAL]

    def close(self) -> None:
        return None
