"""playbooks/ must pass `ansible-lint --profile production` (and the check must be able to fail:
a copy with one bad task is rejected)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"


def _ansible_lint() -> str:
    beside = Path(sys.executable).parent / "ansible-lint"
    found = str(beside) if beside.exists() else shutil.which("ansible-lint")
    if found is None:
        pytest.skip(
            "ANSIBLE-LINT IS NOT INSTALLED: the playbooks were NOT linted. "
            "Install the test extras (pip install -e '.[test]')"
        )
    return found


def _lint(path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_LINT_SKIP_VAULT"] = "1"
    return subprocess.run(
        [_ansible_lint(), "--offline", "--nocolor", "--profile", "production", "."],
        cwd=path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_playbooks_pass_production_profile() -> None:
    proc = _lint(PLAYBOOKS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Profile 'production' was required, and it passed" in proc.stdout + proc.stderr


def test_lint_rejects_a_bad_task(tmp_path: Path) -> None:
    copy = tmp_path / "playbooks"
    shutil.copytree(PLAYBOOKS, copy, ignore=shutil.ignore_patterns("fio-results"))
    tasks = copy / "roles" / "disk_gate" / "tasks" / "main.yml"
    tasks.write_text(tasks.read_text() + "\n- shell: echo unnamed task without changed_when\n")
    proc = _lint(copy)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "no-changed-when" in out or "name[missing]" in out
