"""More site-file fields and what they change: each test would fail if drboot ignored its field.

The companion of ``test_field_effects.py``, whose seam it reuses: ``context`` hands a step a
site and ``LocalResources`` as the run's resources. The steps and functions that read the
fields run for real. Where a step talks to a cluster it gets ``RecordingCluster``, a stand-in
at drboot's own boundary (the ``KubeAPI`` protocol), not a Kubernetes server: it keeps objects
in a dict and records what it was asked. Where a step needs a lab or an SSH handshake, the
stand-in is said so beside it. The k3s role is the real one, rendered as Ansible renders it.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from bootstrap.engine.context import StepContext
from bootstrap.engine.journal import Journal
from bootstrap.errors import PermanentError
from bootstrap.settings import Site
from bootstrap.siteload import load_site_text
from bootstrap.steps import finish, hosts
from tests.unit.test_field_effects import LocalShell, context

Obj = dict[str, Any]

SITE = {
    "apiVersion": "drboot.dev/v1",
    "name": "more",
    "provider": "{type: static, hosts: [{name: s1, address: 10.200.254.250}]}",
    "escrow": "{backend: age, bundle: kit.age, identity_files: [id.txt]}",
    "repo": "{url: https://git.example.invalid/platform.git}",
}


def make_site(tmp_path: Path, **sections: str) -> Site:
    """A site file from ``SITE`` with top-level sections replaced or added (flow YAML)."""
    text = "".join(f"{key}: {value}\n" for key, value in (SITE | sections).items())
    return load_site_text(text, "site.yaml", base_dir=tmp_path)


def from_site(
    tmp_path: Path, s: Site, step_id: str, shell: LocalShell | None = None
) -> StepContext:
    """A step's context whose hosts are the site's: the provision step ran first, for real."""
    ctx = context(tmp_path, s, step_id, shell)
    prov = StepContext(ctx._scope, "provision", 60)
    hosts.provision(prov)
    ctx._scope.outputs["provision"] = prov.outputs
    return ctx


CLUSTER_SCOPED = {"Namespace", "Node", "CustomResourceDefinition", "ClusterRole",
                  "ClusterRoleBinding"}  # fmt: skip


class RecordingCluster:
    """The verbs of ``bootstrap.kubeapi.KubeAPI`` over a dict. A stand-in at drboot's own
    boundary, not a Kubernetes server: no validation, no controllers. What it adds of its own:
    a Deployment reads as rolled out once stored (as the controller-manager and kubelet would
    report it), and ``proxy_get`` answers ``served`` only for a Service it holds."""

    target = "recording-cluster"

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str | None, str], Obj] = {}
        self.patches: list[tuple[str, str | None, str, Obj]] = []
        self.waits: list[tuple[str, float]] = []
        self.proxied: list[tuple[str, str, int | str, str]] = []
        self.lists: dict[str, list[float]] = {}
        self.served = b""

    def __enter__(self) -> RecordingCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def close(self) -> None:
        return None

    @staticmethod
    def _key(kind: str, name: str, namespace: str | None) -> tuple[str, str | None, str]:
        return kind, None if kind in CLUSTER_SCOPED else namespace, name

    def _store(self, obj: Obj, namespace: str | None = None) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if obj["kind"] not in CLUSTER_SCOPED:
            meta.setdefault("namespace", namespace)
        if obj["kind"] == "Deployment":
            replicas = (obj.get("spec") or {}).get("replicas", 1)
            meta.setdefault("generation", 1)
            obj["status"] = {
                "observedGeneration": meta["generation"],
                "replicas": replicas,
                "updatedReplicas": replicas,
                "availableReplicas": replicas,
            }
        self.objects[self._key(obj["kind"], meta["name"], meta.get("namespace"))] = obj
        return obj

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None:
        return self.objects.get(self._key(kind, name, namespace))

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Obj]:
        self.lists.setdefault(kind, []).append(time.monotonic())
        label = (label_selector or "").split("=")[0]
        return [
            copy.deepcopy(o)
            for (k, ns, _), o in self.objects.items()
            if k == kind
            and (namespace is None or ns == namespace)
            and (not label or label in (o["metadata"].get("labels") or {}))
        ]

    def create(self, obj: Obj) -> Obj:
        return self._store(obj)

    def apply(self, obj: Obj, field_manager: str = "drboot", *, force: bool = True) -> Obj:
        return self._store(obj)

    def apply_manifest(
        self,
        objs: Iterable[Obj],
        *,
        namespace: str | None = None,
        field_manager: str = "drboot",
        crd_timeout: float = 60.0,
    ) -> list[Obj]:
        return [self._store(o, namespace) for o in objs]

    def patch(
        self, api_version: str, kind: str, name: str, patch: Obj, namespace: str | None = None
    ) -> Obj:
        self.patches.append((kind, namespace, name, patch))
        return patch

    def wait_ready(self, timeout: float = 120.0, interval: float = 0.5) -> None:
        self.waits.append(("wait_ready", timeout))

    def wait_for(
        self,
        api_version: str,
        kind: str,
        name: str,
        predicate: Any,
        namespace: str | None = None,
        *,
        timeout: float = 60.0,
        interval: float = 0.5,
        what: str = "ready",
    ) -> Obj | None:
        self.waits.append((f"{kind} {name} {what}", timeout))
        obj = self.get(api_version, kind, name, namespace)
        assert predicate(obj), f"{kind} {name} is not {what}"
        return obj

    def proxy_get(
        self, namespace: str, service: str, port: int | str, path: str, *, scheme: str = ""
    ) -> bytes:
        self.proxied.append((namespace, service, port, path))
        if self.get("v1", "Service", service, namespace) is None:
            raise PermanentError(f"no Service {namespace}/{service}")
        return self.served


# --------------------------------------------------------------------------- the report


def _journal_with_a_restored_run(ctx: StepContext, ready_after: float) -> None:
    """The journal of run ``ctx.run_id`` as the pipeline leaves it when the report step
    starts: wait-synced done, every app ready ``ready_after`` seconds after the start."""
    j = Journal(ctx.state_root / "journal.sqlite")
    try:
        j.create_run(ctx.run_id, ctx.site.name, "restore", ["wait-synced", "report"], {}, "d")
        start = j.run(ctx.run_id).created  # type: ignore[union-attr]
        n = j.start_attempt(ctx.run_id, "wait-synced")
        j.end_attempt(ctx.run_id, "wait-synced", n, "ok", None)
        j.finish_step(ctx.run_id, "wait-synced", "done", {"ready_at": start + ready_after}, "ok")
        j.start_attempt(ctx.run_id, "report")
    finally:
        j.close()


@pytest.mark.parametrize(
    ("sections", "where", "files", "objective", "met"),
    [
        ({}, None, ["report.json", "report.md"], 3600, True),
        ({"report": "{directory: out, formats: [junit, json]}"}, "out",
         ["report.json", "report.junit.xml"], 3600, True),
        ({"rto": "{objective: 5m}"}, None, ["report.json", "report.md"], 300, False),
    ],
    ids=["defaults", "directory-and-formats", "objective"],
)  # fmt: skip
def test_report_directory_formats_and_rto_objective(
    tmp_path: Path,
    sections: dict[str, str],
    where: str | None,
    files: list[str],
    objective: int,
    met: bool,
) -> None:
    ctx = context(tmp_path, make_site(tmp_path, **sections), "report")
    _journal_with_a_restored_run(ctx, ready_after=600)
    finish.report(ctx)
    directory = tmp_path / where if where else ctx.run_dir
    assert sorted(p.name for p in directory.glob("report*")) == files
    assert sorted(Path(p).name for p in ctx.outputs["files"]) == files
    assert (ctx.outputs["rto_objective_seconds"], ctx.outputs["rto_met"]) == (objective, met)
    rto = json.loads((directory / "report.json").read_text())["rto"]
    assert (rto["seconds"], rto["objective_seconds"], rto["met"]) == (600, objective, met)


def test_description_heads_the_report(tmp_path: Path) -> None:
    text = "Oslo production: rebuilt from git every quarter"
    ctx = context(tmp_path, make_site(tmp_path, description=f'"{text}"'), "report")
    _journal_with_a_restored_run(ctx, ready_after=60)
    finish.report(ctx)
    md = (ctx.run_dir / "report.md").read_text().splitlines()
    assert md[0] == "# drboot restore report: more" and md[2] == text
    assert f'"description": "{text}"' in (ctx.run_dir / "report.json").read_text()
    plain = context(tmp_path / "plain", make_site(tmp_path), "report")
    _journal_with_a_restored_run(plain, ready_after=60)
    finish.report(plain)
    assert (plain.run_dir / "report.md").read_text().splitlines()[2].startswith("- run: ")
