"""The Kubernetes adapter: the only module that imports ``kubernetes``.

Why it exists: steps need a handful of verbs on plain dicts (get, list, create, apply, patch the
status, delete, watch, service proxy) with errors already translated into drboot's tree, and
they must work against the oldest API server drboot supports (Kubernetes 1.20, the lab's
control plane), which has quirks that newer clients do not expect:

* server-side apply (SSA) refuses a Service or container port without ``protocol`` (it is a
  key of the list-map); the server defaults it to TCP anyway, so we default it before sending;
* SSA refuses CRDs carrying ``x-kubernetes-validations`` (CEL, unknown before 1.23, e.g. the
  Flux CRDs) with "field not declared in schema"; a plain create would silently drop the field,
  so for such servers we strip it (and log that we did);
* CRDs too big for the client-side-apply annotation (Argo CD's ApplicationSet): SSA keeps no
  such annotation, so ``apply`` is always SSA and never falls back to client-side apply.

Translation: 404 -> ``None`` from ``get`` / ``False`` from ``delete`` / ``NotFound`` elsewhere;
409 -> ``Conflict``; 422 -> ``Invalid`` (a PermanentError with the server's message);
401/403 -> ``Forbidden``; 429, 5xx, refused connections, timeouts -> ``TransientError``.
Objects are plain dicts. Request bodies (which may hold Secret data) never go into messages.

``kubernetes`` is imported lazily, so importing this module (and ``drboot --help``) stays cheap.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeAlias

import yaml

from bootstrap.errors import PermanentError, TransientError, WaitTimeout
from bootstrap.kubeapi import Gone, Listed, WatchCancel, WatchEvent

log = logging.getLogger(__name__)

Obj: TypeAlias = dict[str, Any]
Objs: TypeAlias = list[Obj]
Query: TypeAlias = list[tuple[str, str]]

CRD_API = "apiextensions.k8s.io/v1"
DEFAULT_TIMEOUT = (5.0, 60.0)  # (connect, read) seconds for every non-watch request
_MAX_MESSAGE = 1200


class NotFound(PermanentError):
    """404: the object (or the API serving its kind) does not exist."""


class UnknownKind(NotFound):
    """The server does not serve this apiVersion/kind (its CRD is missing?)."""


class Conflict(PermanentError):
    """409: the object already exists (``reason == "AlreadyExists"``) or the copy was stale."""

    reason: str = "Conflict"


class Invalid(PermanentError):
    """422 (or a refused patch): the server rejected the object; the message says why."""


class Forbidden(PermanentError):
    """401/403: the credentials are wrong or lack the permission."""


def describe(obj: Obj) -> str:
    """``Kind ns/name`` for messages."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    name = meta.get("name", "?")
    return f"{obj.get('kind', '?')} {ns + '/' if ns else ''}{name}"


class BadKubeconfig(PermanentError):
    """A kubeconfig that cannot be loaded; the CLI shows it as a usage error (exit 2)."""


WATCH_READ_MARGIN = 30.0  # seconds a watch may stay silent past its server-side timeout


def bound_requests(rest_client: Any) -> None:
    """Give every request the library makes on its own a deadline.

    The client sends API discovery, and every call that does not pass ``_request_timeout``,
    with no timeout at all: with the link to the server cut mid-request, such a read blocks
    until the kernel gives the connection up (a quarter of an hour), and the step never gets
    to retry. Found by the reliability suite (a link cut inside restore-sealing-keys). A
    request without a timeout gets ``DEFAULT_TIMEOUT``; a watch gets its server-side
    ``timeoutSeconds`` plus a margin as read timeout (a silent watch is not a dead one)."""
    from urllib.parse import parse_qs, urlsplit

    unbounded = rest_client.request

    def request(method: str, url: str, *args: Any, **kw: Any) -> Any:
        if kw.get("_request_timeout") is None:
            query = parse_qs(urlsplit(url).query)
            if query.get("watch", ["false"])[0].lower() == "true":
                server = float(query.get("timeoutSeconds", ["0"])[0] or 0)
                if server > 0:
                    kw["_request_timeout"] = (DEFAULT_TIMEOUT[0], server + WATCH_READ_MARGIN)
            else:
                kw["_request_timeout"] = DEFAULT_TIMEOUT
        return unbounded(method, url, *args, **kw)

    rest_client.request = request


class KubeClient:
    """A typed facade over the kubernetes dynamic client. Build with ``from_kubeconfig``."""

    def __init__(self, api_client: Any, *, target: str) -> None:
        from kubernetes.dynamic import DynamicClient

        self._api = api_client
        self.target = target
        bound_requests(api_client.rest_client)  # before discovery, the first request
        # The dynamic client insists on a discovery cache file; keep it private to this client
        # (removed by close(), or when the object is collected).
        self._cache_dir = tempfile.TemporaryDirectory(prefix="drboot-discovery-")
        with self._translate("discover the API"):
            self._dyn = DynamicClient(  # type: ignore[no-untyped-call]
                api_client, cache_file=str(Path(self._cache_dir.name) / "cache.json")
            )
        self._minor: int | None = None

    @classmethod
    def from_kubeconfig(cls, path: Path | str, *, context: str | None = None) -> KubeClient:
        """Open the cluster named by a kubeconfig file (discovery happens here)."""
        from kubernetes import client, config

        cfg = client.Configuration()
        try:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(path), context=context, client_configuration=cfg
            )
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise BadKubeconfig(
                f"kubeconfig {path} is not valid YAML{where}",
                hint="check the file is a kubeconfig (KUBECONFIG / --kubeconfig)",
            ) from None
        except (config.ConfigException, OSError, ValueError, TypeError, KeyError, AttributeError):
            # The library's messages may quote the file (tokens, keys): name the file, not them.
            raise BadKubeconfig(
                f"cannot load kubeconfig {path}: not a usable kubeconfig (missing, unreadable, "
                "or without a current context, cluster and user)",
                hint="check the file exists and is a kubeconfig (KUBECONFIG / --kubeconfig)",
            ) from None
        cfg.retries = 0  # the engine decides about retries (TransientError), not urllib3
        api_client = client.ApiClient(cfg)
        host = str(cfg.host)
        return cls(api_client, target=host.split("://", 1)[-1])

    def close(self) -> None:
        self._api.close()
        self._cache_dir.cleanup()

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- health and version ---------------------------------------------------------------------

    def wait_ready(self, timeout: float = 120.0, interval: float = 0.5) -> None:
        """Poll ``/readyz`` until it answers 200; ``WaitTimeout`` names the last failure."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            try:
                self._raw("GET", "/readyz", what="GET /readyz", timeout=(3.0, 10.0))
                return
            except (TransientError, PermanentError) as e:
                last = e.message
            if time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"API server not ready after {timeout:.0f}s: {last}",
                    target=self.target,
                    hint="check the server is running and the kubeconfig points at it",
                )
            time.sleep(interval)

    def server_minor(self) -> int:
        """The server's minor version (20 for 1.20)."""
        if self._minor is None:
            info = self._json("GET", "/version", what="GET /version")
            self._minor = int(re.sub(r"\D.*$", "", str(info.get("minor", "0"))) or 0)
        return self._minor

    # -- reads ----------------------------------------------------------------------------------

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None:
        """The object, or None if it does not exist."""
        res = self._resource(api_version, kind)
        try:
            return self._json(
                "GET", res.path(name=name, namespace=namespace), what=f"get {kind} {name}"
            )
        except NotFound:
            return None

    def list_versioned(self, api_version: str, kind: str, namespace: str | None = None) -> Listed:
        """Every object of a kind and the list's resourceVersion (a watch starts there)."""
        res = self._resource(api_version, kind)
        body = self._json("GET", res.path(namespace=namespace), what=f"list {kind}")
        items: Objs = body.get("items") or []
        for item in items:  # list items carry no apiVersion/kind
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        rv = str((body.get("metadata") or {}).get("resourceVersion") or "")
        return Listed(items, rv)

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Objs:
        """Every object of a kind (in ``namespace``, or in all namespaces if None)."""
        res = self._resource(api_version, kind)
        query: Query = []
        if label_selector:
            query.append(("labelSelector", label_selector))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        body = self._json("GET", res.path(namespace=namespace), what=f"list {kind}", query=query)
        items: Objs = body.get("items") or []
        for item in items:  # list items carry no apiVersion/kind
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items

    # -- writes ---------------------------------------------------------------------------------

    def create(self, obj: Obj) -> Obj:
        """Create the object; ``Conflict`` (reason AlreadyExists) if it is there already."""
        res = self._resource(obj["apiVersion"], obj["kind"])
        ns = self._namespace_of(res, obj)
        return self._json("POST", res.path(namespace=ns), body=obj, what=f"create {describe(obj)}")

    def replace(self, obj: Obj) -> Obj:
        """PUT the object (needs ``metadata.resourceVersion`` for optimistic concurrency)."""
        res = self._resource(obj["apiVersion"], obj["kind"])
        ns = self._namespace_of(res, obj)
        path = res.path(name=obj["metadata"]["name"], namespace=ns)
        return self._json("PUT", path, body=obj, what=f"replace {describe(obj)}")

    def apply(self, obj: Obj, field_manager: str = "drboot", *, force: bool = True) -> Obj:
        """Server-side apply ``obj`` (see the module docstring for the 1.20 quirks handled).

        ``force`` takes over fields another manager set (as ``kubectl apply --server-side
        --force-conflicts``): drboot is the authority for what it bootstraps.
        """
        res = self._resource(obj["apiVersion"], obj["kind"])
        body = self._prepare_for_apply(obj)
        ns = self._namespace_of(res, body)
        path = res.path(name=body["metadata"]["name"], namespace=ns)
        query = [("fieldManager", field_manager)]
        if force:
            query.append(("force", "true"))
        return self._json(
            "PATCH", path, body=body, query=query, what=f"apply {describe(obj)}",
            content_type="application/apply-patch+yaml",
        )  # fmt: skip

    def apply_manifest(
        self,
        objs: Iterable[Obj],
        *,
        namespace: str | None = None,
        field_manager: str = "drboot",
        crd_timeout: float = 60.0,
    ) -> Objs:
        """Apply a whole manifest: CRDs first (then wait until Established), Namespaces next,
        the rest in the given order. Namespaced objects without a namespace go into
        ``namespace``. Returns the applied objects as the server returned them."""
        docs = [o for o in objs if o]
        crds = [o for o in docs if o.get("kind") == "CustomResourceDefinition"]
        nss = [o for o in docs if o.get("kind") == "Namespace"]
        rest = [o for o in docs if o.get("kind") not in ("CustomResourceDefinition", "Namespace")]
        out = [self.apply(o, field_manager) for o in crds]
        for crd in out:
            self.wait_crd_established(crd["metadata"]["name"], crd_timeout)
        out += [self.apply(o, field_manager) for o in nss]
        for o in rest:
            res = self._resource(o["apiVersion"], o["kind"])
            if res.namespaced and not (o.get("metadata") or {}).get("namespace"):
                if namespace is None:
                    raise PermanentError(
                        f"{describe(o)} has no namespace and none was given",
                        target=self.target,
                        hint="pass namespace= (the manifest leaves it to the installer)",
                    )
                o = copy.deepcopy(o)
                o["metadata"]["namespace"] = namespace
            out.append(self.apply(o, field_manager))
        return out

    def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: Obj,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> Obj:
        """A JSON merge patch (RFC 7386) of the object or one of its subresources."""
        res = self._resource(api_version, kind)
        path = res.path(name=name, namespace=namespace)
        if subresource:
            path += f"/{subresource}"
        what = f"patch {kind} {name}" + (f"/{subresource}" if subresource else "")
        return self._json(
            "PATCH", path, body=patch, what=what, content_type="application/merge-patch+json"
        )

    def patch_status(
        self, api_version: str, kind: str, name: str, status: Obj, namespace: str | None = None
    ) -> Obj:
        """Merge ``status`` into the object's status through the status subresource.

        Kinds without a status subresource (Argo CD's Application CRD) get a plain merge patch
        of ``.status``, which is how their controllers write it too.
        """
        res = self._resource(api_version, kind)
        has_status = "status" in getattr(res, "subresources", {})
        return self.patch(
            api_version, kind, name, {"status": status}, namespace,
            subresource="status" if has_status else None,
        )  # fmt: skip

    def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        *,
        propagation: str = "Background",
        wait: float | None = None,
    ) -> bool:
        """Delete; False if it was already gone. With ``wait`` seconds, wait until it is gone
        (finalizers done), else ``WaitTimeout``."""
        res = self._resource(api_version, kind)
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        try:
            self._json(
                "DELETE", res.path(name=name, namespace=namespace), body=body,
                what=f"delete {kind} {name}",
            )  # fmt: skip
        except NotFound:
            return False
        if wait is not None:
            self.wait_for(
                api_version, kind, name, lambda o: o is None, namespace, timeout=wait,
                what="deleted",
            )  # fmt: skip
        return True

    # -- waiting --------------------------------------------------------------------------------

    def wait_for(
        self,
        api_version: str,
        kind: str,
        name: str,
        predicate: Callable[[Obj | None], bool],
        namespace: str | None = None,
        *,
        timeout: float = 60.0,
        interval: float = 0.5,
        what: str = "ready",
    ) -> Obj | None:
        """Poll the object until ``predicate(obj_or_None)`` holds; returns the last read."""
        deadline = time.monotonic() + timeout
        while True:
            obj = self.get(api_version, kind, name, namespace)
            if predicate(obj):
                return obj
            if time.monotonic() >= deadline:
                where = f"{namespace}/{name}" if namespace else name
                raise WaitTimeout(
                    f"{kind} {where} not {what} after {timeout:.0f}s", target=self.target
                )
            time.sleep(interval)

    def wait_crd_established(self, name: str, timeout: float = 60.0) -> Obj:
        """Wait for the CRD's Established condition (discovery refreshes itself on a miss)."""
        obj = self.wait_for(
            CRD_API, "CustomResourceDefinition", name, _established, timeout=timeout,
            what="Established",
        )  # fmt: skip
        assert obj is not None
        return obj

    def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        name: str | None = None,
        label_selector: str | None = None,
        resource_version: str | None = None,
        timeout: int = 60,
        bookmarks: bool = False,
        cancel: WatchCancel | None = None,
    ) -> Generator[WatchEvent, None, None]:
        """Watch events for ``timeout`` seconds (server-side). Without ``resource_version`` the
        server first sends ADDED for every existing object. An expired resourceVersion (410)
        raises ``Gone``: list again and watch from the list's resourceVersion. ``bookmarks``
        asks for BOOKMARK events (a newer resourceVersion, no object change). ``cancel``
        ends the watch from another thread: its connection is shut down (which wakes the
        blocked read at once) and the watch returns without an error."""
        from kubernetes import watch as kwatch

        res = self._resource(api_version, kind)
        w = kwatch.Watch()  # type: ignore[no-untyped-call]
        what = f"watch {kind}"
        watched: Any = _Cancellable(res, cancel) if cancel is not None else res
        with self._translate(what):
            stream = self._dyn.watch(  # type: ignore[no-untyped-call]
                watched, namespace=namespace, name=name, label_selector=label_selector,
                resource_version=resource_version, timeout=timeout, watcher=w,
                allow_watch_bookmarks=bookmarks or None,
            )  # fmt: skip
            try:
                for ev in stream:
                    raw = ev.get("raw_object") or {}
                    if ev["type"] == "ERROR":
                        code = raw.get("code")
                        msg = f"{what}: {raw.get('message', raw)}"
                        if code == 410:
                            raise Gone(msg, target=self.target, hint="list again")
                        raise PermanentError(msg, target=self.target)
                    yield WatchEvent(ev["type"], raw)
                    if cancel is not None and cancel.cancelled:
                        return
            except Exception:
                if cancel is not None and cancel.cancelled:
                    return  # the connection we shut down: not an error
                raise
            finally:
                w.stop()  # type: ignore[no-untyped-call]

    def serves(self, api_version: str, kind: str) -> bool:
        """Whether the server serves ``kind`` in ``api_version`` (discovery; a miss refreshes
        the discovery cache once, so a CRD installed since is seen)."""
        try:
            self._resource(api_version, kind)
        except UnknownKind:
            return False
        return True

    # -- service proxy --------------------------------------------------------------------------

    def proxy_get(
        self, namespace: str, service: str, port: int | str, path: str, *, scheme: str = ""
    ) -> bytes:
        """GET ``path`` from a Service through the API server's service proxy (raw bytes).

        ``scheme`` is "" (http) or "https" for a service that serves TLS.
        """
        svc = f"{scheme + ':' if scheme else ''}{service}:{port}"
        url = f"/api/v1/namespaces/{namespace}/services/{svc}/proxy/{path.lstrip('/')}"
        return self._raw("GET", url, what=f"GET {path} from service {namespace}/{service}")

    # -- internals ------------------------------------------------------------------------------

    def _resource(self, api_version: str, kind: str) -> Any:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            with self._translate(f"discover {api_version} {kind}"):
                return self._dyn.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            raise UnknownKind(
                f"the server does not serve {kind} in {api_version}",
                target=self.target,
                hint="install its CustomResourceDefinition first (apply_manifest does that)",
            ) from None

    def _namespace_of(self, res: Any, obj: Obj) -> str | None:
        ns = (obj.get("metadata") or {}).get("namespace")
        if res.namespaced and not ns:
            raise PermanentError(f"{describe(obj)} needs metadata.namespace", target=self.target)
        return str(ns) if res.namespaced else None

    def _prepare_for_apply(self, obj: Obj) -> Obj:
        body = copy.deepcopy(obj)
        body.pop("status", None)
        meta = body.get("metadata") or {}
        for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
            meta.pop(key, None)
        _default_port_protocols(body)
        if body.get("kind") == "CustomResourceDefinition" and self.server_minor() < 23:
            dropped = _strip_key(body.get("spec", {}), "x-kubernetes-validations")
            if dropped:
                log.info(
                    "apply %s: dropped %d x-kubernetes-validations rules (server 1.%d has no "
                    "CEL validation; a plain create would drop them too)",
                    describe(obj), dropped, self.server_minor(),
                )  # fmt: skip
        return body

    def _json(
        self,
        method: str,
        path: str,
        *,
        what: str,
        body: Obj | None = None,
        query: Query | None = None,
        content_type: str = "application/json",
    ) -> Obj:
        data = self._raw(method, path, what=what, body=body, query=query, content_type=content_type)
        result: Obj = json.loads(data) if data else {}
        return result

    def _raw(
        self,
        method: str,
        path: str,
        *,
        what: str,
        body: Obj | None = None,
        query: Query | None = None,
        content_type: str = "application/json",
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> bytes:
        with self._translate(what):
            resp = self._dyn.request(
                method.lower(), path, body=body, query_params=list(query or []),
                content_type=content_type, serialize=False, _request_timeout=timeout,
                header_params={"Accept": "application/json, */*"},
            )  # fmt: skip
            data: bytes = resp.data
            return data

    @contextlib.contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        """Turn kubernetes/urllib3 exceptions into drboot's error tree."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError, MaxRetryError, SSLError

        try:
            yield
        except ApiException as e:
            raise self._api_error(e, what) from None
        except MaxRetryError as e:
            if isinstance(e.reason, SSLError):
                raise PermanentError(
                    f"{what}: TLS failure talking to the API server: {e.reason}",
                    target=self.target,
                    hint="the kubeconfig's CA does not match the server (was it rebuilt?)",
                ) from None
            raise TransientError(
                f"{what}: cannot reach the API server: {e.reason}", target=self.target
            ) from None
        except (HTTPError, ConnectionError, TimeoutError) as e:
            raise TransientError(
                f"{what}: cannot reach the API server: {type(e).__name__}: {e}",
                target=self.target,
            ) from None

    def _api_error(self, e: Any, what: str) -> Exception:
        status = int(getattr(e, "status", 0) or 0)
        reason, message = _status_of(e)
        text = f"{what}: {message}"[:_MAX_MESSAGE]
        if status == 404:
            return NotFound(text, target=self.target)
        if status == 410:
            return Gone(text, target=self.target, hint="list again")
        if status == 409:
            err = Conflict(text, target=self.target, hint="read the object again and retry")
            err.reason = reason or "Conflict"
            return err
        if status == 422 or (status in (400, 500) and "typed patch" in message):
            return Invalid(text, target=self.target, hint="fix the object; the server refused it")
        if status in (401, 403):
            return Forbidden(
                text, target=self.target, hint="check the kubeconfig's credentials and RBAC"
            )
        if status == 429 or status >= 500 or status == 0:
            retry_after = None
            headers = getattr(e, "headers", None) or {}
            with contextlib.suppress(TypeError, ValueError):
                retry_after = float(str(headers.get("Retry-After")))
            return TransientError(text, target=self.target, retry_after=retry_after)
        return PermanentError(f"{text} (HTTP {status})", target=self.target)


class _Cancellable:
    """A discovered resource whose ``get`` (the watch request, made inside the kubernetes
    ``Watch``) binds the open response to a ``WatchCancel``: ``shutdown()`` wakes the read
    blocked on the socket (closing the response from another thread does not)."""

    def __init__(self, res: Any, cancel: WatchCancel) -> None:
        self._res = res
        self._cancel = cancel

    def __getattr__(self, name: str) -> Any:
        return getattr(self._res, name)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        resp = self._res.get(*args, **kwargs)

        def shutdown() -> None:
            # a response already finished (its connection back in the pool, or closed) has
            # nothing left to wake: urllib3 says so with ValueError/RuntimeError
            with contextlib.suppress(ValueError, RuntimeError, OSError):
                resp.shutdown()

        self._cancel.bind(shutdown)
        return resp


def _status_of(e: Any) -> tuple[str, str]:
    """(reason, message) from a Status body; never the request body."""
    body = getattr(e, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if body:
        try:
            st = json.loads(body)
        except ValueError:
            return "", str(body)[:_MAX_MESSAGE]
        if isinstance(st, dict):
            return str(st.get("reason") or ""), str(st.get("message") or body)
    return "", f"HTTP {getattr(e, 'status', '?')} {getattr(e, 'reason', '')}".strip()


def _established(obj: Obj | None) -> bool:
    conds = ((obj or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conds)


def _default_port_protocols(obj: Obj) -> None:
    """Default ``protocol: TCP`` on Service ports and container ports (SSA list-map keys)."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    if obj.get("kind") == "Service":
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
    for pod_spec in _pod_specs(obj):
        for key in ("containers", "initContainers", "ephemeralContainers"):
            for c in pod_spec.get(key) or []:
                for port in c.get("ports") or []:
                    port.setdefault("protocol", "TCP")


def _pod_specs(obj: Obj) -> Objs:
    spec = obj.get("spec") or {}
    kind = obj.get("kind")
    if kind == "Pod":
        return [spec]
    if kind == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    template = spec.get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        return [template["spec"]]
    return []


def _strip_key(node: Any, key: str) -> int:
    """Remove ``key`` from every dict under ``node``; returns how many were removed."""
    n = 0
    if isinstance(node, dict):
        if key in node:
            del node[key]
            n += 1
        for v in node.values():
            n += _strip_key(v, key)
    elif isinstance(node, list):
        for v in node:
            n += _strip_key(v, key)
    return n


def load_manifest(path: Path | str) -> Objs:
    """The documents of a YAML manifest file (empty documents dropped)."""
    import yaml

    with open(os.fspath(path), encoding="utf-8") as fh:
        return [d for d in yaml.safe_load_all(fh) if d]
