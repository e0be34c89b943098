"""The CPU gate: is the CPU the host was sold with really there? Probe output in, verdict out.

On an oversold VPS the hypervisor hands a guest's cores to noisy neighbours (*steal*), and a
container or VM can be capped by a cgroup CPU quota. Every Pod then shows "Running" while the
API server misses its deadlines, etcd's heartbeats arrive late and Argo CD / Flux reconcile
loops crawl: a restore that finishes only on paper. We refuse such a host before k3s, unless
the operator accepts it with a reason (``--accept-slow-cpu``, audited).

Two figures, both taken by one remote command (``probe_command``) while the host is busy:

* **steal**: the ``steal`` column of the aggregate ``cpu`` line of ``/proc/stat``, sampled
  before and after the probe; the share of all CPU time the hypervisor gave to someone else.
* **throughput ratio**: a fixed CPU-bound loop (``python3``, present on Debian and Ubuntu
  images) runs for ``window`` seconds on one core, then on every core at once; the CPU
  seconds it obtained are divided by what the core count promises (``window`` x cores).
  A cgroup quota of a tenth of a core gives ~0.1 whatever the host; steal that the guest
  kernel does not hide from process accounting lowers it too. The iterations per second are
  reported beside it (informative: they depend on the CPU model, so they are not judged).

This module is pure logic; the ``cpu-gate`` step runs the command over SSH.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bootstrap.errors import PreflightError

STEP = "cpu-gate"
DEFAULT_MAX_STEAL_PERCENT = 5.0
DEFAULT_MIN_THROUGHPUT_RATIO = 0.7

_STAT_MARK = "--- drboot-cpu-gate /proc/stat"
_PROBE_MARK = "--- drboot-cpu-gate probe"

# The probe: a fixed integer loop, checked against the clock every chunk. It forks one worker
# per core for the all-core phase; each worker reports (iterations, cpu seconds, wall seconds)
# through a pipe. Kept free of third-party modules: only python3's standard library.
PROBE = r"""
import json, os, sys, time
window = float(sys.argv[1])
def burn():
    t0 = time.monotonic(); c0 = time.process_time(); n = 0
    while time.monotonic() - t0 < window:
        x = 0
        for i in range(20000):
            x = (x * 31 + i) & 0xFFFF
        n += 20000
    return [n, time.process_time() - c0, time.monotonic() - t0]
try:
    cores = len(os.sched_getaffinity(0))
except AttributeError:
    cores = os.cpu_count() or 1
single = burn()
pipes = []
for _ in range(cores):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.write(w, json.dumps(burn()).encode())
        os._exit(0)
    os.close(w)
    pipes.append((pid, r))
workers = []
for pid, r in pipes:
    chunks = []
    while True:
        b = os.read(r, 4096)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    os.waitpid(pid, 0)
    workers.append(json.loads(b"".join(chunks)))
print(json.dumps({"cores": cores, "single": single, "workers": workers}))
"""


def probe_command(window_seconds: float) -> str:
    """The remote shell line: /proc/stat, the probe, /proc/stat again (one SSH round trip)."""
    return (
        f"echo {shlex.quote(_STAT_MARK)}; cat /proc/stat; "
        f"echo {shlex.quote(_PROBE_MARK)}; "
        f"python3 -c {shlex.quote(PROBE)} {window_seconds:g}; "
        f"echo {shlex.quote(_STAT_MARK)}; cat /proc/stat"
    )


@dataclass(frozen=True)
class CpuTimes:
    """The aggregate ``cpu`` line of one ``/proc/stat`` sample, in clock ticks."""

    total: int
    steal: int


def parse_proc_stat(text: str) -> CpuTimes:
    """Read the aggregate ``cpu`` line: user nice system idle iowait irq softirq steal ...

    ``guest``/``guest_nice`` are already counted in user/nice, so the total is the first
    eight columns. Kernels older than 2.6.11 have no steal column (steal 0)."""
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            try:
                values = [int(v) for v in parts[1:9]]
            except ValueError:
                raise ValueError(f"not a /proc/stat cpu line: {line!r}") from None
            if len(values) < 4:
                raise ValueError(f"not a /proc/stat cpu line: {line!r}")
            return CpuTimes(total=sum(values), steal=values[7] if len(values) > 7 else 0)
    raise ValueError("no aggregate 'cpu' line in /proc/stat")


def steal_percent(before: CpuTimes, after: CpuTimes) -> float:
    """Steal as a percentage of all CPU time between two samples (0 if no time passed)."""
    total = after.total - before.total
    steal = after.steal - before.steal
    if total <= 0 or steal <= 0:
        return 0.0
    return 100.0 * steal / total


@dataclass(frozen=True)
class CpuVerdict:
    """What the CPU gate measured on one host and whether it passes."""

    host: str
    cores: int
    steal_percent: float
    single_ratio: float  # CPU seconds obtained / wall seconds, one busy process
    all_ratio: float  # CPU seconds obtained / (wall seconds x cores), one per core
    single_ops_per_s: float
    all_ops_per_s: float
    window_s: float  # how long each probe phase ran (wall seconds)
    max_steal_percent: float
    min_throughput_ratio: float
    ok: bool

    @property
    def throughput_ratio(self) -> float:
        """The judged figure: the worse of one core and every core."""
        return min(self.single_ratio, self.all_ratio)

    def summary(self) -> str:
        return (
            f"steal {self.steal_percent:.1f}% (max {self.max_steal_percent:g}%), "
            f"throughput {self.single_ratio:.2f} of 1 core, {self.all_ratio:.2f} of "
            f"{self.cores} core(s) (min {self.min_throughput_ratio:g}); "
            f"{self.single_ops_per_s / 1e6:.1f} M ops/s on one core, "
            f"{self.all_ops_per_s / 1e6:.1f} M ops/s on all"
        )


def _malformed(host: str, why: str) -> PreflightError:
    return PreflightError(
        f"cannot read the output of the CPU probe: {why}",
        step=STEP,
        target=host,
        hint="check that python3 is installed on the host and re-run",
    )


def _sample(values: Any, host: str) -> tuple[float, float, float]:
    if not (isinstance(values, list) and len(values) == 3):
        raise _malformed(host, f"a probe sample is not [ops, cpu, wall]: {values!r}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
            raise _malformed(host, f"a probe sample is not [ops, cpu, wall]: {values!r}")
        out.append(float(v))
    if out[2] <= 0:
        raise _malformed(host, "a probe sample spans no time")
    return out[0], out[1], out[2]


def _sections(text: str, host: str) -> tuple[str, str, str]:
    parts = text.split(_STAT_MARK + "\n")
    if len(parts) != 3 or _PROBE_MARK + "\n" not in parts[1]:
        raise _malformed(host, "the output does not have /proc/stat, probe, /proc/stat")
    before, probe = parts[1].split(_PROBE_MARK + "\n", 1)
    return before, probe, parts[2]


def judge(
    output: str,
    *,
    host: str,
    max_steal_percent: float = DEFAULT_MAX_STEAL_PERCENT,
    min_throughput_ratio: float = DEFAULT_MIN_THROUGHPUT_RATIO,
) -> CpuVerdict:
    """Parse the output of ``probe_command`` into a verdict (``PreflightError`` if unusable)."""
    before_text, probe_text, after_text = _sections(output, host)
    try:
        before, after = parse_proc_stat(before_text), parse_proc_stat(after_text)
    except ValueError as exc:
        raise _malformed(host, str(exc)) from None
    try:
        doc = json.loads(probe_text.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        raise _malformed(host, "the probe printed no JSON result") from None
    if not isinstance(doc, dict):
        raise _malformed(host, "the probe result is not an object")
    cores = doc.get("cores")
    workers = doc.get("workers")
    if not isinstance(cores, int) or cores < 1 or not isinstance(workers, list) or not workers:
        raise _malformed(host, "the probe result has no cores/workers")
    ops1, cpu1, wall1 = _sample(doc.get("single"), host)
    samples = [_sample(w, host) for w in workers]
    return verdict(
        host=host,
        cores=cores,
        steal=steal_percent(before, after),
        single=(ops1, cpu1, wall1),
        workers=samples,
        max_steal_percent=max_steal_percent,
        min_throughput_ratio=min_throughput_ratio,
    )


def verdict(
    *,
    host: str,
    cores: int,
    steal: float,
    single: tuple[float, float, float],
    workers: Sequence[tuple[float, float, float]],
    max_steal_percent: float,
    min_throughput_ratio: float,
) -> CpuVerdict:
    """The verdict from the figures: (ops, cpu seconds, wall seconds) per probe process."""
    ops1, cpu1, wall1 = single
    wall = max(w for _, _, w in workers)
    single_ratio = round(min(1.0, cpu1 / wall1), 3)
    all_ratio = round(min(1.0, sum(c for _, c, _ in workers) / (wall * cores)), 3)
    steal = round(steal, 2)
    ok = steal <= max_steal_percent and min(single_ratio, all_ratio) >= min_throughput_ratio
    return CpuVerdict(
        host=host,
        cores=cores,
        steal_percent=steal,
        single_ratio=single_ratio,
        all_ratio=all_ratio,
        single_ops_per_s=round(ops1 / wall1),
        all_ops_per_s=round(sum(o for o, _, _ in workers) / wall),
        window_s=round(wall, 3),
        max_steal_percent=max_steal_percent,
        min_throughput_ratio=min_throughput_ratio,
        ok=ok,
    )


def enforce(verdict: CpuVerdict, *, accept_slow_cpu: str | None = None) -> bool:
    """Refuse a stolen or throttled CPU unless the operator gave a reason; returns True if it
    was accepted only because of that reason (the caller audits the reason)."""
    if verdict.ok:
        return False
    if accept_slow_cpu and accept_slow_cpu.strip():
        return True
    raise PreflightError(
        f"CPU not fit for the control plane: {verdict.summary()}",
        step=STEP,
        target=verdict.host,
        hint="move to a host (or plan) with dedicated cores and no CPU quota, or re-run with "
        '--accept-slow-cpu "REASON" to proceed anyway',
    )
