"""How fast drboot's wait-synced notices N Applications becoming Synced+Healthy, vs kubectl wait.

Run on demand (not part of the test suite; needs the lab's kube binaries, root not needed)::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_sync_wait.py [--apps 200] [--rounds 3]

On a real control plane (``bootstrap/lab/controlplane.py``: etcd, kube-apiserver v1.20,
kube-controller-manager) with Argo CD's Application CRD, N Applications start without status.
Both waiters start at t0: drboot's real ``wait-synced`` step (poll_interval 1s, stable_for 1s,
the shortest durations a site file can say) and ``kubectl wait`` (a watch) for
``.status.sync.status=Synced`` then ``.status.health.status=Healthy`` on every Application.
A writer thread then marks the apps Synced+Healthy over ``--spread`` seconds, the way Argo CD
writes status (a merge patch of the object). Reported per round: when the last status was
written, when each waiter saw "all ready" (drboot: the ``ready_at`` it records, i.e. before
its stable window), when each returned, and the ratio of the detection latencies.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bootstrap.adapters.kube import KubeClient, load_manifest
from bootstrap.engine.context import RunScope, StepContext
from bootstrap.events import EventBus
from bootstrap.lab.binaries import kube_bin_dir
from bootstrap.lab.controlplane import ControlPlane
from bootstrap.reconcilers import argocd
from bootstrap.siteload import load_site_text
from bootstrap.steps.gitops import wait_synced

NS = "argocd"
SITE = """\
apiVersion: drboot.dev/v1
kind: Site
name: bench
provider: {type: static, hosts: [{name: h, address: 127.0.0.1}]}
escrow: {backend: age, bundle: /nonexistent/kit.age, identity_files: [/nonexistent/id]}
repo: {url: "https://git.invalid/r.git"}
sync_wait: {timeout: 10m, poll_interval: 1s, stable_for: 1s}
"""
HEALTHY = {"sync": {"status": "Synced"}, "health": {"status": "Healthy"}}


def setup(kube: KubeClient, n: int) -> None:
    crd = [
        o
        for o in load_manifest(argocd.MANIFEST)
        if o.get("kind") == "CustomResourceDefinition"
        and o["metadata"]["name"] == "applications.argoproj.io"
    ]
    kube.apply_manifest(crd)
    if kube.get("v1", "Namespace", NS) is None:
        kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    for i in range(n):
        app = argocd.root_application(
            NS, url="https://git.invalid/r.git", revision="main", path=f"apps/{i}",
            project="default",
        )  # fmt: skip
        app["metadata"]["name"] = f"app-{i:04d}"
        kube.apply(app)


def reset(kube: KubeClient, n: int) -> None:
    """Every app back to not ready (Progressing), as after a fresh sync."""
    for i in range(n):
        kube.patch(
            argocd.APP_API, "Application", f"app-{i:04d}",
            {"status": {"sync": {"status": "OutOfSync"}, "health": {"status": "Progressing"}}}, NS,
        )  # fmt: skip


def writer(kube: KubeClient, n: int, spread: float, done: dict[str, float]) -> None:
    order = list(range(n))
    random.shuffle(order)
    start = time.monotonic()
    for k, i in enumerate(order):
        target = start + spread * (k + 1) / n
        time.sleep(max(0.0, target - time.monotonic()))
        kube.patch(argocd.APP_API, "Application", f"app-{i:04d}", {"status": HEALTHY}, NS)
    done["last_write"] = time.monotonic()


def drboot_wait(kubeconfig: Path, site: Any, out: dict[str, float]) -> None:
    kube = KubeClient.from_kubeconfig(kubeconfig)
    with tempfile.TemporaryDirectory() as tmp:
        scope = RunScope("bench", site, Path(tmp), EventBus(), resources={"kube": kube})
        ctx = StepContext(scope, "wait-synced", 7200)
        wall0, mono0 = time.time(), time.monotonic()
        wait_synced(ctx)
        out["returned"] = time.monotonic()
        out["ready"] = mono0 + (float(ctx.outputs["ready_at"]) - wall0)
    kube.close()


def kubectl_wait(kubeconfig: Path, out: dict[str, float]) -> None:
    for path, value in (("sync.status", "Synced"), ("health.status", "Healthy")):
        subprocess.run(
            ["/usr/bin/kubectl", "--kubeconfig", str(kubeconfig), "-n", NS, "wait",
             "applications.argoproj.io", "--all", f"--for=jsonpath={{.status.{path}}}={value}",
             "--timeout=600s"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
    out["returned"] = time.monotonic()
    out["ready"] = out["returned"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--apps", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--spread", type=float, default=3.0, help="seconds over which apps get ready")
    args = p.parse_args()
    site = load_site_text(SITE, "bench-site.yaml", base_dir=Path("/"))
    with tempfile.TemporaryDirectory(prefix="drboot-bench-") as tmp:
        cp = ControlPlane(Path(tmp), kube_bin_dir())
        kubeconfig = cp.start()
        try:
            kube = KubeClient.from_kubeconfig(kubeconfig)
            t = time.monotonic()
            setup(kube, args.apps)
            print(f"{args.apps} Applications created in {time.monotonic() - t:.1f}s")
            rows = []
            for r in range(args.rounds):
                reset(kube, args.apps)
                d: dict[str, float] = {}
                k: dict[str, float] = {}
                w: dict[str, float] = {}
                threads = [
                    threading.Thread(target=drboot_wait, args=(kubeconfig, site, d)),
                    threading.Thread(target=kubectl_wait, args=(kubeconfig, k)),
                ]
                for th in threads:
                    th.start()
                time.sleep(1.5)  # both are waiting (kubectl has loaded its discovery)
                writer(kube, args.apps, args.spread, w)
                for th in threads:
                    th.join()
                last = w["last_write"]
                row = {
                    "round": r + 1,
                    "drboot_detect_s": round(d["ready"] - last, 3),
                    "drboot_return_s": round(d["returned"] - last, 3),
                    "kubectl_detect_s": round(k["ready"] - last, 3),
                }
                rows.append(row)
                print(json.dumps(row))
            mean = {key: sum(x[key] for x in rows) / len(rows) for key in rows[0] if key != "round"}
            ratio = mean["drboot_detect_s"] / max(mean["kubectl_detect_s"], 1e-3)
            print(
                f"apps={args.apps}: after the last status write, drboot saw all ready in "
                f"{mean['drboot_detect_s']:.2f}s (returned after its 1s stable window in "
                f"{mean['drboot_return_s']:.2f}s); kubectl wait returned in "
                f"{mean['kubectl_detect_s']:.2f}s; detection ratio drboot/kubectl {ratio:.2f}"
            )
            kube.close()
        finally:
            cp.stop()


if __name__ == "__main__":
    main()
