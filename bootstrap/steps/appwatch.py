"""Watching a kind of object: one list, then one watch from its resourceVersion, kept going.

Why it exists: the wait for every app used to list every Application once per poll interval
(a request per second for an hour-long wait, and a ready app seen up to a poll late). An
``Informer`` lists a kind once, then watches it from the list's ``resourceVersion`` and keeps
a local copy current: ADDED/MODIFIED/DELETED change the copy, BOOKMARK only moves the
resourceVersion on. The watch ends when the server's timeout passes and is resumed from the
last resourceVersion seen (no new list); a ``410 Gone`` (the version is too old) lists again;
an API that does not answer (a connection cut) is retried with a capped exponential backoff,
counted in ``reconnects``. Every change sets ``changed`` so the waiter wakes at once instead
of sleeping out a poll interval.

Requests are counted (``lists``, ``watches``) for the wait's output and the benchmark. All
cluster access goes through the ``KubeAPI`` protocol (the kube adapter implements it).
``stop()`` shuts the open watch connection down (``WatchCancel``) and joins the thread, so a
wait that returned leaves no watch behind.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from bootstrap.errors import BootstrapError, TransientError
from bootstrap.kubeapi import Gone, KubeAPI, Obj, WatchCancel

WATCH_TIMEOUT = 240  # seconds the server keeps one watch open before it is resumed
BACKOFF_FIRST = 0.2
BACKOFF_CAP = 10.0
STOP_JOIN = 10.0  # seconds stop() waits for the thread (a list in flight ends by its timeout)

Key = tuple[str, str]  # (namespace, name)


def key_of(obj: Obj) -> Key:
    m = obj.get("metadata") or {}
    return str(m.get("namespace") or ""), str(m.get("name"))


@dataclass
class Informer:
    """A local copy of every object of one kind, kept current by list + watch."""

    kube: KubeAPI
    api: str
    kind: str
    namespace: str | None
    changed: threading.Event
    watch_timeout: int = WATCH_TIMEOUT
    backoff_cap: float = BACKOFF_CAP
    on_event: Callable[[str, Obj], None] | None = None  # called (in the thread) per change
    lists: int = 0
    watches: int = 0
    relists: int = 0  # lists after a 410 Gone
    reconnects: int = 0  # watches resumed after an error
    confirms: int = 0  # fresh lists asked for by the waiter (not the watch's own)
    synced: threading.Event = field(default_factory=threading.Event)  # first list done
    error: BootstrapError | None = None  # a permanent error: the thread stopped
    transient: str = ""  # the last transient error, cleared by the next good answer
    failure: Exception | None = None  # anything else (a bug): the thread stopped
    _objs: dict[Key, Obj] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _cancel: WatchCancel = field(default_factory=WatchCancel)
    _thread: threading.Thread | None = None
    resource_version: str | None = None

    @property
    def requests(self) -> int:
        return self.lists + self.watches

    def start(self) -> Informer:
        self._thread = threading.Thread(target=self._run, name=f"watch {self.kind}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the thread: close the open watch at once (``join`` waits for the thread)."""
        self._stop.set()
        self._cancel.cancel()

    def join(self, timeout: float = STOP_JOIN) -> None:
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def snapshot(self) -> dict[Key, Obj]:
        """The objects as last seen (a shallow copy of the map; treat the objects as read-only)."""
        with self._lock:
            return dict(self._objs)

    def refresh(self) -> None:
        """A fresh list now, in the caller's thread, replacing the copy the watch keeps (a
        ``TransientError`` when the API does not answer). The watch goes on as it was."""
        listed = self.kube.list_versioned(self.api, self.kind, self.namespace)
        self.confirms += 1
        with self._lock:
            self._objs = {key_of(o): o for o in listed.items}
        self.transient = ""

    def reconnect(self) -> None:
        """Drop the open watch connection (a cut link leaves it hanging, silent, until TCP
        gives up hours later); the thread opens a new one from the last resourceVersion."""
        old, self._cancel = self._cancel, WatchCancel()
        old.cancel()

    # -- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        delay = BACKOFF_FIRST
        while not self._stop.is_set():
            try:
                if self.resource_version is None:
                    self._list()
                if self._stop.is_set():
                    return
                self._watch()
                delay = BACKOFF_FIRST  # a watch that ran its course: resume at once
            except Gone:
                self.relists += 1
                self.resource_version = None  # too old: list again, at once
            except TransientError as e:
                self.transient = e.message
                self.changed.set()
                self.reconnects += 1
                if self._stop.wait(delay):
                    return
                delay = min(self.backoff_cap, delay * 2)
            except BootstrapError as e:
                self.error = e
                self.changed.set()
                return
            except Exception as e:  # a bug: surfaced by the waiter as an internal error
                self.failure = e
                self.changed.set()
                return

    def _list(self) -> None:
        self.lists += 1
        listed = self.kube.list_versioned(self.api, self.kind, self.namespace)
        fresh = {key_of(o): o for o in listed.items}
        with self._lock:
            self._objs = fresh
        self.resource_version = listed.resource_version
        self.transient = ""
        self.synced.set()
        self.changed.set()
        if self.on_event is not None:
            for o in listed.items:
                self.on_event("ADDED", o)

    def _watch(self) -> None:
        self.watches += 1
        for ev in self.kube.watch(
            self.api, self.kind, self.namespace, resource_version=self.resource_version,
            timeout=self.watch_timeout, bookmarks=True, cancel=self._cancel,
        ):  # fmt: skip
            self.transient = ""
            rv = (ev.object.get("metadata") or {}).get("resourceVersion")
            if rv:
                self.resource_version = str(rv)
            if ev.type == "BOOKMARK":
                continue
            k = key_of(ev.object)
            with self._lock:
                if ev.type == "DELETED":
                    self._objs.pop(k, None)
                else:
                    self._objs[k] = ev.object
            if self.on_event is not None:
                self.on_event(ev.type, ev.object)
            self.changed.set()
            if self._stop.is_set():
                return


def wake_on(changed: threading.Event) -> Callable[[float], None]:
    """A ``sleep`` for ``polling.wait_until`` that returns as soon as ``changed`` is set."""

    def sleep(seconds: float) -> None:
        if changed.wait(seconds):
            changed.clear()

    return sleep
