"""How fast drboot's wait notices N Applications becoming Synced+Healthy, vs kubectl wait.

Run on demand (not part of the test suite; needs the lab's kube binaries, root not needed)::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_sync_wait.py [--apps 1000] [--spread 30]

On a real control plane (``bootstrap/lab/controlplane.py``: etcd, kube-apiserver v1.20,
kube-controller-manager) with Argo CD's Application CRD, N Applications with realistic status
(about 20 ``status.resources`` entries each, the size Argo CD writes) start not ready. Both
waiters start at t0, each in its own process (so each one's peak RSS is its own): drboot's wait
(``bootstrap.steps.gitops.wait_for_apps``, the code of the ``wait-synced`` step and of
``drboot wait``: one list + watch, poll_interval 1s, stable_for 1s) and ``kubectl wait`` (a
watch) for ``.status.sync.status=Synced`` then ``.status.health.status=Healthy`` on every
Application. A writer then marks the apps Synced+Healthy at random times over ``--spread``
seconds, the way Argo CD writes status (a merge patch of the object). Reported side by side:
latency from the last status write to the waiter seeing all ready (drboot: the ``ready_at`` it
records, before its stable window; its return after the window separately), drboot's API
requests on Applications (lists + watches, counted by its informer), peak RSS of each process.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bootstrap.adapters.kube import KubeClient, load_manifest
from bootstrap.errors import WaitTimeout
from bootstrap.lab.binaries import kube_bin_dir
from bootstrap.lab.controlplane import ControlPlane
from bootstrap.reconcilers import argocd

NS = "argocd"
URL = "https://git.invalid/r.git"
SHA = "c0ffee" + "0" * 34
RESOURCES = 20


def status(ready: bool) -> dict[str, Any]:
    """An Application's status as Argo CD writes it: ~20 resources with sync and health."""
    health = "Healthy" if ready else "Progressing"
    res = [
        {**({"group": "apps"} if k % 4 == 0 else {}), "version": "v1",
         "kind": "Deployment" if k % 4 == 0 else "ConfigMap", "namespace": "app",
         "name": f"object-{k:02d}", "status": "Synced" if ready else "OutOfSync",
         **({"health": {"status": health}} if k % 4 == 0 else {})}
        for k in range(RESOURCES)
    ]  # fmt: skip
    return {
        "sync": {"status": "Synced" if ready else "OutOfSync", "revision": SHA,
                 "comparedTo": {"source": {"repoURL": URL, "path": "apps"},
                                "destination": {"server": argocd.IN_CLUSTER, "namespace": NS}}},
        "health": {"status": health},
        "resources": res,
        "reconciledAt": "2026-01-01T00:00:00Z",
        "sourceType": "Directory",
    }  # fmt: skip


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
            NS, url=URL, revision="main", path=f"apps/{i}", project="default"
        )
        app["metadata"]["name"] = f"app-{i:04d}"
        if kube.get(argocd.APP_API, "Application", f"app-{i:04d}", NS) is None:
            kube.create(app)


def reset(kube: KubeClient, n: int) -> None:
    """Every app back to not ready (Progressing), as after a fresh sync."""
    for i in range(n):
        kube.patch(argocd.APP_API, "Application", f"app-{i:04d}", {"status": status(False)}, NS)


def writer(kube: KubeClient, n: int, spread: float, done: dict[str, float]) -> None:
    """Each app turns ready at a random time within ``spread`` seconds."""
    times = sorted(random.uniform(0, spread) for _ in range(n))
    order = list(range(n))
    random.shuffle(order)
    ready = status(True)
    start = time.monotonic()
    for at, i in zip(times, order, strict=True):
        time.sleep(max(0.0, start + at - time.monotonic()))
        done["last_write"] = time.time()  # the last one: sent now, stored within its round trip
        kube.patch(argocd.APP_API, "Application", f"app-{i:04d}", {"status": ready}, NS)
    done["last_ack"] = time.time()


def drboot_waiter(kubeconfig: str) -> None:
    """The drboot side, run as ``--waiter KUBECONFIG`` in its own process: prints one JSON line
    (wall time all ready, wall time returned, requests, peak RSS)."""
    from bootstrap.reconcilers import ArgoCD
    from bootstrap.reconcilers.base import Tally
    from bootstrap.steps.gitops import Commits, WaitSettings, wait_for_apps

    kube = KubeClient.from_kubeconfig(kubeconfig)
    ws = WaitSettings(timeout=600, interval=1, stable_for=1, require_all=True, ignore=())

    def give_up(last: Tally | None, waited: float) -> WaitTimeout:
        return WaitTimeout(f"gave up after {waited:.0f}s")

    out = wait_for_apps(kube, ArgoCD(NS), URL, Commits(None), ws,
                        progress=lambda m, **d: None, give_up=give_up)  # fmt: skip
    returned = time.time()
    hwm = [x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM")]
    rss = int(hwm[0].split()[1]) / 1024
    print(json.dumps({"ready": out.ready_at, "returned": returned, "requests": out.requests,
                      "rss_mb": round(rss, 1)}))  # fmt: skip
    kube.close()


def run_measured(cmd: list[str]) -> tuple[str, float, float]:
    """Run ``cmd``; its stdout, the wall time it ended and its own peak RSS in MB (``VmHWM``
    of its address space, sampled; ``ru_maxrss`` would count the forked benchmark too)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.extend(proc.communicate()))
    reader.start()
    hwm = 0.0
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    hwm = max(hwm, int(line.split()[1]) / 1024)
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.05)
    reader.join()
    ended = time.time()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {proc.returncode}: {result[1] if result else ''}")
    return result[0], ended, hwm


def watchers(kube: KubeClient) -> int:
    """Watches the API server holds open on Applications (its own metric)."""
    text = kube._raw("GET", "/metrics", what="GET /metrics").decode()
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("apiserver_registered_watchers{") and 'kind="Application"' in line
    )


def watching(kube: KubeClient, waiters: int, timeout: float = 120.0) -> None:
    """Return once ``waiters`` watches on Applications are open: the event the writer waits
    for, so that no waiter misses a write by starting late."""
    deadline = time.monotonic() + timeout
    while watchers(kube) < waiters:
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {waiters} watches on Applications after {timeout}s")
        time.sleep(0.1)  # polling interval of an event check, not a synchronisation


def kubectl_wait(kubeconfig: Path, out: dict[str, float]) -> None:
    rss = 0.0
    for path, value in (("sync.status", "Synced"), ("health.status", "Healthy")):
        _, ended, mb = run_measured(
            ["/usr/bin/kubectl", "--kubeconfig", str(kubeconfig), "-n", NS, "wait",
             "applications.argoproj.io", "--all", f"--for=jsonpath={{.status.{path}}}={value}",
             "--timeout=600s"],
        )  # fmt: skip
        rss = max(rss, mb)
    out["ready"] = out["returned"] = ended
    out["rss_mb"] = round(rss, 1)


def drboot_wait(kubeconfig: Path, out: dict[str, float]) -> None:
    text, _, _ = run_measured([sys.executable, __file__, "--waiter", str(kubeconfig)])
    out.update(json.loads(text.strip().splitlines()[-1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--apps", type=int, nargs="+", default=[1000, 2000])
    p.add_argument("--spread", type=float, default=30.0, help="seconds over which apps get ready")
    p.add_argument(
        "--kubectl-max",
        type=int,
        default=1000,
        help="run kubectl wait only up to this many apps (it takes minutes)",
    )
    p.add_argument("--waiter", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.waiter:
        drboot_waiter(args.waiter)
        return
    with tempfile.TemporaryDirectory(prefix="drboot-bench-") as tmp:
        cp = ControlPlane(Path(tmp), kube_bin_dir())
        kubeconfig = cp.start()
        try:
            kube = KubeClient.from_kubeconfig(kubeconfig)
            rows = []
            for n in args.apps:
                t = time.monotonic()
                setup(kube, n)
                reset(kube, n)
                print(f"{n} Applications ({RESOURCES} resources each) ready to go in "
                      f"{time.monotonic() - t:.1f}s", flush=True)  # fmt: skip
                d: dict[str, float] = {}
                k: dict[str, float] = {}
                w: dict[str, float] = {}
                threads = [threading.Thread(target=drboot_wait, args=(kubeconfig, d))]
                if n <= args.kubectl_max:
                    threads.append(threading.Thread(target=kubectl_wait, args=(kubeconfig, k)))
                for th in threads:
                    th.start()
                watching(kube, len(threads))  # every waiter has listed and is watching
                writer(kube, n, args.spread, w)
                for th in threads:
                    th.join()
                last = w["last_write"]
                row = {
                    "apps": n,
                    "drboot_detect_s": round(d["ready"] - last, 3),
                    "drboot_return_s": round(d["returned"] - last, 3),
                    "last_patch_rtt_s": round(w["last_ack"] - last, 3),
                    "drboot_requests": int(d["requests"]),
                    "drboot_rss_mb": d["rss_mb"],
                    "kubectl_detect_s": round(k["ready"] - last, 3) if k else float("nan"),
                    "kubectl_rss_mb": k.get("rss_mb", float("nan")),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
            print(f"{'apps':>6} | {'drboot sees all':>15} | {'drboot returns':>14} | "
                  f"{'requests':>8} | {'drboot RSS':>10} | {'kubectl wait':>12} | "
                  f"{'kubectl RSS':>11}")  # fmt: skip
            for r in rows:
                print(f"{r['apps']:>6} | {r['drboot_detect_s']:>14.3f}s | "
                      f"{r['drboot_return_s']:>13.3f}s | {r['drboot_requests']:>8} | "
                      f"{r['drboot_rss_mb']:>7.1f} MB | {r['kubectl_detect_s']:>11.3f}s | "
                      f"{r['kubectl_rss_mb']:>8.1f} MB")  # fmt: skip
            kube.close()
        finally:
            cp.stop()


if __name__ == "__main__":
    main()
