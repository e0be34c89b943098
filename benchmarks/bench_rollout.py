"""A rollout of N lab sites at once against one site alone: the wall-time ratio.

Run on demand (root, the prepared lab; not part of the test suite)::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_rollout.py [--sites 4]

Seeds ``--sites`` + 1 lab sites (each its own escrow, config repo and /24), then times, through
the real CLI, ``drboot rollout ONE --parallel 1`` and ``drboot rollout S1..SN --parallel N``:
every site a full restore (hosts booted, disk and CPU gates, Ansible, the k3s stand-in with the
real API server, Sealed Secrets keys, Argo CD stand-in, wait until Synced), each in its own
drboot process. Prints both wall times, the ratio (goal: at most 1.5 on 2 cores), the load
average before and after (the machine may be shared), and for each phase the machine's busy
CPU-seconds and busy cores on average (``/proc/stat``, all processes: the lab hosts' API
servers and etcd run in their own cgroups, not under drboot): a phase whose cores were busy
all along was bounded by CPU, not by the rollout. Every lab is torn down at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.integration.labrun import REPO, LabSite, make_site, teardown


def _busy_seconds() -> float:
    """CPU-seconds the whole machine has spent busy (every core, every process) since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _rollout(
    state: Path, sites: list[LabSite], parallel: int
) -> tuple[float, int, str, float]:
    env = dict(sites[0].env, DRBOOT_STATE_DIR=str(state))
    busy0 = _busy_seconds()
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "bootstrap.cli", "-o", "json", "rollout",
         *(str(s.site) for s in sites), "--parallel", str(parallel)],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=7200,
    )  # fmt: skip
    took = time.monotonic() - t0
    busy = _busy_seconds() - busy0
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "{}"
    summary = json.dumps(json.loads(last).get("summary", {}))
    return (
        took,
        done.returncode,
        f"{summary}  machine busy {busy:.0f} CPU-s = {busy / took:.2f} cores",
        busy,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=4)
    args = parser.parse_args()
    os.environ.setdefault("DRBOOT_LOCK_DIR", tempfile.mkdtemp(prefix="drboot-bench-locks-"))
    tmp = Path(tempfile.mkdtemp(prefix="drboot-bench-rollout-"))
    made: list[LabSite] = []
    try:
        for i in range(args.sites + 1):
            name = f"bench-{i}"
            (tmp / name).mkdir()
            made.append(make_site(tmp / name, name))
        load_before = os.getloadavg()
        one, rc1, s1, busy1 = _rollout(tmp / "state-one", made[:1], 1)
        many, rc2, s2, _ = _rollout(tmp / "state-many", made[1:], args.sites)
        load_after = os.getloadavg()
        print(f"cores: {os.cpu_count()}")
        print(
            f"load average before: {load_before[0]:.1f} {load_before[1]:.1f} {load_before[2]:.1f}"
        )
        print(f"1 site:  {one:7.1f} s  exit {rc1}  {s1}")
        print(f"{args.sites} sites: {many:7.1f} s  exit {rc2}  {s2}  (--parallel {args.sites})")
        print(f"ratio {args.sites} sites / 1 site: {many / one:.2f} (goal <= 1.5)")
        # The physical floor: N sites need N times one site's CPU work, on this many cores,
        # and no less than one site's wall time.
        cores = os.cpu_count() or 1
        floor = max(one, busy1 * args.sites / cores)
        print(f"floor for {args.sites} sites on {cores} cores: {floor:.1f} s "
              f"(max of 1 site's wall time and {args.sites} x its {busy1:.0f} CPU-s / {cores}); "
              f"ratio {args.sites} sites / floor: {many / floor:.2f}")  # fmt: skip
        print(f"load average after: {load_after[0]:.1f} {load_after[1]:.1f} {load_after[2]:.1f}")
        return 0 if rc1 == rc2 == 0 else 1
    finally:
        for ls in made:
            teardown(ls)


if __name__ == "__main__":
    sys.exit(main())
