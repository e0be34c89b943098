"""`drboot --help` imports no vendor library; the exit-code table is in the help."""

from __future__ import annotations

import subprocess

from tests.conftest import PYTHON, REPO

VENDOR = ["kubernetes", "ansible_runner", "paramiko", "git", "pyrage", "Crypto"]

PROBE = """
import sys
from bootstrap.cli import cli, Deps
try:
    cli(["--help"], obj=Deps(), standalone_mode=False)
except SystemExit:
    pass
loaded = [m for m in {vendor!r} if m in sys.modules]
print("LOADED=" + ",".join(loaded))
"""


def test_help_imports_no_vendor_library() -> None:
    res = subprocess.run(
        [PYTHON, "-c", PROBE.format(vendor=VENDOR)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "Exit codes" in res.stdout
    assert "LOADED=\n" in res.stdout + "\n" and "LOADED=" in res.stdout
    loaded = res.stdout.split("LOADED=")[1].strip()
    assert loaded == "", f"--help imported vendor libraries: {loaded}"


def test_every_subcommand_help_imports_no_vendor_library() -> None:
    for cmd in ["restore", "resume", "plan", "status", "validate", "drill"]:
        probe = PROBE.format(vendor=VENDOR).replace('["--help"]', f'["{cmd}", "--help"]')
        res = subprocess.run(
            [PYTHON, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert res.returncode == 0, res.stderr
        assert res.stdout.split("LOADED=")[1].strip() == "", cmd
