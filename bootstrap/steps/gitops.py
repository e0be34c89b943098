"""GitOps: install the reconciler, point it at the config repo, wait for every app.

Each step observes first: the pinned reconciler already installed, the repository Secret and
root object already as wanted, are reported as no change. The deploy key is never rotated: a
repository Secret holding another key is refused, not overwritten. The wait lists every
Application (Argo CD) or Kustomization (Flux) once per poll interval (one API call), and
only when something is not ready looks at the unready workloads' Pods to say why.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from bootstrap.engine.context import StepContext
from bootstrap.engine.step import RetryPolicy
from bootstrap.errors import (
    ConfigError,
    EscrowError,
    PermanentError,
    TransientError,
    WaitTimeout,
)
from bootstrap.outputs import (
    AppRecord,
    AppsSynced,
    ReconcilerInstalled,
    RepoPointed,
    RepoPointer,
)
from bootstrap.reconcilers import argocd, flux
from bootstrap.reconcilers.base import (
    WORKLOAD_KINDS,
    AppState,
    Obj,
    Tally,
    first_pod_problem,
    install_drift,
    pinned_refs,
    selector_string,
    tally,
    workload_problem,
)
from bootstrap.steps import common
from bootstrap.steps.registry import step

WORKLOAD_WAIT = 600.0
HEARTBEAT = 30.0  # seconds between progress events when nothing changes
DIAGNOSE_EVERY = 10.0  # seconds between looks at the Pods of unready apps


def _module(ctx: StepContext) -> ModuleType:
    return argocd if ctx.site.reconciler.type == "argocd" else flux


def _namespace(ctx: StepContext) -> str:
    return str(ctx.site.reconciler.namespace)


def _flux_url(ctx: StepContext) -> str:
    """The repo URL Flux can fetch, or a ConfigError before anything is installed."""
    url = str(ctx.site.repo.url)
    found = flux.source_url(url)
    if found is None:
        raise ConfigError(
            f"reconciler flux cannot follow repo.url {url}: Flux's GitRepository accepts only "
            "http(s):// and ssh:// URLs (its CRD refuses file:// and local paths)",
            hint="serve the repository over ssh:// or https://, or use reconciler.type: argocd",
        )
    return found


# --------------------------------------------------------------------------- install


@step("install-reconciler", after=["verify-sealing-key"], timeout=1800)
def install_reconciler(ctx: StepContext) -> None:
    """Install Argo CD or Flux from the pinned upstream manifests."""
    rec = ctx.site.reconciler
    if rec.type == "flux":
        _flux_url(ctx)
    mod = _module(ctx)
    ns = _namespace(ctx)
    objs: list[Obj] = mod.install_objects(ns)
    kube = common.kube(ctx)
    live = {
        (kind, name): kube.get(api, kind, name, None if kind == "CustomResourceDefinition" else ns)
        for api, kind, name in pinned_refs(objs)
    }
    drift = install_drift(objs, live)
    what = f"{rec.type} {rec.version}"
    if not drift:
        ctx.noop(f"{what} installed (CRDs and workloads with the pinned images)", target=ns)
    elif ctx.will(
        f"install {what} ({len(objs)} objects): "
        + "; ".join(drift[:3])
        + (f"; {len(drift) - 3} more" if len(drift) > 3 else ""),
        target=ns,
    ):
        if kube.get("v1", "Namespace", ns) is None:
            kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        kube.apply_manifest(objs, namespace=ns)
    else:
        return
    names = mod.workloads(objs)
    _wait_workloads(ctx, kube, ns, names)
    ctx.record(
        ReconcilerInstalled(
            reconciler=rec.type,
            version=rec.version,
            namespace=ns,
            workloads=[f"{k}/{n}" for k, n in names],
        )
    )


def _wait_workloads(ctx: StepContext, kube: Any, ns: str, names: list[tuple[str, str]]) -> None:
    """Poll the reconciler's own Deployments/StatefulSets until each is available."""
    deadline = time.monotonic() + min(WORKLOAD_WAIT, ctx.remaining())
    kinds = sorted({k for k, _ in names})
    last = ""
    while True:
        live: dict[tuple[str, str], Obj] = {}
        for kind in kinds:
            for o in kube.list("apps/v1", kind, ns):
                live[(kind, o["metadata"]["name"])] = o
        problems = [
            f"{k} {n}: {p}"
            for k, n in names
            if (p := workload_problem(live.get((k, n)))) is not None
        ]
        if not problems:
            ctx.progress(f"{len(names)} workloads available", target=ns)
            return
        text = f"{len(names) - len(problems)}/{len(names)} workloads available"
        if text != last:
            ctx.progress(f"{text}; waiting for {'; '.join(problems)}", target=ns)
            last = text
        if time.monotonic() >= deadline:
            raise WaitTimeout(
                f"the reconciler's workloads are not available: {'; '.join(problems)}",
                target=ns,
                hint=f"kubectl -n {ns} describe pods; then `drboot resume {ctx.run_id}`",
            )
        time.sleep(1.0)


# --------------------------------------------------------------------------- point at the repo


def _ref_value(ref: Any, from_kit: str | None) -> str | None:
    """Resolve a ``{escrow}``/``{env}``/``{file}`` reference (the value is never logged)."""
    if ref is None:
        return None
    if getattr(ref, "escrow", None):
        return from_kit
    if getattr(ref, "env", None):
        return os.environ.get(str(ref.env))
    if getattr(ref, "file", None):
        return Path(str(ref.file)).expanduser().read_text()
    return None


def _deploy_key(ctx: StepContext) -> str | None:
    repo = ctx.site.repo
    if repo.kind() != "ssh":
        return None
    kit = common.kit(ctx) if getattr(repo.deploy_key, "escrow", None) else None
    key = _ref_value(repo.deploy_key, kit.deploy_key if kit else None)
    if not key:
        raise EscrowError(
            f"repo {repo.url} is an ssh URL but no deploy key was found "
            "(repo.deploy_key resolves to nothing)",
            hint="`drboot escrow backup --deploy-key FILE` (or set repo.deploy_key), then resume",
        )
    return key


def _known_hosts(ctx: StepContext) -> str | None:
    repo = ctx.site.repo
    if repo.kind() != "ssh":
        return None
    kit = common.kit(ctx) if getattr(repo.known_hosts, "escrow", None) else None
    return _ref_value(repo.known_hosts, kit.known_hosts if kit else None)


def _ensure_key_secret(
    ctx: StepContext, kube: Any, wanted: Obj, key_field: str, key: str | None
) -> None:
    """Create the Secret holding the deploy key, or find it as wanted; never rotate it."""
    m = wanted["metadata"]
    where = f"{m['namespace']}/{m['name']}"
    live = kube.get("v1", "Secret", m["name"], m["namespace"])
    if live is None:
        fp = argocd.key_fingerprint(key)
        if ctx.will("create the repository Secret" + (f" (deploy key {fp})" if fp else ""),
                    target=where):  # fmt: skip
            kube.create(wanted)
        return
    have = argocd.secret_value(live, key_field)
    if key is not None and (have or "").strip() != key.strip():
        raise PermanentError(
            f"Secret {where} holds deploy key {argocd.key_fingerprint(have)}, not the escrowed "
            f"{argocd.key_fingerprint(key)}; drboot never rotates a deploy key",
            target=where,
            hint="check which key the git host accepts; delete the Secret if the escrowed one "
            f"is right (or back the other up into the escrow), then `drboot resume {ctx.run_id}`",
        )
    ctx.noop("repository Secret present with the escrowed key" if key else
             "repository Secret present", target=where)  # fmt: skip


@step("point-at-repo", after=["install-reconciler"], timeout=600)
def point_at_repo(ctx: StepContext) -> None:
    """Give the reconciler the deploy key and the root Application / Kustomization."""
    if ctx.site.reconciler.type == "flux":
        _point_flux(ctx)
    else:
        _point_argocd(ctx)


def _apply_root(ctx: StepContext, kube: Any, mod: ModuleType, wanted: Obj) -> None:
    m = wanted["metadata"]
    where = f"{wanted['kind']} {m['namespace']}/{m['name']}"
    live = kube.get(wanted["apiVersion"], wanted["kind"], m["name"], m["namespace"])
    diff = mod.spec_differences(wanted, live)
    if not diff:
        ctx.noop("already follows the repo as wanted", target=where)
    elif ctx.will("create" if live is None else f"update {', '.join(diff)}", target=where):
        kube.apply(wanted)


def _point_argocd(ctx: StepContext) -> None:
    rec, repo = ctx.site.reconciler, ctx.site.repo
    ns = _namespace(ctx)
    kube = common.kube(ctx)
    key = _deploy_key(ctx)
    _ensure_key_secret(ctx, kube, argocd.repo_secret(ns, repo.url, key), "sshPrivateKey", key)
    known = _known_hosts(ctx)
    if known:
        cm = kube.get("v1", "ConfigMap", argocd.KNOWN_HOSTS_CM, ns)
        patch = argocd.known_hosts_patch(cm, known)
        if patch is None:
            ctx.noop("escrowed known_hosts present", target=argocd.KNOWN_HOSTS_CM)
        elif ctx.will("add the escrowed known_hosts", target=argocd.KNOWN_HOSTS_CM):
            kube.patch("v1", "ConfigMap", argocd.KNOWN_HOSTS_CM, patch, ns)
    root = argocd.root_application(
        ns, url=repo.url, revision=repo.revision, path=rec.app_of_apps or repo.path,
        project=rec.project,
    )  # fmt: skip
    _apply_root(ctx, kube, argocd, root)
    ctx.record(
        RepoPointed(
            root=[f"{argocd.APP_KIND} {ns}/{argocd.ROOT_APP}"],
            repo=RepoPointer(repo.url, repo.revision, rec.app_of_apps or repo.path),
        )
    )


def _point_flux(ctx: StepContext) -> None:
    rec, repo = ctx.site.reconciler, ctx.site.repo
    url = _flux_url(ctx)
    ns = _namespace(ctx)
    kube = common.kube(ctx)
    key = _deploy_key(ctx)
    if key is not None:
        secret = flux.deploy_key_secret(ns, key, _known_hosts(ctx))
        _ensure_key_secret(ctx, kube, secret, "identity", key)
    source = flux.git_repository(
        ns, url=url, revision=repo.revision, interval=rec.interval,
        secret=flux.ROOT if key is not None else None,
    )  # fmt: skip
    _apply_root(ctx, kube, flux, source)
    _apply_root(ctx, kube, flux, flux.kustomization(ns, path=repo.path, interval=rec.interval))
    ctx.record(
        RepoPointed(
            root=[f"GitRepository {ns}/{flux.ROOT}", f"Kustomization {ns}/{flux.ROOT}"],
            repo=RepoPointer(url, repo.revision, repo.path),
        )
    )


# --------------------------------------------------------------------------- wait


def _list_apps(ctx: StepContext, kube: Any) -> list[Obj]:
    if ctx.site.reconciler.type == "flux":
        found: list[Obj] = kube.list(flux.KS_API, flux.APP_KIND)
        return found
    apps: list[Obj] = kube.list(argocd.APP_API, argocd.APP_KIND, _namespace(ctx))
    return apps


def _workload_refs(ctx: StepContext, app: Obj) -> list[tuple[str, str, str, str | None]]:
    """(apiVersion, kind, name, namespace) of the workloads an unready app manages."""
    if ctx.site.reconciler.type == "argocd":
        return [
            argocd.resource_ref(r)
            for r in argocd.unhealthy_resources(app)
            if r.get("kind") in WORKLOAD_KINDS
        ]
    out = []
    for e in ((app.get("status") or {}).get("inventory") or {}).get("entries") or []:
        parts = str(e.get("id", "")).split("_")
        if len(parts) == 4 and parts[3] in WORKLOAD_KINDS:
            ns, name, group, kind = parts
            out.append((f"{group}/{e.get('v')}" if group else str(e.get("v")), kind, name,
                        ns or None))  # fmt: skip
    return out


def _diagnose(ctx: StepContext, kube: Any, app: Obj, state: AppState) -> AppState:
    """Replace the reason with what the first unavailable workload's Pods say."""
    for api, kind, name, ns in _workload_refs(ctx, app)[:3]:
        w = kube.get(api, kind, name, ns)
        problem = workload_problem(w)
        if problem is None or w is None:
            continue
        selector = selector_string(w)
        pods = kube.list("v1", "Pod", ns, label_selector=selector) if selector else []
        detail = first_pod_problem(pods) or problem
        return AppState(
            state.name, state.namespace, state.sync, state.health, f"{kind} {name}: {detail}"
        )
    return state


def _scope(ctx: StepContext, states: list[AppState]) -> list[AppState]:
    """With ``require_all: false`` only drboot's root object(s) count."""
    if ctx.site.sync_wait.require_all:
        return states
    root = argocd.ROOT_APP if ctx.site.reconciler.type == "argocd" else flux.ROOT
    return [s for s in states if s.name == root and s.namespace == _namespace(ctx)]


@step("wait-synced", after=["point-at-repo"], timeout=7200, retry=RetryPolicy.none())
def wait_synced(ctx: StepContext) -> None:
    """Wait until every application is Synced and Healthy; record the RTO."""
    sw = ctx.site.sync_wait
    if ctx.dry_run:
        ctx.will(f"wait up to {int(sw.timeout.total_seconds())}s for every app Synced+Healthy")
        return
    kube = common.kube(ctx)
    started = time.monotonic()
    deadline = started + min(sw.timeout.total_seconds(), max(1.0, ctx.remaining() - 5))
    stable = sw.stable_for.total_seconds()
    poll = sw.poll_interval.total_seconds()
    since: float | None = None  # monotonic time all apps became ready (this streak)
    ready_wall: float | None = None
    last_text, last_emit, last_diag = "", 0.0, 0.0
    reasons: dict[str, str] = {}
    current: Tally = tally([])
    while True:
        now = time.monotonic()
        try:
            apps = _list_apps(ctx, kube)
        except TransientError as e:
            ctx.progress(f"API not answering ({e.message}); polling on")
            apps = None
        if apps is not None:
            by_name = {(a["metadata"].get("namespace", ""), a["metadata"]["name"]): a for a in apps}
            states = _scope(ctx, [_module(ctx).app_state(a) for a in apps])
            current = tally(states, sw.ignore_apps)
            diagnose = current.waiting and (now - last_diag >= DIAGNOSE_EVERY or now >= deadline)
            if diagnose:
                last_diag = now
                reasons = {}
                for s in current.waiting:
                    try:
                        better = _diagnose(ctx, kube, by_name[(s.namespace, s.name)], s)
                    except TransientError:
                        continue
                    reasons[s.name] = better.reason
            current = _with_reasons(current, reasons)
            if current.all_ready:
                if since is None:
                    since, ready_wall = now, time.time()
            else:
                since, ready_wall = None, None
        text = current.summary()
        if text != last_text or now - last_emit >= HEARTBEAT:
            ctx.progress(
                text + (f" (stable for {now - since:.0f}/{stable:.0f}s)" if since else ""),
                ready=len(current.ready), total=current.total,
                waiting=[s.name for s in current.waiting],
            )  # fmt: skip
            last_text, last_emit = text, now
        if since is not None and now - since >= stable:
            break
        if now >= deadline:
            _timeout(ctx, current, time.monotonic() - started)
        time.sleep(max(0.05, min(poll, deadline - time.monotonic())))
    took = time.monotonic() - started
    ctx.record(
        AppsSynced(
            apps={s.name: AppRecord(**s.to_dict()) for s in current.ready},
            ignored=list(current.ignored),
            seconds=round(took, 3),
            ready_at=ready_wall,
            stable_for=stable,
        )
    )
    ctx.noop(f"{current.total} app(s) Synced+Healthy, stable for {stable:.0f}s "
             f"(waited {took:.0f}s)")  # fmt: skip


def _with_reasons(t: Tally, reasons: dict[str, str]) -> Tally:
    waiting = tuple(
        AppState(s.name, s.namespace, s.sync, s.health, reasons.get(s.name) or s.reason)
        for s in t.waiting
    )
    return Tally(t.ready, waiting, t.ignored)


def _timeout(ctx: StepContext, t: Tally, took: float) -> None:
    sw = ctx.site.sync_wait
    if not t.total:
        what = "no application appeared"
    elif t.waiting:
        what = "not Synced+Healthy: " + "; ".join(s.line() for s in t.waiting)
    else:
        what = f"apps were ready but not for {sw.stable_for.total_seconds():.0f}s in a row"
    raise WaitTimeout(
        f"gave up after {took:.0f}s (sync_wait.timeout): {what}",
        target=_namespace(ctx),
        hint="fix the apps named (their repo path, missing Secrets), or list them in "
        f"sync_wait.ignore_apps; then `drboot resume {ctx.run_id}`",
    )
