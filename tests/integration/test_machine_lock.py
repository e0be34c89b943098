"""Two restores of one site from two accounts on one machine: the second is refused (issue 13).

Each account has its own state directory, so the per-state-dir lock cannot see the other
run; the machine-wide lock (``/run/lock/drboot/<site>.lock``, the real default here) can.
The other account is a real user made with ``useradd``; it runs drboot through ``setpriv``
as that uid with one extra capability, CAP_DAC_READ_SEARCH, only so it can read this
checkout's Python under /root (on a CI machine the venv is readable anyway). It grants no
write access: the lock file is opened and written as that user. The pipeline is the
side-effect fixture, held inside its first step while the other account tries.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.engine.lock import DEFAULT_LOCK_DIR
from tests.conftest import MINIMAL_SITE, PYTHON, REPO
from tests.engine_fixtures.sidefx import STEPS, release

pytestmark = [pytest.mark.integration]

SIDEFX = [PYTHON, str(REPO / "tests" / "engine_fixtures" / "sidefx.py")]
USER = "drboot-locktest"


@pytest.fixture
def other_user() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        pytest.skip("needs root to add a second user")
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        USER], check=True)  # fmt: skip
        return pwd.getpwnam(USER)


@pytest.fixture
def shared(tmp_path: Path, other_user: pwd.struct_passwd) -> Iterator[Path]:
    """A world-readable work dir (site file) with one writable folder per account."""
    base = Path(f"/tmp/drboot-locktest-{secrets.token_hex(4)}")
    base.mkdir(mode=0o755)
    (base / "root").mkdir(mode=0o700)
    (base / "other").mkdir(mode=0o700)
    os.chown(base / "other", other_user.pw_uid, other_user.pw_gid)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_second_user_is_refused_while_root_restores_the_site(
    shared: Path, other_user: pwd.struct_passwd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DRBOOT_LOCK_DIR")  # the real machine-wide directory
    site_name = f"locktest-{secrets.token_hex(3)}"
    site = shared / "site.yaml"
    site.write_text(MINIMAL_SITE.format(name=site_name))
    site.chmod(0o644)
    base_env = {k: v for k, v in os.environ.items() if k != "DRBOOT_LOCK_DIR"}
    base_env["PYTHONPATH"] = str(REPO)
    root_env = dict(base_env, DRBOOT_STATE_DIR=str(shared / "root" / "state"),
                    SIDEFX_DIR=str(shared / "root"), SIDEFX_HOLD="s1:enter")  # fmt: skip
    holder = subprocess.Popen([*SIDEFX, "-o", "json", "restore", str(site)], env=root_env,
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        assert holder.stdout is not None
        run_id = ""
        for line in holder.stdout:  # until root's run holds inside its first step
            ev = json.loads(line)
            run_id = run_id or ev.get("run_id", "")
            if ev["kind"] == "step.progress" and ev["data"].get("hold"):
                break
        assert run_id and holder.poll() is None
        lock_file = DEFAULT_LOCK_DIR / f"{site_name}.lock"
        assert DEFAULT_LOCK_DIR.stat().st_mode & 0o7777 == 0o1777
        other_env = dict(base_env, HOME=str(shared / "other"), USER=USER,
                         DRBOOT_STATE_DIR=str(shared / "other" / "state"),
                         SIDEFX_DIR=str(shared / "other"))  # fmt: skip
        as_other = ["setpriv", f"--reuid={other_user.pw_uid}", f"--regid={other_user.pw_gid}",
                    "--clear-groups", "--inh-caps=+dac_read_search",
                    "--ambient-caps=+dac_read_search"]  # fmt: skip
        refused = subprocess.run([*as_other, *SIDEFX, "restore", str(site)], env=other_env,
                                 cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert refused.returncode == 6, refused.stdout + refused.stderr
        assert f"being restored on this machine by run {run_id} of user root" in refused.stderr
        assert not (shared / "other" / "acts.log").exists(), "the refused run did nothing"
        release(shared / "root")
        _, err = holder.communicate(timeout=60)
        assert holder.returncode == 0, err
        # Root's clean end released it: the other account may now restore, and root is refused
        # while the other account holds it (the lock file root created is the other's to use).
        other_held = subprocess.Popen([*as_other, *SIDEFX, "-o", "json", "restore", str(site)],
                                      env=dict(other_env, SIDEFX_HOLD="s1:enter"), cwd=REPO,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True)  # fmt: skip
        assert other_held.stdout is not None
        other_run = ""
        for line in other_held.stdout:
            ev = json.loads(line)
            other_run = other_run or ev.get("run_id", "")
            if ev["kind"] == "step.progress" and ev["data"].get("hold"):
                break
        root_again = subprocess.run([*SIDEFX, "restore", str(site)],
                                    env=dict(root_env, SIDEFX_HOLD=""), cwd=REPO,
                                    capture_output=True, text=True, timeout=120)  # fmt: skip
        assert root_again.returncode == 6, root_again.stderr
        assert f"by run {other_run} of user {USER}" in root_again.stderr
        release(shared / "other")
        _, err = other_held.communicate(timeout=60)
        assert other_held.returncode == 0, err
        assert (shared / "other" / "acts.log").read_text().splitlines() == STEPS
        assert lock_file.stat().st_uid == 0 and lock_file.read_text() == ""  # emptied on release
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
