"""Shared plumbing of the LAB SIMULATION controllers: the poll loop, conditions, labels.

Why it exists: every stand-in (workload shim, Sealed Secrets, Argo CD, Flux) is a small
observe-compare-act loop running in a thread of one operator-side process. They share the
way they loop, log (always naming themselves a LAB SIMULATION), mark what they create, and
maintain Kubernetes-style ``status.conditions`` (``lastTransitionTime`` only moves when the
status flips, as ``meta.SetStatusCondition`` does).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeAlias

from bootstrap.adapters.kube import KubeClient
from bootstrap.errors import BootstrapError

Obj: TypeAlias = dict[str, Any]
ClientFactory: TypeAlias = Callable[[], KubeClient]

STANDIN_ANNOTATION = "drboot.dev/lab-standin"
STANDIN_MARK = {STANDIN_ANNOTATION: "true"}
LOG_PREFIX = "LAB SIMULATION"


def now() -> str:
    """RFC 3339 UTC with second precision, as Kubernetes writes ``metav1.Time``."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(obj: Obj) -> Obj:
    m: Obj = obj.get("metadata") or {}
    return m


def client_factory(kube: KubeClient | Path | str) -> ClientFactory:
    """One client per caller for a kubeconfig path (thread-safe); the same client otherwise."""
    if isinstance(kube, KubeClient):
        shared = kube
        return lambda: shared
    path = Path(kube)
    return lambda: KubeClient.from_kubeconfig(path)


def set_condition(
    conditions: list[Obj] | None,
    type_: str,
    status: str,
    reason: str | None,
    message: str,
    *,
    observed_generation: int | None = None,
    time_key: str = "lastTransitionTime",
) -> list[Obj]:
    """A new condition list with ``type_`` set; its transition time moves only on a flip."""
    out = [dict(c) for c in conditions or [] if c.get("type") != type_]
    old = next((c for c in conditions or [] if c.get("type") == type_), None)
    cond: Obj = {"type": type_, "status": status}
    if reason is not None:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    if observed_generation is not None:
        cond["observedGeneration"] = observed_generation
    keep = old is not None and old.get("status") == status and old.get(time_key)
    cond[time_key] = old[time_key] if keep and old is not None else now()
    out.append(cond)
    return out


def condition(obj: Obj | None, type_: str) -> Obj | None:
    """The condition ``type_`` of an object's status, if any."""
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(text: str | None, default: float) -> float:
    """Seconds of a Go duration string (``1m30s``, ``500ms``); ``default`` if empty/invalid."""
    if not text:
        return default
    parts = _DURATION.findall(str(text))
    if not parts or "".join(n + u for n, u in parts) != str(text):
        return default
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


CRASHLOOP_BACKOFF_MAX = 10.0  # seconds between start-up attempts, at most (the kubelet: 5 min)


class Loop:
    """A named poll loop in a daemon thread: ``tick()`` every ``interval`` seconds.

    A ``BootstrapError`` from a tick is logged as a warning and the loop carries on (a real
    controller requeues); anything else is logged with its traceback and the loop carries on
    too, so one bad object never stops the simulation.
    """

    name = "standin"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.log = logging.getLogger(f"bootstrap.lab.standins.{self.name}")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ticks = 0

    def say(self, msg: str, *args: object, level: int = logging.INFO) -> None:
        """Log one line that names this component as a LAB SIMULATION."""
        self.log.log(level, f"{LOG_PREFIX} {self.name}: {msg}", *args)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"standin-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def setup(self) -> None:
        """Called once in the thread before the first tick."""

    def tick(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        # A controller that cannot start crash-loops (restarted with a growing back-off, as
        # the kubelet does); so do we. Found by the reliability suite: started while the
        # server's link was cut, a stand-in that gave up at once never ran again.
        backoff = max(self.interval, 0.1)
        while not self._stop.is_set():
            try:
                self.setup()
                break
            except Exception as e:
                self.say("start-up failed (again in %.0fs): %s", backoff, e, level=logging.ERROR)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, CRASHLOOP_BACKOFF_MAX)
        while not self._stop.is_set():
            try:
                self.tick()
            except BootstrapError as e:
                self.say("%s", e.format(), level=logging.WARNING)
            except Exception:
                self.log.exception(f"{LOG_PREFIX} {self.name}: tick failed")
            self.ticks += 1
            self._stop.wait(self.interval)


def record_event(
    kube: KubeClient, obj: Obj, type_: str, reason: str, message: str, component: str
) -> None:
    """Best effort: a core/v1 Event about ``obj`` (what ``kubectl describe`` shows)."""
    m = meta(obj)
    ns = m.get("namespace") or "default"
    t = now()
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "generateName": f"{m.get('name', 'obj')}.",
            "namespace": ns,
            "annotations": dict(STANDIN_MARK),
        },
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": m.get("name"),
            "namespace": ns,
            "uid": m.get("uid"),
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": component},
        "firstTimestamp": t,
        "lastTimestamp": t,
        "count": 1,
    }
    try:
        kube.create(event)
    except BootstrapError as e:
        logging.getLogger(__name__).debug("event not recorded: %s", e)
