"""The typed interface steps use to talk to a cluster.

Why it exists: steps must not import the ``kubernetes`` library (only
``bootstrap.adapters.kube`` does), yet they need typed verbs. This Protocol is those
verbs; ``adapters.kube.KubeClient`` implements it, and a unit test may hand a step any
other object that does. Objects are plain dicts; errors are drboot's
(``TransientError``/``PermanentError``), translated inside the adapter.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from bootstrap.errors import TransientError

Obj: TypeAlias = dict[str, Any]
Objs: TypeAlias = list[Obj]


@dataclass(frozen=True)
class Listed:
    """A list answer: the items and the list's ``resourceVersion`` (where a watch starts)."""

    items: Objs
    resource_version: str


@dataclass(frozen=True)
class WatchEvent:
    """One watch event: ``type`` is ADDED, MODIFIED, DELETED or BOOKMARK."""

    type: str
    object: Obj


class Gone(TransientError):
    """410 Gone: the resourceVersion a watch started from is too old; list again."""


class WatchCancel:
    """Ends a watch from another thread. A watch blocks reading its connection until the next
    event or the server's timeout; ``cancel()`` closes that connection at once (the adapter
    ``bind``s how), and every watch bound later is closed as soon as it opens. The watch then
    ends quietly (no error)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._close: Callable[[], None] | None = None
        self.cancelled = False

    def bind(self, close: Callable[[], None]) -> None:
        """(In the watching thread.) How to close the connection just opened."""
        with self._lock:
            if not self.cancelled:
                self._close = close
                return
        close()

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            close, self._close = self._close, None
        if close is not None:
            close()


class KubeAPI(Protocol):
    """The cluster verbs drboot's steps use."""

    target: str

    def close(self) -> None: ...

    def wait_ready(self, timeout: float = 120.0, interval: float = 0.5) -> None: ...

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None: ...

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Objs: ...

    def list_versioned(
        self, api_version: str, kind: str, namespace: str | None = None
    ) -> Listed: ...

    def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        timeout: int = 60,
        bookmarks: bool = False,
        cancel: WatchCancel | None = None,
    ) -> Iterator[WatchEvent]: ...

    def serves(self, api_version: str, kind: str) -> bool:
        """Whether the server serves this kind (a CRD's kind only once the CRD is installed)."""
        ...

    def create(self, obj: Obj) -> Obj: ...

    def apply(self, obj: Obj, field_manager: str = "drboot", *, force: bool = True) -> Obj: ...

    def apply_manifest(
        self,
        objs: Iterable[Obj],
        *,
        namespace: str | None = None,
        field_manager: str = "drboot",
        crd_timeout: float = 60.0,
    ) -> Objs: ...

    def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: Obj,
        namespace: str | None = None,
    ) -> Obj: ...

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
    ) -> Obj | None: ...

    def proxy_get(
        self, namespace: str, service: str, port: int | str, path: str, *, scheme: str = ""
    ) -> bytes: ...
