"""LAB SIMULATION of the Argo CD application controller (+ the repo-server's rendering).

Why it exists: drboot's restore ends by waiting until every Argo CD Application is Synced and
Healthy, and the lab cannot run Argo CD. This stand-in reads the same objects and writes the
same status fields as ``argocd-application-controller`` (argoproj/argo-cd
``pkg/apis/application/v1alpha1/types.go``), so drboot's waiting code meets the real shapes:

* ``spec.source`` (repoURL, targetRevision, path; ``directory.recurse``) is resolved with
  ``git ls-remote`` and checked out (file:// or local paths in the lab), then rendered:
  kustomize when the path has a kustomization file, else the YAML/JSON files in it;
* every object is compared with the live one (``status.sync.status`` Synced / OutOfSync /
  Unknown, ``status.resources``) and judged with Argo CD's health checks
  (``status.health.status`` Healthy / Progressing / Degraded / Missing / Suspended);
* a render failure is a ``ComparisonError`` condition ("Failed to load target state: ...")
  with sync status Unknown, as in Argo CD;
* ``spec.syncPolicy.automated`` syncs when OutOfSync (once per revision unless ``selfHeal``;
  ``prune`` deletes tracked objects no longer rendered); an ``operation.sync`` on the object
  (what ``argocd app sync`` writes) runs a sync too, at ``operation.sync.revision`` when it
  names one; the operation is then cleared and recorded in ``status.operationState``.
  Sync = server-side apply with field manager ``argocd-controller`` and the tracking label
  ``app.kubernetes.io/instance=<app>``;
  the result is ``status.operationState`` (phase, message, syncResult) and ``status.history``;
  with ``spec.syncPolicy.retry`` a failed automated sync stays ``Running`` ("... Retrying
  attempt #N at 3:04PM.", ``retryCount``) and runs again after the backoff, up to ``limit``;
* app-of-apps works because rendered Applications are applied into the controller's
  namespace and reconciled on the next pass (child Applications carry no health, as in
  Argo CD >= 1.8).

The Application CRD has no status subresource, so status is written with a merge patch of the
object (as Argo CD's ``persistAppStatus`` does). Like argocd-server does at start-up, the
stand-in creates the ``default`` AppProject if it is missing. Not modelled: sync waves and
hooks, multi-source apps, Helm, ignoreDifferences, RBAC of projects, other clusters.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import re
import time
from pathlib import Path

from bootstrap.adapters.kube import Conflict, KubeClient, NotFound, UnknownKind
from bootstrap.adapters.kustomize import has_kustomization
from bootstrap.errors import BootstrapError
from bootstrap.lab.standins import render
from bootstrap.lab.standins.common import (
    STANDIN_MARK,
    ClientFactory,
    Loop,
    Obj,
    meta,
    now,
    parse_duration,
    record_event,
)
from bootstrap.lab.standins.gitsource import (
    CheckoutCache,
    Credentials,
    ls_remote,
    normalise_url,
)

APP_API = "argoproj.io/v1alpha1"
_SHA = re.compile(r"[0-9a-f]{40}")
INSTANCE_LABEL = "app.kubernetes.io/instance"
FIELD_MANAGER = "argocd-controller"
IN_CLUSTER = "https://kubernetes.default.svc"
COMPONENT = "argocd-application-controller"
SECRET_TYPE_LABEL = "argocd.argoproj.io/secret-type"
KNOWN_HOSTS_CM = "argocd-ssh-known-hosts-cm"


class ArgoCDController(Loop):
    """Reconciles the Applications of one namespace, one pass per ``interval``."""

    name = "argocd"

    def __init__(
        self,
        client: ClientFactory,
        *,
        namespace: str = "argocd",
        interval: float = 0.5,
        resync: float = 10.0,
        repo_root: Path | None = None,
        cache: CheckoutCache | None = None,
    ) -> None:
        super().__init__(interval)
        self._client_factory = client
        self.kube: KubeClient | None = None
        self.namespace = namespace
        self.resync = resync
        self.repo_root = repo_root
        self.cache = cache or CheckoutCache()
        self._written: dict[str, tuple[str, float]] = {}  # app uid -> (status digest, when)
        self._retry_at: dict[str, float] = {}  # app uid -> when its failed sync runs again

    def setup(self) -> None:
        self.kube = self._client_factory()
        with contextlib.suppress(UnknownKind):
            if self.kube.get(APP_API, "AppProject", "default", self.namespace) is None:
                self.kube.create(
                    {
                        "apiVersion": APP_API,
                        "kind": "AppProject",
                        "metadata": {
                            "name": "default",
                            "namespace": self.namespace,
                            "annotations": dict(STANDIN_MARK),
                        },
                        "spec": {
                            "sourceRepos": ["*"],
                            "destinations": [{"namespace": "*", "server": "*"}],
                            "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
                        },
                    }
                )
        self.say("started; watching Applications in namespace %s", self.namespace)

    def tick(self) -> None:
        assert self.kube is not None
        try:
            apps = self.kube.list(APP_API, "Application", self.namespace)
        except UnknownKind:
            return  # CRD not installed yet: the real controller waits for its informer too
        for app in apps:
            try:
                self.reconcile(app)
            except BootstrapError as e:
                self.say("Application %s: %s", meta(app).get("name"), e.format())

    # -- one Application ----------------------------------------------------------------------

    def reconcile(self, app: Obj) -> None:
        assert self.kube is not None
        m = meta(app)
        name = m["name"]
        spec = app.get("spec") or {}
        old = app.get("status") or {}
        status: Obj = {k: v for k, v in old.items() if k in ("operationState", "history")}
        status["controllerNamespace"] = self.namespace
        source = spec.get("source") or (spec.get("sources") or [{}])[0]
        dest = spec.get("destination") or {}
        status["sync"] = {
            "comparedTo": {"source": source, "destination": dest},
            "status": "Unknown",
        }

        invalid = self._invalid_spec(spec, source, dest)
        if invalid:
            status["conditions"] = _conditions(old, "InvalidSpecError", invalid)
            status["health"] = {"status": "Unknown"}
            self._persist(app, status)
            return

        try:
            sha, objs, source_type = self._render(source, name, dest.get("namespace"))
        except BootstrapError as e:
            msg = (
                "Failed to load target state: failed to generate manifest for source 1 of 1: "
                f"rpc error: code = Unknown desc = {e.message}"
            )
            status["conditions"] = _conditions(old, "ComparisonError", msg)
            status["resources"] = old.get("resources") or []
            status["health"] = {
                "status": render.worst(
                    [r.get("health", {}).get("status", "Healthy") for r in status["resources"]]
                )
            }
            self._persist(app, status)
            return

        status["sourceType"] = source_type
        status["sync"]["revision"] = sha
        resources, synced = self._compare(objs)

        op = app.get("operation") or {}
        auto = (spec.get("syncPolicy") or {}).get("automated")
        retry = (spec.get("syncPolicy") or {}).get("retry")
        retrying = self._retrying(m.get("uid", ""), old, sha)
        reason = None
        if op.get("sync") is not None:
            reason = {"username": (op.get("initiatedBy") or {}).get("username", "lab")}
        elif retrying is not None:
            if retrying:  # the backoff is over: the failed automated sync runs again
                reason = {"automated": True}
        elif auto is not None and not synced and self._auto_sync_allowed(old, sha, auto):
            reason = {"automated": True}
        if reason is not None:
            op_sync = op.get("sync") or {}
            wanted = str(op_sync.get("revision") or "")
            sync_sha, sync_objs = sha, objs
            if wanted and wanted != sha:  # `argocd app sync --revision`: that commit is applied
                sync_sha, sync_objs, _ = self._render(source, name, dest.get("namespace"),
                                                      revision=wanted)  # fmt: skip
            status["operationState"] = self._sync(app, sync_objs, sync_sha, source, reason,
                                                  auto or {}, op)  # fmt: skip
            if retry and op.get("sync") is None:
                self._schedule_retry(m.get("uid", ""), old, status["operationState"], retry)
            if status["operationState"]["phase"] == "Succeeded":
                status["history"] = _history(old, sha, source, status["operationState"])
            resources, synced = self._compare(objs)
        status["sync"]["status"] = "Synced" if synced else "OutOfSync"
        status["resources"] = resources
        status["health"] = {
            "status": render.worst([r["health"]["status"] for r in resources if "health" in r])
        }
        status["conditions"] = [
            c
            for c in old.get("conditions") or []
            if c.get("type") not in ("ComparisonError", "InvalidSpecError")
        ]
        status["summary"] = {
            "images": sorted(
                {c.get("image") for o in objs for c in _containers(o) if c.get("image")}
            )
        }
        self._persist(app, status, clear_operation=bool(op))

    def _invalid_spec(self, spec: Obj, source: Obj, dest: Obj) -> str | None:
        assert self.kube is not None
        server, dname = dest.get("server"), dest.get("name")
        if (server and server.rstrip("/") != IN_CLUSTER) or (dname and dname != "in-cluster"):
            return (
                "Application destination spec is invalid: unable to find destination server: "
                f"there are no clusters with this URL: {server or dname}"
            )
        if not source.get("repoURL"):
            return "spec.source.repoURL and spec.source.path either both need to have a value"
        project = spec.get("project") or "default"
        if self.kube.get(APP_API, "AppProject", project, self.namespace) is None:
            return f"Application referencing project {project} which does not exist"
        return None

    def _render(
        self, source: Obj, app: str, dest_ns: str | None, *, revision: str | None = None
    ) -> tuple[str, list[Obj], str]:
        assert self.kube is not None
        url = normalise_url(str(source["repoURL"]), self.repo_root)
        creds = self._credentials(url)
        sha = revision if revision and _SHA.fullmatch(revision) else ls_remote(
            url, str(revision or source.get("targetRevision") or "HEAD"), creds=creds)  # fmt: skip
        tree = self.cache.checkout(url, sha, creds)
        recurse = bool((source.get("directory") or {}).get("recurse"))
        path = str(source.get("path") or ".")
        objs = render.render_path(tree, path, recurse=recurse)
        is_kustomize = has_kustomization(tree / path)
        out = []
        for o in objs:
            o.setdefault("metadata", {}).setdefault("labels", {})[INSTANCE_LABEL] = app
            if not o["metadata"].get("namespace") and dest_ns:
                try:
                    namespaced = render.is_namespaced(self.kube, o["apiVersion"], o["kind"])
                except UnknownKind:
                    namespaced = True
                if namespaced:
                    o["metadata"]["namespace"] = dest_ns
            out.append(o)
        return sha, out, "Kustomize" if is_kustomize else "Directory"

    def _credentials(self, url: str) -> Credentials:
        """What repo-server gets for ``url``: the ``sshPrivateKey`` of the repository Secret
        (label ``argocd.argoproj.io/secret-type: repository``) whose ``url`` is this one,
        and the known hosts of ``argocd-ssh-known-hosts-cm``."""
        assert self.kube is not None
        key = None
        for secret in self.kube.list("v1", "Secret", self.namespace,
                                     label_selector=f"{SECRET_TYPE_LABEL}=repository"):  # fmt: skip
            data = secret.get("data") or {}
            if _same_repo(_decoded(data.get("url")), url):
                key = _decoded(data.get("sshPrivateKey")) or None
                break
        cm = self.kube.get("v1", "ConfigMap", KNOWN_HOSTS_CM, self.namespace) or {}
        known = str((cm.get("data") or {}).get("ssh_known_hosts") or "") or None
        return Credentials(key, known)

    def _compare(self, objs: list[Obj]) -> tuple[list[Obj], bool]:
        assert self.kube is not None
        resources = []
        all_synced = True
        for o in objs:
            api, kind, name, ns = render.ref_of(o)
            try:
                live = self.kube.get(api, kind, name, ns)
            except UnknownKind:
                live = None
            synced = render.in_sync(o, live)
            all_synced &= synced
            group, _, version = api.rpartition("/")
            res: Obj = {
                **({"group": group} if group else {}),  # omitempty, as Argo CD writes it
                "version": version,
                "kind": kind,
                "name": name,
                "status": "Synced" if synced else "OutOfSync",
            }
            if ns:
                res["namespace"] = ns
            h = render.health(live) if kind != "Application" else None
            if live is None and kind != "Application":
                h = ("Missing", "")
            if h is not None:
                res["health"] = {"status": h[0]} | ({"message": h[1]} if h[1] else {})
            resources.append(res)
        return resources, all_synced

    def _retrying(self, uid: str, old: Obj, sha: str) -> bool | None:
        """None: no automated sync is being retried; else whether its backoff is over."""
        op = old.get("operationState") or {}
        if op.get("phase") != "Running" or not op.get("retryCount"):
            return None
        if (op.get("syncResult") or {}).get("revision") != sha:
            return None  # a new commit: a new sync, not a retry
        return time.monotonic() >= self._retry_at.get(uid, 0.0)

    def _schedule_retry(self, uid: str, old: Obj, state: Obj, retry: Obj) -> None:
        """``spec.syncPolicy.retry``: a failed automated sync stays Running and runs again
        after the backoff (``duration`` x ``factor``^n, at most ``maxDuration``), up to
        ``limit`` times (negative: no limit), as Argo CD's controller does."""
        if state["phase"] != "Failed":
            self._retry_at.pop(uid, None)
            return
        before = old.get("operationState") or {}
        count = int(before.get("retryCount") or 0) + 1 if before.get("phase") == "Running" else 1
        limit = int(retry.get("limit") or 0)
        if 0 <= limit < count:
            self._retry_at.pop(uid, None)
            return
        backoff = retry.get("backoff") or {}
        delay = parse_duration(backoff.get("duration"), 5.0) * float(
            backoff.get("factor") or 2) ** (count - 1)  # fmt: skip
        delay = min(delay, parse_duration(backoff.get("maxDuration"), 180.0))
        self._retry_at[uid] = time.monotonic() + delay
        at = time.strftime("%I:%M%p", time.gmtime(time.time() + delay)).lstrip("0")
        state.update(phase="Running", retryCount=count,
                     message=f"{state['message']}. Retrying attempt #{count} at {at}.")  # fmt: skip

    @staticmethod
    def _auto_sync_allowed(old: Obj, sha: str, auto: Obj) -> bool:
        op = old.get("operationState") or {}
        last = ((op.get("syncResult") or {}).get("revision")) or (
            ((op.get("operation") or {}).get("sync") or {}).get("revision")
        )
        if last != sha:
            return True
        if op.get("phase") in ("Failed", "Error"):
            return False  # "Skipping auto-sync: failed previous sync attempt"
        return bool(auto.get("selfHeal"))

    def _sync(
        self, app: Obj, objs: list[Obj], sha: str, source: Obj, initiated: Obj, auto: Obj,
        requested: Obj | None = None,
    ) -> Obj:  # fmt: skip
        assert self.kube is not None
        started = now()
        name = meta(app)["name"]
        dest_ns = (app.get("spec") or {}).get("destination", {}).get("namespace")
        results = []
        phase, message = "Succeeded", "successfully synced (all tasks run)"
        try:
            applied: list[Obj] = self.kube.apply_manifest(
                objs, namespace=dest_ns, field_manager=FIELD_MANAGER
            )
            for o in applied:
                api, kind, oname, ns = render.ref_of(o)
                group, _, version = api.rpartition("/")
                if not group:
                    # ResourceResult.group is required, and the lab's 1.20 API server refuses
                    # "" in custom resources ("must be of type string: null"): core-group
                    # results cannot be stored there, so they are left out.
                    continue
                results.append(
                    {
                        "group": group,
                        **({"namespace": ns} if ns else {}),
                        "version": version,
                        "kind": kind,
                        "name": oname,
                        "status": "Synced",
                        "syncPhase": "Sync",
                        "message": f"{kind.lower()}/{oname} serverside-applied",
                    }
                )
            if auto.get("prune"):
                self._prune(app, objs)
        except BootstrapError as e:
            phase, message = "Failed", f"one or more objects failed to apply, reason: {e.message}"
        self.say("Application %s: sync to %s %s: %s", name, sha[:8], phase, message)
        record_event(
            self.kube,
            app,
            "Normal" if phase == "Succeeded" else "Warning",
            "OperationCompleted",
            f"Sync operation to {sha} {phase.lower()}: {message}",
            COMPONENT,
        )
        # operationState.operation: the operation that ran (the one requested, as written by
        # `argocd app sync`, or the automated one), its revision resolved to the commit
        operation: Obj = {"retry": {}, **copy.deepcopy(requested or {})}
        operation["sync"] = {**(operation.get("sync") or {}), "revision": sha}
        operation["initiatedBy"] = initiated if requested is None else operation.get(
            "initiatedBy") or initiated  # fmt: skip
        return {
            "operation": operation,
            "phase": phase,
            "message": message,
            "startedAt": started,
            "finishedAt": now(),
            "syncResult": {"revision": sha, "source": source, "resources": results},
        }

    def _prune(self, app: Obj, objs: list[Obj]) -> None:
        assert self.kube is not None
        wanted = {(o["kind"], meta(o).get("namespace"), meta(o)["name"]) for o in objs}
        for r in (app.get("status") or {}).get("resources") or []:
            key = (r.get("kind"), r.get("namespace"), r.get("name"))
            if key in wanted:
                continue
            api = f"{r['group']}/{r['version']}" if r.get("group") else r["version"]
            live = self.kube.get(api, r["kind"], r["name"], r.get("namespace"))
            if live and (meta(live).get("labels") or {}).get(INSTANCE_LABEL) == meta(app)["name"]:
                self.kube.delete(api, r["kind"], r["name"], r.get("namespace"))
                self.say("Application %s: pruned %s %s", meta(app)["name"], r["kind"], r["name"])

    def _persist(self, app: Obj, status: Obj, *, clear_operation: bool = False) -> None:
        """Write the status with an update of the whole object (the CRD has no status
        subresource); a Conflict means someone changed the app: the next pass redoes it."""
        assert self.kube is not None
        m = meta(app)
        digest = repr(sorted((k, repr(v)) for k, v in status.items()))
        last = self._written.get(m.get("uid", ""))
        refresh = "argocd.argoproj.io/refresh" in (m.get("annotations") or {})
        fresh = last and last[0] == digest and time.monotonic() - last[1] < self.resync
        if fresh and not clear_operation and not refresh:
            return
        status["reconciledAt"] = now()
        updated = copy.deepcopy(app)
        updated["status"] = status
        if clear_operation:
            updated.pop("operation", None)
        if refresh:
            updated["metadata"]["annotations"].pop("argocd.argoproj.io/refresh")
        try:
            self.kube.replace(updated)
        except (NotFound, Conflict):
            return
        self._written[m.get("uid", "")] = (digest, time.monotonic())


def _decoded(b64: object) -> str:
    return base64.b64decode(str(b64)).decode() if b64 else ""


def _same_repo(a: str, b: str) -> bool:
    """Argo CD's NormalizeGitURL comparison, enough for the lab: ``.git`` and ``/`` ignored."""

    def norm(u: str) -> str:
        u = u.strip().rstrip("/").lower()
        return u[:-4] if u.endswith(".git") else u

    return bool(a) and norm(a) == norm(b)


def _conditions(old: Obj, type_: str, message: str) -> list[Obj]:
    prev = next((c for c in old.get("conditions") or [] if c.get("type") == type_), None)
    when = prev["lastTransitionTime"] if prev and prev.get("message") == message else now()
    return [{"type": type_, "message": message, "lastTransitionTime": when}]


def _history(old: Obj, sha: str, source: Obj, op: Obj) -> list[Obj]:
    hist = list(old.get("history") or [])
    next_id = max((int(h.get("id", 0)) for h in hist), default=-1) + 1
    hist.append(
        {
            "id": next_id,
            "revision": sha,
            "source": source,
            "deployStartedAt": op["startedAt"],
            "deployedAt": op["finishedAt"],
        }
    )
    return hist[-10:]


def _containers(obj: Obj) -> list[Obj]:
    spec = obj.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or {}
    return list(pod.get("containers") or [])
