"""The demo's config repo: a small payment platform in the layout platform teams use.

Why it exists: `drboot demo` must show what drboot is for, waiting for *every* app of an
app-of-apps to be Synced+Healthy, in order, with secrets that only open with the escrowed
key. The repo is what a platform team keeps for GitOps with Kustomize:

    apps/base/<app>/                   one base per app (Deployment, Service, SealedSecret, ...)
    apps/overlays/{dev,prod,lab}/<app> one overlay per environment (replicas, labels)
    cluster-config/                    namespaces, a default-deny NetworkPolicy each, RBAC
    clusters/lab/argocd/               the root app-of-apps: one Argo CD Application per app
    clusters/lab/flux/                 the same for Flux: Kustomizations with dependsOn

The apps (children of the root, in the order they become ready):

* ``cluster-config``: the namespaces, default-deny NetworkPolicies, a read-only ClusterRole;
* ``registry-credentials``: the image-pull Secret, a *cluster-wide* SealedSecret;
* ``ledger``: Deployment + Service, its database password a *namespace-wide* SealedSecret;
  it publishes its endpoint as the ConfigMap ``ledger-endpoint`` in ``payments``;
* ``payment-gateway``: Deployment + Service + a *strict* SealedSecret (database password);
  its Pods need ``ledger-endpoint`` (created by ``ledger``), so it becomes healthy only after
  ledger; its Argo CD Application has ``prune: false`` and ``selfHeal: true``;
* ``checkout``: the shop front, needing ``payment-gateway-endpoint`` (created by
  ``payment-gateway``);
* ``observability``: an OpenTelemetry collector with its ConfigMap.

Every SealedSecret is sealed with the lab's escrowed key (``key``), like kubeseal with the
controller's certificate; every value is random. The child Applications follow the same repo
URL drboot is given (``repo_url``), as a real app-of-apps does.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from bootstrap import sealing

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

Obj = dict[str, object]

ROOT_ARGOCD = "clusters/lab/argocd"
ROOT_FLUX = "clusters/lab/flux"
ENVIRONMENTS = ("dev", "prod", "lab")
PAYMENTS, LEDGER, OBSERVABILITY = "payments", "ledger", "observability"
KUSTOMIZE_API = "kustomize.config.k8s.io/v1beta1"
FLUX_NAMESPACE = "flux-system"
ARGOCD_NAMESPACE = "argocd"
ROOT_SOURCE = "flux-system"  # the GitRepository drboot creates for Flux


@dataclass(frozen=True)
class App:
    """One child of the root: where it lives, where its overlay is, what it waits for."""

    name: str
    namespace: str
    depends_on: tuple[str, ...] = ()
    prune: bool = True
    self_heal: bool = True

    @property
    def base(self) -> str:
        return "cluster-config" if self.name == "cluster-config" else f"apps/base/{self.name}"

    def overlay(self, env: str) -> str:
        return (
            "cluster-config"
            if self.name == "cluster-config"
            else (f"apps/overlays/{env}/{self.name}")
        )


APPS = (
    App("cluster-config", "default"),
    App("registry-credentials", PAYMENTS, ("cluster-config",)),
    App("ledger", LEDGER, ("cluster-config",)),
    App("payment-gateway", PAYMENTS, ("ledger", "registry-credentials"), prune=False),
    App("checkout", PAYMENTS, ("payment-gateway",)),
    App("observability", OBSERVABILITY, ("cluster-config",)),
)


def root_path(reconciler: str) -> str:
    """The path drboot's root object follows for ``reconciler`` (argocd or flux)."""
    return ROOT_FLUX if reconciler == "flux" else ROOT_ARGOCD


def _dump(path: Path, docs: list[Obj]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def _kustomization(resources: list[str], **extra: object) -> Obj:
    return {"apiVersion": KUSTOMIZE_API, "kind": "Kustomization", "resources": resources, **extra}


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def _sealed(
    key: RSAPrivateKey,
    name: str,
    namespace: str,
    data: dict[str, str],
    scope: sealing.Scope,
    type_: str = "Opaque",
) -> Obj:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": type_,
        "data": {k: _b64(v) for k, v in data.items()},
    }
    return dict(sealing.seal_secret(key.public_key(), secret, scope))


def _deployment(
    name: str,
    namespace: str,
    image: str,
    *,
    env: list[Obj] | None = None,
    env_from: list[Obj] | None = None,
    pull_secret: bool = False,
) -> Obj:
    container: Obj = {"name": name, "image": image, "ports": [{"containerPort": 8080}]}
    if env:
        container["env"] = env
    if env_from:
        container["envFrom"] = env_from
    pod: Obj = {"containers": [container]}
    if pull_secret:
        pod["imagePullSecrets"] = [{"name": "registry-credentials"}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod},
        },
    }


def _service(name: str, namespace: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


def _configmap(name: str, namespace: str, data: dict[str, str]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


def _secret_env(var: str, secret: str, key: str) -> Obj:
    return {"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _cluster_config() -> list[Obj]:
    docs: list[Obj] = []
    for ns in (PAYMENTS, LEDGER, OBSERVABILITY):
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns, "labels": {"platform.example/tier": ns}},
            }
        )
    for ns in (PAYMENTS, LEDGER, OBSERVABILITY):
        docs.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "default-deny", "namespace": ns},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
            }
        )
    docs.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "platform-read-only"},
            "rules": [
                {
                    "apiGroups": ["", "apps"],
                    "resources": ["pods", "deployments", "services"],
                    "verbs": ["get", "list", "watch"],
                }
            ],
        }
    )
    for ns in (PAYMENTS, LEDGER):
        docs.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "on-call-read-only", "namespace": ns},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "platform-read-only",
                },
                "subjects": [
                    {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "Group",
                        "name": "payments-on-call",
                    }
                ],
            }
        )
    return docs


def _bases(key: RSAPrivateKey) -> dict[str, dict[str, list[Obj]]]:
    """base directory -> file name -> documents."""
    registry = json.dumps(
        {
            "auths": {
                "registry.payments.example": {"auth": _b64("deploy:" + secrets.token_urlsafe(18))}
            }
        }
    )
    return {
        "cluster-config": {"cluster.yaml": _cluster_config()},
        "apps/base/registry-credentials": {
            "sealedsecret.yaml": [
                _sealed(
                    key,
                    "registry-credentials",
                    PAYMENTS,
                    {".dockerconfigjson": registry},
                    sealing.Scope.CLUSTER_WIDE,
                    "kubernetes.io/dockerconfigjson",
                )
            ],
        },
        "apps/base/ledger": {
            "deployment.yaml": [
                _deployment(
                    "ledger",
                    LEDGER,
                    "registry.payments.example/ledger:4.2",
                    env=[_secret_env("DB_PASSWORD", "ledger-db", "password")],
                )
            ],
            "service.yaml": [_service("ledger", LEDGER)],
            "sealedsecret.yaml": [
                _sealed(
                    key,
                    "ledger-db",
                    LEDGER,
                    {"password": secrets.token_urlsafe(18)},
                    sealing.Scope.NAMESPACE_WIDE,
                )
            ],
            "endpoint.yaml": [
                _configmap(
                    "ledger-endpoint", PAYMENTS, {"LEDGER_URL": "http://ledger.ledger.svc:80"}
                )
            ],
        },
        "apps/base/payment-gateway": {
            "deployment.yaml": [
                _deployment(
                    "payment-gateway",
                    PAYMENTS,
                    "registry.payments.example/payment-gateway:7.1",
                    env=[_secret_env("DB_PASSWORD", "payment-gateway-db", "password")],
                    env_from=[{"configMapRef": {"name": "ledger-endpoint"}}],
                    pull_secret=True,
                )
            ],
            "service.yaml": [_service("payment-gateway", PAYMENTS)],
            "sealedsecret.yaml": [
                _sealed(
                    key,
                    "payment-gateway-db",
                    PAYMENTS,
                    {"password": secrets.token_urlsafe(24)},
                    sealing.Scope.STRICT,
                )
            ],
            "endpoint.yaml": [
                _configmap(
                    "payment-gateway-endpoint",
                    PAYMENTS,
                    {"GATEWAY_URL": "http://payment-gateway.payments.svc:80"},
                )
            ],
        },
        "apps/base/checkout": {
            "deployment.yaml": [
                _deployment(
                    "checkout",
                    PAYMENTS,
                    "registry.payments.example/checkout:3.0",
                    env_from=[{"configMapRef": {"name": "payment-gateway-endpoint"}}],
                    pull_secret=True,
                )
            ],
            "service.yaml": [_service("checkout", PAYMENTS)],
        },
        "apps/base/observability": {
            "deployment.yaml": [
                _deployment("otel-collector", OBSERVABILITY, "otel/opentelemetry-collector:0.88.0")
            ],
            "config.yaml": [
                _configmap(
                    "otel-collector", OBSERVABILITY, {"config.yaml": "receivers: {otlp: {}}\n"}
                )
            ],
            "service.yaml": [_service("otel-collector", OBSERVABILITY)],
        },
    }


def _overlay(app: App, env: str) -> Obj:
    """An environment's overlay of one app: its base plus a label (and prod's replicas)."""
    extra: Obj = {"labels": [{"pairs": {"platform.example/env": env}}]}
    if env == "prod" and app.name in ("payment-gateway", "ledger", "checkout"):
        extra["replicas"] = [{"name": app.name, "count": 3}]
    return _kustomization([f"../../../base/{app.name}"], **extra)


def _application(app: App, repo_url: str, env: str) -> Obj:
    automated: Obj = {"prune": app.prune, "selfHeal": app.self_heal}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": app.name, "namespace": ARGOCD_NAMESPACE},
        "spec": {
            "project": "default",
            "source": {"repoURL": repo_url, "targetRevision": "main", "path": app.overlay(env)},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": app.namespace},
            # the namespaces come from cluster-config: an app synced before it retries
            "syncPolicy": {
                "automated": automated,
                "retry": {
                    "limit": 10,
                    "backoff": {"duration": "2s", "factor": 2, "maxDuration": "30s"},
                },
            },
        },
    }


def _flux_kustomization(app: App, env: str) -> Obj:
    spec: Obj = {
        "interval": "1m",
        "path": "./" + app.overlay(env),
        "prune": app.prune,
        "wait": True,
        "timeout": "5m",
        "sourceRef": {"kind": "GitRepository", "name": ROOT_SOURCE},
    }
    if app.depends_on:
        spec["dependsOn"] = [{"name": d} for d in app.depends_on]
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": app.name, "namespace": FLUX_NAMESPACE},
        "spec": spec,
    }


def write(repo: Path, key: RSAPrivateKey, repo_url: str) -> None:
    """Write the platform repo's files under ``repo`` (the caller commits them)."""
    for base, files in _bases(key).items():
        for name, docs in files.items():
            _dump(repo / base / name, docs)
        _dump(repo / base / "kustomization.yaml", [_kustomization(sorted(files))])
    for env in ENVIRONMENTS:
        for app in APPS:
            if app.name != "cluster-config":
                _dump(repo / app.overlay(env) / "kustomization.yaml", [_overlay(app, env)])
    argocd = repo / ROOT_ARGOCD
    flux = repo / ROOT_FLUX
    for app in APPS:
        _dump(argocd / f"{app.name}.yaml", [_application(app, repo_url, "lab")])
        _dump(flux / f"{app.name}.yaml", [_flux_kustomization(app, "lab")])
    (repo / "README.md").write_text(
        "# platform-config\n\nThe payment platform's GitOps repo (drboot demo). "
        "`clusters/lab/argocd` is the root app-of-apps for Argo CD, `clusters/lab/flux` the "
        "Flux Kustomizations; each app has a base in `apps/base` and an overlay per "
        "environment in `apps/overlays`.\n"
    )
