"""Site-file fields of the host-fitness gates: each test shows one field's effect.

Like ``test_field_effects``, the steps run with their real code and only the SSH link is
replaced at drboot's own boundary. ``LocalShell`` runs the real CPU probe on this machine;
``ProbeReplay`` (a fake at our own boundary, said to be one) answers the probe command with
the figures of a host whose cgroup CPU quota is a tenth of a core and whose hypervisor steals
8%, so that the thresholds are judged against figures that do not depend on how busy this
machine is.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from bootstrap.adapters.ssh import Result
from bootstrap.errors import PreflightError
from bootstrap.events import Event
from bootstrap.options import RunOptions
from bootstrap.outputs import CpuGated, DiskGated
from bootstrap.steps import hosts
from tests.unit.test_field_effects import LocalShell, context, site


def _stat(busy: int, idle: int, steal: int) -> str:
    return f"cpu  {busy} 0 0 {idle} 0 0 0 {steal} 0 0\ncpu0 1 1 1 1 0 0 0 0 0 0\n"


@dataclass
class ProbeReplay:
    """Answers the CPU probe with a throttled, stolen-from host's figures (2 cores)."""

    commands: list[str]

    def run(self, cmd: str, timeout: float | None = None, check: bool = True) -> Result:
        self.commands.append(cmd)
        assert "python3 -c" in cmd and "/proc/stat" in cmd, cmd
        probe = {"cores": 2, "single": [3e6, 0.3, 3.0], "workers": [[1.5e6, 0.15, 3.0]] * 2}
        out = (
            "--- drboot-cpu-gate /proc/stat\n" + _stat(1000, 5000, 100)
            + "--- drboot-cpu-gate probe\n" + json.dumps(probe) + "\n"
            + "--- drboot-cpu-gate /proc/stat\n" + _stat(1920, 5000, 180)
        )  # fmt: skip
        return Result(0, out, "")


@pytest.mark.parametrize(("enabled", "runs"), [("true", True), ("false", False)])
def test_cpu_gate_enabled_decides_whether_the_probe_runs(
    tmp_path: Path, enabled: str, runs: bool
) -> None:
    shell = ProbeReplay([])
    s = site(tmp_path, f"cpu_gate: {{enabled: {enabled}, max_steal_percent: 50, "
             "min_throughput_ratio: 0.01}\n")  # fmt: skip
    ctx = context(tmp_path, s, "cpu-gate", shell)  # type: ignore[arg-type]
    hosts.cpu_gate(ctx)
    assert bool(shell.commands) == runs
    assert len(CpuGated.from_json(ctx.outputs).verdicts) == int(runs)


@pytest.mark.parametrize(
    ("gate", "refused"),
    [
        ("{max_steal_percent: 50, min_throughput_ratio: 0.01}", None),
        ("{max_steal_percent: 5, min_throughput_ratio: 0.01}", "steal 8.0% (max 5%)"),
        ("{max_steal_percent: 50, min_throughput_ratio: 0.7}", "0.10 of 1 core, 0.05 of 2"),
        ("{}", "steal 8.0% (max 5%), throughput 0.10 of 1 core, 0.05 of 2 core(s) (min 0.7)"),
    ],
)
def test_cpu_gate_thresholds_decide_the_verdict(
    tmp_path: Path, gate: str, refused: str | None
) -> None:
    ctx = context(tmp_path, site(tmp_path, f"cpu_gate: {gate}\n"), "cpu-gate", ProbeReplay([]))  # type: ignore[arg-type]
    if refused is None:
        hosts.cpu_gate(ctx)
        (v,) = CpuGated.from_json(ctx.outputs).verdicts
        assert (v.host, v.ok, v.steal_percent, v.throughput_ratio) == ("s1", True, 8.0, 0.05)
        return
    with pytest.raises(PreflightError) as err:
        hosts.cpu_gate(ctx)
    text = err.value.format()
    assert refused in text and "s1" in text and "--accept-slow-cpu" in text


def test_accept_slow_cpu_lets_the_run_go_on_and_is_audited(tmp_path: Path) -> None:
    ctx = context(tmp_path, site(tmp_path), "cpu-gate", ProbeReplay([]))  # type: ignore[arg-type]
    ctx._scope.options = RunOptions(accept_slow_cpu="lab drill: quota cut on purpose")
    seen: list[Event] = []
    ctx._scope.bus.subscribe(seen.append)
    hosts.cpu_gate(ctx)
    (v,) = CpuGated.from_json(ctx.outputs).verdicts
    assert not v.ok
    (audit,) = [e for e in seen if e.kind == "audit"]
    assert audit.target == "s1" and audit.message == "slow CPU accepted by the operator"
    assert audit.data["reason"] == "lab drill: quota cut on purpose"
    assert (audit.data["steal_percent"], audit.data["throughput_ratio"]) == (8.0, 0.05)


def test_cpu_gate_window_is_how_long_the_real_probe_runs(tmp_path: Path) -> None:
    shell = LocalShell([])
    s = site(tmp_path, "cpu_gate: {window: 1s, max_steal_percent: 100, "
             "min_throughput_ratio: 0.01}\n")  # fmt: skip
    ctx = context(tmp_path, s, "cpu-gate", shell)
    hosts.cpu_gate(ctx)
    (v,) = CpuGated.from_json(ctx.outputs).verdicts
    assert v.host == "s1" and v.ok
    assert 1.0 <= v.window_s < 3.0, "each phase of the probe runs for the window"
    assert v.cores >= 1 and v.single_ops_per_s > 0


@pytest.mark.skipif(shutil.which("fio") is None, reason="needs fio (make setup installs it)")
def test_disk_gate_sustained_seconds_runs_real_fio_for_that_long(tmp_path: Path) -> None:
    etcd = tmp_path / "etcd-disk"
    s = site(tmp_path, f"disk_gate: {{size: 1m, directory: {etcd}, p99_fdatasync_ms: 10000, "
             "sustained: {seconds: 5}}\n")  # fmt: skip
    shell = LocalShell([])
    ctx = context(tmp_path, s, "disk-gate", shell)
    hosts.disk_gate(ctx)
    sustained = [c for c in shell.commands if "--name=etcd-sustained" in c]
    assert len(sustained) == 1 and "--time_based --runtime=5 " in sustained[0]
    out = DiskGated.from_json(ctx.outputs)
    (v,) = out.sustained
    assert v.host == "s1" and v.seconds == 5 and v.ok
    # fio kept writing for 5 s over a 1 MiB file: more syncs than the file holds in one pass
    assert v.syncs > (1 << 20) // 2300 and v.write_kib_s > 0
    assert v.p50_ms <= v.p99_ms <= v.max_ms
    assert not list(etcd.glob("etcd-*.*")), "the gate removes its job files"
    burst_only = site(
        tmp_path, f"disk_gate: {{directory: {etcd}, size: 1m, p99_fdatasync_ms: 10000}}\n"
    )
    without = context(tmp_path / "b", burst_only, "disk-gate", LocalShell([]))
    hosts.disk_gate(without)
    assert DiskGated.from_json(without.outputs).sustained == []
