"""GitOps: install the reconciler, point it at the config repo, wait for every app.

Each step observes first: the pinned reconciler already installed, the repository Secret and
root object already as wanted, are reported as no change. The deploy key is never rotated: a
repository Secret holding another key is refused, not overwritten.

The wait decides whether drboot says "restored", so it means: every app the config repo
declares at the commit preflight verified (rendered, app of apps followed: ``appset``), each
Synced+Healthy *at that commit* (or at a newer one the branch moved on to, once the escrow
check passes there), in the reconciler's real states (errors, operations in flight, suspended,
manual sync), for ``stable_for`` in a row. The apps are watched, not polled (``appwatch``: one
list + watch per kind); only when something is not ready, and at most every
``DIAGNOSE_EVERY`` seconds, are the unready workloads' Pods asked why. ``drboot wait`` runs the
same wait (``wait_cluster``) on a cluster that is already up.

The steps never ask which reconciler the site names: what differs between Argo CD and Flux is
behind ``bootstrap.reconcilers.base.Reconciler``, found by ``reconciler_for``. Secret values
come from ``bootstrap.secretrefs``; every wait runs in ``bootstrap.steps.polling``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from bootstrap import secretrefs
from bootstrap.engine.context import StepContext
from bootstrap.engine.step import RetryPolicy
from bootstrap.errors import (
    BootstrapError,
    ConfigError,
    EscrowError,
    PermanentError,
    TransientError,
    WaitTimeout,
)
from bootstrap.kubeapi import KubeAPI
from bootstrap.outputs import (
    AppRecord,
    AppsSynced,
    EscrowChecked,
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
    RepoSource,
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
from bootstrap.settings import Repo, Site
from bootstrap.steps import common
from bootstrap.steps.appset import Expected, expected_apps
from bootstrap.steps.appwatch import Informer
from bootstrap.steps.polling import Judgement, Look, Progress, wait_until
from bootstrap.steps.registry import step

WORKLOAD_WAIT = 600.0
WORKLOAD_POLL = 1.0
DIAGNOSE_EVERY = 10.0  # seconds between looks at the Pods of unready apps
FIRST_LIST_WAIT = 10.0  # seconds the first look waits for the watch's first list


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


def _pinned(ctx: StepContext, source: RepoSource) -> RepoSource:
    """With ``repo.pin: commit`` the reconciler follows the commit preflight verified, not
    the branch (a frozen restore: nothing pushed later is applied)."""
    if ctx.site.repo.pin != "commit":
        return source
    checked = ctx.read_optional(EscrowChecked)
    if checked is None or checked.repo is None or not checked.repo.commit:
        raise ConfigError(
            "repo.pin: commit needs the commit preflight verified, and none was recorded",
            hint="enable sealed_secrets.verify_in_preflight (or set repo.revision to a commit "
            "sha), then start a new run",
        )
    return replace(source, revision=checked.repo.commit)


@step("point-at-repo", after=["install-reconciler"], timeout=600)
def point_at_repo(ctx: StepContext) -> None:
    """Give the reconciler the deploy key and the root object(s) that follow the repo."""
    rec = _reconciler(ctx)
    source = _pinned(ctx, rec.source(ctx.site.repo))
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
        return replace(state, reason=f"{kind} {name}: {detail}")
    return state


@dataclass
class Commits:
    """Which commits of the config repo the wait accepts: the one preflight verified, and any
    the branch moved on to once ``verify`` (an escrow check at that commit) passed. ``None``
    as ``verified`` means no commit was verified (preflight's check disabled): any revision
    counts, and the output says the result is unverified. ``expect(commit)`` gives the apps
    Git declares at a commit (None: not known)."""

    verified: list[str] | None
    verify: Callable[[str], None] | None = None
    expect: Callable[[str], Expected | None] | None = None
    refused: dict[str, BootstrapError] = field(default_factory=dict)
    expected: Expected | None = None

    def accepts(self, commit: str) -> bool:
        """Whether apps at ``commit`` count; verifies a new commit first (raising the refusal)."""
        if self.verified is None or commit in self.verified:
            return True
        if commit in self.refused:
            raise self.refused[commit]
        if self.verify is None:
            return False
        try:
            self.verify(commit)
        except BootstrapError as e:
            err = PermanentError(
                f"the branch moved on to {commit[:12]}, which drboot cannot verify: {e.message}",
                target=e.target, hint=e.hint or "fix the repo, then resume",
            )  # fmt: skip
            self.refused[commit] = err
            raise err from None
        self.verified.append(commit)
        self.adopt(commit)
        return True

    def adopt(self, commit: str) -> None:
        """Wait for the apps Git declares at ``commit`` from now on."""
        if self.expect is not None:
            self.expected = self.expect(commit) or self.expected


LIVE_EVERY = 45.0  # seconds of watch silence before a fresh list checks the API still answers


@dataclass
class AppWait:
    """The wait for every app: the apps (and for Flux their GitRepositories) kept current by a
    watch, each look judging every app against the accepted commits and the apps Git
    declares. Every ``DIAGNOSE_EVERY`` seconds (and on the final look) the unready ones'
    Pods are asked why."""

    kube: KubeAPI
    rec: Reconciler
    repo_url: str
    commits: Commits
    require_all: bool
    ignore: tuple[str, ...]
    wall: Callable[[], float] = time.time
    changed: threading.Event = field(default_factory=threading.Event)
    sync_manual: bool = False  # sync_wait.sync_manual_apps: start one sync of manual apps
    informers: list[Informer] = field(default_factory=list)  # one per kind of app
    source_informer: Informer | None = None
    synced_once: list[tuple[str, str, str]] = field(default_factory=list)  # ns, name, revision
    last_diagnosis: float = float("-inf")
    reasons: dict[str, str] = field(default_factory=dict)
    ready_since: dict[tuple[str, str], float] = field(default_factory=dict)
    strays: list[str] = field(default_factory=list)
    in_repo: set[tuple[str, str]] = field(default_factory=set)  # apps built from the config repo
    states: dict[tuple[str, str, str], tuple[str, AppState]] = field(default_factory=dict)
    dipped: set[tuple[str, str]] = field(default_factory=set)  # not ready since the last look
    last_event: float = field(default_factory=time.monotonic)  # the last watch event (monotonic)
    last_fresh: float = float("-inf")  # the last liveness list (monotonic)

    def start(self) -> AppWait:
        """One informer per kind of app (the other kinds only when the server serves them:
        a HelmRelease counts once its CRD is installed), then one for the sources."""
        kinds = [self.rec.apps()] + [
            w for w in self.rec.more_apps() if self.kube.serves(w.api, w.kind)
        ]
        self.informers = [
            Informer(self.kube, w.api, w.kind, w.namespace, self.changed, on_event=self._seen)
            for w in kinds
        ]
        source = self.rec.sources()
        if source is not None:
            self.source_informer = Informer(self.kube, source.api, source.kind,
                                            source.namespace, self.changed)  # fmt: skip
        for i in self._all():
            i.start()
        return self

    def _check_live(self, now: float) -> None:
        """A watch over a cut link shows a still picture and no error: after ``LIVE_EVERY``
        seconds without a watch event, one fresh list proves the API still answers (and
        refreshes the picture). When it does not, the watches are dropped, to be opened
        again, and the caller hears ``TransientError`` (the wait says "API not answering")."""
        if now - max(self.last_event, self.last_fresh) < LIVE_EVERY:
            return
        self.last_fresh = now
        try:
            for i in self._all():
                i.refresh()
        except TransientError:
            for i in self._all():
                i.reconnect()
            raise

    def _all(self) -> list[Informer]:
        return self.informers + ([self.source_informer] if self.source_informer else [])

    def _seen(self, kind: str, app: Obj) -> None:
        """(In the watch thread.) Note an app that was not ready at any moment, even if it is
        ready again by the next look: a flap inside the stable window restarts the window."""
        self.last_event = time.monotonic()
        s = self.rec.app_state(app)
        if kind == "DELETED" or not s.ready:
            self.dipped.add((s.namespace, s.name))

    def stop(self) -> None:
        """Close every watch, then wait for the threads: none is left after the wait."""
        for i in self._all():
            i.stop()
        for i in self._all():
            i.join()

    @property
    def requests(self) -> int:
        return sum(i.requests for i in self._all())

    @property
    def reconnects(self) -> int:
        return sum(i.reconnects for i in self._all())

    def sleep(self, seconds: float) -> None:
        if self.changed.wait(seconds):
            self.changed.clear()

    def confirm(self) -> bool:
        """Before the stable window ends: one fresh list of every kind, judged like any look.
        A watch over a cut link shows a still picture (nothing tells the reader the stream is
        dead until a read timeout); "stable" must mean the API still says so."""
        for i in self._all():
            i.refresh()
        self.last_fresh = time.monotonic()
        return _judge(self(Look(time.monotonic(), False))).done

    @property
    def confirm_reads(self) -> int:
        return sum(i.confirms for i in self._all())

    def __call__(self, look: Look) -> Tally:
        for i in self._all():
            if i.error is not None:
                raise i.error
            if i.failure is not None:
                raise i.failure
            # the first look waits (briefly) for the first list rather than call it an outage
            if not i.synced.wait(0 if i.transient else FIRST_LIST_WAIT):
                raise TransientError(i.transient or f"listing {i.kind} objects")
        self._check_live(time.monotonic())  # the watch thread's clock, not the look's
        apps: dict[tuple[str, str], Obj] = {}
        for i in self.informers:
            for o in i.snapshot().values():
                s = self._state(o)
                apps[(s.namespace, s.name)] = o
        sources = self.source_informer.snapshot() if self.source_informer else {}
        dipped, self.dipped = self.dipped, set()
        states = self._scope([self._judge(a, sources) for a in apps.values()], set(apps))
        states = [
            replace(s, held=True, reason="was not ready a moment ago (flapped)")
            if s.ready and (s.namespace, s.name) in dipped else s
            for s in states
        ]  # fmt: skip
        current = tally(states, self.ignore)
        now = self.wall()
        for s in current.ready:
            self.ready_since.setdefault((s.namespace, s.name), now)
        for s in current.waiting:
            self.ready_since.pop((s.namespace, s.name), None)
        if current.waiting and (look.now - self.last_diagnosis >= DIAGNOSE_EVERY or look.final):
            self.last_diagnosis = look.now
            self.reasons = {}
            for s in current.waiting:
                app = apps.get((s.namespace, s.name))
                if app is None or s.held:
                    continue
                try:
                    self.reasons[s.name] = _diagnose(self.kube, self.rec, app, s).reason
                except TransientError:
                    continue
        return _with_reasons(current, self.reasons)

    def _state(self, app: Obj) -> AppState:
        m = app["metadata"]
        key = (str(app.get("kind")), str(m.get("namespace") or ""), str(m["name"]))
        version = str(m.get("resourceVersion") or "")
        cached = self.states.get(key)
        if cached is not None and version and cached[0] == version:
            return cached[1]  # unchanged since the last look: judged already
        s = self.rec.app_state(app)
        self.states[key] = (version, s)
        return s

    def _judge(self, app: Obj, sources: dict[tuple[str, str], Obj]) -> AppState:
        s = self._state(app)
        if not self.rec.follows_repo(app, self.repo_url):
            return s
        self.in_repo.add((s.namespace, s.name))
        target = self.rec.target_revision(app, sources)
        if target is not None:
            self.commits.accepts(target)  # a commit the branch moved on to: verified at once
            if self.sync_manual and s.sync != "Synced":
                s = self._sync_once(app, s, target)
        if not s.ready:
            return s
        rev = self.rec.synced_revision(app, sources)
        if rev is None:
            return replace(s, held=True, reason="synced, but not at its source's current "
                           "revision yet")  # fmt: skip
        if not self.commits.accepts(rev):
            want = ", ".join(c[:12] for c in self.commits.verified or [])
            return replace(s, held=True, revision=rev,
                           reason=f"synced at {rev[:12]}, not at the verified {want}")  # fmt: skip
        return replace(s, revision=rev)

    def _sync_once(self, app: Obj, s: AppState, revision: str) -> AppState:
        """Start one sync of a manual-sync app at the verified ``revision`` (observed first:
        the reconciler says whether one is needed; never twice for the same revision)."""
        key = (s.namespace, s.name, revision)
        started = replace(s, reason=f"manual sync: drboot started a sync at {revision[:12]}")
        if key in self.synced_once:
            return started
        patch = self.rec.sync_request(app, revision)
        if patch is None:
            return s
        m = app["metadata"]
        self.kube.patch(app["apiVersion"], app["kind"], m["name"], patch, m.get("namespace"))
        self.synced_once.append(key)
        return started

    def _scope(self, states: list[AppState], present: set[tuple[str, str]]) -> list[AppState]:
        """With ``require_all: false`` only drboot's root object(s) count; otherwise every
        app, and every app Git declares that does not exist yet (named as such)."""
        roots = self.rec.root_apps()
        if not self.require_all:
            return [s for s in states if (s.namespace, s.name) in roots]
        exp = self.commits.expected
        if exp is None:
            return states
        self.strays = sorted(f"{ns}/{n}" for ns, n in present - exp.apps - roots)
        missing = [
            AppState(n, ns, "Unknown", "Missing", _never_created(exp.commit), held=True)
            for ns, n in sorted(exp.apps - present)
        ]
        return states + missing


def _never_created(commit: str) -> str:
    return f"expected from Git at {commit[:12]}, never created"


def _judge(t: Tally) -> Judgement:
    return Judgement(
        t.all_ready,
        t.summary(),
        data={"ready": len(t.ready), "total": t.total, "waiting": [s.name for s in t.waiting]},
    )


@dataclass(frozen=True)
class WaitSettings:
    """What one wait needs besides the cluster: the site's ``sync_wait`` and the deadline."""

    timeout: float
    interval: float
    stable_for: float
    require_all: bool
    ignore: tuple[str, ...]
    sync_manual: bool = False  # sync_wait.sync_manual_apps


def wait_for_apps(
    kube: KubeAPI, rec: Reconciler, repo_url: str, commits: Commits, ws: WaitSettings, *,
    progress: Progress, give_up: Callable[[Tally | None, float], WaitTimeout],
) -> AppsSynced:  # fmt: skip
    """Wait until every app is Synced+Healthy at an accepted commit, for ``stable_for``
    seconds in a row; the record the step journals and ``drboot wait`` prints."""
    watch = AppWait(kube, rec, repo_url, commits, ws.require_all, ws.ignore,
                    sync_manual=ws.sync_manual).start()  # fmt: skip
    try:
        waited = wait_until(
            watch, _judge, give_up=give_up, timeout=ws.timeout, interval=ws.interval,
            stable_for=ws.stable_for, confirm=watch.confirm, progress=progress,
            sleep=watch.sleep,
        )  # fmt: skip
    finally:
        watch.stop()
    current = waited.last
    revs = sorted({s.revision for s in current.ready
                   if s.revision and (s.namespace, s.name) in watch.in_repo})  # fmt: skip
    exp = commits.expected
    since = watch.ready_since
    return AppsSynced(
        apps={
            s.name: AppRecord(**s.to_dict(), ready_since=since.get((s.namespace, s.name)))
            for s in current.ready
        },
        ignored=list(current.ignored),
        seconds=round(waited.seconds, 3),
        ready_at=waited.ready_at,
        stable_for=ws.stable_for,
        commit=revs[-1] if len(revs) == 1 else ",".join(revs),
        commit_verified=commits.verified is not None and all(r in commits.verified for r in revs),
        verified_commits=list(commits.verified or []),
        expected=sorted(f"{ns}/{n}" for ns, n in exp.apps) if exp else [],
        strays=watch.strays,
        requests=watch.requests,
        reconnects=watch.reconnects,
        confirm_reads=watch.confirm_reads,
        synced_by_drboot=[f"{ns}/{n}@{rev}" for ns, n, rev in watch.synced_once],
    )


def _commits(ctx: StepContext, rec: Reconciler) -> Commits:
    """The commit preflight verified (none if its check was disabled), how to verify one the
    branch moves on to, and how to read the apps Git declares at a commit."""
    checked = ctx.read_optional(EscrowChecked)
    if checked is None or checked.repo is None or not checked.repo.commit:
        return Commits(None)
    site = ctx.site
    source = rec.source(site.repo)

    def verify(commit: str) -> None:
        from bootstrap.escrow.service import check_repo

        ctx.progress(f"the branch moved on to {commit[:12]}: verifying it (escrow check)",
                     target=site.repo.url)  # fmt: skip
        check_repo(site, common.kit(ctx), revision=commit)
        ctx.audit("verified a newer commit", target=site.repo.url, commit=commit)

    def expect(commit: str) -> Expected | None:
        return expected_apps(
            rec, url=site.repo.url, commit=commit, path=source.path,
            deploy_key=_deploy_key(ctx), known_hosts=_known_hosts(ctx),
        )  # fmt: skip

    commits = Commits([checked.repo.commit], verify, expect)
    commits.adopt(checked.repo.commit)
    return commits


@step("wait-synced", after=["point-at-repo"], timeout=7200, retry=RetryPolicy.none())
def wait_synced(ctx: StepContext) -> None:
    """Wait until every app Git declares is Synced and Healthy at the verified commit;
    record the RTO."""
    sw = ctx.site.sync_wait
    if ctx.dry_run:
        ctx.will(f"wait up to {int(sw.timeout.total_seconds())}s for every app Synced+Healthy")
        return
    rec = _reconciler(ctx)
    stable = sw.stable_for.total_seconds()
    commits = _commits(ctx, rec)
    ws = WaitSettings(
        timeout=min(sw.timeout.total_seconds(), max(1.0, ctx.remaining() - 5)),
        interval=sw.poll_interval.total_seconds(), stable_for=stable,
        require_all=sw.require_all, ignore=tuple(sw.ignore_apps),
        sync_manual=sw.sync_manual_apps,
    )  # fmt: skip

    def give_up(last: Tally | None, waited: float) -> WaitTimeout:
        return _timeout(ctx, last or tally([]), waited, rec.namespace)

    def progress(message: str, **data: object) -> None:
        # targeted at the reconciler's namespace: a progress line with a target is printed on
        # a pipe too, so "4/7 apps Synced+Healthy; waiting for ledger: ..." shows everywhere
        ctx.progress(message, target=rec.namespace, **data)

    synced = wait_for_apps(common.kube(ctx), rec, rec.source(ctx.site.repo).url, commits, ws,
                           progress=progress, give_up=give_up)  # fmt: skip
    ctx.record(synced)
    at = f" at {synced.commit[:12]} ({'verified' if synced.commit_verified else 'unverified'})"
    ctx.noop(f"{len(synced.apps)} app(s) Synced+Healthy{at if synced.commit else ''}, stable "
             f"for {stable:.0f}s (waited {synced.seconds:.0f}s)")  # fmt: skip


def wait_cluster(site: Site, kube: KubeAPI, progress: Progress) -> AppsSynced:
    """``drboot wait``: the same wait for a cluster that is already up. The commit to wait
    for is verified here as preflight does (the escrow opens, every SealedSecret at the
    branch head decrypts), unless the site turned that check off."""
    from bootstrap.escrow.service import check_repo, open_kit

    rec = reconciler_for(site.reconciler)
    source = rec.source(site.repo)
    sw = site.sync_wait
    commits = Commits(None)
    if site.sealed_secrets.verify_in_preflight:
        kit = open_kit(site)
        progress("verifying the config repo (escrow check)", target=site.repo.url)
        head = check_repo(site, kit).commit

        def verify(commit: str) -> None:
            progress(f"the branch moved on to {commit[:12]}: verifying it", target=site.repo.url)
            check_repo(site, kit, revision=commit)

        def expect(commit: str) -> Expected:
            key = secretrefs.resolve(site.repo.deploy_key, lambda: kit, field="repo.deploy_key")
            known = secretrefs.resolve(site.repo.known_hosts, lambda: kit,
                                       field="repo.known_hosts")  # fmt: skip
            return expected_apps(rec, url=site.repo.url, commit=commit, path=source.path,
                                 deploy_key=key, known_hosts=known)  # fmt: skip

        commits = Commits([head], verify, expect)
        commits.adopt(head)
    ws = WaitSettings(
        timeout=sw.timeout.total_seconds(), interval=sw.poll_interval.total_seconds(),
        stable_for=sw.stable_for.total_seconds(), require_all=sw.require_all,
        ignore=tuple(sw.ignore_apps), sync_manual=sw.sync_manual_apps,
    )  # fmt: skip

    def give_up(last: Tally | None, waited: float) -> WaitTimeout:
        return WaitTimeout(
            f"gave up after {waited:.0f}s (sync_wait.timeout): "
            + timeout_text(last or tally([]), ws.stable_for),
            target=rec.namespace,
            hint="fix the apps named, or list them in sync_wait.ignore_apps; then wait again",
        )

    return wait_for_apps(kube, rec, source.url, commits, ws, progress=progress, give_up=give_up)


def _with_reasons(t: Tally, reasons: dict[str, str]) -> Tally:
    waiting = tuple(replace(s, reason=reasons.get(s.name) or s.reason) for s in t.waiting)
    return Tally(t.ready, waiting, t.ignored)


def timeout_text(t: Tally, stable_for: float) -> str:
    """What a wait that gave up says about its last look."""
    never = [s for s in t.waiting if s.health == "Missing" and s.reason.startswith("expected")]
    rest = [s for s in t.waiting if s not in never]
    parts = []
    if never:
        parts.append(never[0].reason + ": " + ", ".join(s.name for s in never))
    if rest:
        parts.append("not Synced+Healthy: " + "; ".join(s.line() for s in rest))
    if not t.total:
        parts.append("no application appeared")
    elif not parts:
        parts.append(f"apps were ready but not for {stable_for:.0f}s in a row")
    return "; ".join(parts)


def _timeout(ctx: StepContext, t: Tally, took: float, namespace: str) -> WaitTimeout:
    what = timeout_text(t, ctx.site.sync_wait.stable_for.total_seconds())
    return WaitTimeout(
        f"gave up after {took:.0f}s (sync_wait.timeout): {what}",
        target=namespace,
        hint="fix the apps named in Git (their repo path, missing Secrets), then "
        f"`drboot resume {ctx.run_id}` (the wait reads Git again); to leave an app out, list it "
        "in sync_wait.ignore_apps and run `drboot restore` again: a resume keeps the run's own "
        "copy of the site file, and a new run's finished steps observe and change nothing",
    )
