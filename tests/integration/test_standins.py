"""The LAB SIMULATION controllers against a real Kubernetes 1.20 API server and real git repos.

Each controller stand-in is started the way the real one is: by applying its workload (the
kubelet shim "runs" the Pod and starts the stand-in). The real kube-controller-manager turns
the shim's Pod statuses into Deployment/StatefulSet status. Per controller: the happy path and
the failure path (wrong key order, missing Secret, bad path, broken kustomization).
"""

from __future__ import annotations

import base64
import functools
import http.server
import importlib.util
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from bootstrap import sealing
from bootstrap.adapters.kube import KubeClient, load_manifest
from bootstrap.lab.standins import StandinSet
from bootstrap.lab.standins.common import Loop, condition
from tests import shipped
from tests.integration.conftest_apiserver import ApiServer
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.apiserver, pytest.mark.timeout(180)]

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "config-repo"
_spec = importlib.util.spec_from_file_location("config_repo_build", FIXTURE / "build.py")
assert _spec and _spec.loader
config_repo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(config_repo)

INTERVAL = 0.25
APP = "argoproj.io/v1alpha1"
SS = "bitnami.com/v1alpha1"
GITREPO = "source.toolkit.fluxcd.io/v1"
KS = "kustomize.toolkit.fluxcd.io/v1"


def passes_after_now(loop: Loop, n: int = 2) -> Callable[[], bool]:
    """True once ``loop`` has finished ``n`` more passes: with n=2, at least one whole pass
    began after this call (what a test waits for before it asserts that nothing happened)."""
    start = loop.ticks
    return lambda: loop.ticks >= start + n


def workload(
    kind: str, name: str, ns: str, image: str, *, command: list[str] | None = None
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": name, "image": image}
    if command:
        container["command"] = command
    spec: dict[str, Any] = {
        "replicas": 1,
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}},
    }
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


@pytest.fixture(scope="module")
def crds(apiserver: ApiServer) -> KubeClient:
    """The CRDs the stand-ins serve, from the manifests drboot ships."""
    kube = apiserver.client
    kube.apply_manifest(
        shipped.crds(
            "sealedsecrets.bitnami.com",
            "applications.argoproj.io",
            "appprojects.argoproj.io",
            "gitrepositories.source.toolkit.fluxcd.io",
            "kustomizations.kustomize.toolkit.fluxcd.io",
        )
    )
    return kube


@pytest.fixture
def standins(
    apiserver: ApiServer, crds: KubeClient, namespace: str, tmp_path: Path
) -> Iterator[StandinSet]:
    sset = StandinSet(
        apiserver.kubeconfig,
        interval=INTERVAL,
        argocd_resync=2.0,
        kustomize_retry=1.0,
        namespaces=[namespace],
        state_dir=tmp_path / "state",
    )
    sset.start()
    yield sset
    sset.close()


@pytest.fixture(scope="module")
def escrow_key() -> tuple[rsa.RSAPrivateKey, bytes]:
    return sealing.generate_key(2048)


@pytest.fixture
def repo(
    tmp_path: Path, namespace: str, escrow_key: tuple[rsa.RSAPrivateKey, bytes]
) -> tuple[Path, str]:
    path = tmp_path / "config-repo"
    sha = config_repo.build_config_repo(path, namespace, escrow_key[0].public_key())
    return path, sha


@pytest.fixture
def repo_http_url(repo: tuple[Path, str]) -> Iterator[str]:
    """The repo over git's dumb HTTP protocol on loopback (Flux accepts only http/https/ssh)."""
    root = repo[0].parent
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{repo[0].name}/.git"
    server.shutdown()
    server.server_close()


def secret_value(kube: KubeClient, ns: str, name: str, key: str) -> str | None:
    s = kube.get("v1", "Secret", name, ns)
    if s is None or key not in (s.get("data") or {}):
        return None
    return base64.b64decode(s["data"][key]).decode()


# -- Sealed Secrets --------------------------------------------------------------------------


def sealed_from_repo(repo_path: Path) -> dict[str, Any]:
    return load_manifest(repo_path / "apps/sealed/db-creds-sealed.yaml")[0]


def test_sealed_secrets_keys_restored_before_start_unseal_everything(
    standins: StandinSet,
    crds: KubeClient,
    namespace: str,
    repo: tuple[Path, str],
    escrow_key: tuple[rsa.RSAPrivateKey, bytes],
) -> None:
    kube = crds
    key, cert = escrow_key
    kube.create(sealing.key_secret_manifest(key, cert, "sealed-secrets-keyrestored", namespace))
    sealed = sealed_from_repo(repo[0])
    kube.create(sealed)
    other = sealing.seal_secret(
        key.public_key(),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/basic-auth",
            "metadata": {"name": "other", "namespace": namespace, "labels": {"team": "lab"}},
            "stringData": {"username": "u", "password": "p"},
        },
    )
    kube.create(other)
    kube.create(
        workload(
            "Deployment",
            "sealed-secrets-controller",
            namespace,
            "docker.io/bitnami/sealed-secrets-controller:0.36.6",
        )
    )

    for name, k, v in (("db-creds", "password", "s3cr3t-lab-password"), ("other", "username", "u")):
        wait_until(lambda n=name, k=k: secret_value(kube, namespace, n, k), what=f"Secret {name}")
        assert secret_value(kube, namespace, name, k) == v
    s = kube.get("v1", "Secret", "other", namespace)
    assert s is not None
    assert s["type"] == "kubernetes.io/basic-auth" and s["metadata"]["labels"] == {"team": "lab"}
    owner = s["metadata"]["ownerReferences"][0]
    ss = kube.get(SS, "SealedSecret", "other", namespace)
    assert ss is not None
    assert (owner["kind"], owner["uid"], owner["controller"]) == (
        "SealedSecret",
        ss["metadata"]["uid"],
        True,
    )
    ss = wait_until(
        lambda: (lambda o: o if condition(o, "Synced") else None)(
            kube.get(SS, "SealedSecret", "db-creds", namespace)
        ),
        what="Synced condition",
    )
    synced = condition(ss, "Synced")
    assert synced is not None and synced["status"] == "True" and "message" not in synced
    assert ss["status"]["observedGeneration"] == ss["metadata"]["generation"]
    # the controller uses the restored key, generates none, and serves the restored cert
    keys = kube.list("v1", "Secret", namespace, label_selector=sealing.KEY_LABEL)
    assert [k["metadata"]["name"] for k in keys] == ["sealed-secrets-keyrestored"]
    ctl = standins.sealed_secrets
    assert ctl is not None and ctl.cert_pem() == cert
    # the controller's Deployment is Available through the real deployment controller
    dep = wait_until(
        lambda: (lambda d: d if (d.get("status") or {}).get("availableReplicas") == 1 else None)(
            kube.get("apps/v1", "Deployment", "sealed-secrets-controller", namespace)
        ),
        what="Available",
    )
    assert condition(dep, "Available")["status"] == "True"  # type: ignore[index]


def test_sealed_secrets_started_before_keys_generates_new_key_and_never_unseals(
    standins: StandinSet,
    crds: KubeClient,
    namespace: str,
    repo: tuple[Path, str],
    escrow_key: tuple[rsa.RSAPrivateKey, bytes],
) -> None:
    kube = crds
    kube.create(
        workload(
            "Deployment",
            "sealed-secrets-controller",
            namespace,
            "docker.io/bitnami/sealed-secrets-controller:0.36.6",
        )
    )
    generated = wait_until(
        lambda: kube.list("v1", "Secret", namespace, label_selector=f"{sealing.KEY_LABEL}=active"),
        timeout=60,
        what="a generated sealing key",
    )
    assert len(generated) == 1 and generated[0]["type"] == "kubernetes.io/tls"
    new_key = sealing.keys_from_secret(generated[0])
    assert new_key.private_key.key_size == 4096
    assert generated[0]["metadata"]["name"].startswith("sealed-secrets-key")
    # the escrowed key arrives too late: the running controller does not see it
    key, cert = escrow_key
    kube.create(sealing.key_secret_manifest(key, cert, "sealed-secrets-keyrestored", namespace))
    kube.create(sealed_from_repo(repo[0]))
    ss = wait_until(
        lambda: (lambda o: o if condition(o, "Synced") else None)(
            kube.get(SS, "SealedSecret", "db-creds", namespace)
        ),
        what="Synced condition",
    )
    synced = condition(ss, "Synced")
    assert synced is not None and synced["status"] == "False"
    assert synced["message"] == "no key could decrypt secret (password, username)"
    ctl = standins.sealed_secrets
    assert ctl is not None and ctl.cert_pem() == new_key.cert_pem
    # That condition came from an attempt made after the escrowed key existed (it was created
    # first): the running controller did not load it. Whole passes later, still nothing.
    wait_until(passes_after_now(ctl), what="two more passes of the sealed-secrets controller")
    assert kube.get("v1", "Secret", "db-creds", namespace) is None
    assert ctl.cert_pem() == new_key.cert_pem
    # the real runbook: restart the controller (delete its Pod); the new one loads both keys
    starts = standins.starts["sealed-secrets"]
    for pod in kube.list("v1", "Pod", namespace, label_selector="app=sealed-secrets-controller"):
        kube.delete("v1", "Pod", pod["metadata"]["name"], namespace)
    wait_until(lambda: standins.starts["sealed-secrets"] > starts, what="controller restart")
    wait_until(
        lambda: secret_value(kube, namespace, "db-creds", "password"), what="Secret after restart"
    )
    assert secret_value(kube, namespace, "db-creds", "password") == "s3cr3t-lab-password"


# -- Argo CD ---------------------------------------------------------------------------------


def application(
    name: str, ns: str, repo_path: Path, path: str, *, automated: bool = True
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "project": "default",
        "source": {"repoURL": repo_path.resolve().as_uri(), "targetRevision": "main", "path": path},
        "destination": {"server": "https://kubernetes.default.svc", "namespace": ns},
    }
    if automated:
        spec["syncPolicy"] = {"automated": {"prune": True, "selfHeal": True}}
    return {
        "apiVersion": APP,
        "kind": "Application",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def start_argocd(kube: KubeClient, ns: str) -> None:
    kube.create(
        workload(
            "StatefulSet",
            "argocd-application-controller",
            ns,
            "quay.io/argoproj/argocd:v3.5.1",
            command=["argocd-application-controller"],
        )
    )


def app_status(kube: KubeClient, ns: str, name: str) -> dict[str, Any]:
    app = kube.get(APP, "Application", name, ns)
    return (app or {}).get("status") or {}


def test_argocd_app_of_apps_synced_healthy_and_labelled(
    standins: StandinSet, crds: KubeClient, namespace: str, repo: tuple[Path, str]
) -> None:
    kube = crds
    path, sha = repo
    start_argocd(kube, namespace)
    kube.create(application("root", namespace, path, "apps/root"))

    def healthy(name: str) -> dict[str, Any] | None:
        st = app_status(kube, namespace, name)
        ok = (st.get("sync") or {}).get("status") == "Synced" and (st.get("health") or {}).get(
            "status"
        ) == "Healthy"
        return st if ok else None

    root = wait_until(lambda: healthy("root"), what="root Synced+Healthy")
    child = wait_until(lambda: healthy("child-plain"), what="child Synced+Healthy")
    for st in (root, child):
        assert st["sync"]["revision"] == sha
        assert st["operationState"]["phase"] == "Succeeded"
        assert st["operationState"]["syncResult"]["revision"] == sha
        assert st["reconciledAt"]
    assert child["sourceType"] == "Kustomize"
    kinds = {r["kind"]: r for r in child["resources"]}
    assert kinds["Deployment"]["health"]["status"] == "Healthy"
    assert kinds["ConfigMap"]["status"] == "Synced" and "health" not in kinds["ConfigMap"]
    dep = kube.get("apps/v1", "Deployment", "web", namespace)
    cm = kube.get("v1", "ConfigMap", "web-config", namespace)
    assert dep and cm
    assert dep["metadata"]["labels"]["app.kubernetes.io/instance"] == "child-plain"
    assert cm["metadata"]["labels"]["app.kubernetes.io/instance"] == "child-plain"
    assert dep["status"]["availableReplicas"] == 1
    child_app = kube.get(APP, "Application", "child-plain", namespace)
    assert child_app and child_app["metadata"]["labels"]["app.kubernetes.io/instance"] == "root"

    # a new commit is picked up and synced automatically
    new_sha = config_repo.commit_change(
        path,
        "apps/plain/configmap.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-config\ndata:\n  greeting: v2\n",
        "v2",
    )
    wait_until(
        lambda: (
            lambda st: (
                (st.get("sync") or {}).get("revision") == new_sha
                and st["sync"]["status"] == "Synced"
            )
        )(app_status(kube, namespace, "child-plain")),
        what="sync to the new commit",
    )
    cm = kube.get("v1", "ConfigMap", "web-config", namespace)
    assert cm and cm["data"]["greeting"] == "v2"


def test_argocd_app_needing_missing_secret_stays_progressing(
    standins: StandinSet, crds: KubeClient, namespace: str, repo: tuple[Path, str]
) -> None:
    kube = crds
    start_argocd(kube, namespace)
    kube.create(application("api", namespace, repo[0], "apps/needs-secret"))
    st = wait_until(
        lambda: (lambda s: s if (s.get("sync") or {}).get("status") == "Synced" else None)(
            app_status(kube, namespace, "api")
        ),
        what="api Synced",
    )

    def stuck_pod() -> dict[str, Any] | None:
        pods = kube.list("v1", "Pod", namespace, label_selector="app=api")
        statuses = (pods[0].get("status") or {}).get("containerStatuses") if pods else None
        return statuses[0]["state"].get("waiting") if statuses else None

    # the real ReplicaSet controller creates the Pod; the kubelet shim cannot start it
    waiting = wait_until(stuck_pod, what="the api Pod waiting on its Secret")
    assert waiting == {
        "reason": "CreateContainerConfigError",
        "message": 'secret "db-creds" not found',
    }
    # Argo CD looks again with the Pod stuck, and the app stays Synced but Progressing
    wait_until(passes_after_now(standins.controllers["argocd"]), what="two more Argo CD passes")
    st = app_status(kube, namespace, "api")
    assert st["sync"]["status"] == "Synced"
    assert st["health"]["status"] == "Progressing"
    # the Secret appears (as if unsealed): the kubelet retries, the app turns Healthy
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db-creds", "namespace": namespace},
            "stringData": {"password": "x"},
        }
    )
    wait_until(
        lambda: (app_status(kube, namespace, "api").get("health") or {}).get("status") == "Healthy",
        what="api Healthy once the Secret exists",
    )


def test_argocd_bad_path_is_a_comparison_error(
    standins: StandinSet, crds: KubeClient, namespace: str, repo: tuple[Path, str]
) -> None:
    kube = crds
    start_argocd(kube, namespace)
    kube.create(application("lost", namespace, repo[0], "apps/does-not-exist"))
    st = wait_until(
        lambda: (lambda s: s if s.get("conditions") else None)(app_status(kube, namespace, "lost")),
        what="a condition",
    )
    assert st["sync"]["status"] == "Unknown"
    cond = st["conditions"][0]
    assert cond["type"] == "ComparisonError"
    assert cond["message"].startswith("Failed to load target state: ")
    assert "apps/does-not-exist: app path does not exist" in cond["message"]
    assert "operationState" not in st


# -- Flux ------------------------------------------------------------------------------------


def start_flux(kube: KubeClient, ns: str) -> None:
    kube.create(
        workload("Deployment", "source-controller", ns, "ghcr.io/fluxcd/source-controller:v1.9.1")
    )
    kube.create(
        workload(
            "Deployment", "kustomize-controller", ns, "ghcr.io/fluxcd/kustomize-controller:v1.9.4"
        )
    )


def gitrepository(ns: str, url: str, branch: str = "main") -> dict[str, Any]:
    return {
        "apiVersion": GITREPO,
        "kind": "GitRepository",
        "metadata": {"name": "config", "namespace": ns},
        "spec": {"url": url, "interval": "1m", "ref": {"branch": branch}},
    }


def kustomization(ns: str, name: str, path: str, **extra: Any) -> dict[str, Any]:
    spec = {
        "interval": "1m",
        "path": path,
        "prune": True,
        "targetNamespace": ns,
        "sourceRef": {"kind": "GitRepository", "name": "config"},
        **extra,
    }
    return {
        "apiVersion": KS,
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def ready(
    kube: KubeClient, api: str, kind: str, name: str, ns: str, reason: str
) -> dict[str, Any] | None:
    """The object once its Ready condition has ``reason`` (transient ones, such as
    ArtifactFailed before the source is fetched, are passed over as Flux users see them)."""
    obj = kube.get(api, kind, name, ns)
    cond = condition(obj, "Ready")
    return obj if cond and cond.get("reason") == reason else None


def test_flux_gitrepository_and_kustomization_ready(
    standins: StandinSet,
    crds: KubeClient,
    namespace: str,
    repo: tuple[Path, str],
    repo_http_url: str,
) -> None:
    kube = crds
    sha = repo[1]
    start_flux(kube, namespace)
    kube.create(gitrepository(namespace, repo_http_url))
    kube.create(kustomization(namespace, "plain", "./apps/plain", wait=True, timeout="30s"))
    gr = wait_until(
        lambda: ready(kube, GITREPO, "GitRepository", "config", namespace, "Succeeded"),
        what="GitRepository Ready",
    )
    assert gr["status"]["artifact"]["revision"] == f"main@sha1:{sha}"
    assert gr["status"]["artifact"]["digest"].startswith("sha256:")
    assert condition(gr, "Ready") | {} and condition(gr, "Ready")["reason"] == "Succeeded"  # type: ignore[index]
    assert gr["status"]["observedGeneration"] == gr["metadata"]["generation"]
    ks = wait_until(
        lambda: ready(kube, KS, "Kustomization", "plain", namespace, "ReconciliationSucceeded"),
        what="Kustomization Ready",
    )
    cond = condition(ks, "Ready")
    assert cond is not None and (cond["status"], cond["reason"]) == (
        "True",
        "ReconciliationSucceeded",
    )
    assert cond["message"] == f"Applied revision: main@sha1:{sha}"
    assert (
        ks["status"]["lastAppliedRevision"]
        == ks["status"]["lastAttemptedRevision"]
        == f"main@sha1:{sha}"
    )
    assert condition(ks, "Healthy")["status"] == "True"  # type: ignore[index]
    dep = kube.get("apps/v1", "Deployment", "web", namespace)
    assert dep and dep["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] == "plain"
    assert dep["status"]["availableReplicas"] == 1


def test_flux_failures_build_failed_health_failed_and_bad_branch(
    standins: StandinSet, crds: KubeClient, namespace: str, repo_http_url: str
) -> None:
    kube = crds
    start_flux(kube, namespace)
    kube.create(gitrepository(namespace, repo_http_url))
    kube.create(kustomization(namespace, "broken", "./apps/broken"))
    kube.create(kustomization(namespace, "api", "./apps/needs-secret", wait=True, timeout="2s"))
    ks = wait_until(
        lambda: ready(kube, KS, "Kustomization", "broken", namespace, "BuildFailed"),
        what="broken Ready=False",
    )
    cond = condition(ks, "Ready")
    assert cond is not None and (cond["status"], cond["reason"]) == ("False", "BuildFailed")
    assert cond["message"].startswith("kustomize build failed: ")
    assert "lastAppliedRevision" not in ks["status"]
    api = wait_until(
        lambda: ready(kube, KS, "Kustomization", "api", namespace, "HealthCheckFailed"),
        what="api Ready=False",
    )
    cond = condition(api, "Ready")
    assert cond is not None and (cond["status"], cond["reason"]) == ("False", "HealthCheckFailed")
    assert "Deployment/" in cond["message"] and "/api status: 'InProgress'" in cond["message"]
    # a branch that does not exist
    bad = gitrepository(namespace, repo_http_url, branch="no-such-branch")
    bad["metadata"]["name"] = "bad"
    kube.create(bad)
    gr = wait_until(
        lambda: ready(kube, GITREPO, "GitRepository", "bad", namespace, "GitOperationFailed"),
        what="bad Ready=False",
    )
    cond = condition(gr, "Ready")
    assert cond is not None and (cond["status"], cond["reason"]) == ("False", "GitOperationFailed")
    assert "artifact" not in gr["status"]
