"""Argo CD for drboot: the pinned install, the objects that point it at the repo, app state.

Why it exists: the GitOps steps need Argo CD's objects in Argo CD's shapes
(argoproj/argo-cd ``pkg/apis/application/v1alpha1/types.go`` and the declarative-setup docs):
the upstream ``install.yaml`` (which sets no namespace and binds its ClusterRoles to
ServiceAccounts in ``argocd``), a repository Secret (label
``argocd.argoproj.io/secret-type: repository``), a root Application with automated sync, and
the reading of ``status.sync`` / ``status.health`` / ``status.conditions`` of every
Application. All functions are pure over dicts, except ``install_objects`` reading the
pinned manifest file. ``ArgoCD`` puts them behind the ``Reconciler`` interface the steps use.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bootstrap.reconcilers.base import (
    WORKLOAD_KINDS,
    AppList,
    AppState,
    DeclaredApp,
    KeySecret,
    Obj,
    RepoSource,
    Sources,
    WorkloadRef,
    commit_of,
    meta,
    relocate,
)
from bootstrap.reconcilers.base import key_fingerprint as key_fingerprint  # re-exported
from bootstrap.reconcilers.base import secret_value as secret_value  # re-exported

if TYPE_CHECKING:
    from bootstrap.settings import ArgocdReconciler, Repo

MANIFEST = Path(__file__).resolve().parent.parent / "manifests" / "argo-cd" / "install.yaml"
UPSTREAM_NAMESPACE = "argocd"  # what the manifest's ClusterRoleBinding subjects name
APP_API = "argoproj.io/v1alpha1"
APP_KIND = "Application"
ROOT_APP = "root"
IN_CLUSTER = "https://kubernetes.default.svc"
SECRET_TYPE_LABEL = "argocd.argoproj.io/secret-type"
MANAGED_BY = {"app.kubernetes.io/managed-by": "drboot"}
KNOWN_HOSTS_CM = "argocd-ssh-known-hosts-cm"


def install_objects(namespace: str) -> list[Obj]:
    """The pinned install manifest, every namespaced object bound for ``namespace``."""
    from bootstrap.adapters.kube import load_manifest

    docs = relocate(load_manifest(MANIFEST), None, namespace)
    for d in docs:
        for s in d.get("subjects") or []:
            if s.get("namespace") == UPSTREAM_NAMESPACE:
                s["namespace"] = namespace
    return docs


def workloads(objs: list[Obj]) -> list[tuple[str, str]]:
    """(kind, name) of the install's own Deployments/StatefulSets, waited for after install."""
    return [(str(o["kind"]), str(meta(o)["name"])) for o in objs if o.get("kind") in WORKLOAD_KINDS]


def repo_secret_name(url: str) -> str:
    """``repo-<hash>``: the name ``argocd repo add`` gives a repository Secret."""
    return "repo-" + hashlib.sha256(url.encode()).hexdigest()[:10]


def repo_secret(namespace: str, url: str, ssh_private_key: str | None) -> Obj:
    """A declarative repository Secret; ``sshPrivateKey`` only for ssh URLs."""
    data = {"type": "git", "url": url}
    if ssh_private_key is not None:
        data["sshPrivateKey"] = ssh_private_key.rstrip("\n") + "\n"
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": repo_secret_name(url),
            "namespace": namespace,
            "labels": {SECRET_TYPE_LABEL: "repository", **MANAGED_BY},
        },
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def root_application(namespace: str, *, url: str, revision: str, path: str, project: str) -> Obj:
    """The root Application (app of apps): follows ``path`` at ``revision``, syncs itself."""
    return {
        "apiVersion": APP_API,
        "kind": APP_KIND,
        "metadata": {"name": ROOT_APP, "namespace": namespace, "labels": dict(MANAGED_BY)},
        "spec": {
            "project": project,
            "source": {"repoURL": url, "targetRevision": revision, "path": path},
            "destination": {"server": IN_CLUSTER, "namespace": namespace},
            "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
        },
    }


def spec_differences(wanted: Obj, live: Obj | None) -> list[str]:
    """What the live root Application's spec lacks of the wanted one (empty: nothing)."""
    if live is None:
        return ["missing"]
    want, have = wanted["spec"], live.get("spec") or {}
    out = []
    for key in ("repoURL", "targetRevision", "path"):
        if (have.get("source") or {}).get(key) != want["source"][key]:
            out.append(f"source.{key}")
    if have.get("project") != want["project"]:
        out.append("project")
    dest = have.get("destination") or {}
    want_ns = want["destination"]["namespace"]
    if (dest.get("server"), dest.get("namespace")) != (IN_CLUSTER, want_ns):
        out.append("destination")
    if not (have.get("syncPolicy") or {}).get("automated"):
        out.append("syncPolicy.automated")
    return out


def known_hosts_patch(cm: Obj | None, lines: str) -> Obj | None:
    """A merge patch adding the escrowed known_hosts lines to Argo CD's known-hosts
    ConfigMap, or None when they are all there already."""
    have = str(((cm or {}).get("data") or {}).get("ssh_known_hosts") or "")
    present = {ln.strip() for ln in have.splitlines()}
    new = [ln.strip() for ln in lines.splitlines() if ln.strip() and ln.strip() not in present]
    if not new:
        return None
    text = (have.rstrip("\n") + "\n" if have.strip() else "") + "\n".join(new) + "\n"
    return {"data": {"ssh_known_hosts": text}}


# --------------------------------------------------------------------------- app state


def unhealthy_resources(app: Obj) -> list[Obj]:
    """``status.resources`` entries that are not Healthy (those without health skipped)."""
    return [
        r
        for r in (app.get("status") or {}).get("resources") or []
        if (r.get("health") or {}).get("status") not in (None, "Healthy")
    ]


def app_state(app: Obj) -> AppState:
    """Sync/health of an Application and, when not ready, the most telling reason: an
    ``*Error`` condition or a sync operation in flight (either keeps even a Synced+Healthy
    app from counting), a failed sync, a Suspended/Missing health, manual sync, then the
    first unhealthy or out-of-sync resource."""
    m = meta(app)
    st = app.get("status") or {}
    sync = str((st.get("sync") or {}).get("status") or "Unknown")
    health_st = st.get("health") or {}
    health = str(health_st.get("status") or "Unknown")
    revision = str((st.get("sync") or {}).get("revision") or "")
    reason = ""
    held = False
    if not st:
        reason = "not reconciled yet (is the application controller running?)"
    errors = [c for c in st.get("conditions") or [] if str(c.get("type", "")).endswith("Error")]
    op = st.get("operationState") or {}
    in_flight = bool(app.get("operation")) or op.get("phase") in ("Running", "Terminating")
    spec = app.get("spec")
    manual = spec is not None and (spec.get("syncPolicy") or {}).get("automated") is None
    bad = unhealthy_resources(app)
    out_of_sync = [r for r in st.get("resources") or [] if r.get("status") == "OutOfSync"]
    if reason:
        pass
    elif errors:
        held = True
        reason = f"{errors[0].get('type')}: {errors[0].get('message', '')}"
    elif in_flight:
        held = True
        reason = "sync operation in flight" + (f": {op['message']}" if op.get("message") else "")
    elif op.get("phase") in ("Failed", "Error"):
        reason = f"sync {op['phase'].lower()}: {op.get('message', '')}"
    elif health in ("Suspended", "Missing") and not bad:
        what = "suspended" if health == "Suspended" else "its resources do not exist yet"
        reason = f"health {health}: " + (health_st.get("message") or what)
    elif bad:
        r = bad[0]
        h = r.get("health") or {}
        reason = f"{r.get('kind')} {r.get('name')}: {h.get('message') or h.get('status')}"
    elif out_of_sync:
        r = out_of_sync[0]
        reason = f"{r.get('kind')} {r.get('name')} OutOfSync"
    if sync != "Synced" and manual and not in_flight:
        reason += ("; " if reason else "") + "manual sync: it will not sync by itself"
    return AppState(
        str(m.get("name")), str(m.get("namespace") or ""), sync, health, reason, held, revision
    )


SYNC_USER = "drboot"  # initiatedBy.username of the syncs drboot starts


def sync_request(app: Obj, revision: str) -> Obj | None:
    """The ``operation`` ``argocd app sync --revision <sha>`` writes (through argocd-server)
    on an Application without automated sync, or None: automated sync, an operation in
    flight (``operation`` set, or ``operationState`` Running), or an ``operationState`` for
    ``revision`` already (the sync ran, succeeded or not: it is not started twice)."""
    if ((app.get("spec") or {}).get("syncPolicy") or {}).get("automated") is not None:
        return None
    if app.get("operation"):
        return None
    op = (app.get("status") or {}).get("operationState") or {}
    if op.get("phase") in ("Running", "Terminating"):
        return None
    ran = {
        ((op.get("syncResult") or {}).get("revision")),
        (((op.get("operation") or {}).get("sync") or {}).get("revision")),
    }
    if revision in ran:
        return None
    # argocd-server's Sync handler: Operation{Sync: {Revision}, InitiatedBy: {Username}}
    # (prune, dry run, strategy and info are omitted when the CLI's flags are not given)
    return {"operation": {"sync": {"revision": revision}, "initiatedBy": {"username": SYNC_USER}}}


def declared_apps(docs: Iterable[Obj], repo_url: str, default_ns: str) -> list[DeclaredApp]:
    """The Applications in a render; those following ``repo_url`` carry their path."""
    out: list[DeclaredApp] = []
    for d in docs:
        if d.get("kind") != APP_KIND or not str(d.get("apiVersion", "")).startswith("argoproj.io/"):
            continue
        m = meta(d)
        src = (d.get("spec") or {}).get("source") or {}
        same = same_repo(str(src.get("repoURL") or ""), repo_url) and src.get("path") is not None
        out.append(
            DeclaredApp(
                str(m.get("namespace") or default_ns),
                str(m.get("name")),
                str(src.get("path")) if same else None,
                bool((src.get("directory") or {}).get("recurse")) if same else False,
            )
        )
    return out


def same_repo(a: str, b: str) -> bool:
    """Whether two repository URLs name the same repo (trailing ``.git`` and ``/`` ignored)."""

    def norm(u: str) -> str:
        u = u.strip().rstrip("/")
        return u[:-4] if u.endswith(".git") else u

    return bool(a) and norm(a) == norm(b)


def resource_ref(r: Obj) -> tuple[str, str, str, str | None]:
    """(apiVersion, kind, name, namespace) of a ``status.resources`` entry."""
    api = f"{r['group']}/{r['version']}" if r.get("group") else str(r.get("version") or "v1")
    return api, str(r.get("kind")), str(r.get("name")), r.get("namespace")


def unhealthy_workloads(app: Obj) -> list[WorkloadRef]:
    """The workloads among an Application's unhealthy resources."""
    return [resource_ref(r) for r in unhealthy_resources(app) if r.get("kind") in WORKLOAD_KINDS]


# --------------------------------------------------------------------------- the interface


@dataclass(frozen=True)
class ArgoCD:
    """Argo CD behind the ``Reconciler`` interface: one root Application (app of apps) in
    ``namespace``, a repository Secret, known_hosts in ``argocd-ssh-known-hosts-cm``."""

    namespace: str
    project: str = "default"
    app_of_apps: str | None = None

    @classmethod
    def from_settings(cls, settings: ArgocdReconciler) -> ArgoCD:
        return cls(str(settings.namespace), str(settings.project), settings.app_of_apps)

    def install_objects(self) -> list[Obj]:
        return install_objects(self.namespace)

    def workloads(self, objs: list[Obj]) -> list[tuple[str, str]]:
        return workloads(objs)

    def source(self, repo: Repo) -> RepoSource:
        """Argo CD fetches every URL drboot accepts; the root app follows ``app_of_apps``."""
        return RepoSource(repo.url, repo.revision, self.app_of_apps or repo.path)

    def key_secret(
        self, source: RepoSource, deploy_key: str | None, known_hosts: str | None
    ) -> KeySecret:
        """Always a repository Secret (it declares the repo); the key only for ssh."""
        return KeySecret(repo_secret(self.namespace, source.url, deploy_key), "sshPrivateKey")

    def known_hosts_configmap(self) -> str:
        return KNOWN_HOSTS_CM

    def known_hosts_patch(self, live: Obj | None, lines: str) -> Obj | None:
        return known_hosts_patch(live, lines)

    def root_objects(self, source: RepoSource, secret: KeySecret | None) -> list[Obj]:
        return [
            root_application(self.namespace, url=source.url, revision=source.revision,
                             path=source.path, project=self.project)
        ]  # fmt: skip

    def spec_differences(self, wanted: Obj, live: Obj | None) -> list[str]:
        return spec_differences(wanted, live)

    def apps(self) -> AppList:
        return AppList(APP_API, APP_KIND, self.namespace)

    def app_state(self, app: Obj) -> AppState:
        return app_state(app)

    def workload_refs(self, app: Obj) -> list[WorkloadRef]:
        return unhealthy_workloads(app)

    def root_apps(self) -> frozenset[tuple[str, str]]:
        return frozenset({(self.namespace, ROOT_APP)})

    def sources(self) -> None:
        return None  # an Application says its revision itself

    def synced_revision(self, app: Obj, sources: Sources) -> str | None:
        """``status.sync.revision`` of a Synced Application (the commit it was compared at)."""
        sync = (app.get("status") or {}).get("sync") or {}
        if sync.get("status") != "Synced":
            return None
        return commit_of(str(sync.get("revision") or "")) or None

    def target_revision(self, app: Obj, sources: Sources) -> str | None:
        """``status.sync.revision``: the commit the last comparison was made at."""
        return commit_of(str(((app.get("status") or {}).get("sync") or {}).get("revision") or ""))

    def declared_apps(self, docs: Iterable[Obj], repo_url: str) -> list[DeclaredApp]:
        return declared_apps(docs, repo_url, self.namespace)

    def follows_repo(self, app: Obj, repo_url: str) -> bool:
        src = (app.get("spec") or {}).get("source") or {}
        return same_repo(str(src.get("repoURL") or ""), repo_url)

    def renders_recursively(self) -> bool:
        return False  # a directory source reads subdirectories only with directory.recurse

    def sync_request(self, app: Obj, revision: str) -> Obj | None:
        return sync_request(app, revision)

    def more_apps(self) -> list[AppList]:
        return []  # ApplicationSets generate Applications: those are waited for
