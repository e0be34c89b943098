"""The pure parts of the GitOps steps: app state from real-shaped Argo CD Applications and Flux
Kustomizations, the all-apps tally, workload availability, install drift and the objects
drboot creates (repository Secret, root Application, GitRepository, Kustomization)."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest

from bootstrap.reconcilers import argocd, flux
from bootstrap.reconcilers.base import (
    AppState,
    first_pod_problem,
    install_drift,
    pod_problem,
    relocate,
    selector_string,
    tally,
    workload_problem,
)


def application(name: str, status: dict[str, Any] | None) -> dict[str, Any]:
    app: dict[str, Any] = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd", "generation": 3},
        "spec": {"project": "default", "source": {"repoURL": "https://git.example/r.git"}},
    }
    if status is not None:
        app["status"] = status
    return app


HEALTHY_APP = {
    "sync": {"status": "Synced", "revision": "a" * 40},
    "health": {"status": "Healthy"},
    "resources": [
        {"version": "v1", "kind": "Service", "namespace": "guestbook", "name": "guestbook",
         "status": "Synced", "health": {"status": "Healthy"}},
        {"group": "apps", "version": "v1", "kind": "Deployment", "namespace": "guestbook",
         "name": "guestbook", "status": "Synced", "health": {"status": "Healthy"}},
    ],
    "operationState": {"phase": "Succeeded", "message": "successfully synced (all tasks run)"},
}  # fmt: skip

PROGRESSING_APP = {
    "sync": {"status": "Synced"},
    "health": {"status": "Progressing"},
    "resources": [
        {"group": "apps", "version": "v1", "kind": "Deployment", "namespace": "guestbook",
         "name": "guestbook", "status": "Synced",
         "health": {"status": "Progressing",
                    "message": "Waiting for rollout to finish: 0 of 1 updated replicas are "
                               "available..."}},
        {"version": "v1", "kind": "ConfigMap", "namespace": "guestbook", "name": "cfg",
         "status": "Synced"},
    ],
}  # fmt: skip

COMPARISON_ERROR_APP = {
    "sync": {"status": "Unknown"},
    "health": {"status": "Healthy"},
    "conditions": [
        {"type": "ComparisonError",
         "message": "Failed to load target state: failed to generate manifest for source 1 of "
                    "1: rpc error: code = Unknown desc = apps/nope: app path does not exist",
         "lastTransitionTime": "2026-01-01T00:00:00Z"},
    ],
}  # fmt: skip

FAILED_SYNC_APP = {
    "sync": {"status": "OutOfSync"},
    "health": {"status": "Missing"},
    "operationState": {"phase": "Failed",
                       "message": "one or more objects failed to apply, reason: denied"},
}  # fmt: skip

OUT_OF_SYNC_APP = {
    "sync": {"status": "OutOfSync"},
    "health": {"status": "Healthy"},
    "resources": [{"version": "v1", "kind": "ConfigMap", "name": "cfg", "namespace": "x",
                   "status": "OutOfSync"}],
}  # fmt: skip


@pytest.mark.parametrize(
    ("status", "sync", "health", "ready", "reason"),
    [
        (HEALTHY_APP, "Synced", "Healthy", True, ""),
        (PROGRESSING_APP, "Synced", "Progressing", False,
         "Deployment guestbook: Waiting for rollout to finish: 0 of 1 updated replicas are "
         "available..."),
        (COMPARISON_ERROR_APP, "Unknown", "Healthy", False,
         "ComparisonError: Failed to load target state"),
        (FAILED_SYNC_APP, "OutOfSync", "Missing", False,
         "sync failed: one or more objects failed to apply, reason: denied"),
        (OUT_OF_SYNC_APP, "OutOfSync", "Healthy", False, "ConfigMap cfg OutOfSync"),
        (None, "Unknown", "Unknown", False, "not reconciled yet"),
    ],
)  # fmt: skip
def test_argocd_app_state(
    status: dict[str, Any] | None, sync: str, health: str, ready: bool, reason: str
) -> None:
    s = argocd.app_state(application("guestbook", status))
    assert (s.name, s.namespace, s.sync, s.health, s.ready) == (
        "guestbook", "argocd", sync, health, ready,
    )  # fmt: skip
    assert s.reason.startswith(reason)


def test_argocd_unhealthy_resources_and_refs() -> None:
    app = application("guestbook", PROGRESSING_APP)
    bad = argocd.unhealthy_resources(app)
    assert [r["name"] for r in bad] == ["guestbook"]  # the ConfigMap has no health: skipped
    assert argocd.resource_ref(bad[0]) == ("apps/v1", "Deployment", "guestbook", "guestbook")
    core = {"version": "v1", "kind": "Service", "name": "s", "namespace": "n"}
    assert argocd.resource_ref(core) == ("v1", "Service", "s", "n")


def kustomization(
    name: str, ready: dict[str, str] | None, *, generation: int = 2, observed: int = 2,
    applied: str | None = "main@sha1:" + "b" * 40, attempted: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    status: dict[str, Any] = {"observedGeneration": observed}
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "lastTransitionTime": "2026-01-01T00:00:00Z",
                                 "observedGeneration": observed, **ready}]  # fmt: skip
    if applied:
        status["lastAppliedRevision"] = applied
    status["lastAttemptedRevision"] = attempted or applied
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": "flux-system", "generation": generation},
        "spec": {"path": "./apps", "sourceRef": {"kind": "GitRepository", "name": "flux-system"}},
        "status": status,
    }


@pytest.mark.parametrize(
    ("ks", "sync", "health", "reason"),
    [
        (kustomization("apps", {"status": "True", "reason": "ReconciliationSucceeded",
                                "message": "Applied revision: main@sha1:bbbb"}),
         "Synced", "Healthy", ""),
        (kustomization("apps", {"status": "Unknown", "reason": "Progressing",
                                "message": "Reconciliation in progress"},
                       applied=None, attempted="main@sha1:" + "c" * 40),
         "OutOfSync", "Progressing", "Progressing: Reconciliation in progress"),
        (kustomization("apps", {"status": "False", "reason": "HealthCheckFailed",
                                "message": "health check failed after 30s: timeout waiting for: "
                                           "[Deployment/guestbook/guestbook status: "
                                           "'InProgress']"},
                       attempted="main@sha1:" + "c" * 40),
         "OutOfSync", "Degraded", "HealthCheckFailed: health check failed after 30s"),
        (kustomization("apps", {"status": "False", "reason": "ArtifactFailed",
                                "message": "Source artifact not found, retrying in 30s"},
                       applied=None),
         "OutOfSync", "Degraded", "ArtifactFailed: Source artifact not found"),
        # Ready=True, but for an older generation: the new spec is not reconciled yet.
        (kustomization("apps", {"status": "True", "reason": "ReconciliationSucceeded"},
                       generation=3, observed=2),
         "Unknown", "Unknown", "not reconciled yet"),
        (kustomization("apps", None), "Unknown", "Unknown", "not reconciled yet"),
    ],
)  # fmt: skip
def test_flux_app_state(ks: dict[str, Any], sync: str, health: str, reason: str) -> None:
    s = flux.app_state(ks)
    assert (s.sync, s.health) == (sync, health)
    assert s.ready == (sync == "Synced" and health == "Healthy")
    assert s.reason.startswith(reason)


def test_tally_ignores_apps_and_names_every_unready_one() -> None:
    states = [
        AppState("root", "argocd", "Synced", "Healthy"),
        AppState("guestbook", "argocd", "Synced", "Progressing",
                 'Deployment guestbook: CreateContainerConfigError: secret "x" not found'),
        AppState("monitoring", "argocd", "OutOfSync", "Missing", "sync failed: denied"),
        AppState("legacy", "argocd", "Unknown", "Unknown", "ComparisonError: gone"),
    ]  # fmt: skip
    t = tally(states, ["legacy"])
    assert t.total == 3 and not t.all_ready
    assert [s.name for s in t.ready] == ["root"]
    assert t.ignored == ("legacy",)
    assert t.summary() == (
        "1/3 apps Synced+Healthy; waiting for "
        'guestbook: Progressing: Deployment guestbook: CreateContainerConfigError: secret "x" '
        "not found; monitoring: OutOfSync/Missing: sync failed: denied"
    )
    assert tally(states[:1]).all_ready
    assert not tally([]).all_ready  # nothing to wait for is not "all ready"
    assert tally(states, ["argocd/guestbook", "monitoring", "legacy"]).all_ready


def deployment(replicas: int = 1, **status: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "n", "generation": 2},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "d", "tier": "web"}},
                 "template": {"spec": {"containers": [{"name": "c", "image": "img:1"}]}}},
        "status": status,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("obj", "problem"),
    [
        (deployment(observedGeneration=2, updatedReplicas=1, availableReplicas=1, replicas=1),
         None),
        (deployment(observedGeneration=1, updatedReplicas=1, availableReplicas=1),
         "rollout not observed yet"),
        (deployment(2, observedGeneration=2, updatedReplicas=2, availableReplicas=1),
         "1 of 2 replicas available"),
        (deployment(observedGeneration=2), "0 of 1 replicas updated"),
        ({"kind": "StatefulSet", "metadata": {"generation": 1}, "spec": {"replicas": 1},
          "status": {"observedGeneration": 1, "updatedReplicas": 1, "readyReplicas": 1}}, None),
        ({"kind": "StatefulSet", "metadata": {"generation": 1}, "spec": {"replicas": 1},
          "status": {"observedGeneration": 1, "updatedReplicas": 1, "availableReplicas": 1}},
         "0 of 1 replicas available"),
        (None, "not found"),
    ],
)  # fmt: skip
def test_workload_problem(obj: dict[str, Any] | None, problem: str | None) -> None:
    assert workload_problem(obj) == problem


def pod(name: str, waiting: dict[str, str] | None, ready: bool = False) -> dict[str, Any]:
    cs: dict[str, Any] = {"name": "web", "ready": ready}
    cs["state"] = {"waiting": waiting} if waiting else {"running": {"startedAt": "x"}}
    return {
        "metadata": {"name": name},
        "status": {
            "phase": "Running" if ready else "Pending",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [cs],
        },
    }


def test_pod_problems_in_the_kubelets_words() -> None:
    missing = pod("b", {"reason": "CreateContainerConfigError",
                        "message": 'secret "guestbook-db" not found'})  # fmt: skip
    assert pod_problem(missing) == 'CreateContainerConfigError: secret "guestbook-db" not found'
    assert pod_problem(pod("a", None, ready=True)) is None
    assert pod_problem(pod("c", {"reason": "ContainerCreating"})) == "ContainerCreating"
    assert first_pod_problem([pod("z", None, ready=True), missing]) == pod_problem(missing)
    assert first_pod_problem([]) is None
    assert selector_string(deployment()) == "app=d,tier=web"


def test_install_drift_pins_crds_and_images() -> None:
    wanted = argocd.install_objects("argocd")
    crds = [o for o in wanted if o["kind"] == "CustomResourceDefinition"]
    work = [o for o in wanted if o["kind"] in ("Deployment", "StatefulSet")]
    assert len(crds) == 3 and len(work) == 7
    live: dict[tuple[str, str], dict[str, Any] | None] = {
        (o["kind"], o["metadata"]["name"]): o for o in crds + work
    }
    assert install_drift(wanted, live) == []
    old = dict(work[0])
    old["spec"] = {
        "template": {"spec": {"containers": [{"image": "quay.io/argoproj/argocd:v2.0.0"}]}}
    }
    live[(old["kind"], old["metadata"]["name"])] = old
    live[("CustomResourceDefinition", "applications.argoproj.io")] = None
    drift = install_drift(wanted, live)
    assert drift[0] == "CustomResourceDefinition applications.argoproj.io missing"
    assert "runs quay.io/argoproj/argocd:v2.0.0, pinned quay.io/argoproj/argocd:v3.5.1" in drift[1]


def test_argocd_install_moves_into_the_site_namespace() -> None:
    objs = argocd.install_objects("gitops")
    subjects = [s for o in objs for s in o.get("subjects") or []]
    assert subjects and all(s["namespace"] == "gitops" for s in subjects)
    # upstream sets no namespace: apply_manifest(namespace=...) puts every object there
    assert {o["metadata"].get("namespace") for o in objs} == {None}


def test_flux_install_relocated() -> None:
    objs = flux.install_objects("gitops")
    assert not any(o["metadata"].get("namespace") == "flux-system" for o in objs)
    assert [o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"] == ["gitops"]
    subjects = [s for o in objs for s in o.get("subjects") or []]
    assert subjects and {s["namespace"] for s in subjects} == {"gitops"}
    same = relocate(objs, None, "other")  # objects that have a namespace keep it
    assert {o["metadata"].get("namespace") for o in same} - {None} == {"gitops"}


def test_argocd_repository_secret_and_root_application() -> None:
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----"
    s = argocd.repo_secret("argocd", "git@git.example:org/repo.git", key)
    assert s["metadata"]["labels"][argocd.SECRET_TYPE_LABEL] == "repository"
    assert argocd.secret_value(s, "url") == "git@git.example:org/repo.git"
    assert argocd.secret_value(s, "sshPrivateKey") == key + "\n"
    assert argocd.key_fingerprint(key) == argocd.key_fingerprint(key + "\n")
    assert "abc" not in str(argocd.key_fingerprint(key))
    https = argocd.repo_secret("argocd", "https://git.example/r.git", None)
    assert "sshPrivateKey" not in https["data"]
    assert https["metadata"]["name"] != s["metadata"]["name"]
    root = argocd.root_application(
        "argocd", url="https://git.example/r.git", revision="main", path="apps", project="default"
    )
    assert root["spec"]["syncPolicy"]["automated"]
    assert root["spec"]["destination"]["server"] == "https://kubernetes.default.svc"
    assert argocd.spec_differences(root, root) == []
    assert argocd.spec_differences(root, None) == ["missing"]
    moved = {**root, "spec": {**root["spec"], "source": {**root["spec"]["source"], "path": "x"}}}
    assert argocd.spec_differences(root, moved) == ["source.path"]


def test_known_hosts_patch_adds_only_missing_lines() -> None:
    cm = {"data": {"ssh_known_hosts": "github.com ssh-ed25519 AAAA\n"}}
    assert argocd.known_hosts_patch(cm, "github.com ssh-ed25519 AAAA\n") is None
    patch = argocd.known_hosts_patch(cm, "git.example ssh-ed25519 BBBB\n")
    assert patch == {
        "data": {"ssh_known_hosts": "github.com ssh-ed25519 AAAA\ngit.example ssh-ed25519 BBBB\n"}
    }


@pytest.mark.parametrize(
    ("url", "flux_url"),
    [
        ("https://git.example/r.git", "https://git.example/r.git"),
        ("ssh://git@git.example/org/r.git", "ssh://git@git.example/org/r.git"),
        ("git@git.example:org/r.git", "ssh://git@git.example/org/r.git"),
        ("file:///srv/repo", None),
        ("/srv/repo", None),
    ],
)
def test_flux_source_url(url: str, flux_url: str | None) -> None:
    assert flux.source_url(url) == flux_url


def test_flux_objects() -> None:
    every = timedelta(minutes=1, seconds=30)
    repo = flux.git_repository("fs", url="ssh://git@h/r.git", revision="main", interval=every,
                               secret="fs")  # fmt: skip
    assert repo["spec"] == {"interval": "1m30s", "url": "ssh://git@h/r.git",
                            "ref": {"branch": "main"}, "secretRef": {"name": "fs"}}  # fmt: skip
    pinned = flux.git_repository("f", url="https://h/r", revision="a" * 40,
                                 interval=timedelta(hours=1), secret=None)  # fmt: skip
    assert pinned["spec"]["ref"] == {"commit": "a" * 40} and "secretRef" not in pinned["spec"]
    ks = flux.kustomization("flux-system", path="apps/overlays/lab", interval=timedelta(minutes=1))
    assert ks["spec"]["path"] == "./apps/overlays/lab"
    assert ks["spec"]["prune"] is True and ks["spec"]["wait"] is True
    assert flux.kustomization("f", path=".", interval=timedelta(minutes=1))["spec"]["path"] == "./"
    assert flux.spec_differences(ks, ks) == []
    secret = flux.deploy_key_secret("flux-system", "KEY", "h ssh-ed25519 AAAA")
    assert base64.b64decode(secret["data"]["identity"]) == b"KEY\n"
    assert base64.b64decode(secret["data"]["known_hosts"]) == b"h ssh-ed25519 AAAA"
