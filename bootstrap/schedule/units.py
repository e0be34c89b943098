"""The systemd timer and service of a scheduled drill, as text: names, escaping, templates.

Why it exists: ``drboot schedule install`` must write the same two files every time for the
same request (so installing twice changes nothing), and a test must be able to read exactly
what systemd will get. This module is pure: no file, no systemctl.

How ``--every`` becomes a timer. A monotonic timer (``OnUnitActiveSec=30d``) forgets its
last run at every reboot, and ``Persistent=true`` only works with ``OnCalendar=``. So the
timer fires on a calendar (``daily``, or ``hourly``/``minutely`` for short intervals) with
``Persistent=true`` (a check missed while the machine was off runs at boot) and a
``RandomizedDelaySec``; the service's ``ExecCondition=`` asks ``drboot schedule due`` whether
the last drill in the journal is older than ``--every``, and skips the drill if it is not.
The interval is thus measured from the last drill actually run (a manual one counts too),
and survives reboots.
"""

from __future__ import annotations

import datetime as dt
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from bootstrap.sitetypes.durations import format_duration

PREFIX = "drboot-drill-"
MARKER = "# Written by `drboot schedule install`; `drboot schedule remove` deletes it."
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_.")


def systemd_escape(text: str) -> str:
    """``systemd-escape TEXT``: ``/`` becomes ``-``; bytes outside ``[A-Za-z0-9:_.]`` (and a
    leading ``.``) become ``\\xNN``."""
    out = []
    for i, byte in enumerate(text.encode()):
        ch = chr(byte)
        if ch == "/":
            out.append("-")
        elif ch in _SAFE and not (i == 0 and ch == "."):
            out.append(ch)
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


def unit_base(site: str) -> str:
    """``drboot-drill-<escaped site>``: the timer and the service share it."""
    return PREFIX + systemd_escape(site)


def check_period(every: dt.timedelta) -> str:
    """How often the timer asks whether a drill is due: about 1/24 of the interval or finer."""
    if every < dt.timedelta(hours=1):
        return "minutely"
    if every < dt.timedelta(days=1):
        return "hourly"
    return "daily"


def default_delay(every: dt.timedelta) -> dt.timedelta:
    """The randomized delay: a tenth of the interval, at most an hour (spreads many sites)."""
    return min(every / 10, dt.timedelta(hours=1))


@dataclass(frozen=True)
class Schedule:
    """One scheduled drill: everything the two unit files say."""

    site: str  # the site's name (names the units)
    site_file: str  # absolute
    every: dt.timedelta
    delay: dt.timedelta
    drboot: tuple[str, ...]  # the absolute command that runs drboot
    state_dir: str  # absolute
    environment: tuple[tuple[str, str], ...] = ()  # e.g. PYTHONPATH for `python -m bootstrap.cli`

    @property
    def base(self) -> str:
        return unit_base(self.site)

    def command(self, *args: str) -> str:
        argv = [*self.drboot, "--state-dir", self.state_dir, *args]
        return " ".join(_quote(a) for a in argv)

    def timer(self) -> str:
        return _TIMER.format(
            marker=MARKER,
            site=self.site,
            every=format_duration(self.every),
            calendar=check_period(self.every),
            delay=int(self.delay.total_seconds()),
            base=self.base,
        )

    def service(self) -> str:
        env = "".join(f"Environment={_quote(f'{k}={v}')}\n" for k, v in self.environment)
        return _SERVICE.format(
            marker=MARKER,
            site=self.site,
            environment=env,
            condition=self.command(
                "schedule", "due", self.site_file, "--every", format_duration(self.every)
            ),
            start=self.command("drill", self.site_file),
        )

    def files(self) -> dict[str, str]:
        """Unit file name -> content."""
        return {f"{self.base}.timer": self.timer(), f"{self.base}.service": self.service()}


def _quote(arg: str) -> str:
    """Quote for a systemd command line: systemd's own rules are close to the shell's for
    the double-quoted form; ``%`` (a specifier) is doubled."""
    arg = arg.replace("%", "%%")
    if arg and all(c.isalnum() or c in "/-_.:=+,@" for c in arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_command(line: str) -> Sequence[str]:
    """The argv of an ``ExecStart=`` line written by ``Schedule`` (for ``schedule list``)."""
    return [a.replace("%%", "%") for a in shlex.split(line)]


_TIMER = """\
{marker}
[Unit]
Description=drboot drill of site {site}, every {every}

[Timer]
OnCalendar={calendar}
Persistent=true
RandomizedDelaySec={delay}
Unit={base}.service

[Install]
WantedBy=timers.target
"""

_SERVICE = """\
{marker}
[Unit]
Description=drboot drill of site {site}
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
{environment}ExecCondition={condition}
ExecStart={start}
"""
