"""LAB SIMULATION of Flux's source-controller (GitRepository) and kustomize-controller.

Why it exists: drboot can bootstrap Flux instead of Argo CD and then waits for its
Kustomizations to be Ready; the lab cannot run Flux. These stand-ins read the same objects and
write the same status as the real controllers (source.toolkit.fluxcd.io/v1 and
kustomize.toolkit.fluxcd.io/v1 API types):

GitRepository: ``spec.url`` + ``spec.ref`` (branch, default ``master``; tag; commit; name)
are resolved with ``git ls-remote``, checked out, and packed as a tar.gz artifact in a local
storage directory. Status: ``artifact`` {revision ``<branch>@sha1:<sha>`` (``sha1:<sha>`` for
a bare commit), digest ``sha256:...``, path, url, size, lastUpdateTime}, ``conditions``
Ready/ArtifactInStorage True (reason ``Succeeded``) or Ready=False + FetchFailed
(reason ``GitOperationFailed``), ``observedGeneration``.

Kustomization: takes its ``sourceRef`` artifact, renders ``spec.path`` (kustomize build, or all
manifests under the path when there is no kustomization file, as Flux generates one), applies
with field manager ``kustomize-controller`` and the labels
``kustomize.toolkit.fluxcd.io/name|namespace`` (``targetNamespace`` honoured), then, with
``spec.wait`` or ``spec.healthChecks``, waits for the objects' health up to ``spec.timeout``.
Status: ``conditions`` Ready True ``ReconciliationSucceeded`` / False ``BuildFailed``,
``ArtifactFailed``, ``DependencyNotReady``, ``ReconciliationFailed``, ``HealthCheckFailed``
(and Healthy when checks run), ``lastAttemptedRevision``, ``lastAppliedRevision`` (set once the
revision is applied and healthy), ``inventory``, ``observedGeneration``.

Not modelled: SOPS decryption, post-build substitution, prune/garbage collection, OCI and
Bucket sources, verification, notifications; the artifact is not served over HTTP.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bootstrap.adapters.kube import KubeClient, NotFound, UnknownKind
from bootstrap.errors import BootstrapError, PermanentError
from bootstrap.lab.standins import render
from bootstrap.lab.standins.common import (
    ClientFactory,
    Loop,
    Obj,
    condition,
    meta,
    now,
    parse_duration,
    set_condition,
)
from bootstrap.lab.standins.gitsource import (
    CheckoutCache,
    Credentials,
    ls_remote,
    normalise_url,
)

SOURCE_API = "source.toolkit.fluxcd.io/v1"
KS_API = "kustomize.toolkit.fluxcd.io/v1"
FIELD_MANAGER = "kustomize-controller"
NAME_LABEL = "kustomize.toolkit.fluxcd.io/name"
NS_LABEL = "kustomize.toolkit.fluxcd.io/namespace"


def ref_revision(ref: Obj | None) -> tuple[str, str]:
    """(what to resolve, revision prefix) for a GitRepository ``spec.ref``."""
    ref = ref or {}
    if ref.get("commit"):
        return str(ref["commit"]), ""
    for key in ("name", "tag", "branch"):
        if ref.get(key):
            return str(ref[key]), str(ref[key])
    return "master", "master"


class StorageDir:
    """Where the source stand-in keeps artifacts (the real one: /data in its Pod)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root or tempfile.mkdtemp(prefix="drboot-standin-flux-"))

    def path_of(self, rel: str) -> Path:
        return self.root / rel

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _reconcile_all(ctl: SourceController | KustomizeController, api: str, kind: str) -> None:
    """One pass of a Flux controller: reconcile every object of its kind not suspended."""
    assert ctl.kube is not None
    try:
        items = ctl.kube.list(api, kind)
    except UnknownKind:  # the CRD is not installed (yet)
        return
    for obj in items:
        if not (obj.get("spec") or {}).get("suspend"):
            ctl.reconcile(obj)


class SourceController(Loop):
    """GitRepository reconciler (all namespaces)."""

    name = "flux-source"

    def __init__(
        self,
        client: ClientFactory,
        *,
        storage: StorageDir,
        interval: float = 0.5,
        repo_root: Path | None = None,
        cache: CheckoutCache | None = None,
        namespace: str = "flux-system",
    ) -> None:
        super().__init__(interval)
        self._client_factory = client
        self.kube: KubeClient | None = None
        self.storage = storage
        self.repo_root = repo_root
        self.cache = cache or CheckoutCache()
        self.namespace = namespace

    def setup(self) -> None:
        self.kube = self._client_factory()
        self.say("started; artifacts in %s", self.storage.root)

    def tick(self) -> None:
        _reconcile_all(self, SOURCE_API, "GitRepository")

    def reconcile(self, repo: Obj) -> None:
        assert self.kube is not None
        m = meta(repo)
        spec = repo.get("spec") or {}
        old = repo.get("status") or {}
        gen = int(m.get("generation") or 0)
        conds = old.get("conditions") or []
        status: Obj = {"observedGeneration": gen}
        want, prefix = ref_revision(spec.get("ref"))
        url = normalise_url(str(spec.get("url") or ""), self.repo_root)
        try:
            creds = self._credentials(spec.get("secretRef"), m["namespace"])
            sha = ls_remote(url, want, creds=creds)
            revision = f"{prefix}@sha1:{sha}" if prefix else f"sha1:{sha}"
            artifact = old.get("artifact") or {}
            if (
                artifact.get("revision") != revision
                or not self.storage.path_of(str(artifact.get("path", ""))).is_file()
            ):
                artifact = self._package(m, url, sha, revision, creds)
        except BootstrapError as e:
            msg = f"failed to checkout and determine revision: unable to clone '{url}': {e.message}"
            conds = set_condition(
                conds, "FetchFailed", "True", "GitOperationFailed", msg, observed_generation=gen
            )
            conds = set_condition(
                conds, "Ready", "False", "GitOperationFailed", msg, observed_generation=gen
            )
            status["conditions"] = conds
            self._write(repo, status)
            return
        msg = f"stored artifact for revision '{revision}'"
        conds = [c for c in conds if c.get("type") != "FetchFailed"]
        conds = set_condition(
            conds, "ArtifactInStorage", "True", "Succeeded", msg, observed_generation=gen
        )
        conds = set_condition(conds, "Ready", "True", "Succeeded", msg, observed_generation=gen)
        status.update({"conditions": conds, "artifact": artifact})
        self._write(repo, status)

    def _credentials(self, ref: Obj | None, namespace: str) -> Credentials:
        """``spec.secretRef``: the Secret ``flux create secret git`` writes (``identity``,
        ``known_hosts``) in the GitRepository's namespace; a missing one fails the fetch."""
        assert self.kube is not None
        if not ref or not ref.get("name"):
            return Credentials()
        secret = self.kube.get("v1", "Secret", str(ref["name"]), namespace)
        if secret is None:
            raise PermanentError(
                f"failed to get secret '{namespace}/{ref['name']}': secrets "
                f"\"{ref['name']}\" not found"
            )
        data = secret.get("data") or {}

        def value(k: str) -> str | None:
            return base64.b64decode(data[k]).decode() if data.get(k) else None

        return Credentials(value("identity"), value("known_hosts"))

    def _package(self, m: Obj, url: str, sha: str, revision: str, creds: Credentials) -> Obj:
        tree = self.cache.checkout(url, sha, creds)
        rel = f"gitrepository/{m['namespace']}/{m['name']}/{sha}.tar.gz"
        dest = self.storage.path_of(rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for f in sorted(tree.rglob("*")):
                if ".git" not in f.relative_to(tree).parts:
                    tar.add(f, arcname=str(f.relative_to(tree)), recursive=False)
        data = buf.getvalue()
        tmp = dest.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(dest)
        self.say("GitRepository %s/%s: stored artifact for %s", m["namespace"], m["name"], revision)
        return {
            "revision": revision,
            "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
            "path": rel,
            "url": f"http://source-controller.{self.namespace}.svc.cluster.local./{rel}",
            "size": len(data),
            "lastUpdateTime": now(),
        }

    def _write(self, obj: Obj, status: Obj) -> None:
        assert self.kube is not None
        if _unchanged(obj.get("status") or {}, status):
            return
        m = meta(obj)
        with contextlib.suppress(NotFound):
            self.kube.patch_status(SOURCE_API, "GitRepository", m["name"], status, m["namespace"])


@dataclass
class _Attempt:
    """An applied revision whose health is being watched."""

    key: tuple[str, int]  # (revision, generation)
    started: float
    timeout: float
    entries: list[Obj]
    checks: list[Obj]
    done: bool = False
    failed_at: float = 0.0


class KustomizeController(Loop):
    """Kustomization reconciler (all namespaces)."""

    name = "flux-kustomize"

    def __init__(
        self,
        client: ClientFactory,
        *,
        storage: StorageDir,
        interval: float = 0.5,
        retry: float | None = None,
    ) -> None:
        super().__init__(interval)
        self._client_factory = client
        self.kube: KubeClient | None = None
        self.storage = storage
        self.retry = retry
        self._attempts: dict[str, _Attempt] = {}

    def setup(self) -> None:
        self.kube = self._client_factory()
        self.say("started")

    def tick(self) -> None:
        _reconcile_all(self, KS_API, "Kustomization")

    def reconcile(self, ks: Obj) -> None:
        assert self.kube is not None
        m = meta(ks)
        spec = ks.get("spec") or {}
        old = ks.get("status") or {}
        gen = int(m.get("generation") or 0)
        status: Obj = {"observedGeneration": gen}
        conds = old.get("conditions") or []

        def fail(reason: str, msg: str) -> None:
            status["conditions"] = set_condition(
                conds, "Ready", "False", reason, msg, observed_generation=gen
            )
            self._write(ks, status)

        src_ref = spec.get("sourceRef") or {}
        src_ns = src_ref.get("namespace") or m["namespace"]
        src = None
        if src_ref.get("kind", "GitRepository") == "GitRepository":
            src = self.kube.get(SOURCE_API, "GitRepository", src_ref.get("name", ""), src_ns)
        if src is None:
            what = f"{src_ref.get('kind')}/{src_ns}/{src_ref.get('name')}"
            fail("ArtifactFailed", f"Source '{what}' not found")
            return
        artifact = (src.get("status") or {}).get("artifact")
        if not artifact:
            fail("ArtifactFailed", "Source artifact not found, retrying in 30s")
            return
        for dep in spec.get("dependsOn") or []:
            dns = dep.get("namespace") or m["namespace"]
            d = self.kube.get(KS_API, "Kustomization", dep.get("name", ""), dns)
            ready = condition(d, "Ready")
            if d is None or not ready or ready.get("status") != "True":
                fail("DependencyNotReady", f"dependency '{dns}/{dep.get('name')}' is not ready")
                return
        revision = str(artifact["revision"])
        status["lastAttemptedRevision"] = revision
        key = (revision, gen)
        uid = m.get("uid", "")
        att = self._attempts.get(uid)
        timeout = parse_duration(spec.get("timeout"), parse_duration(spec.get("interval"), 300.0))
        retry_after = (
            self.retry
            if self.retry is not None
            else parse_duration(
                spec.get("retryInterval"), parse_duration(spec.get("interval"), 60.0)
            )
        )
        if (
            att is None
            or att.key != key
            or (att.failed_at and time.monotonic() - att.failed_at >= retry_after)
        ):
            try:
                att = self._apply(ks, artifact, key, timeout)
            except BootstrapError as e:
                self._attempts.pop(uid, None)
                if isinstance(e, render.RenderError):
                    fail("BuildFailed", f"kustomize build failed: {e.message}")
                else:
                    fail("ReconciliationFailed", e.message)
                return
            self._attempts[uid] = att
        status["inventory"] = {"entries": att.entries}
        if att.done and not att.failed_at:
            status["lastAppliedRevision"] = revision
            status["conditions"] = set_condition(
                conds,
                "Ready",
                "True",
                "ReconciliationSucceeded",
                f"Applied revision: {revision}",
                observed_generation=gen,
            )
            self._write(ks, status)
            return
        if old.get("lastAppliedRevision"):
            status["lastAppliedRevision"] = old["lastAppliedRevision"]
        if not att.checks:
            att.done = True
            status["lastAppliedRevision"] = revision
            status["conditions"] = set_condition(
                conds,
                "Ready",
                "True",
                "ReconciliationSucceeded",
                f"Applied revision: {revision}",
                observed_generation=gen,
            )
            self._write(ks, status)
            return
        pending = self._unhealthy(att.checks)
        elapsed = time.monotonic() - att.started
        if not pending:
            att.done, att.failed_at = True, 0.0
            conds = set_condition(
                conds,
                "Healthy",
                "True",
                "Succeeded",
                f"Health check passed in {elapsed:.1f}s",
                observed_generation=gen,
            )
            status["lastAppliedRevision"] = revision
            status["conditions"] = set_condition(
                conds,
                "Ready",
                "True",
                "ReconciliationSucceeded",
                f"Applied revision: {revision}",
                observed_generation=gen,
            )
        elif elapsed >= att.timeout or att.failed_at:
            att.failed_at = att.failed_at or time.monotonic()
            what = f"timeout waiting for: [{', '.join(pending)}]"
            conds = set_condition(
                conds, "Healthy", "False", "HealthCheckFailed", what, observed_generation=gen
            )
            status["conditions"] = set_condition(
                conds,
                "Ready",
                "False",
                "HealthCheckFailed",
                f"health check failed after {att.timeout:.0f}s: {what}",
                observed_generation=gen,
            )
        else:
            conds = set_condition(
                conds,
                "Healthy",
                "Unknown",
                "Progressing",
                f"Running health checks for revision {revision} with a timeout "
                f"of {att.timeout:.0f}s",
                observed_generation=gen,
            )
            status["conditions"] = set_condition(
                conds,
                "Ready",
                "Unknown",
                "Progressing",
                "Reconciliation in progress",
                observed_generation=gen,
            )
        self._write(ks, status)

    def _apply(self, ks: Obj, artifact: Obj, key: tuple[str, int], timeout: float) -> _Attempt:
        assert self.kube is not None
        m = meta(ks)
        spec = ks.get("spec") or {}
        work = Path(tempfile.mkdtemp(prefix="drboot-standin-ks-"))
        try:
            tar_path = self.storage.path_of(str(artifact.get("path", "")))
            if not tar_path.is_file():
                raise BootstrapError(f"artifact {artifact.get('path')} is not in storage")
            with tarfile.open(tar_path) as tar:
                tar.extractall(work, filter="data")
            path = str(spec.get("path") or "./")
            if not (work / path.strip("/")).is_dir():
                raise BootstrapError(
                    f"kustomization path not found: stat {path}: no such file or directory"
                )
            objs = render.render_path(work, path, recurse=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        target_ns = spec.get("targetNamespace")
        for o in objs:
            md = o.setdefault("metadata", {})
            md.setdefault("labels", {}).update({NAME_LABEL: m["name"], NS_LABEL: m["namespace"]})
            if target_ns:
                try:
                    namespaced = render.is_namespaced(self.kube, o["apiVersion"], o["kind"])
                except UnknownKind:
                    namespaced = True
                if namespaced:
                    md["namespace"] = target_ns
        applied = self.kube.apply_manifest(
            objs, namespace=target_ns or m["namespace"], field_manager=FIELD_MANAGER
        )
        self.say(
            "Kustomization %s/%s: applied %d object(s) at %s",
            m["namespace"],
            m["name"],
            len(applied),
            key[0],
        )
        entries = []
        for o in applied:
            api, kind, name, ns = render.ref_of(o)
            group, _, version = api.rpartition("/")
            entries.append({"id": f"{ns or ''}_{name}_{group}_{kind}", "v": version})
        checks: list[Obj] = []
        if spec.get("wait"):
            checks = applied
        for hc in spec.get("healthChecks") or []:
            checks.append(
                {
                    "apiVersion": hc.get("apiVersion", "v1"),
                    "kind": hc.get("kind"),
                    "metadata": {"name": hc.get("name"), "namespace": hc.get("namespace")},
                }
            )
        return _Attempt(key, time.monotonic(), timeout, entries, checks)

    def _unhealthy(self, checks: list[Obj]) -> list[str]:
        assert self.kube is not None
        pending = []
        for c in checks:
            api, kind, name, ns = render.ref_of(c)
            live = self.kube.get(api, kind, name, ns)
            h = render.health(live)
            if h is not None and h[0] != "Healthy":
                state = "NotFound" if live is None else "InProgress"
                pending.append(f"{kind}/{ns + '/' if ns else ''}{name} status: '{state}'")
        return pending

    def _write(self, obj: Obj, status: Obj) -> None:
        assert self.kube is not None
        if _unchanged(obj.get("status") or {}, status):
            return
        m = meta(obj)
        with contextlib.suppress(NotFound):
            self.kube.patch_status(KS_API, "Kustomization", m["name"], status, m["namespace"])


def _unchanged(old: Obj, new: Obj) -> bool:
    return all(old.get(k) == v for k, v in new.items())
