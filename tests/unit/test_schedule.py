"""`drboot schedule install|remove|list|due`: the unit files, idempotency, systemctl.

The escaping is checked against the real ``systemd-escape``, and the generated units are
checked by the real ``systemd-analyze verify`` (both ship with systemd; skipped where they
are missing). That the timer really fires the drill is tests/integration/test_schedule_lab.py.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from bootstrap.cli import Deps, cli
from bootstrap.errors import ConfigError
from bootstrap.schedule import install as inst
from bootstrap.schedule.units import Schedule, check_period, default_delay, systemd_escape
from tests.conftest import MINIMAL_SITE, REPO
from tests.engine_fixtures import drillkit


@pytest.mark.parametrize(
    "name", ["oslo", "oslo-1", "a.b", ".hidden", "x/y", "ümlaut", "sp ace", "per%cent", "a\\b"]
)
def test_unit_names_are_escaped_as_systemd_escape_does(name: str) -> None:
    tool = shutil.which("systemd-escape")
    if tool is None:
        pytest.skip("systemd-escape is not installed")
    expected = subprocess.run([tool, "--", name], capture_output=True, text=True, check=True)
    assert systemd_escape(name) == expected.stdout.strip()


@pytest.mark.parametrize(
    ("every", "calendar", "delay"),
    [
        (dt.timedelta(days=30), "daily", dt.timedelta(hours=1)),
        (dt.timedelta(hours=6), "hourly", dt.timedelta(minutes=36)),
        (dt.timedelta(minutes=10), "minutely", dt.timedelta(minutes=1)),
    ],
)
def test_the_interval_decides_how_often_the_timer_checks(
    every: dt.timedelta, calendar: str, delay: dt.timedelta
) -> None:
    assert (check_period(every), default_delay(every)) == (calendar, delay)


def _site(tmp_path: Path, name: str = "oslo-1") -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(MINIMAL_SITE.format(name=name))
    return path


def _invoke(tmp_path: Path, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(
        cli,
        ["--state-dir", str(tmp_path / "state"), "-o", "json", *args],
        obj=Deps(pipelines=drillkit.pipelines),
    )
    return res.exit_code, res.output


def test_install_writes_a_timer_and_service_and_is_idempotent(tmp_path: Path) -> None:
    site, units = _site(tmp_path), tmp_path / "units"
    args = ["schedule", "install", str(site), "--every", "30d", "--unit-dir", str(units)]
    code, out = _invoke(tmp_path, *args, "--no-systemctl")
    assert code == 0, out
    doc = json.loads(out)
    base = units / "drboot-drill-oslo\\x2d1"
    timer, service = Path(f"{base}.timer"), Path(f"{base}.service")
    assert doc["changed"] == [str(timer), str(service)] and doc["systemctl"] == []
    t = timer.read_text().splitlines()
    assert "OnCalendar=daily" in t and "Persistent=true" in t and "RandomizedDelaySec=3600" in t
    assert "Unit=drboot-drill-oslo\\x2d1.service" in t and "WantedBy=timers.target" in t
    s = service.read_text().splitlines()
    state = str((tmp_path / "state").absolute())
    # Run from pytest (not a `drboot` script): `python -m bootstrap.cli` with this package.
    drboot = f"{sys.executable} -m bootstrap.cli --state-dir {state}"
    assert f"ExecStart={drboot} drill {site.absolute()}" in s
    assert f"ExecCondition={drboot} schedule due {site.absolute()} --every 30d" in s
    assert f"Environment=PYTHONPATH={REPO}" in s
    assert "Type=oneshot" in s
    assert oct(timer.stat().st_mode & 0o777) == "0o644"

    before = {p: p.stat().st_mtime_ns for p in (timer, service)}
    code, out = _invoke(tmp_path, *args, "--no-systemctl")
    assert code == 0 and json.loads(out)["changed"] == []
    assert {p: p.stat().st_mtime_ns for p in (timer, service)} == before

    args[4] = "12h"  # a changed interval rewrites the units
    code, out = _invoke(tmp_path, *args, "--no-systemctl")
    assert code == 0 and json.loads(out)["changed"] == [str(timer), str(service)]
    assert "OnCalendar=hourly" in timer.read_text() and "--every 12h" in service.read_text()

    code, out = _invoke(tmp_path, "schedule", "list", "--unit-dir", str(units))
    (listed,) = json.loads(out)["schedules"]
    assert listed["site"] == "oslo-1" and listed["every"] == "12h"
    assert listed["command"][-2:] == ["drill", str(site.absolute())]


def test_the_generated_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    site, units = _site(tmp_path), tmp_path / "units"
    code, out = _invoke(
        tmp_path, "schedule", "install", str(site), "--every", "7d", "--unit-dir", str(units),
        "--no-systemctl",
    )  # fmt: skip
    assert code == 0, out
    files = sorted(str(p) for p in units.iterdir())
    proc = subprocess.run([tool, "verify", *files], capture_output=True, text=True, check=False)
    problems = [
        line for line in (proc.stdout + proc.stderr).splitlines()
        # verify also loads timers.target & co. from this machine; only our units count
        if "drboot-drill" in line
    ]  # fmt: skip
    assert problems == [] and proc.returncode == 0, proc.stdout + proc.stderr


class Recorder:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, args: Sequence[str]) -> None:
        self.calls.append(list(args))


def _schedule(tmp_path: Path, every: dt.timedelta = dt.timedelta(days=30)) -> Schedule:
    return Schedule(
        site="oslo",
        site_file=str(tmp_path / "site.yaml"),
        every=every,
        delay=default_delay(every),
        drboot=("/usr/local/bin/drboot",),
        state_dir="/var/lib/drboot",
    )


def test_systemctl_reloads_only_when_a_file_changed_and_enables_the_timer(tmp_path: Path) -> None:
    rec = Recorder()
    inst.install(_schedule(tmp_path), tmp_path, rec)
    inst.install(_schedule(tmp_path), tmp_path, rec)
    assert rec.calls == [
        ["daemon-reload"],
        ["enable", "--now", "drboot-drill-oslo.timer"],
        ["enable", "--now", "drboot-drill-oslo.timer"],
    ]
    rec.calls.clear()
    done = inst.remove("oslo", tmp_path, rec)
    assert rec.calls == [["disable", "--now", "drboot-drill-oslo.timer"], ["daemon-reload"]]
    assert len(done.changed) == 2 and list(tmp_path.iterdir()) == []
    rec.calls.clear()
    assert inst.remove("oslo", tmp_path, rec).changed == [] and rec.calls == []


def test_a_unit_drboot_did_not_write_is_never_overwritten_nor_removed(tmp_path: Path) -> None:
    theirs = tmp_path / "drboot-drill-oslo.service"
    theirs.write_text("[Service]\nExecStart=/bin/true\n")
    with pytest.raises(ConfigError, match="was not written by drboot"):
        inst.install(_schedule(tmp_path), tmp_path, None)
    assert not (tmp_path / "drboot-drill-oslo.timer").exists()  # nothing half-created
    with pytest.raises(ConfigError, match="left alone"):
        inst.remove("oslo", tmp_path, None)
    assert theirs.read_text() == "[Service]\nExecStart=/bin/true\n"


def test_a_systemctl_failure_names_the_command_and_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    # A systemctl that refuses as it does on a machine without systemd as PID 1.
    (fake_bin / "systemctl").write_text(
        "#!/bin/sh\necho 'System has not been booted with systemd as init system' >&2\nexit 1\n"
    )
    (fake_bin / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:/usr/bin:/bin")
    site, units = _site(tmp_path), tmp_path / "units"
    code, out = _invoke(
        tmp_path, "schedule", "install", str(site), "--every", "30d", "--unit-dir", str(units)
    )
    assert code == 4, out
    err = json.loads(out)
    assert "systemctl daemon-reload exited 1" in json.dumps(err)
    assert "not been booted with systemd" in json.dumps(err)


def test_bad_every_is_a_usage_error(tmp_path: Path) -> None:
    site = _site(tmp_path)
    for bad in ("soon", "30s"):
        code, out = _invoke(
            tmp_path, "schedule", "install", str(site), "--every", bad,
            "--unit-dir", str(tmp_path / "u"), "--no-systemctl",
        )  # fmt: skip
        assert code == 2, out
    assert not (tmp_path / "u").exists()


def test_due_says_whether_a_drill_ran_within_the_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = _site(tmp_path, "oslo")
    due = ["schedule", "due", str(site), "--every", "1d"]
    assert _invoke(tmp_path, *due)[0] == 0  # never drilled
    monkeypatch.setenv("DRILLKIT_RTO", "5")
    assert _invoke(tmp_path, "restore", str(site))[0] == 0
    assert _invoke(tmp_path, *due)[0] == 0  # a restore is not a drill
    assert _invoke(tmp_path, "drill", str(site))[0] == 0
    code, out = _invoke(tmp_path, *due)
    assert code == 1 and json.loads(out)["due"] is False


def test_drboot_option_sets_the_command_the_units_run(tmp_path: Path) -> None:
    site, units = _site(tmp_path), tmp_path / "units"
    base = ["schedule", "install", str(site), "--every", "30d", "--unit-dir", str(units),
            "--no-systemctl"]  # fmt: skip
    code, out = _invoke(tmp_path, *base, "--drboot", "/opt/drboot/bin/drboot")
    assert code == 0, out
    service = (units / "drboot-drill-oslo\\x2d1.service").read_text()
    assert f"ExecStart=/opt/drboot/bin/drboot --state-dir {tmp_path / 'state'} drill" in service
    assert "PYTHONPATH" not in service
    code, out = _invoke(tmp_path, *base, "--drboot", "drboot")
    assert code == 2 and "absolute path" in out


def test_a_site_file_the_timer_cannot_read_again_is_refused(tmp_path: Path) -> None:
    code, out = _invoke(
        tmp_path, "schedule", "install", "/dev/stdin", "--every", "30d",
        "--unit-dir", str(tmp_path / "u"), "--no-systemctl",
    )  # fmt: skip
    assert code == 2 and "not a regular file" in out
    assert not (tmp_path / "u").exists()
