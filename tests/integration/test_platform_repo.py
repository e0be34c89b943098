"""The demo's platform repo (``bootstrap.lab.platform_repo``) under the LAB SIMULATION
controllers, against a real Kubernetes 1.20 API server and a real git repo.

What the demo promises, shown at the controller level: the root app-of-apps brings six apps,
each SealedSecret (strict, namespace-wide, cluster-wide) opens with the escrowed key, and the
apps arrive in order: payment-gateway is Progressing until ledger publishes its endpoint,
checkout until payment-gateway does. Argo CD: apps synced before cluster-config made their
namespace retry (``syncPolicy.retry``). Flux: Kustomizations wait for their ``dependsOn``.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import subprocess
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from bootstrap import sealing
from bootstrap.adapters.kube import KubeClient
from bootstrap.lab import platform_repo
from bootstrap.lab.seed import write_platform_repo
from bootstrap.lab.standins import StandinSet
from bootstrap.lab.standins.common import condition
from bootstrap.reconcilers import argocd as argo
from tests import shipped
from tests.integration.conftest_apiserver import ApiServer
from tests.integration.test_standins import start_argocd, start_flux
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.apiserver, pytest.mark.timeout(300)]

APP = "argoproj.io/v1alpha1"
KS = "kustomize.toolkit.fluxcd.io/v1"
NAMESPACES = ("argocd", "flux-system", "payments", "ledger", "observability")
NAMES = [a.name for a in platform_repo.APPS]


@pytest.fixture
def escrow_key() -> tuple[rsa.RSAPrivateKey, bytes]:
    return sealing.generate_key(2048)


@pytest.fixture
def cluster(
    apiserver: ApiServer, tmp_path: Path, escrow_key: tuple[rsa.RSAPrivateKey, bytes]
) -> Iterator[tuple[KubeClient, StandinSet]]:
    """CRDs, the controllers' namespaces, the escrowed key restored (as drboot's restore-escrow
    does, before the Sealed Secrets controller starts) and the stand-ins; the platform's
    namespaces and cluster objects are deleted afterwards (the session shares the server)."""
    from bootstrap.escrow.kit import SealingKey

    kube = apiserver.client
    kube.apply_manifest(shipped.crds(
        "sealedsecrets.bitnami.com", "applications.argoproj.io", "appprojects.argoproj.io",
        "gitrepositories.source.toolkit.fluxcd.io", "kustomizations.kustomize.toolkit.fluxcd.io",
    ))  # fmt: skip
    for ns in ("argocd", "flux-system"):
        if kube.get("v1", "Namespace", ns) is None:
            kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    key, cert = escrow_key
    skey = SealingKey.from_pem("sealed-secrets-key-lab", sealing.private_key_pem(key), cert)
    kube.apply_manifest([skey.to_secret("kube-system")])
    sset = StandinSet(apiserver.kubeconfig, interval=0.25, argocd_resync=2.0,
                      kustomize_retry=1.0, namespaces=NAMESPACES, state_dir=tmp_path / "state",
                      autostart=["sealed-secrets"], sealing_key_bits=2048)  # fmt: skip
    sset.start()
    try:
        yield kube, sset
    finally:
        sset.close()
        for ns in NAMESPACES:
            if kube.get("v1", "Namespace", ns) is not None:
                kube.delete("v1", "Namespace", ns)
        for kind in ("ClusterRole",):
            if kube.get("rbac.authorization.k8s.io/v1", kind, "platform-read-only"):
                kube.delete("rbac.authorization.k8s.io/v1", kind, "platform-read-only")
        wait_until(lambda: all(kube.get("v1", "Namespace", ns) is None for ns in NAMESPACES),
                   timeout=120, what="the platform's namespaces deleted")  # fmt: skip


@contextlib.contextmanager
def served(repo: Path) -> Iterator[str]:
    """The repo over git's dumb HTTP protocol on loopback (Flux takes no file:// URL)."""
    subprocess.run(["git", "update-server-info"], cwd=repo, check=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(repo.parent))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{repo.name}/.git"
    finally:
        server.shutdown()
        server.server_close()


def ready_apps(kube: KubeClient) -> list[str]:
    """The Argo CD apps that are Synced+Healthy, as drboot judges them."""
    out = []
    for app in kube.list(APP, "Application", "argocd"):
        if argo.app_state(app).ready:
            out.append(app["metadata"]["name"])
    return out


def became_ready(watch: list[list[str]], name: str) -> int:
    """The index of the first look at which ``name`` was ready."""
    return next(i for i, names in enumerate(watch) if name in names)


def secret_names(kube: KubeClient) -> dict[str, set[str]]:
    return {ns: {s["metadata"]["name"] for s in kube.list("v1", "Secret", ns)}
            for ns in ("payments", "ledger")}  # fmt: skip


def test_argocd_app_of_apps_six_apps_in_order(
    cluster: tuple[KubeClient, StandinSet], tmp_path: Path,
    escrow_key: tuple[rsa.RSAPrivateKey, bytes],
) -> None:  # fmt: skip
    kube, _ = cluster
    repo = tmp_path / "platform-config"
    url = repo.resolve().as_uri()
    write_platform_repo(repo, escrow_key[0], url)
    start_argocd(kube, "argocd")
    root = argo.root_application(
        "argocd", url=url, revision="main", path=platform_repo.ROOT_ARGOCD, project="default"
    )
    kube.create(root)
    looks: list[list[str]] = []
    messages: set[str] = set()

    def all_ready() -> bool:
        looks.append(ready_apps(kube))
        for app in kube.list(APP, "Application", "argocd"):
            messages.add(argo.app_state(app).reason)
        return set(NAMES) <= set(looks[-1])

    wait_until(all_ready, timeout=240, interval=0.2, what="all six apps Synced+Healthy")
    # ledger before payment-gateway before checkout: each waited for the other's ConfigMap
    assert became_ready(looks, "ledger") < became_ready(looks, "payment-gateway")
    assert became_ready(looks, "payment-gateway") < became_ready(looks, "checkout")
    assert any(m.startswith("Deployment payment-gateway: Waiting for rollout") for m in messages)
    print(sorted(messages))
    # every sealed secret opened, whatever its scope
    names = secret_names(kube)
    assert {"payment-gateway-db", "registry-credentials"} <= names["payments"]
    assert "ledger-db" in names["ledger"]
    pg = kube.get(APP, "Application", "payment-gateway", "argocd")
    assert pg and pg["spec"]["syncPolicy"]["automated"] == {"prune": False, "selfHeal": True}
    # the default-deny policies and the namespaces came from cluster-config
    assert kube.get("networking.k8s.io/v1", "NetworkPolicy", "default-deny", "payments")
    dep = kube.get("apps/v1", "Deployment", "payment-gateway", "payments")
    assert dep and dep["status"]["availableReplicas"] == 1


def test_flux_kustomizations_depends_on_six_ready(
    cluster: tuple[KubeClient, StandinSet], tmp_path: Path,
    escrow_key: tuple[rsa.RSAPrivateKey, bytes],
) -> None:  # fmt: skip
    from bootstrap.reconcilers import flux

    kube, _ = cluster
    repo = tmp_path / "platform-config"
    write_platform_repo(repo, escrow_key[0], "unused-by-flux")
    start_flux(kube, "flux-system")
    with served(repo) as url:
        kube.create(
            flux.git_repository(
                "flux-system", url=url, revision="main", interval=timedelta(minutes=1), secret=None
            )
        )
        kube.create(flux.kustomization("flux-system", path=platform_repo.ROOT_FLUX,
                                       interval=timedelta(minutes=1)))  # fmt: skip
        order: list[str] = []
        seen_dep_wait: set[str] = set()

        def all_ready() -> bool:
            for ks in kube.list(KS, "Kustomization", "flux-system"):
                name = ks["metadata"]["name"]
                ready = condition(ks, "Ready") or {}
                if ready.get("reason") == "DependencyNotReady":
                    seen_dep_wait.add(name)
                if ready.get("status") == "True" and name not in order:
                    order.append(name)
            return set(NAMES) <= set(order)

        try:
            wait_until(all_ready, timeout=120, interval=0.2, what="all six Kustomizations Ready")
        except AssertionError:
            states = {k["metadata"]["name"]: condition(k, "Ready")
                      for k in kube.list(KS, "Kustomization", "flux-system")}  # fmt: skip
            raise AssertionError(f"not Ready: {states}") from None
    for app in platform_repo.APPS:
        for dep in app.depends_on:
            assert order.index(dep) < order.index(app.name), (app.name, order)
    assert "checkout" in seen_dep_wait
    names = secret_names(kube)
    assert {"payment-gateway-db", "registry-credentials"} <= names["payments"]
    assert "ledger-db" in names["ledger"]
