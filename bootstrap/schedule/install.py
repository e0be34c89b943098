"""Install, remove and list scheduled drills: the unit files on disk, and systemctl.

Why it exists: the observe-compare-act habit applied to two unit files. ``install`` reads
what is there, writes only a file whose content differs (atomically, 0644), and reloads
systemd only when something changed; installing twice changes nothing. ``remove`` stops
and disables the timer, then deletes exactly the files ``install`` wrote (they carry a
marker line; a unit someone else wrote under the same name is refused, never clobbered).
``systemctl`` is reached through a small ``Systemctl`` callable so tests can see what was
asked of it; on a real machine it is ``/usr/bin/systemctl``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootstrap.errors import BootstrapError, ConfigError
from bootstrap.fsutil import write_atomic
from bootstrap.schedule.units import MARKER, PREFIX, Schedule, parse_command, unit_base

DEFAULT_UNIT_DIR = Path("/etc/systemd/system")
Systemctl = Callable[[Sequence[str]], None]


class SystemctlError(BootstrapError):
    """systemctl refused (the unit files are written; the next action says what to run)."""


def run_systemctl(args: Sequence[str]) -> None:
    """``systemctl ARGS`` on this machine; a failure is a ``SystemctlError``."""
    try:
        proc = subprocess.run(
            ["systemctl", *args], capture_output=True, text=True, timeout=120, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SystemctlError(
            f"systemctl {' '.join(args)} could not run ({type(exc).__name__})",
            hint="is systemd running here? install with --no-systemctl and enable the timer "
            "yourself",
        ) from None
    if proc.returncode != 0:
        raise SystemctlError(
            f"systemctl {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-300:]}",
            hint="fix the cause, then run `drboot schedule install` again",
        )


@dataclass(frozen=True)
class Installed:
    """What ``install`` or ``remove`` did."""

    site: str
    timer: str
    files: list[str]
    changed: list[str] = field(default_factory=list)  # files written or deleted
    systemctl: list[str] = field(default_factory=list)  # commands run

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "timer": self.timer,
            "files": self.files,
            "changed": self.changed,
            "systemctl": self.systemctl,
        }


def _ours(path: Path) -> bool:
    try:
        return path.read_text().startswith(MARKER)
    except (OSError, UnicodeDecodeError):
        return False


def install(schedule: Schedule, unit_dir: Path, systemctl: Systemctl | None) -> Installed:
    """Write the timer and service of ``schedule`` into ``unit_dir`` (only what differs);
    with ``systemctl``: ``daemon-reload`` if anything changed, and ``enable --now`` the timer."""
    wanted = schedule.files()
    for name in wanted:
        path = unit_dir / name
        if path.exists() and not _ours(path):
            raise ConfigError(
                f"{path} exists and was not written by drboot",
                hint="remove or rename it, or schedule under another site name",
            )
    changed = []
    for name, text in wanted.items():
        path = unit_dir / name
        try:
            current = path.read_text() if path.exists() else None
        except (OSError, UnicodeDecodeError):
            current = None
        if current != text:
            try:
                write_atomic(path, text, mode=0o644)
            except OSError as exc:
                raise ConfigError(
                    f"cannot write {path}: {exc.strerror or type(exc).__name__}",
                    hint="run as root, or choose another directory with --unit-dir",
                ) from None
            changed.append(str(path))
    timer = f"{schedule.base}.timer"
    ran: list[list[str]] = []
    if systemctl is not None:
        if changed:
            ran.append(["daemon-reload"])
        ran.append(["enable", "--now", timer])
        for args in ran:
            systemctl(args)
    return Installed(
        schedule.site,
        timer,
        [str(unit_dir / n) for n in wanted],
        changed,
        [" ".join(a) for a in ran],
    )


def remove(site: str, unit_dir: Path, systemctl: Systemctl | None) -> Installed:
    """Stop and disable the timer of ``site`` and delete its two files (nothing if absent)."""
    base = unit_base(site)
    paths = [unit_dir / f"{base}.timer", unit_dir / f"{base}.service"]
    present = [p for p in paths if p.exists()]
    for path in present:
        if not _ours(path):
            raise ConfigError(
                f"{path} was not written by drboot; it is left alone",
                hint="remove it yourself if it should go",
            )
    ran: list[list[str]] = []
    if systemctl is not None and present:
        ran.append(["disable", "--now", f"{base}.timer"])
        systemctl(ran[-1])
    for path in present:
        path.unlink()
    if systemctl is not None and present:
        ran.append(["daemon-reload"])
        systemctl(ran[-1])
    return Installed(
        site, f"{base}.timer", [str(p) for p in paths], [str(p) for p in present],
        [" ".join(a) for a in ran],
    )  # fmt: skip


@dataclass(frozen=True)
class Listed:
    """A scheduled drill found in the unit directory."""

    site: str
    timer: str
    every: str
    command: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"site": self.site, "timer": self.timer, "every": self.every,
                "command": self.command}  # fmt: skip


def listing(unit_dir: Path) -> list[Listed]:
    """Every drboot-written timer in ``unit_dir`` with its interval and the drill it runs."""
    found = []
    for timer in sorted(unit_dir.glob(f"{PREFIX}*.timer")):
        service = timer.with_suffix(".service")
        if not (_ours(timer) and _ours(service)):
            continue
        desc = _value(timer.read_text(), "Description") or ""
        site, _, every = desc.removeprefix("drboot drill of site ").partition(", every ")
        start = _value(service.read_text(), "ExecStart") or ""
        found.append(Listed(site, timer.name, every, list(parse_command(start))))
    return found


def _value(text: str, key: str) -> str | None:
    for line in text.splitlines():
        if line.startswith(f"{key}="):
            return line.split("=", 1)[1]
    return None
