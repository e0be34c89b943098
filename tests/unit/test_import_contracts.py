"""The layer contracts in pyproject.toml hold (import-linter), and the checker really checks.

Layers point one way: cli -> runs -> steps -> engine; nothing below the CLI imports it;
the engine knows no vendor library; the report reads records, not the engine's internals;
vendor libraries (kubernetes, paramiko, ansible_runner, git) only at the edge.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_layer_contracts_are_kept() -> None:
    proc = _lint()
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "BROKEN" not in proc.stdout and "Contracts: " in proc.stdout


def test_a_broken_contract_is_reported(tmp_path: Path) -> None:
    """A contract the code does not keep (the engine does read the site models) fails."""
    config = tmp_path / ".importlinter"
    config.write_text(
        "[importlinter]\nroot_package = bootstrap\n\n"
        "[importlinter:contract:probe]\nname = probe\ntype = forbidden\n"
        "source_modules = bootstrap.engine\nforbidden_modules = bootstrap.settings\n"
    )
    proc = _lint("--config", str(config))
    assert proc.returncode != 0
    assert "BROKEN" in proc.stdout
    assert "bootstrap.engine.context -> bootstrap.settings" in proc.stdout
