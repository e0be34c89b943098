"""Kubernetes: install k3s (single, HA, air-gapped) and fetch a working kubeconfig."""

from __future__ import annotations

from pathlib import Path

import yaml

from bootstrap import secretrefs
from bootstrap.engine.context import StepContext
from bootstrap.engine.step import RetryPolicy
from bootstrap.errors import PermanentError, PreflightError, WaitTimeout
from bootstrap.fsutil import write_atomic
from bootstrap.kubeapi import KubeAPI
from bootstrap.outputs import ApiReachable, K3sInstalled
from bootstrap.steps import common
from bootstrap.steps.hosts import report_changes
from bootstrap.steps.polling import Judgement, Progress, wait_until
from bootstrap.steps.registry import step

K3S_KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"


@step("install-k3s", after=["prepare-hosts"], timeout=3600)
def install_k3s(ctx: StepContext) -> None:
    """Install k3s with the cluster token ``kubernetes.token`` names (by default the escrowed
    one) through the Ansible k3s playbook."""
    k8s = ctx.site.kubernetes
    n = len(common.hosts(ctx))
    bundle = common.plugin(ctx).k3s_bundle() if k8s.install == "airgap" else None
    airgap: Path | None = bundle.path if bundle is not None else k8s.airgap_dir
    source = "airgap" if airgap is not None else "download"
    if ctx.dry_run:
        ctx.will(f"run k3s.yml ({k8s.topology}, {source}, {k8s.version}) on {n} host(s)")
        return
    group_vars: dict[str, object] = {
        "k3s_version": k8s.version,
        "k3s_install_source": source,
        "k3s_tls_sans": list(k8s.tls_sans),
        "k3s_data_dir": str(k8s.data_dir),
        # --cluster-init on the first server: what kubernetes.topology says, not a count
        "k3s_embedded_etcd": k8s.topology == "ha",
    }
    if airgap is not None:
        group_vars["k3s_airgap_dir"] = str(airgap)
        if bundle is not None and not bundle.reports_version:
            group_vars["k3s_verify_version"] = False
        if bundle is not None and bundle.note:
            ctx.progress(bundle.note, target=str(airgap))
    else:
        if k8s.download_url:
            group_vars["k3s_download_url"] = k8s.download_url
        group_vars["k3s_sha256"] = k8s.sha256 or ""
    token = secretrefs.resolve(k8s.token, lambda: common.kit(ctx), field="kubernetes.token")
    if not token:
        raise PreflightError(
            "kubernetes.token resolves to no token (the recovery kit holds none)",
            target="kubernetes.token",
            hint="`drboot escrow import SITE --k3s-token-file FILE`, or set kubernetes.token to "
            f"{{env: VAR}} / {{file: PATH}}; then `drboot resume {ctx.run_id}`",
        )
    result = common.playbook(
        ctx, "k3s.yml", group_vars=group_vars, secret_vars={"k3s_token": token}
    )
    ctx.record(
        K3sInstalled(
            changed=report_changes(ctx, "k3s", result),
            version=k8s.version,
            version_checked=group_vars.get("k3s_verify_version", True) is not False,
        )
    )


def write_kubeconfig(ctx: StepContext) -> Path:
    """Fetch k3s.yaml from the first server, point it at the server's address, store it 0600
    in the run folder (removed when the run's resources close)."""
    first = common.servers(ctx)[0]
    raw = common.ssh(ctx, first).get(K3S_KUBECONFIG)
    try:
        doc = yaml.safe_load(raw)
        for cluster in doc["clusters"]:
            cluster["cluster"]["server"] = f"https://{first.address}:6443"
    except (yaml.YAMLError, KeyError, TypeError, AttributeError, ValueError, RecursionError):
        raise PermanentError(
            f"{K3S_KUBECONFIG} on {first.name} is not a kubeconfig",
            target=first.name,
            hint="check the k3s service on that host (`systemctl status k3s`), then resume",
        ) from None
    path = common.kubeconfig_path(ctx)
    write_atomic(path, yaml.safe_dump(doc))
    return path


def _ready_nodes(kube: KubeAPI) -> int:
    return sum(
        1
        for node in kube.list("v1", "Node")
        if any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (node.get("status") or {}).get("conditions", [])
        )
    )


def wait_nodes_ready(
    kube: KubeAPI,
    want: int,
    timeout: float,
    *,
    progress: Progress = lambda message, **data: None,
    target: str | None = None,
    hint: str | None = None,
) -> None:
    """Poll the Node list until ``want`` nodes report Ready=True (``WaitTimeout`` otherwise)."""

    def give_up(ready: int | None, waited: float) -> WaitTimeout:
        return WaitTimeout(
            f"{ready or 0} of {want} node(s) Ready after {waited:.0f}s",
            target=target,
            hint=hint,
        )

    wait_until(
        lambda _look: _ready_nodes(kube),
        lambda ready: Judgement(ready >= want, f"{ready}/{want} node(s) Ready"),
        give_up=give_up,
        timeout=timeout,
        interval=1.0,
        progress=progress,
    )


@step(
    "fetch-kubeconfig",
    after=["install-k3s"],
    timeout=600,
    retry=RetryPolicy(attempts=5, backoff_initial=3, backoff_max=20),
)
def fetch_kubeconfig(ctx: StepContext) -> None:
    """Fetch the kubeconfig from the first server (0600, run folder) and wait for /readyz."""
    first = common.servers(ctx)[0]
    if ctx.dry_run:
        ctx.will(f"fetch {K3S_KUBECONFIG} from {first.name} and wait for the API")
        return
    from bootstrap.adapters.kube import KubeClient

    path = write_kubeconfig(ctx)
    wait = min(ctx.site.kubernetes.api_ready_timeout.total_seconds(), ctx.remaining())
    ctx.progress("waiting for /readyz", target=f"https://{first.address}:6443")
    with KubeClient.from_kubeconfig(path) as probe:
        probe.wait_ready(timeout=wait)
    kube = common.kube(ctx)  # shared by later steps (a plug-in may start what runs beside it)
    want = common.plugin(ctx).nodes_to_wait_for(common.hosts(ctx))
    if want:
        wait_nodes_ready(
            kube,
            want,
            min(ctx.site.kubernetes.api_ready_timeout.total_seconds(), ctx.remaining()),
            progress=ctx.progress,
            target=f"https://{first.address}:6443",
            hint="check the k3s service (journalctl -u k3s / k3s-agent) on the hosts not "
            f"Ready; then `drboot resume {ctx.run_id}`",
        )
    ctx.record(ApiReachable(api_server=f"https://{first.address}:6443"))
    ctx.noop(f"API answers at https://{first.address}:6443 (kubeconfig kept only for this run)")
