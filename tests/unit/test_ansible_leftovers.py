"""A drboot killed (SIGKILL) in the middle of a real ansible-playbook run: what it leaves on disk
holds no escrow passphrase from its environment (runner gets only what Ansible needs, and writes
no ``env/`` files), and what it does leave of secrets (the secret vars file; the kubeconfig) is
removed by ``resume`` before it acts.

The playbook runs for real, over a local connection, and holds on a FIFO so that the kill lands
while it is in flight.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bootstrap.adapters.ansible import playbook_env
from bootstrap.cli import Deps, cli
from bootstrap.engine.context import StepContext
from bootstrap.engine.step import Pipeline, RetryPolicy
from bootstrap.steps.resources import KUBECONFIG, remove_dead_run_leftovers
from tests.conftest import MINIMAL_SITE, REPO

PASSPHRASE = "Esc-P4ssphrase-in-the-env-9f1c"
TOKEN = "K10-secret-token-of-the-run::server:7d3e"
PLAYBOOK = REPO / "tests" / "fixtures" / "playbooks" / "hold.yml"

SCRIPT = """
import sys
from pathlib import Path
from bootstrap.adapters.ansible import run_playbook
from bootstrap.hostkeys import KeySource, PublicKey, TrustedKey
from cryptography.hazmat.primitives import serialization as s
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
pdd, ready, go, key = (Path(a) for a in sys.argv[1:5])
inventory = {"all": {"hosts": {"localhost": {
    "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}
# known_hosts is required even though a local connection never reads it
line = Ed25519PrivateKey.generate().public_key().public_bytes(
    s.Encoding.OpenSSH, s.PublicFormat.OpenSSH).decode()
trusted = [TrustedKey("localhost", 22, PublicKey.parse(line), KeySource.PINNED)]
run_playbook(sys.argv[5], inventory, {"ready": str(ready), "go": str(go)}, pdd,
             ssh_key_file=key, host_keys=trusted, secret_vars={"k3s_token": sys.argv[6]},
             timeout=300)
"""


def _wait_ready(fifo: Path, proc: subprocess.Popen[bytes], deadline: float) -> int:
    """Block until the playbook writes its shell's pid to ``fifo`` (or the process ends, or the
    deadline passes); return that pid."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        while time.monotonic() < deadline:
            readable, _, _ = select.select([fd], [], [], 1.0)
            data = os.read(fd, 100) if readable else b""
            if data.strip():
                return int(data)
            if proc.poll() is not None:
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"drboot's playbook run ended before the playbook held: {out}")
        pytest.fail("the playbook never said it was ready")
    finally:
        os.close(fd)


def _end_hold(pid: int | None) -> None:
    """End the holding shell the test started (the orphaned playbook then finishes on its own;
    stopping orphans in general is resume's business, tested elsewhere)."""
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def _files_holding(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


@pytest.mark.skipif(
    not (Path(sys.executable).parent / "ansible-playbook").exists(),
    reason="needs ansible-core in drboot's venv",
)
def test_a_killed_playbook_run_leaves_no_passphrase_and_resume_removes_its_secrets(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "runs" / "r1"
    pdd = run_dir / "ansible" / "install-k3s"
    ready, go = tmp_path / "ready", tmp_path / "go"
    os.mkfifo(ready)
    os.mkfifo(go)
    key = tmp_path / "id"
    key.write_text("unused: local connection\n")
    env = dict(os.environ, DRBOOT_ESCROW_PASSPHRASE=PASSPHRASE, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(pdd), str(ready), str(go), str(key), str(PLAYBOOK),
         TOKEN],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    hold: int | None = None
    try:
        hold = _wait_ready(ready, proc, time.monotonic() + 240)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _end_hold(hold)
    (run_dir / KUBECONFIG).write_text("apiVersion: v1\nusers: [{user: {token: " + TOKEN + "}}]\n")

    commands = list(pdd.glob("artifacts/*/command"))
    assert commands, "runner wrote its command artifact before the kill"
    env_kept = json.loads(commands[0].read_text())["env"]
    assert "DRBOOT_ESCROW_PASSPHRASE" not in env_kept and "PATH" in env_kept
    assert _files_holding(run_dir, PASSPHRASE) == []
    assert not (pdd / "env").exists(), "suppress_env_files: runner writes no env/ files"
    secret_files = list(pdd.glob("secret-vars-*.json"))
    assert secret_files, "the kill left the secret vars file (what resume must remove)"
    assert set(_files_holding(run_dir, TOKEN)) == {*secret_files, run_dir / KUBECONFIG}

    removed = remove_dead_run_leftovers(run_dir)
    assert KUBECONFIG in removed
    assert {str(f.relative_to(run_dir)) for f in secret_files} <= set(removed)
    assert _files_holding(run_dir, TOKEN) == []
    assert remove_dead_run_leftovers(run_dir) == [], "nothing left the second time"


def test_the_playbook_environment_keeps_what_ansible_needs_and_nothing_of_drboot() -> None:
    env = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "LC_ALL": "C.UTF-8",
        "ANSIBLE_SSH_ARGS": "-o X",
        "RUNNER_OMIT_EVENTS": "False",
        "DRBOOT_ESCROW_PASSPHRASE": PASSPHRASE,
        "DRBOOT_STATE_DIR": "/x",
        "HCLOUD_TOKEN": "cloud-secret",
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
    }
    assert playbook_env(env) == {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "LC_ALL": "C.UTF-8",
        "ANSIBLE_SSH_ARGS": "-o X",
        "RUNNER_OMIT_EVENTS": "False",
    }


def test_resume_removes_a_dead_runs_secrets_before_any_step_and_audits_the_names(
    tmp_path: Path,
) -> None:
    seen_by_b: list[list[Path]] = []

    def pipelines() -> dict[str, Pipeline]:
        p = Pipeline("restore")
        p.step("a", retry=RetryPolicy.none())(lambda ctx: None)

        def b(ctx: StepContext) -> None:
            seen_by_b.append(_files_holding(ctx.run_dir, TOKEN))

        p.step("b", after=["a"], retry=RetryPolicy.none())(b)
        return {"restore": p}

    site = tmp_path / "site.yaml"
    site.write_text(MINIMAL_SITE.format(name="leftovers"))
    state = tmp_path / "state"

    def invoke(*args: str) -> tuple[int, str]:
        res = CliRunner().invoke(
            cli, ["--state-dir", str(state), "-o", "json", *args], obj=Deps(pipelines=pipelines)
        )
        return res.exit_code, res.output

    code, out = invoke("restore", "--until", "a", str(site))
    assert code == 0, out
    run_id = json.loads(out.splitlines()[0])["run_id"]
    run_dir = state / "runs" / run_id
    pdd = run_dir / "ansible" / "install-k3s"
    (pdd / "env").mkdir(parents=True)
    (pdd / "env" / "extravars").write_text(f"k3s_token: {TOKEN}\n")
    (pdd / "secret-vars-0a1b2c.json").write_text(json.dumps({"k3s_token": TOKEN}))
    (run_dir / KUBECONFIG).write_text(f"users: [{{user: {{token: {TOKEN}}}}}]\n")
    assert len(_files_holding(run_dir, TOKEN)) == 3

    code, out = invoke("resume", run_id)
    assert code == 0, out
    assert seen_by_b == [[]], "the leftovers were gone before step b ran"
    audited = [
        json.loads(line)
        for line in (state / "audit.jsonl").read_text().splitlines()
        if "dead run" in line
    ]
    assert len(audited) == 1
    assert sorted(audited[0]["data"]["files"]) == [
        "ansible/install-k3s/env",
        "ansible/install-k3s/secret-vars-0a1b2c.json",
        KUBECONFIG,
    ]
    assert TOKEN not in (state / "audit.jsonl").read_text() and TOKEN not in out
