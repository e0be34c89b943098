"""The etcd disk-latency gate: fio JSON in, verdict out.

etcd fsyncs its WAL on every write; a disk whose fdatasync p99 is above ~10 ms makes
leader elections flap and the restored cluster unusable. We refuse such a disk before
installing k3s, unless the operator explicitly accepts it with a reason.

This module is pure logic: the playbook ``playbooks/disk-gate.yml`` runs fio on the host and
fetches the JSON back; here we read ``jobs[0].sync.lat_ns`` (the fdatasync latency, in
nanoseconds; not ``write.clat_ns``, which measures the buffered write) and decide.

The optional *sustained* check (``disk_gate.sustained``) is the same write+fdatasync pattern
kept up for N seconds (fio ``--time_based``), closer to what etcd sees in service and similar in
spirit to ``etcdctl check perf``: a cloud volume with burst credits passes a 22 MB burst and
collapses once the credits run out. It reports p50/p99/max fdatasync and the write throughput,
and is judged against the same p99 threshold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootstrap.errors import PreflightError

STEP = "disk-gate"
DEFAULT_THRESHOLD_MS = 10.0
"""etcd's documented guidance: 99th percentile of fdatasync below 10 ms."""

FIO_JOB_NAME = "etcd-gate"
SUSTAINED_JOB_NAME = "etcd-sustained"


DEFAULT_SIZE = "22m"
DEFAULT_BLOCK_SIZE = 2300


def fio_command(
    directory: str, size: str = DEFAULT_SIZE, block_size: int = DEFAULT_BLOCK_SIZE
) -> list[str]:
    """The fio job the gate runs (the same one the playbook runs), as an argv list.

    The defaults are etcd's own guidance: 22 MiB in 2300-byte writes, each fdatasync'd."""
    return [
        "fio",
        f"--name={FIO_JOB_NAME}",
        f"--directory={directory}",
        "--rw=write",
        "--ioengine=sync",
        "--fdatasync=1",
        f"--size={size}",
        f"--bs={block_size}",
        "--output-format=json",
    ]


@dataclass(frozen=True)
class DiskVerdict:
    """What the gate measured on one host and whether it passes."""

    host: str
    p50_ms: float
    p99_ms: float
    p999_ms: float
    syncs: int
    threshold_ms: float
    ok: bool

    def summary(self) -> str:
        return (
            f"fdatasync p99 {self.p99_ms:.2f} ms (p50 {self.p50_ms:.2f} ms, "
            f"p99.9 {self.p999_ms:.2f} ms, {self.syncs} syncs), threshold {self.threshold_ms:g} ms"
        )


def _malformed(host: str, why: str) -> PreflightError:
    return PreflightError(
        f"cannot read the fio output of the disk gate: {why}",
        step=STEP,
        target=host,
        hint="check that fio (>= 3.x) is installed on the host and re-run; "
        "the raw output is kept in the run folder",
    )


def _extract_json(text: str, host: str) -> dict[str, Any]:
    """Find the JSON document in fio's stdout (fio sometimes prints ``note:`` lines first)."""
    decoder = json.JSONDecoder()
    pos = 0
    while True:
        start = text.find("{", pos)
        if start < 0:
            raise _malformed(host, "no JSON object in the output")
        # Only an opening brace at the start of a line begins fio's document.
        if start == 0 or text[start - 1] == "\n":
            try:
                doc, _ = decoder.raw_decode(text, start)
            except json.JSONDecodeError as exc:
                raise _malformed(host, f"invalid JSON ({exc.msg} at char {exc.pos})") from None
            if not isinstance(doc, dict):
                raise _malformed(host, "the JSON document is not an object")
            return doc
        pos = start + 1


def _get(doc: Any, path: tuple[str | int, ...], host: str) -> Any:
    cur = doc
    for key in path:
        try:
            cur = cur[key]
        except (KeyError, IndexError, TypeError):
            dotted = ".".join(str(k) for k in path)
            raise _malformed(host, f"missing {dotted}") from None
    return cur


def _ns(value: Any, name: str, host: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise _malformed(host, f"{name} is not a non-negative number: {value!r}")
    return float(value)


def judge(
    fio_output: str | bytes,
    *,
    host: str,
    threshold_ms: float = DEFAULT_THRESHOLD_MS,
) -> DiskVerdict:
    """Parse fio's JSON output (stdout, possibly with notes before it) into a verdict.

    Raises ``PreflightError`` if the output is not a usable fio report.
    """
    text = fio_output.decode("utf-8", "replace") if isinstance(fio_output, bytes) else fio_output
    doc = _extract_json(text, host)
    lat = _get(doc, ("jobs", 0, "sync", "lat_ns"), host)
    pct = _get(lat, ("percentile",), host)
    p50 = _ns(_get(pct, ("50.000000",), host), "p50", host)
    p99 = _ns(_get(pct, ("99.000000",), host), "p99", host)
    p999 = _ns(_get(pct, ("99.900000",), host), "p99.9", host)
    total = _get(doc, ("jobs", 0, "sync", "total_ios"), host)
    # fio 3.33 leaves sync.total_ios at 0; the sample count of the latency histogram is the
    # number of fdatasync calls.
    syncs = total if isinstance(total, int) and total > 0 else lat.get("N", 0)
    if not isinstance(syncs, int) or syncs <= 0:
        raise _malformed(host, "fio recorded no fdatasync calls (was --fdatasync=1 set?)")
    p99_ms = p99 / 1e6
    return DiskVerdict(
        host=host,
        p50_ms=p50 / 1e6,
        p99_ms=p99_ms,
        p999_ms=p999 / 1e6,
        syncs=syncs,
        threshold_ms=threshold_ms,
        ok=p99_ms <= threshold_ms,
    )


def judge_file(path: Path, *, host: str, threshold_ms: float = DEFAULT_THRESHOLD_MS) -> DiskVerdict:
    """``judge`` on a file fetched back from the host."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _malformed(host, f"cannot read {path}: {exc.strerror}") from None
    return judge(data, host=host, threshold_ms=threshold_ms)


def sustained_command(
    directory: str,
    seconds: int,
    size: str = DEFAULT_SIZE,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> list[str]:
    """The sustained job: etcd's write pattern for ``seconds`` (looping over a ``size`` file)."""
    return [
        "fio",
        f"--name={SUSTAINED_JOB_NAME}",
        f"--directory={directory}",
        "--rw=write",
        "--ioengine=sync",
        "--fdatasync=1",
        f"--size={size}",
        f"--bs={block_size}",
        "--time_based",
        f"--runtime={seconds}",
        "--output-format=json",
    ]


@dataclass(frozen=True)
class SustainedVerdict:
    """What the sustained check measured on one host and whether it passes."""

    host: str
    seconds: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    syncs: int
    write_kib_s: float
    threshold_ms: float
    ok: bool

    def summary(self) -> str:
        return (
            f"sustained {self.seconds} s: fdatasync p99 {self.p99_ms:.2f} ms (p50 "
            f"{self.p50_ms:.2f} ms, max {self.max_ms:.2f} ms, {self.syncs} syncs, "
            f"{self.write_kib_s:.0f} KiB/s), threshold {self.threshold_ms:g} ms"
        )


def judge_sustained(
    fio_output: str | bytes,
    *,
    host: str,
    seconds: int,
    threshold_ms: float = DEFAULT_THRESHOLD_MS,
) -> SustainedVerdict:
    """Parse the sustained job's fio JSON into a verdict (the same p99 threshold)."""
    burst = judge(fio_output, host=host, threshold_ms=threshold_ms)
    text = fio_output.decode("utf-8", "replace") if isinstance(fio_output, bytes) else fio_output
    doc = _extract_json(text, host)
    max_ns = _ns(_get(doc, ("jobs", 0, "sync", "lat_ns", "max"), host), "max", host)
    bw = _ns(_get(doc, ("jobs", 0, "write", "bw_bytes"), host), "bw_bytes", host)
    return SustainedVerdict(
        host=host,
        seconds=seconds,
        p50_ms=burst.p50_ms,
        p99_ms=burst.p99_ms,
        max_ms=max_ns / 1e6,
        syncs=burst.syncs,
        write_kib_s=round(bw / 1024, 1),
        threshold_ms=threshold_ms,
        ok=burst.ok,
    )


def enforce_sustained(verdict: SustainedVerdict, *, accept_slow_disk: str | None = None) -> bool:
    """Like ``enforce``, for the sustained check (the same override, audited by the caller)."""
    if verdict.ok:
        return False
    if accept_slow_disk and accept_slow_disk.strip():
        return True
    raise PreflightError(
        f"disk too slow for etcd under sustained load: fdatasync p99 is {verdict.p99_ms:.2f} ms "
        f"over {verdict.seconds} s, above the {verdict.threshold_ms:g} ms threshold "
        f"(p50 {verdict.p50_ms:.2f} ms, max {verdict.max_ms:.2f} ms, {verdict.syncs} syncs, "
        f"{verdict.write_kib_s:.0f} KiB/s)",
        step=STEP,
        target=verdict.host,
        hint="the disk passes a burst but not a steady load (burst credits?): use a volume "
        'with provisioned IOPS, or re-run with --accept-slow-disk "REASON" to proceed anyway',
    )


def enforce(verdict: DiskVerdict, *, accept_slow_disk: str | None = None) -> bool:
    """Refuse a slow disk unless the operator gave a reason; returns True if it was accepted
    only because of that reason (the caller records the reason in the journal and audit log).
    """
    if verdict.ok:
        return False
    if accept_slow_disk and accept_slow_disk.strip():
        return True
    raise PreflightError(
        f"disk too slow for etcd: fdatasync p99 is {verdict.p99_ms:.2f} ms, "
        f"above the {verdict.threshold_ms:g} ms threshold "
        f"(p50 {verdict.p50_ms:.2f} ms, p99.9 {verdict.p999_ms:.2f} ms, {verdict.syncs} syncs)",
        step=STEP,
        target=verdict.host,
        hint="use a faster disk (SSD/NVMe volume for the etcd directory), or re-run with "
        '--accept-slow-disk "REASON" to proceed anyway',
    )
