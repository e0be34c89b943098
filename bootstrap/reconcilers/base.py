"""What Argo CD and Flux have in common for drboot: the ``Reconciler`` interface the GitOps
steps talk to, and pure judgements over plain dicts.

Why it exists: the GitOps steps observe the cluster (lists of objects) and must decide three
things without side effects, so that they can be tested table-driven with real-shaped objects:
is the pinned reconciler installed (CRDs and workloads with the pinned images), are its own
workloads available, and is every app Synced+Healthy (and if not, why). The steps never ask
which reconciler they hold: what differs (the install, the objects that point it at the repo,
where its apps live and how to read them) is behind ``Reconciler``, implemented by
``argocd.ArgoCD`` and ``flux.Flux`` and looked up by ``reconcilers.reconciler_for``. Nothing
here talks to a server.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

if TYPE_CHECKING:
    from bootstrap.settings import Repo

Obj: TypeAlias = dict[str, Any]
WorkloadRef: TypeAlias = tuple[str, str, str, str | None]  # apiVersion, kind, name, namespace

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


# --------------------------------------------------------------------------- the interface


@dataclass(frozen=True)
class RepoSource:
    """The config repo as the reconciler follows it (the URL in a form it can fetch)."""

    url: str
    revision: str
    path: str

    def to_dict(self) -> dict[str, str]:
        return {"url": self.url, "revision": self.revision, "path": self.path}


@dataclass(frozen=True)
class KeySecret:
    """The Secret that gives the reconciler the repo's credentials, and the ``data`` field
    holding the deploy key (compared with the escrowed key; never rotated)."""

    obj: Obj
    key_field: str

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"]["namespace"])


@dataclass(frozen=True)
class AppList:
    """Where the reconciler's apps are listed: one ``kube.list(api, kind, namespace)``
    (``namespace`` None: every namespace)."""

    api: str
    kind: str
    namespace: str | None


@dataclass(frozen=True)
class DeclaredApp:
    """An app the config repo declares (an Argo CD Application, a Flux Kustomization), and,
    when it follows a path of the same repo (app of apps), that path: rendered in turn."""

    namespace: str
    name: str
    child_path: str | None = None
    recurse: bool = False  # Argo CD ``directory.recurse`` for the child path


Sources: TypeAlias = Mapping[tuple[str, str], Obj]  # (namespace, name) -> source object

_SHA = re.compile(r"(?:^|@|:)([0-9a-f]{40})$")


def commit_of(revision: str | None) -> str | None:
    """The commit sha in a revision as the reconcilers write it: ``<sha>`` (Argo CD),
    ``main@sha1:<sha>`` or ``sha1:<sha>`` (Flux v1); None when there is none."""
    m = _SHA.search(str(revision or "").strip())
    return m.group(1) if m else None


class Reconciler(Protocol):
    """What the GitOps steps need of a reconciler. Pure: builds objects and reads them; the
    steps do the talking to the cluster."""

    @property
    def namespace(self) -> str:
        """The namespace it is installed into (and keeps its own objects in)."""
        ...

    def install_objects(self) -> list[Obj]:
        """The pinned install manifest, moved into ``namespace``."""
        ...

    def workloads(self, objs: list[Obj]) -> list[tuple[str, str]]:
        """(kind, name) of the install's own workloads, waited for after installing."""
        ...

    def source(self, repo: Repo) -> RepoSource:
        """The repo as this reconciler follows it; ``ConfigError`` when it cannot follow the
        URL (checked before anything is installed)."""
        ...

    def key_secret(
        self, source: RepoSource, deploy_key: str | None, known_hosts: str | None
    ) -> KeySecret | None:
        """The repository-credentials Secret (None: this reconciler needs none here)."""
        ...

    def known_hosts_configmap(self) -> str | None:
        """The ConfigMap in ``namespace`` the reconciler reads known_hosts from, or None when
        they travel in the key Secret."""
        ...

    def known_hosts_patch(self, live: Obj | None, lines: str) -> Obj | None:
        """A merge patch adding ``lines`` to that ConfigMap (None: all there already)."""
        ...

    def root_objects(self, source: RepoSource, secret: KeySecret | None) -> list[Obj]:
        """The object(s) that make it follow ``source``, applied in order."""
        ...

    def spec_differences(self, wanted: Obj, live: Obj | None) -> list[str]:
        """Spec fields of a root object that the live one lacks (empty: as wanted)."""
        ...

    def apps(self) -> AppList:
        """Where its apps are listed."""
        ...

    def app_state(self, app: Obj) -> AppState:
        """An app's sync/health as drboot judges it."""
        ...

    def workload_refs(self, app: Obj) -> list[WorkloadRef]:
        """The workloads an unready app manages, whose Pods say why it is not ready."""
        ...

    def root_apps(self) -> frozenset[tuple[str, str]]:
        """(namespace, name) of the apps drboot creates (``sync_wait.require_all: false``)."""
        ...

    def sources(self) -> AppList | None:
        """Where the objects live whose status says which commit the apps should be at
        (Flux: GitRepositories), watched with the apps; None when the app says it itself."""
        ...

    def synced_revision(self, app: Obj, sources: Sources) -> str | None:
        """The commit sha the app is synced at, as the reconciler reports it; None when it is
        not (yet) synced at its source's current revision."""
        ...

    def target_revision(self, app: Obj, sources: Sources) -> str | None:
        """The commit the reconciler is bringing the app to (compared at, or fetched), synced
        or not yet; None when it has not said."""
        ...

    def declared_apps(self, docs: Iterable[Obj], repo_url: str) -> list[DeclaredApp]:
        """The apps a render of the config repo declares, with the child path of those that
        follow ``repo_url`` too (app of apps)."""
        ...

    def follows_repo(self, app: Obj, repo_url: str) -> bool:
        """Whether the app is built from the config repo (only those must be at its commit;
        an app of a Helm repository reports the chart's version)."""
        ...

    def renders_recursively(self) -> bool:
        """Whether a directory without a kustomization is read with its subdirectories."""
        ...

    def sync_request(self, app: Obj, revision: str) -> Obj | None:
        """A merge patch of the app that starts one sync at ``revision``, as the reconciler's
        own CLI starts it (``argocd app sync``), for an app that will not sync by itself;
        None when there is nothing to start: it syncs by itself, a sync is in flight, or a
        sync at ``revision`` already ran (whatever its outcome: never twice)."""
        ...

    def more_apps(self) -> list[AppList]:
        """Other kinds of app, waited for too when the server serves their kind (Flux:
        HelmReleases, once the helm-controller's CRD is installed)."""
        ...


def object_ref(obj: Obj) -> str:
    """``Kind namespace/name`` of an object, for messages and outputs."""
    m = meta(obj)
    where = f"{m['namespace']}/{m['name']}" if m.get("namespace") else str(m.get("name"))
    return f"{obj.get('kind')} {where}"


def secret_value(secret: Obj | None, key: str) -> str | None:
    """A decoded ``data`` value of a Secret (stringData is never stored by the server)."""
    raw = ((secret or {}).get("data") or {}).get(key)
    return base64.b64decode(raw).decode() if raw is not None else None


def key_fingerprint(private_key: str | None) -> str | None:
    """A short, non-reversible tag of a private key, for messages (never the key)."""
    if private_key is None:
        return None
    digest = hashlib.sha256(private_key.strip().encode()).hexdigest()
    return f"sha256:{digest[:16]}"


@dataclass(frozen=True)
class AppState:
    """One application's state as drboot judges it (an Argo CD Application or a Flux
    Kustomization). ``reason`` is a one-line why when it is not ready."""

    name: str
    namespace: str
    sync: str  # Synced / OutOfSync / Unknown (Flux: Synced when the last attempt was applied)
    health: str  # Healthy / Progressing / Degraded / Missing / Unknown (Flux: from Ready)
    reason: str = ""
    held: bool = False  # something beyond sync/health keeps it from counting (reason says what)
    revision: str = ""  # the commit it is synced at ("" unknown)

    @property
    def ready(self) -> bool:
        return self.sync == "Synced" and self.health == "Healthy" and not self.held

    def line(self) -> str:
        """``guestbook: Progressing: Deployment guestbook: secret "x" not found``."""
        state = self.health if self.sync == "Synced" else f"{self.sync}/{self.health}"
        return f"{self.name}: {state}" + (f": {self.reason}" if self.reason else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "sync": self.sync,
            "health": self.health,
            "ready": self.ready,
            "reason": self.reason,
            "revision": self.revision,
        }


@dataclass(frozen=True)
class Tally:
    """Every app, split into ready and not ready (ignored apps left out)."""

    ready: tuple[AppState, ...]
    waiting: tuple[AppState, ...]
    ignored: tuple[str, ...]

    @property
    def total(self) -> int:
        return len(self.ready) + len(self.waiting)

    @property
    def all_ready(self) -> bool:
        return self.total > 0 and not self.waiting

    def summary(self) -> str:
        head = f"{len(self.ready)}/{self.total} apps Synced+Healthy"
        if not self.total:
            return "no applications yet"
        if not self.waiting:
            return head
        return head + "; waiting for " + "; ".join(a.line() for a in self.waiting)


def tally(states: Iterable[AppState], ignore: Iterable[str] = ()) -> Tally:
    """Split ``states`` (minus the names in ``ignore``, also ``ns/name``) into ready/waiting."""
    skip = set(ignore)
    ready: list[AppState] = []
    waiting: list[AppState] = []
    ignored: list[str] = []
    for s in sorted(states, key=lambda a: (a.namespace, a.name)):
        if s.name in skip or f"{s.namespace}/{s.name}" in skip:
            ignored.append(s.name)
        elif s.ready:
            ready.append(s)
        else:
            waiting.append(s)
    return Tally(tuple(ready), tuple(waiting), tuple(ignored))


# --------------------------------------------------------------------------- workloads


def meta(obj: Mapping[str, Any] | None) -> Obj:
    m: Obj = dict((obj or {}).get("metadata") or {})
    return m


def images(obj: Mapping[str, Any]) -> tuple[str, ...]:
    """The container images of a workload (init containers included), in order."""
    pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    return tuple(
        str(c.get("image")) for key in ("initContainers", "containers") for c in pod.get(key) or []
    )


def workload_problem(obj: Mapping[str, Any] | None) -> str | None:
    """None when the Deployment/StatefulSet/DaemonSet is rolled out and available, else why."""
    if not obj:
        return "not found"
    kind = obj.get("kind")
    spec, st, m = obj.get("spec") or {}, obj.get("status") or {}, meta(obj)
    if int(st.get("observedGeneration") or 0) < int(m.get("generation") or 0):
        return "rollout not observed yet"
    if kind == "DaemonSet":
        want = int(st.get("desiredNumberScheduled") or 0)
        have = int(st.get("numberAvailable") or 0)
        updated = int(st.get("updatedNumberScheduled") or 0)
    else:
        want = int(spec.get("replicas", 1))
        have = int(st.get("availableReplicas" if kind == "Deployment" else "readyReplicas") or 0)
        updated = int(st.get("updatedReplicas") or 0)
    if updated < want:
        return f"{updated} of {want} replicas updated"
    if have < want:
        return f"{have} of {want} replicas available"
    return None


def install_drift(wanted: Iterable[Obj], live: Mapping[tuple[str, str], Obj | None]) -> list[str]:
    """What differs between a pinned manifest and the cluster, for the objects that pin the
    version: every CRD must exist, every workload must exist with the manifest's images.

    ``live`` maps (kind, name) to the live object or None. Returns human-readable
    differences; empty means "the pinned version is installed".
    """
    out: list[str] = []
    for w in wanted:
        kind, name = str(w.get("kind")), str(meta(w).get("name"))
        if kind != "CustomResourceDefinition" and kind not in WORKLOAD_KINDS:
            continue
        have = live.get((kind, name))
        if have is None:
            out.append(f"{kind} {name} missing")
        elif kind in WORKLOAD_KINDS and images(have) != images(w):
            out.append(
                f"{kind} {name} runs {', '.join(images(have))}, pinned {', '.join(images(w))}"
            )
    return out


def pinned_refs(objs: Iterable[Obj]) -> list[tuple[str, str, str]]:
    """(apiVersion, kind, name) of the objects ``install_drift`` looks at."""
    return [
        (str(o["apiVersion"]), str(o["kind"]), str(meta(o)["name"]))
        for o in objs
        if o.get("kind") == "CustomResourceDefinition" or o.get("kind") in WORKLOAD_KINDS
    ]


def relocate(objs: Iterable[Obj], old: str | None, new: str) -> list[Obj]:
    """Copies of a manifest moved into namespace ``new``: objects in ``old``, the Namespace
    object named ``old``, and ServiceAccount subjects of (Cluster)RoleBindings in ``old`` or
    in none. Objects without a namespace keep none (``apply_manifest(namespace=)`` sets it)."""
    out: list[Obj] = []
    for o in objs:
        c = copy.deepcopy(o)
        m = c.setdefault("metadata", {})
        if c.get("kind") == "Namespace":
            if old is not None and m.get("name") == old:
                m["name"] = new
        elif old is not None and m.get("namespace") == old:
            m["namespace"] = new
        for s in c.get("subjects") or []:
            if s.get("kind") == "ServiceAccount" and s.get("namespace") in (old, None):
                s["namespace"] = new
        out.append(c)
    return out


# --------------------------------------------------------------------------- pods, for reasons


def pod_problem(pod: Mapping[str, Any]) -> str | None:
    """Why a Pod does not run, in the kubelet's words, or None if it is running/ready."""
    st = pod.get("status") or {}
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in st.get(key) or []:
            waiting = (cs.get("state") or {}).get("waiting")
            if waiting:
                why = str(waiting.get("reason") or "Waiting")
                msg = str(waiting.get("message") or "")
                return f"{why}: {msg}" if msg else why
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or []
    )
    if st.get("phase") in ("Running", "Succeeded") and (ready or st.get("phase") == "Succeeded"):
        return None
    for c in st.get("conditions") or []:
        if c.get("status") == "False" and c.get("message"):
            return f"{c.get('reason') or c.get('type')}: {c['message']}"
    return str(st.get("phase") or "Pending")


def first_pod_problem(pods: Iterable[Mapping[str, Any]]) -> str | None:
    """The first problem among ``pods`` (sorted by name for a stable message)."""
    for p in sorted(pods, key=lambda p: str(meta(p).get("name"))):
        problem = pod_problem(p)
        if problem:
            return problem
    return None


def selector_string(workload: Mapping[str, Any]) -> str | None:
    """``a=b,c=d`` from a workload's ``spec.selector.matchLabels`` (None if it has none)."""
    labels = ((workload.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    if not labels:
        return None
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
