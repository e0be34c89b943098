"""The etcd disk gate over real fio 3.33 outputs (tests/fixtures/fio/) and malformed ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootstrap.diskgate import (
    DEFAULT_THRESHOLD_MS,
    DiskVerdict,
    enforce,
    fio_command,
    judge,
    judge_file,
)
from bootstrap.errors import ExitCode, PreflightError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fio"


# file, expected ok, p99 range (ms) the real measurement fell in, sync count
REAL = [
    ("tmpfs.json", True, (0.0001, 0.01), 10029),
    ("tmpfs-with-note.txt", True, (0.0001, 0.01), 10029),
    ("vda-ext4.json", True, (1.0, 10.0), 10029),
    ("throttled-loop-400iops.json", False, (20.0, 100.0), 10029),
]


@pytest.mark.parametrize(("name", "ok", "p99_range", "syncs"), REAL)
def test_real_fio_outputs(name: str, ok: bool, p99_range: tuple[float, float], syncs: int) -> None:
    v = judge_file(FIXTURES / name, host="h1")
    assert v.ok is ok
    assert p99_range[0] <= v.p99_ms <= p99_range[1]
    assert v.p50_ms <= v.p99_ms <= v.p999_ms
    assert v.syncs == syncs
    assert v.threshold_ms == DEFAULT_THRESHOLD_MS
    assert v.host == "h1"


def test_reads_sync_latency_not_write_clat() -> None:
    import json

    doc = json.loads((FIXTURES / "vda-ext4.json").read_text())
    sync_p99 = doc["jobs"][0]["sync"]["lat_ns"]["percentile"]["99.000000"]
    write_p99 = doc["jobs"][0]["write"]["clat_ns"]["percentile"]["99.000000"]
    assert sync_p99 != write_p99
    assert judge(json.dumps(doc), host="h").p99_ms == pytest.approx(sync_p99 / 1e6)


def test_threshold_is_a_parameter() -> None:
    raw = (FIXTURES / "vda-ext4.json").read_bytes()
    assert judge(raw, host="h", threshold_ms=1.0).ok is False
    assert judge(raw, host="h", threshold_ms=50.0).ok is True


def test_slow_disk_refused_with_numbers_host_and_hint() -> None:
    v = judge_file(FIXTURES / "throttled-loop-400iops.json", host="vps-oslo-1")
    with pytest.raises(PreflightError) as ei:
        enforce(v)
    err = ei.value
    text = err.format()
    assert f"{v.p99_ms:.2f} ms" in text
    assert "10 ms threshold" in text
    assert "vps-oslo-1" in text
    assert err.hint is not None and '--accept-slow-disk "REASON"' in err.hint
    assert err.exit_code == ExitCode.PREFLIGHT


def test_slow_disk_accepted_only_with_a_reason() -> None:
    v = judge_file(FIXTURES / "throttled-loop-400iops.json", host="h")
    assert enforce(v, accept_slow_disk="lab drill on HDD, accepted by ops") is True
    with pytest.raises(PreflightError):
        enforce(v, accept_slow_disk="   ")


def test_fast_disk_passes_without_reason() -> None:
    assert enforce(judge_file(FIXTURES / "tmpfs.json", host="h")) is False


def _with(mutate: str) -> str:
    """Real fixture text with one edit applied, for malformed-input cases."""
    text = (FIXTURES / "tmpfs.json").read_text()
    if mutate == "truncate":
        return text[: len(text) // 2]
    if mutate == "no-sync":
        return text.replace('"sync" :', '"snyc" :')
    if mutate == "no-percentiles":
        return text.replace('"99.000000"', '"98.000000"')
    raise AssertionError(mutate)


MALFORMED = [
    ("empty", "", "no JSON object"),
    ("only warnings", "fio: pid=0, err=2/file:filesetup.c\n", "no JSON object"),
    ("truncated", _with("truncate"), "invalid JSON"),
    ("not an object", "[1, 2]\n", "no JSON object"),
    ("no sync section", _with("no-sync"), "missing jobs.0.sync"),
    ("no p99", _with("no-percentiles"), "missing 99.000000"),
    ("no jobs", '{"fio version": "fio-3.33", "jobs": []}', "missing jobs.0"),
    (
        "negative latency",
        '{"jobs":[{"sync":{"total_ios":5,"lat_ns":{"N":5,"percentile":'
        '{"50.000000":1,"99.000000":-3,"99.900000":4}}}}]}',
        "p99 is not a non-negative number",
    ),
    (
        "no syncs",
        '{"jobs":[{"sync":{"total_ios":0,"lat_ns":{"N":0,"percentile":'
        '{"50.000000":1,"99.000000":3,"99.900000":4}}}}]}',
        "no fdatasync calls",
    ),
]


@pytest.mark.parametrize(("case", "text", "why"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_output_is_a_clear_preflight_error(case: str, text: str, why: str) -> None:
    with pytest.raises(PreflightError) as ei:
        judge(text, host="h9")
    msg = ei.value.format()
    assert why in msg
    assert "h9" in msg and "disk-gate" in msg
    assert ei.value.hint


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PreflightError, match="cannot read"):
        judge_file(tmp_path / "nope.json", host="h")


def test_verdict_summary_and_command() -> None:
    v = DiskVerdict("h", 1.0, 2.5, 9.0, 100, 10.0, True)
    assert "p99 2.50 ms" in v.summary()
    cmd = fio_command("/var/lib/rancher/k3s/server/db")
    assert "--fdatasync=1" in cmd and "--bs=2300" in cmd and "--size=22m" in cmd
    assert "--directory=/var/lib/rancher/k3s/server/db" in cmd


def test_sustained_verdict_from_real_fio_output_reports_p50_p99_max_and_throughput() -> None:
    from bootstrap.diskgate import enforce_sustained, judge_sustained, sustained_command

    fast = judge_sustained((FIXTURES / "vda-ext4.json").read_text(), host="h1", seconds=60)
    assert fast.ok and fast.seconds == 60
    assert fast.p50_ms <= fast.p99_ms <= fast.max_ms == pytest.approx(76.029413)
    assert fast.write_kib_s == pytest.approx(1212250 / 1024, abs=0.1)
    assert enforce_sustained(fast) is False
    slow = judge_sustained(
        (FIXTURES / "throttled-loop-400iops.json").read_text(), host="vps-1", seconds=60
    )
    assert not slow.ok
    with pytest.raises(PreflightError) as ei:
        enforce_sustained(slow)
    msg = ei.value.format()
    assert "vps-1" in msg and "sustained load" in msg and "over 60 s" in msg
    assert "max " in msg and "KiB/s" in msg and "--accept-slow-disk" in msg
    assert enforce_sustained(slow, accept_slow_disk="known: burst volume") is True
    cmd = sustained_command("/var/lib/etcd", 60)
    assert "--time_based" in cmd and "--runtime=60" in cmd and "--fdatasync=1" in cmd
