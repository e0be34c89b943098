"""Flux for drboot: the pinned install, the objects that point it at the repo, app state.

Why it exists: the GitOps steps need Flux's objects in Flux's shapes (source.toolkit.fluxcd.io/v1
``GitRepository``, kustomize.toolkit.fluxcd.io/v1 ``Kustomization``, the deploy-key Secret with
``identity`` / ``known_hosts`` as ``flux create secret git`` writes it) and must read the
``Ready`` condition of every Kustomization. Names follow ``flux bootstrap`` (``flux-system``
for the GitRepository, the Kustomization and the Secret), so a repo made by ``flux bootstrap``
takes its own objects over. All functions are pure over dicts, except ``install_objects``
reading the pinned manifest file.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from bootstrap.errors import ConfigError
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

if TYPE_CHECKING:
    from bootstrap.settings import FluxReconciler, Repo

MANIFEST = Path(__file__).resolve().parent.parent / "manifests" / "flux" / "install.yaml"
UPSTREAM_NAMESPACE = "flux-system"
SOURCE_API = "source.toolkit.fluxcd.io/v1"
KS_API = "kustomize.toolkit.fluxcd.io/v1"
HR_API = "helm.toolkit.fluxcd.io/v2"
HR_KIND = "HelmRelease"
APP_KIND = "Kustomization"
ROOT = "flux-system"
MANAGED_BY = {"app.kubernetes.io/managed-by": "drboot"}
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
# The GitRepository CRD's url pattern: file:// (the lab's repos) is refused by the API server.
ACCEPTED_SCHEMES = ("http://", "https://", "ssh://")


def install_objects(namespace: str) -> list[Obj]:
    """The pinned install manifest, moved from ``flux-system`` into ``namespace``."""
    from bootstrap.adapters.kube import load_manifest

    return relocate(load_manifest(MANIFEST), UPSTREAM_NAMESPACE, namespace)


def workloads(objs: list[Obj]) -> list[tuple[str, str]]:
    return [(str(o["kind"]), str(meta(o)["name"])) for o in objs if o.get("kind") in WORKLOAD_KINDS]


def source_url(url: str) -> str | None:
    """The URL as Flux accepts it (scp-like ``git@host:path`` becomes ``ssh://git@host/path``),
    or None when Flux cannot fetch it (file://, plain paths)."""
    if url.startswith(ACCEPTED_SCHEMES):
        return url
    m = re.fullmatch(r"([A-Za-z0-9._-]+)@([A-Za-z0-9.-]+):(.+)", url)
    if m:
        return f"ssh://{m.group(1)}@{m.group(2)}/{m.group(3)}"
    return None


def git_ref(revision: str) -> Obj:
    """``spec.ref``: a full commit sha pins a commit, anything else is taken as a branch."""
    return {"commit": revision} if _COMMIT.match(revision) else {"branch": revision}


def _go_duration(d: timedelta) -> str:
    secs = int(d.total_seconds())
    h, rest = divmod(secs, 3600)
    m, s = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (s, "s")) if v) or "0s"


def deploy_key_secret(namespace: str, private_key: str, known_hosts: str | None) -> Obj:
    data = {"identity": private_key.rstrip("\n") + "\n"}
    if known_hosts:
        data["known_hosts"] = known_hosts
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": ROOT, "namespace": namespace, "labels": dict(MANAGED_BY)},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def git_repository(
    namespace: str, *, url: str, revision: str, interval: timedelta, secret: str | None
) -> Obj:
    spec: Obj = {"interval": _go_duration(interval), "url": url, "ref": git_ref(revision)}
    if secret:
        spec["secretRef"] = {"name": secret}
    return {
        "apiVersion": SOURCE_API,
        "kind": "GitRepository",
        "metadata": {"name": ROOT, "namespace": namespace, "labels": dict(MANAGED_BY)},
        "spec": spec,
    }


def kustomization(namespace: str, *, path: str, interval: timedelta) -> Obj:
    return {
        "apiVersion": KS_API,
        "kind": APP_KIND,
        "metadata": {"name": ROOT, "namespace": namespace, "labels": dict(MANAGED_BY)},
        "spec": {
            "interval": _go_duration(interval),
            "path": "./" + path.strip("/") if path.strip("/") not in ("", ".") else "./",
            "prune": True,
            "wait": True,
            "sourceRef": {"kind": "GitRepository", "name": ROOT},
        },
    }


def spec_differences(wanted: Obj, live: Obj | None) -> list[str]:
    """Spec fields of ``wanted`` whose value differs in ``live`` (empty: nothing)."""
    if live is None:
        return ["missing"]
    have = live.get("spec") or {}
    return [k for k, v in wanted["spec"].items() if have.get(k) != v]


# --------------------------------------------------------------------------- app state


def _ready(obj: Obj) -> Obj | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return dict(c)
    return None


_DEPENDENCY = re.compile(r"dependency '([^']+)'")


def app_state(ks: Obj) -> AppState:
    """A Kustomization is Synced when its last attempted revision is applied and Healthy
    when Ready=True for the current generation; the reason is Ready's reason and message
    (``DependencyNotReady`` reads "waiting for <dependency>"). A suspended one is held: Flux
    will not reconcile it until it is resumed."""
    m = meta(ks)
    st = ks.get("status") or {}
    name, ns = str(m.get("name")), str(m.get("namespace") or "")
    ready = _ready(ks)
    current = int(st.get("observedGeneration") or -1) >= int(m.get("generation") or 0)
    applied = st.get("lastAppliedRevision")
    revision = commit_of(str(applied or "")) or ""
    sync = "Synced" if applied and applied == st.get("lastAttemptedRevision") else "OutOfSync"
    if (ks.get("spec") or {}).get("suspend"):
        return AppState(name, ns, sync, "Unknown", "suspended (spec.suspend: true): "
                        "flux will not reconcile it", True, revision)  # fmt: skip
    if ready is None or not current:
        return AppState(name, ns, "Unknown", "Unknown", "not reconciled yet")
    if ready.get("status") == "True":
        return AppState(name, ns, "Synced", "Healthy", revision=revision)
    health = "Degraded" if ready.get("status") == "False" else "Progressing"
    message = str(ready.get("message") or "")
    if ready.get("reason") == "DependencyNotReady":
        deps = _DEPENDENCY.findall(message) or [
            f"{d.get('namespace') or ns}/{d.get('name')}"
            for d in (ks.get("spec") or {}).get("dependsOn") or []
        ]
        reason = "waiting for " + (", ".join(deps) or "a dependency")
        return AppState(name, ns, sync, "Progressing", reason, revision=revision)
    reason = f"{ready.get('reason') or 'NotReady'}: {message}".rstrip(": ")
    return AppState(name, ns, sync, health, reason, revision=revision)


def helmrelease_state(hr: Obj) -> AppState:
    """A HelmRelease (helm.toolkit.fluxcd.io/v2) is read by its ``Ready`` condition for the
    current generation, as a Kustomization is: Synced+Healthy when Ready=True, the reason
    Ready's reason and message otherwise (``DependencyNotReady`` reads "waiting for
    <dependency>"), held when suspended. Its revision is a chart version, not a commit.
    It is named ``HelmRelease/<name>`` so it never collides with a Kustomization."""
    m = meta(hr)
    st = hr.get("status") or {}
    name, ns = f"{HR_KIND}/{m.get('name')}", str(m.get("namespace") or "")
    ready = _ready(hr)
    current = int(st.get("observedGeneration") or -1) >= int(m.get("generation") or 0)
    if (hr.get("spec") or {}).get("suspend"):
        return AppState(name, ns, "Unknown", "Unknown", "suspended (spec.suspend: true): "
                        "flux will not reconcile it", True)  # fmt: skip
    if ready is None or not current:
        return AppState(name, ns, "Unknown", "Unknown", "not reconciled yet")
    if ready.get("status") == "True":
        return AppState(name, ns, "Synced", "Healthy")
    message = str(ready.get("message") or "")
    if ready.get("reason") == "DependencyNotReady":
        deps = _DEPENDENCY.findall(message) or [
            f"{d.get('namespace') or ns}/{d.get('name')}"
            for d in (hr.get("spec") or {}).get("dependsOn") or []
        ]
        return AppState(name, ns, "OutOfSync", "Progressing",
                        "waiting for " + (", ".join(deps) or "a dependency"))  # fmt: skip
    health = "Degraded" if ready.get("status") == "False" else "Progressing"
    reason = f"{ready.get('reason') or 'NotReady'}: {message}".rstrip(": ")
    return AppState(name, ns, "OutOfSync", health, reason)


def source_of(ks: Obj) -> tuple[str, str]:
    """(namespace, name) of a Kustomization's GitRepository."""
    ref = (ks.get("spec") or {}).get("sourceRef") or {}
    return str(ref.get("namespace") or meta(ks).get("namespace") or ""), str(ref.get("name"))


def synced_revision(ks: Obj, sources: Sources) -> str | None:
    """The commit of ``lastAppliedRevision`` when it is the source's current artifact
    revision and the current generation was observed; else None."""
    m, st = meta(ks), ks.get("status") or {}
    if int(st.get("observedGeneration") or -1) != int(m.get("generation") or 0):
        return None
    applied = str(st.get("lastAppliedRevision") or "")
    src = sources.get(source_of(ks))
    artifact = str((((src or {}).get("status") or {}).get("artifact") or {}).get("revision") or "")
    if not applied or applied != artifact:
        return None
    return commit_of(applied)


def declared_apps(docs: Iterable[Obj], namespace: str) -> list[DeclaredApp]:
    """The Kustomizations (and HelmReleases) in a render; Kustomizations built from the root
    GitRepository (the repo drboot points Flux at) carry their path."""
    out: list[DeclaredApp] = []
    for d in docs:
        api = str(d.get("apiVersion", ""))
        if d.get("kind") == HR_KIND and api.startswith("helm.toolkit.fluxcd.io/"):
            m = meta(d)  # a HelmRelease: waited for under the name its state carries
            out.append(
                DeclaredApp(str(m.get("namespace") or namespace), f"{HR_KIND}/{m.get('name')}")
            )
            continue
        if d.get("kind") != APP_KIND or not api.startswith("kustomize.toolkit.fluxcd.io/"):
            continue
        m = meta(d)
        ns = str(m.get("namespace") or namespace)
        ref = (d.get("spec") or {}).get("sourceRef") or {}
        same = ref.get("kind") == "GitRepository" and (
            str(ref.get("namespace") or ns), ref.get("name")) == (namespace, ROOT)  # fmt: skip
        path = str((d.get("spec") or {}).get("path") or "./")
        out.append(DeclaredApp(ns, str(m.get("name")), path if same else None, True))
    return out


def inventory_workloads(ks: Obj) -> list[WorkloadRef]:
    """The workloads in a Kustomization's ``status.inventory`` (entry ids are
    ``<namespace>_<name>_<group>_<kind>``, ``v`` the version; core objects have no group)."""
    out: list[WorkloadRef] = []
    for e in ((ks.get("status") or {}).get("inventory") or {}).get("entries") or []:
        parts = str(e.get("id", "")).split("_")
        if len(parts) == 4 and parts[3] in WORKLOAD_KINDS:
            ns, name, group, kind = parts
            api = f"{group}/{e.get('v')}" if group else str(e.get("v"))
            out.append((api, kind, name, ns or None))
    return out


# --------------------------------------------------------------------------- the interface


@dataclass(frozen=True)
class Flux:
    """Flux behind the ``Reconciler`` interface: a GitRepository and a Kustomization named
    ``flux-system`` in ``namespace``, the deploy key and known_hosts in one Secret."""

    namespace: str
    interval: timedelta = timedelta(minutes=1)

    @classmethod
    def from_settings(cls, settings: FluxReconciler) -> Flux:
        return cls(str(settings.namespace), settings.interval)

    def install_objects(self) -> list[Obj]:
        return install_objects(self.namespace)

    def workloads(self, objs: list[Obj]) -> list[tuple[str, str]]:
        return workloads(objs)

    def source(self, repo: Repo) -> RepoSource:
        """The repo with its URL as Flux fetches it; file:// and local paths are refused."""
        url = source_url(repo.url)
        if url is None:
            raise ConfigError(
                f"reconciler flux cannot follow repo.url {repo.url}: Flux's GitRepository "
                "accepts only http(s):// and ssh:// URLs (its CRD refuses file:// and local "
                "paths)",
                hint="serve the repository over ssh:// or https://, or use reconciler.type: argocd",
            )
        return RepoSource(url, repo.revision, repo.path)

    def key_secret(
        self, source: RepoSource, deploy_key: str | None, known_hosts: str | None
    ) -> KeySecret | None:
        """The ``flux create secret git`` Secret, only when there is a deploy key."""
        if deploy_key is None:
            return None
        return KeySecret(deploy_key_secret(self.namespace, deploy_key, known_hosts), "identity")

    def known_hosts_configmap(self) -> None:
        return None  # known_hosts travel in the key Secret

    def known_hosts_patch(self, live: Obj | None, lines: str) -> None:
        return None

    def root_objects(self, source: RepoSource, secret: KeySecret | None) -> list[Obj]:
        """The GitRepository (with the key Secret, if any), then the Kustomization."""
        return [
            git_repository(self.namespace, url=source.url, revision=source.revision,
                           interval=self.interval, secret=secret.name if secret else None),
            kustomization(self.namespace, path=source.path, interval=self.interval),
        ]  # fmt: skip

    def spec_differences(self, wanted: Obj, live: Obj | None) -> list[str]:
        return spec_differences(wanted, live)

    def apps(self) -> AppList:
        return AppList(KS_API, APP_KIND, None)  # Kustomizations in every namespace

    def app_state(self, app: Obj) -> AppState:
        return helmrelease_state(app) if app.get("kind") == HR_KIND else app_state(app)

    def workload_refs(self, app: Obj) -> list[WorkloadRef]:
        return inventory_workloads(app)

    def root_apps(self) -> frozenset[tuple[str, str]]:
        return frozenset({(self.namespace, ROOT)})

    def sources(self) -> AppList:
        return AppList(SOURCE_API, "GitRepository", None)

    def synced_revision(self, app: Obj, sources: Sources) -> str | None:
        return synced_revision(app, sources)

    def target_revision(self, app: Obj, sources: Sources) -> str | None:
        """The GitRepository's ``status.artifact.revision``: what the Kustomization applies next."""
        src = sources.get(source_of(app)) or {}
        return commit_of(
            str(((src.get("status") or {}).get("artifact") or {}).get("revision") or "")
        )

    def declared_apps(self, docs: Iterable[Obj], repo_url: str) -> list[DeclaredApp]:
        return declared_apps(docs, self.namespace)

    def follows_repo(self, app: Obj, repo_url: str) -> bool:
        return source_of(app) == (self.namespace, ROOT)

    def renders_recursively(self) -> bool:
        return True  # kustomize-controller generates a kustomization of every file below

    def sync_request(self, app: Obj, revision: str) -> None:
        return None  # every Kustomization reconciles by itself (unless suspended: reported)

    def more_apps(self) -> list[AppList]:
        return [AppList(HR_API, HR_KIND, None)]  # HelmReleases in every namespace
