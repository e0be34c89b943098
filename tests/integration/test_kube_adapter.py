"""The kube adapter against a real Kubernetes 1.20 API server and the CRDs drboot ships.

Each 1.20 quirk the adapter works around is first shown to be real with a raw request that
bypasses the adapter (stdlib HTTPS as the admin), then shown to be handled by the adapter.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bootstrap.adapters.kube import (
    Conflict,
    Forbidden,
    Invalid,
    KubeClient,
    NotFound,
    UnknownKind,
    load_manifest,
)
from bootstrap.errors import PermanentError, TransientError
from bootstrap.lab.controlplane import free_port, kubeconfig_text
from tests import shipped

if TYPE_CHECKING:
    from tests.integration.conftest_apiserver import ApiServer, NetnsHttp

pytestmark = [pytest.mark.integration, pytest.mark.apiserver]

DEST = {"server": "https://kubernetes.default.svc", "namespace": "default"}
CONDITION = {
    "type": "Ready", "status": "True", "reason": "Succeeded", "message": "stored by a test",
    "lastTransitionTime": "2026-01-01T00:00:00Z",
}  # fmt: skip

# (apiVersion, kind, spec, a valid status, has a status subresource)
KINDS: list[tuple[str, str, dict[str, Any], dict[str, Any], bool]] = [
    (
        "argoproj.io/v1alpha1", "Application",
        {"project": "default", "destination": DEST,
         "source": {"repoURL": "https://git.example.invalid/site.git", "path": "apps",
                    "targetRevision": "HEAD"}},
        {"sync": {"status": "Synced"}, "health": {"status": "Healthy"}},
        False,
    ),
    (
        "argoproj.io/v1alpha1", "AppProject",
        {"sourceRepos": ["*"], "destinations": [{"server": "*", "namespace": "*"}]},
        {"jwtTokensByRole": {}},
        False,
    ),
    (
        "argoproj.io/v1alpha1", "ApplicationSet",
        {"generators": [{"list": {"elements": [{"name": "a"}]}}],
         "template": {"metadata": {"name": "{{name}}"},
                      "spec": {"project": "default", "destination": DEST}}},
        {"conditions": [{"type": "ResourcesUpToDate", "status": "True",
                         "reason": "ApplicationSetUpToDate", "message": "ok"}]},
        True,
    ),
    (
        "bitnami.com/v1alpha1", "SealedSecret",
        {"encryptedData": {"password": "AgBvbm90LXJlYWxseS1lbmNyeXB0ZWQ="},
         "template": {"metadata": {"name": "db"}}},
        {"conditions": [{"type": "Synced", "status": "True"}], "observedGeneration": 1},
        True,
    ),
    (
        "source.toolkit.fluxcd.io/v1", "GitRepository",
        {"interval": "1m", "url": "https://git.example.invalid/site.git",
         "ref": {"branch": "main"}},
        {"conditions": [CONDITION], "observedGeneration": 1},
        True,
    ),
    (
        "kustomize.toolkit.fluxcd.io/v1", "Kustomization",
        {"interval": "10m", "prune": True, "path": "./apps",
         "sourceRef": {"kind": "GitRepository", "name": "site"}},
        {"conditions": [CONDITION], "observedGeneration": 1},
        True,
    ),
]  # fmt: skip


def raw(api: ApiServer, method: str, path: str, body: Any, content_type: str) -> tuple[int, str]:
    """A request that bypasses the adapter (to show what the server itself does)."""
    cp = api.control_plane
    import http.client
    import ssl

    ctx = ssl.create_default_context(cafile=str(cp.pki.path("ca.crt")))
    ctx.load_cert_chain(str(cp.pki.path("admin.crt")), str(cp.pki.path("admin.key")))
    conn = http.client.HTTPSConnection(cp.server_host, cp.secure_port, context=ctx, timeout=30)
    try:
        conn.request(method, path, body=json.dumps(body), headers={"Content-Type": content_type})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


@pytest.fixture(scope="session")
def crds(apiserver: ApiServer) -> list[dict[str, Any]]:
    """Every CRD the tests use (from the shipped manifests), applied once through the adapter
    (SSA)."""
    return apiserver.client.apply_manifest(shipped.crds())


def cm(name: str, ns: str, **data: str) -> dict[str, Any]:
    """A ConfigMap labelled ``test=1`` (the controller-manager's root-ca-cert-publisher also
    puts a `kube-root-ca.crt` ConfigMap into every namespace; selectors leave it out)."""
    meta = {"name": name, "namespace": ns, "labels": {"test": "1"}}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": dict(data)}


# -- basic verbs and error semantics ------------------------------------------------------------


def test_create_get_list_replace_delete(apiserver: ApiServer, namespace: str) -> None:
    k = apiserver.client
    created = k.create(
        {
            **cm("a", namespace, x="1"),
            "metadata": {"name": "a", "namespace": namespace, "labels": {"app": "t", "test": "1"}},
        }
    )
    assert created["metadata"]["uid"]
    k.create(cm("b", namespace, x="2"))
    got = k.get("v1", "ConfigMap", "a", namespace)
    assert got is not None and got["data"] == {"x": "1"}
    listed = k.list("v1", "ConfigMap", namespace, label_selector="test=1")
    names = sorted(o["metadata"]["name"] for o in listed)
    assert names == ["a", "b"]
    labelled = k.list("v1", "ConfigMap", namespace, label_selector="app=t")
    assert [o["metadata"]["name"] for o in labelled] == ["a"]
    assert labelled[0]["kind"] == "ConfigMap"
    got["data"]["x"] = "changed"
    assert k.replace(got)["data"] == {"x": "changed"}
    assert k.delete("v1", "ConfigMap", "a", namespace) is True
    assert k.delete("v1", "ConfigMap", "a", namespace) is False
    assert k.get("v1", "ConfigMap", "a", namespace) is None


def test_409_conflict_already_exists_and_stale_copy(apiserver: ApiServer, namespace: str) -> None:
    k = apiserver.client
    first = k.create(cm("c", namespace, v="1"))
    with pytest.raises(Conflict) as exists:
        k.create(cm("c", namespace, v="2"))
    assert exists.value.reason == "AlreadyExists"
    assert "already exists" in exists.value.message
    k.patch("v1", "ConfigMap", "c", {"data": {"v": "3"}}, namespace)
    first["data"]["v"] = "stale"
    with pytest.raises(Conflict) as stale:
        k.replace(first)  # carries the old resourceVersion
    assert stale.value.reason == "Conflict"
    assert isinstance(stale.value, PermanentError)


def test_404_not_found_and_unknown_kind(apiserver: ApiServer, namespace: str) -> None:
    k = apiserver.client
    assert k.get("v1", "Secret", "nope", namespace) is None
    with pytest.raises(NotFound, match="nope"):
        k.patch("v1", "ConfigMap", "nope", {"data": {"a": "b"}}, namespace)
    with pytest.raises(UnknownKind, match="Widget"):
        k.get("example.invalid/v1", "Widget", "w", namespace)


def test_422_invalid_carries_server_message(apiserver: ApiServer, namespace: str) -> None:
    with pytest.raises(Invalid) as err:
        apiserver.client.create(cm("Not_A_Valid_Name", namespace))
    assert "RFC 1123" in err.value.message
    assert err.value.target == apiserver.client.target


def test_403_forbidden_for_a_user_without_rbac(apiserver: ApiServer, tmp_path: Path) -> None:
    cp = apiserver.control_plane
    cp.pki.issue("nobody", "/CN=drboot-test-nobody")
    kubeconfig = tmp_path / "nobody.kubeconfig"
    kubeconfig.write_text(kubeconfig_text(
        cp.server_url, cp.pki.path("ca.crt").read_bytes(), cp.pki.path("nobody.crt").read_bytes(),
        cp.pki.path("nobody.key").read_bytes(), "nobody"))  # fmt: skip
    with KubeClient.from_kubeconfig(kubeconfig) as nobody, pytest.raises(Forbidden) as err:
        nobody.list("v1", "Secret", "kube-system")
    assert "drboot-test-nobody" in err.value.message


def test_unreachable_server_is_transient(apiserver: ApiServer, tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    text = apiserver.kubeconfig.read_text().replace(
        apiserver.control_plane.server_url, f"https://127.0.0.1:{port}"
    )
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text(text)
    with pytest.raises(TransientError, match="cannot reach"):
        KubeClient.from_kubeconfig(dead)


def test_wait_ready_and_version(apiserver: ApiServer) -> None:
    apiserver.client.wait_ready(timeout=10)
    assert apiserver.client.server_minor() == 20


# -- watch -------------------------------------------------------------------------------------


def test_watch_replays_changes_after_a_resource_version(
    apiserver: ApiServer, namespace: str
) -> None:
    k = apiserver.client
    created = k.create(cm("w", namespace, step="1"))
    k.patch("v1", "ConfigMap", "w", {"data": {"step": "2"}}, namespace)
    k.delete("v1", "ConfigMap", "w", namespace)
    seen = []
    rv = created["metadata"]["resourceVersion"]
    for ev in k.watch("v1", "ConfigMap", namespace, label_selector="test=1", resource_version=rv,
                      timeout=10):  # fmt: skip
        seen.append((ev.type, ev.object["data"]["step"]))
        if ev.type == "DELETED":
            break
    assert seen == [("MODIFIED", "2"), ("DELETED", "2")]


def test_watch_without_version_lists_existing_then_follows(
    apiserver: ApiServer, namespace: str
) -> None:
    k = apiserver.client
    k.create(cm("old", namespace))
    events = k.watch("v1", "ConfigMap", namespace, label_selector="test=1", timeout=10)
    first = next(events)
    assert (first.type, first.object["metadata"]["name"]) == ("ADDED", "old")
    k.create(cm("new", namespace))
    second = next(events)
    assert (second.type, second.object["metadata"]["name"]) == ("ADDED", "new")
    events.close()


# -- server-side apply and the 1.20 quirks ------------------------------------------------------


def test_service_without_protocol_is_refused_raw_but_applies(
    apiserver: ApiServer, namespace: str
) -> None:
    svc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": "web"}},
    }
    status, text = raw(
        apiserver, "PATCH", f"/api/v1/namespaces/{namespace}/services/web?fieldManager=t",
        svc, "application/apply-patch+yaml",
    )  # fmt: skip
    assert status >= 400 and 'omits key field \\"protocol\\"' in text
    applied = apiserver.client.apply(svc)
    assert applied["spec"]["ports"][0]["protocol"] == "TCP"
    assert svc["spec"]["ports"][0] == {"port": 80, "targetPort": 8080}  # caller's dict untouched
    again = apiserver.client.apply(svc)  # idempotent
    assert again["metadata"]["resourceVersion"] == applied["metadata"]["resourceVersion"]


def test_deployment_container_ports_without_protocol_apply(
    apiserver: ApiServer, namespace: str
) -> None:
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": namespace},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "d"}},
            "template": {
                "metadata": {"labels": {"app": "d"}},
                "spec": {
                    "containers": [
                        {"name": "c", "image": "busybox", "ports": [{"containerPort": 80}]}
                    ]
                },
            },
        },
    }
    out = apiserver.client.apply(dep)
    assert out["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"] == "TCP"


def test_flux_crd_cel_rules_are_refused_raw_but_apply(apiserver: ApiServer) -> None:
    crd = shipped.crd("gitrepositories.source.toolkit.fluxcd.io")
    assert "x-kubernetes-validations" in json.dumps(crd)
    name = crd["metadata"]["name"]
    status, text = raw(
        apiserver, "PATCH",
        f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}?fieldManager=raw&force=true",
        crd, "application/apply-patch+yaml",
    )  # fmt: skip
    assert status >= 400 and "x-kubernetes-validations: field not declared in schema" in text
    out = apiserver.client.apply(crd)
    assert out["metadata"]["name"] == name
    assert apiserver.client.wait_crd_established(name)


def test_applicationset_crd_is_too_big_for_client_side_apply_but_applies(
    apiserver: ApiServer, namespace: str
) -> None:
    crd = shipped.crd("applicationsets.argoproj.io")
    last_applied = json.dumps(crd, separators=(",", ":"))
    assert len(last_applied) > 262144
    # What `kubectl apply` (client-side) would need: the whole object as an annotation.
    carrier = cm("carrier", namespace)
    carrier["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": last_applied
    }
    with pytest.raises(Invalid, match="Too long"):
        apiserver.client.create(carrier)
    out = apiserver.client.apply(crd)
    assert "kubectl.kubernetes.io/last-applied-configuration" not in (
        out["metadata"].get("annotations") or {}
    )
    apiserver.client.wait_crd_established(crd["metadata"]["name"])


# -- the pinned upstream kinds ------------------------------------------------------------------


def test_all_pinned_crds_are_established(apiserver: ApiServer, crds: list[dict[str, Any]]) -> None:
    names = {c["metadata"]["name"] for c in crds}
    assert names == {
        "applications.argoproj.io", "appprojects.argoproj.io", "applicationsets.argoproj.io",
        "sealedsecrets.bitnami.com", "gitrepositories.source.toolkit.fluxcd.io",
        "kustomizations.kustomize.toolkit.fluxcd.io",
    }  # fmt: skip
    for name in names:
        crd = apiserver.client.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
        assert crd is not None
        conds = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conds["Established"] == "True"


@pytest.mark.parametrize(("api_version", "kind", "spec", "status", "has_sub"), KINDS,
                         ids=[k[1] for k in KINDS])  # fmt: skip
def test_custom_kind_lifecycle_and_status(
    apiserver: ApiServer,
    crds: list[dict[str, Any]],
    namespace: str,
    api_version: str,
    kind: str,
    spec: dict[str, Any],
    status: dict[str, Any],
    has_sub: bool,
) -> None:
    k = apiserver.client
    obj: dict[str, Any] = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": "site", "namespace": namespace},
        "spec": spec,
    }
    created = k.create(obj)
    assert created["metadata"]["generation"] == 1
    applied = k.apply({**obj, "metadata": {**obj["metadata"], "labels": {"by": "ssa"}}})
    assert applied["metadata"]["labels"] == {"by": "ssa"}
    assert [o["metadata"]["name"] for o in k.list(api_version, kind, namespace)] == ["site"]

    written = k.patch_status(api_version, kind, "site", status, namespace)
    for key, value in status.items():
        assert written["status"][key] == value
    got = k.get(api_version, kind, "site", namespace)
    assert got is not None and got["status"] == written["status"]

    # A PUT of the main resource ignores .status exactly when there is a status subresource.
    other: dict[str, Any] = {"sync": {"status": "OutOfSync"}, "health": {"status": "Degraded"}}
    if kind == "AppProject":
        other = {"jwtTokensByRole": {"ci": {"items": [{"iat": 1}]}}}
    got["status"] = {"observedGeneration": 99} if has_sub else other
    after_put = k.replace(got)
    if has_sub:
        assert after_put["status"] == written["status"]
    else:
        assert after_put["status"] == other
    assert k.delete(api_version, kind, "site", namespace, wait=30)


@pytest.mark.parametrize(
    ("api_version", "kind", "spec", "needle"),
    [
        ("source.toolkit.fluxcd.io/v1", "GitRepository",
         {"interval": "banana", "url": "https://git.example.invalid/x.git"}, "spec.interval"),
        ("kustomize.toolkit.fluxcd.io/v1", "Kustomization",
         {"interval": "1m", "sourceRef": {"kind": "GitRepository", "name": "x"}}, "spec.prune"),
        ("argoproj.io/v1alpha1", "Application", {"project": "default"}, "spec.destination"),
        ("bitnami.com/v1alpha1", "SealedSecret", {}, "spec.encryptedData"),
    ],
    ids=["GitRepository-bad-interval", "Kustomization-no-prune", "Application-no-dest",
         "SealedSecret-no-data"],
)  # fmt: skip
def test_schema_violations_are_422(
    apiserver: ApiServer,
    crds: list[dict[str, Any]],
    namespace: str,
    api_version: str,
    kind: str,
    spec: dict[str, Any],
    needle: str,
) -> None:
    obj = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": "bad", "namespace": namespace},
        "spec": spec,
    }
    with pytest.raises(Invalid) as err:
        apiserver.client.create(obj)
    assert needle in err.value.message
    with pytest.raises(Invalid):
        apiserver.client.apply(obj)


# -- whole shipped install manifests ------------------------------------------------------------


def test_apply_manifest_argocd_install(apiserver: ApiServer, namespace: str) -> None:
    docs = shipped.docs("argo-cd/install.yaml")
    assert len(docs) == 59
    t0 = time.monotonic()
    out = apiserver.client.apply_manifest(docs, namespace=namespace)
    took = time.monotonic() - t0
    assert len(out) == 59
    assert [o["kind"] for o in out[:3]] == ["CustomResourceDefinition"] * 3
    deploy = apiserver.client.get("apps/v1", "Deployment", "argocd-server", namespace)
    assert deploy is not None
    assert deploy["spec"]["template"]["spec"]["containers"][0]["image"].startswith(
        "quay.io/argoproj/argocd:"
    )
    assert took < 60, f"apply_manifest of Argo CD took {took:.1f}s"
    # Re-applying the same manifest changes no spec (controllers may touch status/secrets).
    again = apiserver.client.apply_manifest(docs, namespace=namespace)
    before = {(o["kind"], o["metadata"]["name"]): o["metadata"].get("generation") for o in out}
    after = {(o["kind"], o["metadata"]["name"]): o["metadata"].get("generation") for o in again}
    assert before == after
    assert sum(1 for g in after.values() if g) >= 10


def test_apply_manifest_needs_a_namespace_for_namespaced_objects(apiserver: ApiServer) -> None:
    docs = [d for d in shipped.docs("argo-cd/install.yaml") if d["kind"] == "ServiceAccount"][:1]
    with pytest.raises(PermanentError, match="no namespace"):
        apiserver.client.apply_manifest(docs)


def test_apply_manifest_flux_install(apiserver: ApiServer) -> None:
    docs = load_manifest(shipped.MANIFESTS / "flux" / "install.yaml")  # as the restore loads it
    kinds = [d["kind"] for d in docs]
    assert kinds[0] == "Namespace"
    out = apiserver.client.apply_manifest(docs)
    assert len(out) == len(docs)
    n_crds = kinds.count("CustomResourceDefinition")
    assert [o["kind"] for o in out[: n_crds + 1]] == ["CustomResourceDefinition"] * n_crds + [
        "Namespace"
    ]
    for d in docs:
        meta = d["metadata"]
        assert apiserver.client.get(d["apiVersion"], d["kind"], meta["name"],
                                    meta.get("namespace")) is not None  # fmt: skip


# -- service proxy ------------------------------------------------------------------------------


def test_proxy_get_reaches_a_service_through_the_api_server(
    apiserver: ApiServer, namespace: str, netns_http_server: NetnsHttp
) -> None:
    ip, port, body, _ = netns_http_server
    k = apiserver.client
    # 1.20's service proxy only follows endpoint addresses that point at a Pod with that IP.
    # There is no kubelet, so the Pod's status is written here, as a kubelet would.
    k.wait_for("v1", "ServiceAccount", "default", lambda o: o is not None, namespace)
    k.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "controller", "namespace": namespace},
            "spec": {"containers": [{"name": "c", "image": "sealed-secrets-controller"}]},
        }
    )
    k.patch_status("v1", "Pod", "controller", {"podIP": ip, "podIPs": [{"ip": ip}]}, namespace)
    k.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "sealed-secrets-controller", "namespace": namespace},
            "spec": {"ports": [{"name": "http", "port": 8080, "targetPort": port}]},
        }
    )
    k.apply(
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "sealed-secrets-controller", "namespace": namespace},
            "subsets": [
                {
                    "addresses": [
                        {
                            "ip": ip,
                            "targetRef": {
                                "kind": "Pod",
                                "name": "controller",
                                "namespace": namespace,
                            },
                        }
                    ],
                    "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
                }
            ],
        }
    )
    deadline = time.monotonic() + 20
    while True:  # the proxy may answer 503 "no endpoints available" for a moment: transient
        try:
            got = k.proxy_get(namespace, "sealed-secrets-controller", "http", "/v1/cert.pem")
            break
        except TransientError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    assert got == body
    with pytest.raises(NotFound):
        k.proxy_get(namespace, "sealed-secrets-controller", "http", "/v1/missing")
    with pytest.raises(NotFound):
        k.proxy_get(namespace, "no-such-service", 8080, "/v1/cert.pem")
