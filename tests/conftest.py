"""Shared fixtures. Integration fixtures live in plugin modules beside the tests that use them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

MINIMAL_SITE = """\
apiVersion: drboot.dev/v1
kind: Site
name: {name}
provider:
  type: static
  hosts:
    - name: h1
      address: 127.0.0.1
escrow:
  backend: age
  bundle: kit.age
  identity_files: [identity.txt]
repo:
  url: file:///nonexistent/config-repo
"""


@pytest.fixture(autouse=True)
def _machine_lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own machine-wide lock directory: tests (and other checkouts on the
    same machine) restore sites of the same name at once. A test of the machine lock itself
    sets DRBOOT_LOCK_DIR as it needs."""
    monkeypatch.setenv("DRBOOT_LOCK_DIR", str(tmp_path / "machine-locks"))


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    """A minimal valid site file (static host on loopback; nothing is contacted)."""
    path = tmp_path / "site.yaml"
    path.write_text(MINIMAL_SITE.format(name="enginetest"))
    return path


@pytest.fixture
def drboot_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["DRBOOT_STATE_DIR"] = str(tmp_path / "state")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


PYTHON = sys.executable
