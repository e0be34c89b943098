"""Render, compare and judge manifests like Argo CD and Flux do (LAB SIMULATION helpers).

Why it exists: the Argo CD and Flux stand-ins need the same three judgements the real tools
make, kept here so both agree: what a source path renders to (kustomize when there is a
kustomization file, else the YAML files), whether a live object matches the desired one
(every field the manifest sets has that value in the cluster; server defaults are ignored),
and how healthy an object is (Argo CD's built-in health checks, which Flux's kstatus
mirrors for the kinds that matter here).
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import yaml

from bootstrap.adapters import kustomize
from bootstrap.adapters.kube import KubeClient
from bootstrap.errors import PermanentError
from bootstrap.lab.standins.common import Obj, meta

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
HEALTH_ORDER = ["Healthy", "Suspended", "Progressing", "Missing", "Degraded", "Unknown"]


class RenderError(PermanentError):
    """The source path could not be turned into manifests."""


def render_path(root: Path, path: str, *, recurse: bool = False) -> list[Obj]:
    """The objects under ``root/path``: kustomize build if it has a kustomization file, else
    every YAML/JSON file (sorted; sub-directories only with ``recurse``)."""
    rel = (path or ".").strip("/") or "."
    target = (root / rel).resolve()
    if not str(target).startswith(str(root.resolve())):
        raise RenderError(f"{path}: path escapes the repository")
    if not target.is_dir():
        raise RenderError(f"{rel}: app path does not exist")
    if kustomize.has_kustomization(target):
        try:
            text = kustomize.build(target)
        except PermanentError as e:
            raise RenderError(e.message) from None
        docs = list(yaml.safe_load_all(text))
    else:
        files = sorted(target.rglob("*") if recurse else target.iterdir())
        docs = []
        for f in files:
            if f.is_file() and f.suffix in MANIFEST_SUFFIXES and ".git" not in f.parts:
                try:
                    docs += list(yaml.safe_load_all(f.read_text()))
                except yaml.YAMLError as e:
                    raise RenderError(f"{f.relative_to(root)}: invalid YAML: {e}") from None
    out: list[Obj] = []
    for d in docs:
        if not d:
            continue
        if not isinstance(d, dict) or not d.get("apiVersion") or not d.get("kind"):
            raise RenderError(f"{rel}: a document has no apiVersion/kind")
        if d.get("kind", "").endswith("List") and isinstance(d.get("items"), list):
            out += [i for i in d["items"] if i]
        else:
            out.append(d)
    return out


def is_namespaced(kube: KubeClient, api_version: str, kind: str) -> bool:
    """Whether the server scopes ``kind`` by namespace.

    Uses the facade's discovery (``_resource``): KubeClient has no public way to ask yet.
    """
    return kube._resource(api_version, kind).namespaced is True


def ref_of(obj: Obj) -> tuple[str, str, str, str | None]:
    """(apiVersion, kind, name, namespace) of an object."""
    m = meta(obj)
    return obj["apiVersion"], obj["kind"], m.get("name", ""), m.get("namespace")


def _comparable(desired: Obj) -> Obj:
    d = copy.deepcopy(desired)
    d.pop("status", None)
    if d.get("kind") == "Secret" and d.get("stringData"):
        data = dict(d.get("data") or {})
        for k, v in d.pop("stringData").items():
            data[k] = base64.b64encode(str(v).encode()).decode()
        d["data"] = data
    return d


def _subset(want: Any, have: Any) -> bool:
    if isinstance(want, dict):
        return isinstance(have, dict) and all(
            _subset(v, have.get(k)) for k, v in want.items() if v is not None
        )
    if isinstance(want, list):
        return (
            isinstance(have, list)
            and len(want) == len(have)
            and all(_subset(w, h) for w, h in zip(want, have, strict=True))
        )
    if isinstance(want, bool) or isinstance(have, bool):
        return bool(want == have)
    if isinstance(want, int | float) and isinstance(have, int | float):
        return float(want) == float(have)
    return bool(want == have) or str(want) == str(have)


def in_sync(desired: Obj, live: Obj | None) -> bool:
    """True when every field the manifest sets has that value in ``live``."""
    return live is not None and _subset(_comparable(desired), live)


def health(obj: Obj | None) -> tuple[str, str] | None:
    """(status, message) like Argo CD's built-in checks; None for kinds without health."""
    if obj is None:
        return "Missing", ""
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    st = obj.get("status") or {}
    gen = meta(obj).get("generation")
    if kind in ("Deployment", "StatefulSet", "DaemonSet"):
        if spec.get("paused"):
            return "Suspended", "Deployment is paused"
        if gen is not None and (st.get("observedGeneration") or 0) < gen:
            return "Progressing", "Waiting for rollout to finish: observed generation is stale"
        for c in st.get("conditions") or []:
            if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
                return (
                    "Degraded",
                    f"{kind} {meta(obj).get('name')!r} exceeded its progress deadline",
                )
        if kind == "DaemonSet":
            want = int(st.get("desiredNumberScheduled") or 0)
            ready = int(st.get("numberAvailable") or 0)
        else:
            want = int(spec.get("replicas", 1))
            ready = int(
                st.get("availableReplicas" if kind == "Deployment" else "readyReplicas") or 0
            )
            updated = int(st.get("updatedReplicas") or 0)
            if updated < want:
                return "Progressing", (
                    f"Waiting for rollout to finish: {updated} out of {want} new replicas "
                    "have been updated..."
                )
        if ready < want:
            return "Progressing", (
                f"Waiting for rollout to finish: {ready} of {want} updated replicas "
                "are available..."
            )
        return "Healthy", ""
    if kind == "Pod":
        phase = st.get("phase")
        if phase == "Succeeded":
            return "Healthy", ""
        if phase == "Failed":
            return "Degraded", str(st.get("message") or "")
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in st.get("conditions") or []
        )
        return ("Healthy", "") if ready else ("Progressing", str(st.get("message") or ""))
    if kind == "PersistentVolumeClaim":
        return ("Healthy", "") if st.get("phase") == "Bound" else ("Progressing", "")
    if kind == "Service" and spec.get("type") == "LoadBalancer":
        ingress = (st.get("loadBalancer") or {}).get("ingress")
        return ("Healthy", "") if ingress else ("Progressing", "")
    return None


def worst(statuses: list[str]) -> str:
    """The least healthy of ``statuses`` in Argo CD's order (Healthy if empty)."""
    return max(statuses, key=HEALTH_ORDER.index, default="Healthy")
