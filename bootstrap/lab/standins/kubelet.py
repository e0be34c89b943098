"""LAB SIMULATION of what a kubelet would do for Pods (simplified), and the controller launcher.

Why it exists: the lab control plane has no kubelet and no images, so no Pod ever runs and no
Deployment ever becomes available. This shim plays the kubelet's part at the Pod level and
lets the *real* kube-controller-manager do the rest: the ReplicaSet, Deployment and
StatefulSet controllers compute ``readyReplicas``/``availableReplicas`` and the
``Available``/``Progressing`` conditions from the Pod statuses written here, exactly as in a
real cluster (writing Deployment status ourselves would fight the Deployment controller).

For each Pod that is not yet running, it checks what the kubelet checks before starting
containers: every Secret/ConfigMap the Pod references (volumes, projected volumes, ``env``
``valueFrom`` and ``envFrom``), unless marked optional, must exist (and the referenced key
too). Then:

* all present -> ``phase: Running``, ``Ready``/``ContainersReady``/``Initialized`` True,
  containers ``running``;
* an ``env``/``envFrom`` reference missing -> the container waits with reason
  ``CreateContainerConfigError`` and message ``secret "x" not found`` (the kubelet's words);
* a volume source missing -> it waits in ``ContainerCreating`` (the kubelet's ``FailedMount``).

Simplifications (said in the Pod's annotations and here): Pods are never bound to a Node
(no scheduler and no Node object; unbound Pods delete instantly, which a kubelet-less lab
needs), get no IPs, and a running Pod never dies. One init-container effect is modelled
because Argo CD's install depends on it: ``argocd admin redis-initial-password`` creates the
``argocd-redis`` Secret.

Controllers: when a Pod whose container image is a known controller (Sealed Secrets, Argo CD
application controller, Flux source/kustomize controllers) is running, ``on_controller`` is
called with ``started=True``; when that Pod goes away (workload deleted, Pod deleted, rollout
restart), with ``started=False``. So, as in reality, a controller starts when its workload is
applied and restarts when its Pod is replaced.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bootstrap.adapters.kube import KubeClient, NotFound
from bootstrap.lab.standins.common import STANDIN_ANNOTATION, Loop, Obj, meta, now

SEALED_SECRETS = "sealed-secrets"
ARGOCD = "argocd"
FLUX_SOURCE = "flux-source"
FLUX_KUSTOMIZE = "flux-kustomize"
CONTROLLERS = (SEALED_SECRETS, ARGOCD, FLUX_SOURCE, FLUX_KUSTOMIZE)
SIM_ANNOTATION = "drboot.dev/lab-standin-kubelet"
SIM_NOTE = "pod status written by the LAB SIMULATION kubelet shim; no container runs"


def controller_of(container: Obj) -> str | None:
    """Which known controller a container runs, from its image (and command for Argo CD)."""
    image = str(container.get("image") or "")
    words = " ".join(
        [str(container.get("name") or "")]
        + [str(x) for x in (container.get("command") or []) + (container.get("args") or [])]
    )
    if "sealed-secrets-controller" in image:
        return SEALED_SECRETS
    if "argoproj/argocd" in image and "argocd-application-controller" in words:
        return ARGOCD
    if "fluxcd/source-controller" in image:
        return FLUX_SOURCE
    if "fluxcd/kustomize-controller" in image:
        return FLUX_KUSTOMIZE
    return None


@dataclass(frozen=True)
class Missing:
    """A reference the kubelet cannot satisfy yet."""

    kind: str  # "secret" or "configmap"
    name: str
    key: str | None
    via_volume: bool

    def message(self, namespace: str) -> str:
        if self.key is not None:
            return f"couldn't find key {self.key} in {_title(self.kind)} {namespace}/{self.name}"
        return f'{self.kind} "{self.name}" not found'


def _title(kind: str) -> str:
    return "Secret" if kind == "secret" else "ConfigMap"


def references(pod_spec: Obj, containers: list[Obj]) -> list[tuple[str, str, str | None, bool]]:
    """(kind, name, key, via_volume) of every non-optional Secret/ConfigMap reference."""
    refs: list[tuple[str, str, str | None, bool]] = []
    for v in pod_spec.get("volumes") or []:
        sec, cm = v.get("secret"), v.get("configMap")
        if sec and not sec.get("optional"):
            refs.append(("secret", sec.get("secretName", ""), None, True))
        if cm and not cm.get("optional"):
            refs.append(("configmap", cm.get("name", ""), None, True))
        for src in (v.get("projected") or {}).get("sources") or []:
            for kind, key in (("secret", "secret"), ("configmap", "configMap")):
                s = src.get(key)
                if s and not s.get("optional"):
                    refs.append((kind, s.get("name", ""), None, True))
    for c in containers:
        for e in c.get("env") or []:
            vf = e.get("valueFrom") or {}
            for kind, key in (("secret", "secretKeyRef"), ("configmap", "configMapKeyRef")):
                r = vf.get(key)
                if r and not r.get("optional"):
                    refs.append((kind, r.get("name", ""), r.get("key"), False))
        for ef in c.get("envFrom") or []:
            for kind, key in (("secret", "secretRef"), ("configmap", "configMapRef")):
                r = ef.get(key)
                if r and not r.get("optional"):
                    refs.append((kind, r.get("name", ""), None, False))
    return refs


class WorkloadShim(Loop):
    """Runs Pods on paper; tells ``on_controller`` when a known controller's Pod runs or goes.

    ``namespaces`` limits the shim to those namespaces (None: the whole cluster).
    """

    name = "kubelet"

    def __init__(
        self,
        client: Callable[[], KubeClient],
        on_controller: Callable[[str, Obj, bool], None] | None = None,
        *,
        interval: float = 0.5,
        namespaces: Iterable[str] | None = None,
    ) -> None:
        super().__init__(interval)
        self.namespaces = list(namespaces) if namespaces is not None else None
        self._client_factory = client
        self.kube: KubeClient | None = None
        self.on_controller = on_controller
        self._controller_pods: dict[str, str] = {}  # controller -> pod uid it runs in

    def setup(self) -> None:
        self.kube = self._client_factory()
        self.say("started (Pods are simulated: no containers run)")

    def tick(self) -> None:
        assert self.kube is not None
        if self.namespaces is None:
            pods = self.kube.list("v1", "Pod")
        else:
            pods = [p for ns in self.namespaces for p in self.kube.list("v1", "Pod", ns)]
        running: dict[str, Obj] = {}
        for pod in pods:
            if meta(pod).get("deletionTimestamp"):
                continue
            st = pod.get("status") or {}
            if st.get("phase") not in ("Running", "Succeeded", "Failed"):
                pod = self._try_start(pod)
            if (pod.get("status") or {}).get("phase") == "Running":
                for c in (pod.get("spec") or {}).get("containers") or []:
                    ctl = controller_of(c)
                    if ctl:
                        running.setdefault(ctl, pod)
        self._notify(running)

    def _notify(self, running: dict[str, Obj]) -> None:
        for ctl in CONTROLLERS:
            uid = self._controller_pods.get(ctl)
            pod = running.get(ctl)
            new_uid = meta(pod).get("uid") if pod else None
            if uid == new_uid:
                continue
            if uid is not None:
                self.say("controller %s stopped (its Pod %s is gone)", ctl, uid)
                self._controller_pods.pop(ctl)
                if self.on_controller:
                    self.on_controller(ctl, {}, False)
            if pod is not None and new_uid:
                m = meta(pod)
                self.say(
                    "controller %s started in Pod %s/%s", ctl, m.get("namespace"), m.get("name")
                )
                self._controller_pods[ctl] = new_uid
                if self.on_controller:
                    self.on_controller(ctl, pod, True)

    def stop_all(self) -> None:
        for ctl in list(self._controller_pods):
            self._controller_pods.pop(ctl)
            if self.on_controller:
                self.on_controller(ctl, {}, False)

    # -- one Pod --------------------------------------------------------------------------------

    def _try_start(self, pod: Obj) -> Obj:
        assert self.kube is not None
        m = meta(pod)
        ns, name = m.get("namespace", ""), m.get("name", "")
        spec = pod.get("spec") or {}
        inits = spec.get("initContainers") or []
        mains = spec.get("containers") or []
        missing = self._missing(ns, references(spec, inits))
        if not missing:
            for c in inits:
                self._init_effects(ns, c)
            missing = self._missing(ns, references(spec, mains))
        status = _pod_status(pod, missing, ns)
        if _same_status(pod.get("status") or {}, status):
            return pod
        if SIM_ANNOTATION not in (m.get("annotations") or {}):
            self.kube.patch(
                "v1",
                "Pod",
                name,
                {
                    "metadata": {
                        "annotations": {
                            SIM_ANNOTATION: SIM_NOTE,
                            STANDIN_ANNOTATION: "true",
                        }
                    }
                },
                ns,
            )
        try:
            out = self.kube.patch_status("v1", "Pod", name, status, ns)
        except NotFound:
            return pod
        if status["phase"] == "Running":
            self.say("Pod %s/%s running", ns, name)
        else:
            self.say("Pod %s/%s waiting: %s", ns, name, missing[0].message(ns))
        return out

    def _missing(self, ns: str, refs: list[tuple[str, str, str | None, bool]]) -> list[Missing]:
        assert self.kube is not None
        out: list[Missing] = []
        for kind, name, key, via_volume in refs:
            obj = self.kube.get("v1", _title(kind), name, ns)
            if obj is None:
                out.append(Missing(kind, name, None, via_volume))
            elif key is not None:
                data = {**(obj.get("data") or {}), **(obj.get("binaryData") or {})}
                if key not in data:
                    out.append(Missing(kind, name, key, via_volume))
        return out

    def _init_effects(self, ns: str, container: Obj) -> None:
        """Side effects of init containers the lab's installs depend on."""
        assert self.kube is not None
        words = [str(x) for x in (container.get("command") or []) + (container.get("args") or [])]
        if (
            "redis-initial-password" in words
            and self.kube.get("v1", "Secret", "argocd-redis", ns) is None
        ):
            self.kube.create(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "type": "Opaque",
                    "metadata": {
                        "name": "argocd-redis",
                        "namespace": ns,
                        "annotations": {STANDIN_ANNOTATION: "true"},
                    },
                    "data": {"auth": base64.b64encode(secrets.token_urlsafe(12).encode()).decode()},
                }
            )
            self.say(
                "init container %s: created Secret %s/argocd-redis",
                container.get("name"),
                ns,
                level=logging.INFO,
            )


def _pod_status(pod: Obj, missing: list[Missing], ns: str) -> Obj:
    old = pod.get("status") or {}
    spec = pod.get("spec") or {}
    t = now()
    names = [c.get("name", "") for c in spec.get("containers") or []]
    ok = not missing

    def cond(type_: str, status: bool, reason: str | None = None, msg: str = "") -> Obj:
        prev = next((c for c in old.get("conditions") or [] if c.get("type") == type_), None)
        s = "True" if status else "False"
        c: Obj = {"type": type_, "status": s, "lastProbeTime": None}
        c["lastTransitionTime"] = (
            prev["lastTransitionTime"] if prev and prev.get("status") == s else t
        )
        if reason:
            c["reason"] = reason
        if msg:
            c["message"] = msg
        return c

    not_ready = f"containers with unready status: [{' '.join(names)}]"
    if ok:
        container_state: Obj = {"running": {"startedAt": t}}
    elif any(m.via_volume for m in missing):  # volumes are mounted before env is resolved
        container_state = {"waiting": {"reason": "ContainerCreating"}}
    else:
        container_state = {
            "waiting": {"reason": "CreateContainerConfigError", "message": missing[0].message(ns)}
        }
    statuses = [
        {
            "name": c.get("name"),
            "image": c.get("image"),
            "imageID": "",
            "ready": ok,
            "started": ok,
            "restartCount": 0,
            "state": container_state,
        }
        for c in spec.get("containers") or []
    ]
    init_statuses = (
        [
            {
                "name": c.get("name"),
                "image": c.get("image"),
                "imageID": "",
                "ready": True,
                "restartCount": 0,
                "state": {
                    "terminated": {
                        "exitCode": 0,
                        "reason": "Completed",
                        "startedAt": t,
                        "finishedAt": t,
                    }
                },
            }
            for c in spec.get("initContainers") or []
        ]
        if ok
        else []
    )
    status: Obj = {
        "phase": "Running" if ok else "Pending",
        "conditions": [
            cond("Initialized", True),
            cond("Ready", ok, None if ok else "ContainersNotReady", "" if ok else not_ready),
            cond(
                "ContainersReady", ok, None if ok else "ContainersNotReady", "" if ok else not_ready
            ),
            cond("PodScheduled", True),
        ],
        "containerStatuses": statuses,
        "startTime": old.get("startTime") or t,
        "qosClass": old.get("qosClass") or "BestEffort",
    }
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    return status


def _same_status(old: Obj, new: Obj) -> bool:
    def key(st: Obj) -> tuple[object, ...]:
        cs = [
            (
                c.get("name"),
                c.get("ready"),
                sorted((c.get("state") or {}).keys()),
                str(((c.get("state") or {}).get("waiting") or {}).get("message")),
            )
            for c in st.get("containerStatuses") or []
        ]
        return st.get("phase"), str(cs)

    return key(old) == key(new)
