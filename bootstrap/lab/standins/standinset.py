"""Run every LAB SIMULATION controller together: ``StandinSet(kube, ...).start()/stop()``.

Why it exists: the stand-ins must start the way the real controllers do, when their workload
is applied and its Pod runs, and restart when that Pod is replaced. The set runs the kubelet
shim and starts/stops each controller stand-in from its callback, in the namespace of the Pod
that "runs" it. ``autostart`` starts named controllers at once without a workload (for tests
of one controller, or a cluster whose manifests use other images).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

from bootstrap.adapters.kube import KubeClient
from bootstrap.lab.standins.argocd import ArgoCDController
from bootstrap.lab.standins.common import Loop, Obj, client_factory, meta
from bootstrap.lab.standins.flux import KustomizeController, SourceController, StorageDir
from bootstrap.lab.standins.gitsource import CheckoutCache
from bootstrap.lab.standins.kubelet import (
    ARGOCD,
    FLUX_KUSTOMIZE,
    FLUX_SOURCE,
    SEALED_SECRETS,
    WorkloadShim,
)
from bootstrap.lab.standins.sealed_secrets import SealedSecretsController

DEFAULT_NAMESPACES = {
    SEALED_SECRETS: "kube-system",
    ARGOCD: "argocd",
    FLUX_SOURCE: "flux-system",
    FLUX_KUSTOMIZE: "flux-system",
}


class StandinSet:
    """The kubelet shim plus whichever controller stand-ins their Pods currently "run"."""

    def __init__(
        self,
        kube: KubeClient | Path | str,
        *,
        repo_root: Path | None = None,
        interval: float = 0.5,
        argocd_resync: float = 10.0,
        kustomize_retry: float | None = None,
        sealing_key_bits: int = 4096,
        workloads: bool = True,
        autostart: Iterable[str] = (),
        state_dir: Path | None = None,
        namespaces: Iterable[str] | None = None,
    ) -> None:
        self._client = client_factory(kube)
        self.repo_root = repo_root
        self.interval = interval
        self.argocd_resync = argocd_resync
        self.kustomize_retry = kustomize_retry
        self.sealing_key_bits = sealing_key_bits
        self.cache = CheckoutCache(state_dir / "git" if state_dir else None)
        self.storage = StorageDir(state_dir / "flux" if state_dir else None)
        self.shim = (
            WorkloadShim(
                self._client, self._on_controller, interval=interval, namespaces=namespaces
            )
            if workloads
            else None
        )
        self.autostart = list(autostart)
        self.controllers: dict[str, Loop] = {}
        self.starts: dict[str, int] = {}
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> StandinSet:
        for ctl in self.autostart:
            self._start(ctl, DEFAULT_NAMESPACES[ctl])
        if self.shim is not None:
            self.shim.start()
        return self

    def stop(self) -> None:
        if self.shim is not None:
            self.shim.stop()
        with self._lock:
            for loop in self.controllers.values():
                loop.stop()
            self.controllers.clear()

    def close(self) -> None:
        self.stop()
        self.cache.close()
        self.storage.close()

    def __enter__(self) -> StandinSet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- accessors for tests and the CLI ------------------------------------------------------

    @property
    def sealed_secrets(self) -> SealedSecretsController | None:
        loop = self.controllers.get(SEALED_SECRETS)
        return loop if isinstance(loop, SealedSecretsController) else None

    # -- internals ---------------------------------------------------------------------------

    def _on_controller(self, ctl: str, pod: Obj, started: bool) -> None:
        if started:
            self._start(ctl, meta(pod).get("namespace") or DEFAULT_NAMESPACES[ctl])
        else:
            with self._lock:
                loop = self.controllers.pop(ctl, None)
            if loop is not None:
                loop.stop()

    def _start(self, ctl: str, namespace: str) -> None:
        loop: Loop
        if ctl == SEALED_SECRETS:
            loop = SealedSecretsController(
                self._client,
                namespace=namespace,
                interval=self.interval,
                key_bits=self.sealing_key_bits,
            )
        elif ctl == ARGOCD:
            loop = ArgoCDController(
                self._client,
                namespace=namespace,
                interval=self.interval,
                resync=self.argocd_resync,
                repo_root=self.repo_root,
                cache=self.cache,
            )
        elif ctl == FLUX_SOURCE:
            loop = SourceController(
                self._client,
                storage=self.storage,
                interval=self.interval,
                repo_root=self.repo_root,
                cache=self.cache,
                namespace=namespace,
            )
        elif ctl == FLUX_KUSTOMIZE:
            loop = KustomizeController(
                self._client,
                storage=self.storage,
                interval=self.interval,
                retry=self.kustomize_retry,
            )
        else:
            raise ValueError(f"unknown controller {ctl!r}")
        with self._lock:
            old = self.controllers.pop(ctl, None)
            if old is not None:
                old.stop()
            self.controllers[ctl] = loop
            self.starts[ctl] = self.starts.get(ctl, 0) + 1
        loop.start()
