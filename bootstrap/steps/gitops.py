"""GitOps: install the reconciler, point it at the config repo, wait for every app.

Each step observes first: the pinned reconciler already installed, the repository Secret and
root object already as wanted, are reported as no change. The deploy key is never rotated: a
repository Secret holding another key is refused, not overwritten. The wait lists every app
(an Argo CD Application, a Flux Kustomization) once per poll interval (one API call), and
only when something is not ready looks at the unready workloads' Pods to say why.

The steps never ask which reconciler the site names: what differs between Argo CD and Flux is
behind ``bootstrap.reconcilers.base.Reconciler``, found by ``reconciler_for``. Secret values
come from ``bootstrap.secretrefs``; every wait runs in ``bootstrap.steps.polling``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bootstrap import secretrefs
from bootstrap.engine.context import StepContext
from bootstrap.engine.step import RetryPolicy
from bootstrap.errors import EscrowError, PermanentError, TransientError, WaitTimeout
from bootstrap.kubeapi import KubeAPI
from bootstrap.outputs import (
    AppRecord,
    AppsSynced,
    ReconcilerInstalled,
    RepoPointed,
    RepoPointer,
)
from bootstrap.reconcilers import reconciler_for
from bootstrap.reconcilers.base import (
    AppState,
    KeySecret,
    Obj,
    Reconciler,
    Tally,
    first_pod_problem,
    install_drift,
    key_fingerprint,
    object_ref,
    pinned_refs,
    secret_value,
    selector_string,
    tally,
    workload_problem,
)
from bootstrap.settings import Repo
from bootstrap.steps import common
from bootstrap.steps.polling import Judgement, Look, wait_until
from bootstrap.steps.registry import step

WORKLOAD_WAIT = 600.0
WORKLOAD_POLL = 1.0
DIAGNOSE_EVERY = 10.0  # seconds between looks at the Pods of unready apps


def _reconciler(ctx: StepContext) -> Reconciler:
    return reconciler_for(ctx.site.reconciler)


# --------------------------------------------------------------------------- install


@step("install-reconciler", after=["verify-sealing-key"], timeout=1800)
def install_reconciler(ctx: StepContext) -> None:
    """Install Argo CD or Flux from the pinned upstream manifests."""
    settings = ctx.site.reconciler
    rec = _reconciler(ctx)
    rec.source(ctx.site.repo)  # a repo it cannot follow is refused before anything is installed
    ns = rec.namespace
    objs = rec.install_objects()
    kube = common.kube(ctx)
    live = {
        (kind, name): kube.get(api, kind, name, None if kind == "CustomResourceDefinition" else ns)
        for api, kind, name in pinned_refs(objs)
    }
    drift = install_drift(objs, live)
    what = f"{settings.type} {settings.version}"
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
    names = rec.workloads(objs)
    _wait_workloads(ctx, kube, ns, names)
    ctx.record(
        ReconcilerInstalled(
            reconciler=settings.type,
            version=settings.version,
            namespace=ns,
            workloads=[f"{k}/{n}" for k, n in names],
        )
    )


def _wait_workloads(ctx: StepContext, kube: KubeAPI, ns: str, names: list[tuple[str, str]]) -> None:
    """Poll the reconciler's own Deployments/StatefulSets until each is available."""
    kinds = sorted({k for k, _ in names})

    def observe(look: Look) -> list[str]:
        """What keeps each workload from being available (empty: all are)."""
        live: dict[tuple[str, str], Obj] = {}
        for kind in kinds:
            for o in kube.list("apps/v1", kind, ns):
                live[(kind, o["metadata"]["name"])] = o
        return [
            f"{k} {n}: {p}"
            for k, n in names
            if (p := workload_problem(live.get((k, n)))) is not None
        ]

    def judge(problems: list[str]) -> Judgement:
        if not problems:
            return Judgement(True, f"{len(names)} workloads available")
        return Judgement(
            False,
            f"{len(names) - len(problems)}/{len(names)} workloads available",
            f"waiting for {'; '.join(problems)}",
        )

    def give_up(problems: list[str] | None, waited: float) -> WaitTimeout:
        return WaitTimeout(
            "the reconciler's workloads are not available: "
            + ("; ".join(problems) if problems is not None else "the API did not answer"),
            target=ns,
            hint=f"kubectl -n {ns} describe pods; then `drboot resume {ctx.run_id}`",
        )

    wait_until(
        observe, judge, give_up=give_up,
        timeout=min(WORKLOAD_WAIT, ctx.remaining()), interval=WORKLOAD_POLL,
        progress=lambda message, **data: ctx.progress(message, target=ns, **data),
    )  # fmt: skip


# --------------------------------------------------------------------------- point at the repo


def _deploy_key(ctx: StepContext) -> str | None:
    repo: Repo = ctx.site.repo
    if repo.kind() != "ssh":
        return None
    key = secretrefs.resolve(repo.deploy_key, lambda: common.kit(ctx), field="repo.deploy_key")
    if not key:
        raise EscrowError(
            f"repo {repo.url} is an ssh URL but no deploy key was found "
            "(repo.deploy_key resolves to nothing)",
            hint="`drboot escrow backup --deploy-key FILE` (or set repo.deploy_key), then resume",
        )
    return key


def _known_hosts(ctx: StepContext) -> str | None:
    repo: Repo = ctx.site.repo
    if repo.kind() != "ssh":
        return None
    return secretrefs.resolve(repo.known_hosts, lambda: common.kit(ctx), field="repo.known_hosts")


def _ensure_key_secret(ctx: StepContext, kube: KubeAPI, wanted: KeySecret, key: str | None) -> None:
    """Create the Secret holding the deploy key, or find it as wanted; never rotate it."""
    where = f"{wanted.namespace}/{wanted.name}"
    live = kube.get("v1", "Secret", wanted.name, wanted.namespace)
    if live is None:
        fp = key_fingerprint(key)
        if ctx.will("create the repository Secret" + (f" (deploy key {fp})" if fp else ""),
                    target=where):  # fmt: skip
            kube.create(wanted.obj)
        return
    have = secret_value(live, wanted.key_field)
    if key is not None and (have or "").strip() != key.strip():
        raise PermanentError(
            f"Secret {where} holds deploy key {key_fingerprint(have)}, not the escrowed "
            f"{key_fingerprint(key)}; drboot never rotates a deploy key",
            target=where,
            hint="check which key the git host accepts; delete the Secret if the escrowed one "
            f"is right (or back the other up into the escrow), then `drboot resume {ctx.run_id}`",
        )
    ctx.noop("repository Secret present with the escrowed key" if key else
             "repository Secret present", target=where)  # fmt: skip


def _ensure_known_hosts(ctx: StepContext, kube: KubeAPI, rec: Reconciler, known: str) -> None:
    """Add the escrowed known_hosts to the reconciler's known-hosts ConfigMap, if it has one."""
    name = rec.known_hosts_configmap()
    if name is None:  # they travel in the key Secret
        return
    patch = rec.known_hosts_patch(kube.get("v1", "ConfigMap", name, rec.namespace), known)
    if patch is None:
        ctx.noop("escrowed known_hosts present", target=name)
    elif ctx.will("add the escrowed known_hosts", target=name):
        kube.patch("v1", "ConfigMap", name, patch, rec.namespace)


def _apply_root(ctx: StepContext, kube: KubeAPI, rec: Reconciler, wanted: Obj) -> None:
    m = wanted["metadata"]
    where = object_ref(wanted)
    live = kube.get(wanted["apiVersion"], wanted["kind"], m["name"], m["namespace"])
    diff = rec.spec_differences(wanted, live)
    if not diff:
        ctx.noop("already follows the repo as wanted", target=where)
    elif ctx.will("create" if live is None else f"update {', '.join(diff)}", target=where):
        kube.apply(wanted)


@step("point-at-repo", after=["install-reconciler"], timeout=600)
def point_at_repo(ctx: StepContext) -> None:
    """Give the reconciler the deploy key and the root object(s) that follow the repo."""
    rec = _reconciler(ctx)
    source = rec.source(ctx.site.repo)
    kube = common.kube(ctx)
    key = _deploy_key(ctx)
    known = _known_hosts(ctx)
    secret = rec.key_secret(source, key, known)
    if secret is not None:
        _ensure_key_secret(ctx, kube, secret, key)
    if known:
        _ensure_known_hosts(ctx, kube, rec, known)
    roots = rec.root_objects(source, secret)
    for root in roots:
        _apply_root(ctx, kube, rec, root)
    ctx.record(
        RepoPointed(
            root=[object_ref(r) for r in roots],
            repo=RepoPointer(source.url, source.revision, source.path),
        )
    )


# --------------------------------------------------------------------------- wait


def _diagnose(kube: KubeAPI, rec: Reconciler, app: Obj, state: AppState) -> AppState:
    """Replace the reason with what the first unavailable workload's Pods say."""
    for api, kind, name, ns in rec.workload_refs(app)[:3]:
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


@dataclass
class _AppWatch:
    """One look at every app per poll: list them (one API call), judge each, and every
    ``DIAGNOSE_EVERY`` seconds (and on the final look) ask the unready ones' Pods why."""

    kube: KubeAPI
    rec: Reconciler
    require_all: bool
    ignore: tuple[str, ...]
    last_diagnosis: float = float("-inf")
    reasons: dict[str, str] = field(default_factory=dict)

    def __call__(self, look: Look) -> Tally:
        where = self.rec.apps()
        apps: list[Obj] = self.kube.list(where.api, where.kind, where.namespace)
        by_name = {(a["metadata"].get("namespace", ""), a["metadata"]["name"]): a for a in apps}
        current = tally(self._scope([self.rec.app_state(a) for a in apps]), self.ignore)
        if current.waiting and (look.now - self.last_diagnosis >= DIAGNOSE_EVERY or look.final):
            self.last_diagnosis = look.now
            self.reasons = {}
            for s in current.waiting:
                try:
                    better = _diagnose(self.kube, self.rec, by_name[(s.namespace, s.name)], s)
                except TransientError:
                    continue
                self.reasons[s.name] = better.reason
        return _with_reasons(current, self.reasons)

    def _scope(self, states: list[AppState]) -> list[AppState]:
        """With ``require_all: false`` only drboot's root object(s) count."""
        if self.require_all:
            return states
        roots = self.rec.root_apps()
        return [s for s in states if (s.namespace, s.name) in roots]


def _judge(t: Tally) -> Judgement:
    return Judgement(
        t.all_ready,
        t.summary(),
        data={"ready": len(t.ready), "total": t.total, "waiting": [s.name for s in t.waiting]},
    )


@step("wait-synced", after=["point-at-repo"], timeout=7200, retry=RetryPolicy.none())
def wait_synced(ctx: StepContext) -> None:
    """Wait until every application is Synced and Healthy; record the RTO."""
    sw = ctx.site.sync_wait
    if ctx.dry_run:
        ctx.will(f"wait up to {int(sw.timeout.total_seconds())}s for every app Synced+Healthy")
        return
    rec = _reconciler(ctx)
    stable = sw.stable_for.total_seconds()
    watch = _AppWatch(common.kube(ctx), rec, sw.require_all, tuple(sw.ignore_apps))

    def give_up(last: Tally | None, waited: float) -> WaitTimeout:
        return _timeout(ctx, last or tally([]), waited, rec.namespace)

    waited = wait_until(
        watch, _judge, give_up=give_up,
        timeout=min(sw.timeout.total_seconds(), max(1.0, ctx.remaining() - 5)),
        interval=sw.poll_interval.total_seconds(), stable_for=stable,
        progress=ctx.progress,
    )  # fmt: skip
    current, took = waited.last, waited.seconds
    ctx.record(
        AppsSynced(
            apps={s.name: AppRecord(**s.to_dict()) for s in current.ready},
            ignored=list(current.ignored),
            seconds=round(took, 3),
            ready_at=waited.ready_at,
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


def _timeout(ctx: StepContext, t: Tally, took: float, namespace: str) -> WaitTimeout:
    sw = ctx.site.sync_wait
    if not t.total:
        what = "no application appeared"
    elif t.waiting:
        what = "not Synced+Healthy: " + "; ".join(s.line() for s in t.waiting)
    else:
        what = f"apps were ready but not for {sw.stable_for.total_seconds():.0f}s in a row"
    return WaitTimeout(
        f"gave up after {took:.0f}s (sync_wait.timeout): {what}",
        target=namespace,
        hint="fix the apps named (their repo path, missing Secrets), or list them in "
        f"sync_wait.ignore_apps; then `drboot resume {ctx.run_id}`",
    )
