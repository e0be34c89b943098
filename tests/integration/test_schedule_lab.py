"""A scheduled drill fired by a real systemd timer (on a lab host: Debian 12, systemd PID 1).

What is real: systemd (252, as PID 1 of a lab host), the units ``drboot schedule install``
writes there, its ``systemctl daemon-reload`` / ``enable --now``, the timer firing on its
calendar, the service's ``ExecCondition`` (``drboot schedule due``) and ``ExecStart``
(``drboot drill``) command lines, drboot's engine, journal, report step, the metrics
textfile and ``drboot history`` reading the journal back.

What is not: the steps of the drill before the report. A drill of hosts would need a lab
inside the lab host (nested nspawn, netns); the service runs drboot's command line with
the small pipelines of ``tests.engine_fixtures.drillkit`` instead (given as ``--drboot``),
whose ``wait-synced`` records an RTO of exactly 30 s. The full drill on lab hosts is
tests/integration/test_restore_lab.py; what happens at the end of a run is the same code
(``bootstrap.runs.ended``) whatever the steps were.

The project and its virtualenv are bind-mounted read-only into the lab host at the same
paths; a shared folder (read-write) holds the site file, the state directory and the
textfile, so this test reads what the timer's drill wrote.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bootstrap.runs import StateDir, site_history
from tests.conftest import MINIMAL_SITE, REPO
from tests.waiting import wait_until

if TYPE_CHECKING:
    from bootstrap.history import Outcome
    from bootstrap.lab.hosts import LabHost
    from tests.integration.conftest_lab import LabHosts

pytestmark = [pytest.mark.integration, pytest.mark.lab, pytest.mark.timeout(420)]

SHARED = "/srv/drboot"  # the shared folder, as the lab host sees it
SITE = "sched-1"  # a '-' in the name: the unit name is escaped (sched\x2d1)
UNIT = "drboot-drill-sched\\x2d1"
REAL = "real"


def _python() -> str:
    return str(Path(sys.prefix) / "bin" / "python")


def _drboot(
    host: LabHost, *args: str, module: str = "tests.engine_fixtures.drillkit"
) -> dict[str, object]:
    """Run drboot's command line inside ``host`` (its PATH has no drboot: absolute paths)."""
    argv = ["/usr/bin/env", f"PYTHONPATH={REPO}", _python(), "-m", module,
            "--state-dir", f"{SHARED}/state", "-o", "json", *args]  # fmt: skip
    proc = host.exec(argv, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc: dict[str, object] = json.loads(proc.stdout)
    return doc


def _show(host: LabHost, unit: str, *props: str) -> dict[str, str]:
    argv = ["systemctl", "show", "--timestamp=unix", unit, *(f"-p{p}" for p in props)]
    proc = host.exec(argv, check=True)
    return dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)


def _unix(value: str) -> float:
    assert value.startswith("@"), value
    return float(value[1:])


def test_a_real_systemd_timer_fires_the_drill_and_then_skips_it_until_due(
    tmp_path: Path, lab_hosts: LabHosts
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    metrics = f"metrics:\n  textfile: {SHARED}/textfile/drboot.prom\n"
    (shared / "site.yaml").write_text(
        MINIMAL_SITE.format(name=SITE) + f"rto:\n  objective: 10m\n{metrics}"
    )
    # A second site drilled by drboot's own pipeline, installed by drboot's own command line:
    # its preflight refuses in the lab host (no SSH key for its static host), a real failure.
    (shared / "real.yaml").write_text(MINIMAL_SITE.format(name=REAL) + metrics)
    binds = [
        f"--bind-ro={sys.prefix}",  # the venv
        f"--bind-ro={REPO}",
        f"--bind={shared}:{SHARED}",
    ]
    interpreter = Path(sys.base_prefix).resolve()
    if interpreter != Path("/usr"):  # Debian's python3.11 is in the lab host's image already
        binds.insert(0, f"--bind-ro={interpreter}")  # e.g. a pyenv build
    (host,) = lab_hosts(1, extra_nspawn_args=binds)
    assert host.exec(["cat", "/proc/1/comm"], check=True).stdout.strip() == "systemd"

    drboot = f"/usr/bin/env PYTHONPATH={REPO} {_python()} -m tests.engine_fixtures.drillkit"
    # 59m: the timer checks every minute (under an hour), and a drill is due once.
    installed = _drboot(
        host, "schedule", "install", f"{SHARED}/site.yaml", "--every", "59m",
        "--randomized-delay", "1s", "--drboot", drboot,
    )  # fmt: skip
    assert installed["systemctl"] == ["daemon-reload", f"enable --now {UNIT}.timer"]
    timer = _show(host, f"{UNIT}.timer", "ActiveState", "UnitFileState")
    assert timer == {"ActiveState": "active", "UnitFileState": "enabled"}
    real = _drboot(
        host, "schedule", "install", f"{SHARED}/real.yaml", "--every", "59m",
        "--randomized-delay", "1s", module="bootstrap.cli",
    )  # fmt: skip
    assert real["command"] == (
        f"{_python()} -m bootstrap.cli --state-dir {SHARED}/state drill {SHARED}/real.yaml"
    )

    state = StateDir(shared / "state")

    def drills() -> list[Outcome]:
        if not state.journal_path.exists():
            return []
        return [o for o in site_history(state, SITE) if o.status != "running"]

    (drill,) = wait_until(drills, timeout=150, what="the timer's drill in the journal")
    assert (drill.kind, drill.status, drill.outcome) == ("drill", "ok", "restored")
    assert (drill.rto_seconds, drill.objective_seconds) == (30.0, 600.0)

    # It was systemd's service that ran it: the run started inside the service's main process.
    props = ("ActiveState", "Result", "ExecMainStartTimestamp", "ExecMainExitTimestamp")

    def exited() -> dict[str, str] | None:
        now = _show(host, f"{UNIT}.service", *props)
        return now if now["ActiveState"] == "inactive" else None

    service = wait_until(exited, timeout=60, what="the drill's service to exit")
    first_trigger = _show(host, f"{UNIT}.timer", "LastTriggerUSec")["LastTriggerUSec"]
    assert service["Result"] == "success"
    assert drill.ended is not None
    started_at = _unix(service["ExecMainStartTimestamp"])  # whole seconds
    assert started_at <= drill.started <= drill.ended < _unix(service["ExecMainExitTimestamp"]) + 1

    # The metrics textfile the drill wrote, read back by prometheus_client's parser.
    prom = (shared / "textfile" / "drboot.prom").read_text()
    samples = {
        (s.name, s.labels.get("step")): s.value
        for fam in text_string_to_metric_families(prom)
        for s in fam.samples
        if s.labels.get("site") == SITE and s.labels.get("kind") == "drill"
    }
    assert samples[("drboot_last_run_success", None)] == 1.0
    assert samples[("drboot_rto_seconds", None)] == 30.0
    assert samples[("drboot_rto_objective_met", None)] == 1.0
    assert samples[("drboot_last_run_timestamp_seconds", None)] == drill.ended
    assert {step for name, step in samples if name == "drboot_step_duration_seconds"} == {
        "preflight", "wait-synced", "teardown", "report",
    }  # fmt: skip

    # drboot's own drill, fired by its timer: failed in preflight, in history and metrics too.
    (failed,) = wait_until(
        lambda: [o for o in site_history(state, REAL) if o.status != "running"],
        timeout=60,
        what="the real drill in the journal",
    )
    assert (failed.kind, failed.outcome, failed.failed_step) == (
        "drill", "failed", "preflight-references",
    )  # fmt: skip
    assert failed.error is not None and "ssh.private_key_file" in failed.error
    prom = (shared / "textfile" / "drboot.prom").read_text()
    mine = {
        s.name: s.value
        for fam in text_string_to_metric_families(prom)
        for s in fam.samples
        if s.labels.get("site") == REAL and "step" not in s.labels
    }
    assert mine["drboot_last_run_success"] == 0.0 and mine["drboot_rto_objective_met"] == 0.0
    assert ("drboot_last_run_success", None) in {
        (s.name, None)
        for fam in text_string_to_metric_families(prom)
        for s in fam.samples
        if s.labels.get("site") == SITE
    }  # fmt: skip  (the other site's samples are still there)
    wait_until(
        lambda: _show(host, "drboot-drill-real.service", "Result")["Result"] == "exit-code",
        timeout=60,
        what="the real drill's service to fail (drboot exit 3)",
    )

    # The next check (a minute later) finds the drill done: ExecCondition skips the service.
    wait_until(
        lambda: _show(host, f"{UNIT}.service", "Result")["Result"] == "exec-condition",
        timeout=130,
        what="the timer's next check, skipped by ExecCondition",
    )
    later = _show(host, f"{UNIT}.timer", "LastTriggerUSec")["LastTriggerUSec"]
    assert later != first_trigger  # a later trigger than the one that drilled
    assert len(drills()) == 1  # and no second drill

    removed = _drboot(host, "schedule", "remove", SITE)
    assert removed["systemctl"] == [f"disable --now {UNIT}.timer", "daemon-reload"]
    assert _show(host, f"{UNIT}.timer", "LoadState")["LoadState"] == "not-found"
