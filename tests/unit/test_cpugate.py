"""The CPU gate as data: /proc/stat samples with steal in, steal percent out; probe figures in,
verdict out; and the real probe run on this machine, parsed back."""

from __future__ import annotations

import json
import subprocess

import pytest

from bootstrap.cpugate import (
    CpuTimes,
    enforce,
    judge,
    parse_proc_stat,
    probe_command,
    steal_percent,
    verdict,
)
from bootstrap.errors import PreflightError


def stat(user: int, system: int, idle: int, steal: int | None, *, extra: str = "") -> str:
    cols = [user, 0, system, idle, 0, 0, 0] + ([] if steal is None else [steal, 0, 0])
    return (
        "cpu  " + " ".join(str(c) for c in cols) + "\n"
        "cpu0 1 2 3 4 5 6 7 8 9 10\n" + extra + "intr 12345 0 0\nctxt 999\n"
    )


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        # no steal at all: an idle, honest host
        (stat(100, 50, 1000, 0), stat(200, 100, 1850, 0), 0.0),
        # 50 of 1000 ticks stolen: 5%
        (stat(100, 50, 1000, 10), stat(500, 150, 1450, 60), 5.0),
        # heavily oversold: 300 of 1000 ticks stolen
        (stat(0, 0, 0, 0), stat(600, 100, 0, 300), 30.0),
        # a kernel without the steal column (before 2.6.11)
        ("cpu 10 0 10 100\n", "cpu 20 0 20 300\n", 0.0),
        # the same sample twice: no time passed, no steal claimed
        (stat(1, 1, 1, 1), stat(1, 1, 1, 1), 0.0),
    ],
)
def test_steal_percent_from_two_proc_stat_samples(before: str, after: str, expected: float) -> None:
    assert steal_percent(parse_proc_stat(before), parse_proc_stat(after)) == pytest.approx(expected)


def test_the_total_is_the_first_eight_columns_guest_is_already_in_user() -> None:
    line = "cpu  10 20 30 40 50 60 70 80 90 100\n"
    assert parse_proc_stat(line) == CpuTimes(total=10 + 20 + 30 + 40 + 50 + 60 + 70 + 80, steal=80)


@pytest.mark.parametrize("text", ["", "cpu0 1 2 3 4\n", "cpu  a b c d\n", "cpu 1 2\n"])
def test_a_sample_without_a_usable_cpu_line_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_proc_stat(text)


def figures(
    *, steal: float = 0.0, single: float = 1.0, each: float = 1.0, cores: int = 2
) -> dict[str, object]:
    """Probe figures: single core got ``single`` of its wall time, each worker ``each``."""
    return {
        "host": "h1",
        "cores": cores,
        "steal": steal,
        "single": (3e7, 3.0 * single, 3.0),
        "workers": [(3e7, 3.0 * each, 3.0)] * cores,
        "max_steal_percent": 5.0,
        "min_throughput_ratio": 0.7,
    }


@pytest.mark.parametrize(
    ("case", "kw", "ok", "ratio"),
    [
        ("an honest host", {}, True, 1.0),
        ("steal at the limit", {"steal": 5.0}, True, 1.0),
        ("steal over the limit", {"steal": 5.1}, False, 1.0),
        ("a cgroup quota of a tenth of a core", {"single": 0.1, "each": 0.05}, False, 0.05),
        ("one core fine, the others shared", {"each": 0.5}, False, 0.5),
        ("throughput at the limit", {"single": 0.7, "each": 0.7}, True, 0.7),
        ("a single-core VPS", {"cores": 1}, True, 1.0),
    ],
)
def test_verdict_table(case: str, kw: dict[str, float], ok: bool, ratio: float) -> None:
    v = verdict(**figures(**kw))  # type: ignore[arg-type]
    assert v.ok == ok and v.throughput_ratio == pytest.approx(ratio), case
    assert v.window_s == 3.0 and v.single_ops_per_s == 1e7


def test_refusal_names_the_host_and_the_figures_and_a_reason_overrides_it() -> None:
    v = verdict(**figures(steal=12.5, single=0.1, each=0.05))  # type: ignore[arg-type]
    with pytest.raises(PreflightError) as err:
        enforce(v)
    msg = err.value.format()
    assert "h1" in msg and "cpu-gate" in msg
    assert "steal 12.5%" in msg and "0.10 of 1 core" in msg and "0.05 of 2 core(s)" in msg
    assert "--accept-slow-cpu" in msg
    with pytest.raises(PreflightError):
        enforce(v, accept_slow_cpu="  ")
    assert enforce(v, accept_slow_cpu="lab: quota cut on purpose") is True
    assert enforce(verdict(**figures())) is False  # type: ignore[arg-type]


def test_the_real_probe_runs_here_and_parses_back() -> None:
    out = subprocess.run(
        ["bash", "-c", probe_command(0.3)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    v = judge(out, host="here", max_steal_percent=100, min_throughput_ratio=0.01)
    assert v.ok and v.cores >= 1
    assert 0.3 <= v.window_s < 5
    assert 0 < v.single_ratio <= 1 and 0 < v.all_ratio <= 1 and v.single_ops_per_s > 0


@pytest.mark.parametrize(
    "output",
    [
        "",
        "python3: command not found\n",
        "--- drboot-cpu-gate /proc/stat\ncpu 1 2 3 4\n--- drboot-cpu-gate probe\n"
        "--- drboot-cpu-gate /proc/stat\ncpu 1 2 3 4\n",
        "--- drboot-cpu-gate /proc/stat\ncpu 1 2 3 4\n--- drboot-cpu-gate probe\n"
        + json.dumps({"cores": 2, "single": [1, 1, 0], "workers": [[1, 1, 1]]})
        + "\n--- drboot-cpu-gate /proc/stat\ncpu 1 2 3 4\n",
    ],
)
def test_unusable_probe_output_is_a_clear_preflight_error(output: str) -> None:
    with pytest.raises(PreflightError, match="cannot read the output of the CPU probe"):
        judge(output, host="h1")
