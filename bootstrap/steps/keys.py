"""Sealed Secrets keys: restored from escrow before the controller ever starts.

The failure this prevents: the controller starts before the old keys are back,
generates a fresh key, and every SealedSecret in Git becomes undecryptable.
So the key Secrets are created first; if a controller is found already running
with a key the escrow does not know, that is reported, the escrowed keys are
restored anyway, and the controller is restarted so it loads them.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from bootstrap.engine.context import StepContext
from bootstrap.engine.step import RetryPolicy
from bootstrap.errors import PermanentError, TransientError, WaitTimeout
from bootstrap.escrow.kit import SealingKey
from bootstrap.escrow.service import KEY_LABEL
from bootstrap.kubeapi import KubeAPI, Obj
from bootstrap.outputs import KeysRestored, RestoredKey, SealedSecretsInstalled, SealingKeyVerified
from bootstrap.reconcilers.base import workload_problem
from bootstrap.steps import common
from bootstrap.steps.polling import Judgement, wait_until
from bootstrap.steps.registry import step

MANIFESTS = Path(__file__).resolve().parent.parent / "manifests" / "sealed-secrets"
UPSTREAM_NAME = "sealed-secrets-controller"  # the chart's default, in the shipped manifest
CERT_PORT = 8080
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def _namespace(ctx: StepContext) -> str:
    return str(ctx.site.sealed_secrets.namespace)


def _controller(ctx: StepContext) -> str:
    """The controller's Deployment/Service/ServiceAccount name (``kubeseal --controller-name``)."""
    return str(ctx.site.sealed_secrets.controller_name)


def controller_manifest(
    namespace: str, name: str, renew_period: dt.timedelta | None = None
) -> list[Obj]:
    """The shipped controller manifest, in ``namespace``, its objects named ``name``; with
    ``renew_period``, the controller renews its key on that period (``--key-renew-period``),
    the one the site file states and the restore's backup warning is judged against."""
    from bootstrap.adapters.kube import load_manifest

    docs = load_manifest(MANIFESTS / "controller.yaml")
    for d in docs:
        meta = d.setdefault("metadata", {})
        if "namespace" in meta:
            meta["namespace"] = namespace
        if meta.get("name") == UPSTREAM_NAME:
            meta["name"] = name
        for subject in d.get("subjects", []) or []:
            subject["namespace"] = namespace
            if subject.get("name") == UPSTREAM_NAME:
                subject["name"] = name
        pod = ((d.get("spec") or {}).get("template") or {}).get("spec") or {}
        if pod.get("serviceAccountName") == UPSTREAM_NAME:
            pod["serviceAccountName"] = name
        if renew_period is not None and d.get("kind") == "Deployment":
            for c in pod.get("containers") or []:
                c["args"] = [a for a in c.get("args") or [] if not
                             str(a).startswith("--key-renew-period")]  # fmt: skip
                c["args"].append(f"--key-renew-period={int(renew_period.total_seconds())}s")
    return docs


@step("restore-sealing-keys", after=["fetch-kubeconfig"], timeout=600)
def restore_sealing_keys(ctx: StepContext) -> None:
    """Create the escrowed key Secrets (labelled) in the controller namespace."""
    kube = common.kube(ctx)
    kit = common.kit(ctx)
    ns = _namespace(ctx)
    if kube.get("v1", "Namespace", ns) is None and ctx.will(f"create namespace {ns}"):
        kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    escrowed = set(kit.fingerprints())
    present = {
        SealingKey.from_secret(s).fingerprint: s["metadata"]["name"]
        for s in kube.list("v1", "Secret", namespace=ns, label_selector=KEY_LABEL)
    }
    foreign = sorted(fp for fp in present if fp not in escrowed)
    created = 0
    for key in kit.sealing_keys:
        existing = kube.get("v1", "Secret", key.name, namespace=ns)
        if existing is not None:
            have = SealingKey.from_secret(existing).fingerprint
            if have != key.fingerprint:
                raise PermanentError(
                    f"Secret {ns}/{key.name} holds key {have}, not the escrowed {key.fingerprint}",
                    target=f"{ns}/{key.name}",
                    hint="a different key under the same name is never overwritten: inspect it, "
                    "back it up (`drboot escrow backup`), delete it, then resume",
                )
            ctx.noop(f"key {key.fingerprint} already restored", target=f"{ns}/{key.name}")
            continue
        if ctx.will(f"restore key {key.fingerprint} ({key.label})", target=f"{ns}/{key.name}"):
            kube.create(key.to_secret(ns))
            created += 1
    if foreign:
        names = ", ".join(f"{ns}/{present[fp]} ({fp})" for fp in foreign)
        ctx.audit(
            "Sealed Secrets controller started before its keys were restored",
            target=f"{ns}/{_controller(ctx)}",
            foreign_keys=foreign,
        )
        raise PermanentError(
            f"the Sealed Secrets controller started before its keys were restored and made "
            f"key(s) the escrow does not hold: {names}. It seals new secrets with the newest "
            "key, so it would keep sealing with a key no backup has (the escrowed keys are "
            "restored now, so existing SealedSecrets will decrypt)",
            target=f"{ns}/{_controller(ctx)}",
            hint="if nothing was sealed with that key, delete its Secret; otherwise back it up "
            f"first (`drboot escrow backup`); then `drboot resume {ctx.run_id}`",
        )
    running = kube.get("apps/v1", "Deployment", _controller(ctx), namespace=ns)
    if (
        running is not None
        and _started_before_keys(kube, running, ns)
        and ctx.will(
            "restart the controller: it started before its keys were restored",
            target=f"{ns}/{_controller(ctx)}",
        )
    ):
        _restart(kube, running)
    ctx.record(
        KeysRestored(
            restored=[
                RestoredKey(k.name, k.fingerprint, k.label, k.not_before.isoformat())
                for k in kit.sealing_keys
            ],
            foreign_keys=foreign,
            warning=_renewal_warning(ctx),
            renewal_period_seconds=ctx.site.sealed_secrets.key_renewal_period.total_seconds(),
        )
    )


def _started_before_keys(kube: KubeAPI, deployment: Obj, ns: str) -> bool:
    """Did the controller (last) start before the newest key Secret existed?"""
    template = deployment["spec"]["template"].get("metadata") or {}
    started = (template.get("annotations") or {}).get(RESTARTED_AT) or deployment["metadata"][
        "creationTimestamp"
    ]
    newest = max(
        (
            s["metadata"]["creationTimestamp"]
            for s in kube.list("v1", "Secret", namespace=ns, label_selector=KEY_LABEL)
        ),
        default="",
    )
    return bool(newest) and str(newest) >= str(started)


def _restart(kube: KubeAPI, deployment: Obj) -> None:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    meta = deployment["metadata"]
    kube.patch(
        "apps/v1",
        "Deployment",
        meta["name"],
        {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}},
        namespace=meta["namespace"],
    )


def _renewal_warning(ctx: StepContext) -> str | None:
    kit = common.kit(ctx)
    newest = kit.newest_key_not_before()
    period = ctx.site.sealed_secrets.key_renewal_period
    if newest is not None and dt.datetime.now(dt.UTC) - newest > period:
        # The controller (0.36.6) orders keys by their certificate's notBefore and, when the
        # newest is older than --key-renew-period, generates a key as it starts: one the
        # escrow does not hold until the next backup.
        msg = (
            f"the newest restored key is from {newest.date()}, older than the renewal period "
            f"({period.days} days): the controller makes a new key as it starts, which the "
            "escrow does not hold; back up the escrow again (`drboot escrow backup`) after "
            "the restore"
        )
        ctx.audit("escrow backup due after restore", warning=msg)
        return msg
    return None


@step("install-sealed-secrets", after=["restore-sealing-keys"], timeout=900)
def install_sealed_secrets(ctx: StepContext) -> None:
    """Install the Sealed Secrets controller, after its keys are in place."""
    from bootstrap.adapters.kube import load_manifest

    kube = common.kube(ctx)
    ns = _namespace(ctx)
    crd = kube.get(
        "apiextensions.k8s.io/v1", "CustomResourceDefinition", "sealedsecrets.bitnami.com"
    )
    name = _controller(ctx)
    dep = kube.get("apps/v1", "Deployment", name, namespace=ns)
    if crd is not None and dep is not None:
        ctx.noop("CRD and controller present")
    elif ctx.will(f"install the SealedSecret CRD and the controller in {ns}"):
        kube.apply_manifest(
            load_manifest(MANIFESTS / "crd.yaml")
            + controller_manifest(ns, name, ctx.site.sealed_secrets.key_renewal_period),
            namespace=ns,
        )
    else:
        return
    _wait_available(ctx, kube, ns, name)
    ctx.record(SealedSecretsInstalled(version=ctx.site.sealed_secrets.version, controller=name))


def _wait_available(ctx: StepContext, kube: KubeAPI, ns: str, name: str) -> None:
    """Poll the controller Deployment until it is rolled out and available."""
    where = f"{ns}/{name}"

    def why(obj: Obj | None) -> str:
        return workload_problem(obj) or "rolling out"

    def judge(obj: Obj | None) -> Judgement:
        if _available(obj):
            return Judgement(True, "controller Deployment available")
        return Judgement(False, "waiting for the controller Deployment to become available",
                         why(obj))  # fmt: skip

    def give_up(obj: Obj | None, waited: float) -> WaitTimeout:
        return WaitTimeout(
            f"Deployment {where} not available after {waited:.0f}s: {why(obj)}",
            target=where,
            hint=f"kubectl -n {ns} describe pods -l app.kubernetes.io/name=sealed-secrets; then "
            f"`drboot resume {ctx.run_id}`",
        )

    wait_until(
        lambda _look: kube.get("apps/v1", "Deployment", name, namespace=ns),
        judge, give_up=give_up, timeout=min(300.0, ctx.remaining()), interval=0.5,
        progress=lambda message, **data: ctx.progress(message, target=name, **data),
    )  # fmt: skip


def _available(obj: dict[str, Any] | None) -> bool:
    """Rolled out: the newest template is what runs, and all of it is available."""
    if not obj:
        return False
    spec, status, meta = obj.get("spec") or {}, obj.get("status") or {}, obj["metadata"]
    want = spec.get("replicas", 1)
    return bool(
        status.get("observedGeneration", 0) >= meta.get("generation", 0)
        and status.get("updatedReplicas", 0) == want
        and status.get("availableReplicas", 0) == want
        and status.get("replicas", 0) == want
    )


@step(
    "verify-sealing-key",
    after=["install-sealed-secrets"],
    timeout=600,
    retry=RetryPolicy(attempts=6, backoff_initial=2, backoff_max=10),
)
def verify_sealing_key(ctx: StepContext) -> None:
    """The controller serves a certificate whose fingerprint is an escrowed key."""
    from bootstrap import sealing

    kube = common.kube(ctx)
    ns = _namespace(ctx)
    name = _controller(ctx)
    if ctx.dry_run:
        ctx.will(f"fetch /v1/cert.pem from the controller {ns}/{name}")
        return
    plugin = common.plugin(ctx)
    pem = plugin.sealing_cert(kube, ns, name, CERT_PORT, lambda m: ctx.progress(m, target=name))
    fp = sealing.cert_fingerprint(pem)
    escrowed = common.kit(ctx).fingerprints()
    renewed = None if fp in escrowed else _renewed_key(ctx, kube, ns, fp, escrowed)
    if renewed is not None:
        msg = (
            f"the controller made a new key {fp} (Secret {ns}/{renewed}) as it started: the "
            "restored keys are older than the renewal period. It seals new secrets with it and "
            "the escrow does not hold it: back up the escrow again (`drboot escrow backup`)"
        )
        ctx.audit("Sealed Secrets controller renewed its key after the restore",
                  target=f"{ns}/{renewed}", fingerprint=fp, warning=msg)  # fmt: skip
        ctx.record(SealingKeyVerified(serving_fingerprint=fp, source=plugin.name,
                                      renewed_by_controller=True, warning=msg))  # fmt: skip
        ctx.progress(f"warning: {msg}", target=f"{ns}/{name}")
        return
    if fp not in escrowed:
        # Transient: a controller that was just restarted may serve its old key for a moment.
        raise TransientError(
            f"the controller serves key {fp}, which is not in the escrow ({', '.join(escrowed)}): "
            "it started without the restored keys and generated its own",
            target=f"{ns}/{_controller(ctx)}",
            hint="restart the controller (its keys are restored now), then resume",
        )
    ctx.record(SealingKeyVerified(serving_fingerprint=fp, source=plugin.name))
    ctx.noop(f"controller serves escrowed key {fp}", target=f"{ns}/{_controller(ctx)}")


def _renewed_key(
    ctx: StepContext, kube: KubeAPI, ns: str, fp: str, escrowed: list[str]
) -> str | None:
    """The key Secret holding ``fp`` if the controller made it by renewal after the restore:
    the restore step found the escrowed keys older than the renewal period, and the Secret is
    labelled, not escrowed, and newer than every restored key Secret. (A key made because the
    controller started before its keys were back is older than them: not a renewal.)"""
    restored = ctx.read_optional(KeysRestored)
    if restored is None or restored.warning is None:
        return None
    secrets = kube.list("v1", "Secret", namespace=ns, label_selector=KEY_LABEL)
    prints = {str(s["metadata"]["name"]): SealingKey.from_secret(s).fingerprint for s in secrets}
    made = {str(s["metadata"]["name"]): str(s["metadata"].get("creationTimestamp") or "")
            for s in secrets}  # fmt: skip
    newest_restored = max((made[n] for n, f in prints.items() if f in escrowed), default="")
    for n, f in prints.items():
        if f == fp and f not in escrowed and newest_restored and made[n] >= newest_restored:
            return n
    return None
