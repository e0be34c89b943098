"""The leak scan over every command that runs without a cluster, and over what a killed run
leaves: one escrow holding every kind of secret drboot keeps (Sealed Secrets keys, a k3s
token, a deploy key; the bundle opened with an age passphrase from the environment).

Every command below runs against it, succeeding and failing: validate, plan, schema, init,
escrow import/verify/status/export (to a file), a restore that stops at the first host, status,
report, audit verify, wait (on nothing, and on a broken kubeconfig). Then a restore is killed
(SIGKILL) in the middle of a step while a real ansible-playbook of that run holds a secret vars
file, and resumed. Afterwards stdout, stderr and EVERY file under the test's directory (state
directory, journal, audit log, run folders, ansible artifacts, reports, the init'ed file) are
scanned for every form of every secret (tests/leaks.py): raw, base64, hex, PEM lines, DER. The
only files allowed to hold a secret are the ones the test wrote as input and the one the user
asked for (`escrow export --to`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bootstrap import sealing
from bootstrap.cli import Deps, cli
from bootstrap.lab.seed import OVERLAY, write_repo
from tests.conftest import PYTHON, REPO
from tests.engine_fixtures.sidefx import STEPS
from tests.leaks import Form, files_under, find_leaks, pem_forms, rsa_forms, text_forms
from tests.unit.test_ansible_leftovers import PLAYBOOK, SCRIPT, _end_hold, _wait_ready

MAIN_KEY = REPO / "tests" / "fixtures" / "escrow" / "main.key"
PASS_ENV = "DRBOOT_LEAKSCAN_PASSPHRASE"
PASSPHRASE = "leakscan-Passphrase-7c1e-b0a2-not-a-word"
TOKEN = "K10leakscan0b1c2d3e4f::server:9a8b7c6d5e4f3a2b"
SIDEFX = [PYTHON, str(REPO / "tests" / "engine_fixtures" / "sidefx.py")]
HAS_ANSIBLE = (Path(sys.executable).parent / "ansible-playbook").exists()

SITE = """\
apiVersion: drboot.dev/v1
name: leakscan
provider:
  type: static
  hosts: [{{name: h1, address: 127.0.0.1, ssh_port: {port}}}]
escrow:
  backend: age
  bundle: {bundle}
  passphrase: {{env: {env}}}
ssh:
  private_key_file: {ssh_key}
repo:
  url: file://{repo}
  path: {path}
sync_wait: {{timeout: 3s, poll_interval: 1s, stable_for: 1s}}
"""


class Scan:
    """One escrow, one state directory, and everything every command printed."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.state = tmp / "state"
        self.outputs: dict[str, bytes] = {}
        inputs = tmp / "inputs"  # what the operator holds: allowed to contain secrets
        inputs.mkdir()
        self.inputs = inputs
        ssh_key = inputs / "id_ed25519"
        ssh_key.write_text("not used: the one host refuses connections\n")
        ssh_key.chmod(0o600)
        self.token_file = inputs / "token"
        self.token_file.write_text(TOKEN + "\n")
        deploy = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        self.deploy_file = inputs / "deploy_key"
        self.deploy_file.write_bytes(deploy)
        self.known_hosts = inputs / "known_hosts"
        self.known_hosts.write_text("git.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA\n")
        keys = [sealing.keys_from_secret(s) for s in yaml.safe_load(MAIN_KEY.read_text())["items"]]
        self.repo = tmp / "repo"
        write_repo(self.repo, keys[1].private_key)
        self.bundle = tmp / "escrow" / "kit.age"
        self.bundle.parent.mkdir()
        self.site = tmp / "site.yaml"
        self.site.write_text(
            SITE.format(
                port=_closed_port(),
                bundle=self.bundle,
                env=PASS_ENV,
                ssh_key=ssh_key,
                repo=self.repo,
                path=OVERLAY,
            )
        )
        self.forms: list[Form] = (
            text_forms("passphrase", PASSPHRASE)
            + text_forms("k3s token", TOKEN)
            + pem_forms("deploy key", deploy)
        )
        for k in keys:
            self.forms += rsa_forms(f"sealing key {k.name}", k.private_key)

    def run(self, label: str, *args: str, ok: tuple[int, ...] = (0,)) -> str:
        res = CliRunner().invoke(cli, ["--state-dir", str(self.state), *args], obj=Deps())
        self.outputs[f"{label}: stdout"] = res.stdout.encode()
        self.outputs[f"{label}: stderr"] = res.stderr.encode()
        assert res.exit_code in ok, f"{label}: exit {res.exit_code}: {res.stdout}{res.stderr}"
        return str(res.stdout)

    def proc(self, label: str, res: subprocess.CompletedProcess[str]) -> None:
        self.outputs[f"{label}: stdout"] = res.stdout.encode()
        self.outputs[f"{label}: stderr"] = res.stderr.encode()

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ, DRBOOT_STATE_DIR=str(self.state), PYTHONPATH=str(REPO), **extra)
        env[PASS_ENV] = PASSPHRASE
        return env

    def leaks(self, *, allowed: set[Path]) -> list[str]:
        blobs = dict(self.outputs)
        scanned = [f for f in files_under(self.tmp) if f not in allowed]
        assert any(f.is_relative_to(self.state / "runs") for f in scanned), "no run folder"
        for f in scanned:
            blobs[str(f.relative_to(self.tmp))] = f.read_bytes()
        return find_leaks(self.forms, blobs)


def _closed_port() -> int:
    """A loopback port nobody listens on (bound, then closed): the restore's SSH is refused."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Scan]:
    monkeypatch.setenv(PASS_ENV, PASSPHRASE)
    yield Scan(tmp_path)


def _run_ids(scan: Scan) -> list[str]:
    out = scan.run("status (list)", "-o", "json", "status")
    return [str(r["id"]) for r in json.loads(out)["runs"]]


def _kill_sidefx_mid_step(scan: Scan, step: str) -> str:
    """A restore (the sidefx pipeline: real engine, journal, run folder) held inside ``step``
    after its side effect, then SIGKILLed there; its run id."""
    env = scan.env(SIDEFX_DIR=str(scan.tmp), SIDEFX_HOLD=f"{step}:after-act")
    proc = subprocess.Popen(
        [*SIDEFX, "-o", "json", "restore", str(scan.site)],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_id = ""
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        ev = json.loads(line)
        run_id = run_id or str(ev.get("run_id") or "")
        if ev["kind"] == "step.progress" and ev["step"] == step and ev["data"] == {"hold": True}:
            proc.send_signal(signal.SIGKILL)
            break
    else:
        pytest.fail(f"the run ended before it held in {step}: {lines[-5:]}")
    proc.wait(timeout=30)
    err = proc.stderr.read() if proc.stderr else ""
    scan.outputs["killed restore: stdout"] = "".join(lines).encode()
    scan.outputs["killed restore: stderr"] = err.encode()
    assert proc.returncode == -signal.SIGKILL and run_id
    return run_id


def _killed_playbook(scan: Scan, run_dir: Path) -> None:
    """A real ansible-playbook of the run, with the k3s token as a secret var and the escrow
    passphrase in drboot's environment, held on a FIFO and its drboot SIGKILLed."""
    pdd = run_dir / "ansible" / "install-k3s"
    ready, go = scan.tmp / "ready", scan.tmp / "go"
    os.mkfifo(ready)
    os.mkfifo(go)
    proc = subprocess.Popen(
        [
            PYTHON,
            "-c",
            SCRIPT,
            str(pdd),
            str(ready),
            str(go),
            str(scan.inputs / "id_ed25519"),
            str(PLAYBOOK),
            TOKEN,
        ],
        env=scan.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
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
    out = proc.stdout.read() if proc.stdout else b""
    scan.outputs["killed playbook: output"] = out
    assert list(pdd.glob("secret-vars-*.json")), "the kill left the secret vars file"


def test_every_command_and_a_killed_run_leak_no_secret(scan: Scan) -> None:
    site = str(scan.site)
    # The escrow, offline, from the documented key backup plus token, deploy key, known_hosts.
    scan.run(
        "escrow import",
        "-o",
        "json",
        "escrow",
        "import",
        site,
        str(MAIN_KEY),
        "--k3s-token-file",
        str(scan.token_file),
        "--deploy-key-file",
        str(scan.deploy_file),
        "--known-hosts-file",
        str(scan.known_hosts),
    )
    scan.run("escrow import again", "escrow", "import", site, str(MAIN_KEY))
    scan.run("validate", "validate", site)
    scan.run("validate json", "-o", "json", "validate", site)
    scan.run("schema", "schema")
    scan.run("init", "init", str(scan.tmp / "init" / "site.yaml"))
    scan.run("plan", "-o", "json", "plan", site, ok=(0, 3, 4))
    scan.run("plan text", "plan", site, ok=(0, 3, 4))
    scan.run("escrow verify", "escrow", "verify", site)
    scan.run("escrow verify json", "-o", "json", "escrow", "verify", site)
    scan.run("escrow status", "-o", "json", "escrow", "status", site)
    scan.run("escrow status text", "escrow", "status", site)
    exported = scan.tmp / "export" / "main.key"
    exported.parent.mkdir()
    scan.run(
        "escrow export", "escrow", "export", site, "--format", "main.key", "--to", str(exported)
    )
    scan.run(
        "escrow export over a file",
        "escrow",
        "export",
        site,
        "--format",
        "main.key",
        "--to",
        str(exported),
        ok=(2, 3),
    )

    # The cluster credentials a wait is handed: the k3s token as a bearer token, for nothing.
    nothing = scan.inputs / "kubeconfig-nothing"
    nothing.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            "server": f"https://127.0.0.1:{_closed_port()}",
                            "insecure-skip-tls-verify": True,
                        },
                    }
                ],
                "users": [{"name": "u", "user": {"token": TOKEN}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    broken = scan.inputs / "kubeconfig-broken"
    broken.write_text(f"users: [{{user: {{token: {TOKEN}}}}}\nclusters: [:\n")
    for label, kc in (("wait on nothing", nothing), ("wait on a broken kubeconfig", broken)):
        scan.run(label, "wait", site, "--kubeconfig", str(kc), ok=(2, 3, 4, 5))
        scan.run(
            label + " json", "-o", "json", "wait", site, "--kubeconfig", str(kc), ok=(2, 3, 4, 5)
        )
    scan.run(
        "escrow status against nothing",
        "escrow",
        "status",
        site,
        "--kubeconfig",
        str(nothing),
        ok=(0, 2, 3, 4, 5),
    )
    scan.run(
        "escrow status against a broken kubeconfig",
        "escrow",
        "status",
        site,
        "--kubeconfig",
        str(broken),
        ok=(2, 3),
    )

    # A real restore: preflight opens the kit, then the one host refuses SSH (resumable).
    out = scan.run("restore", "-o", "json", "restore", site, ok=(3, 4))
    opened = [e for e in map(json.loads, out.splitlines()) if e.get("kind") == "step.done"]
    assert "preflight-escrow" in {e["step"] for e in opened}, "the restore opened the kit"

    # A restore killed inside a step, with a real playbook of it killed too; then resume.
    run_id = _kill_sidefx_mid_step(scan, STEPS[2])
    run_dir = scan.state / "runs" / run_id
    if HAS_ANSIBLE:
        _killed_playbook(scan, run_dir)
    scan.run("status of the killed run", "-o", "json", "status", run_id)
    resumed = subprocess.run(
        [*SIDEFX, "-o", "json", "resume", run_id],
        env=scan.env(SIDEFX_DIR=str(scan.tmp)),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    scan.proc("resume", resumed)
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert (scan.tmp / "acts.log").read_text().splitlines() == STEPS

    for rid in _run_ids(scan):
        scan.run(f"status {rid}", "status", rid)
        scan.run(f"report {rid}", "-o", "json", "report", rid, ok=(0, 2, 3, 4))
    scan.run("status", "status")
    scan.run("audit verify", "audit", "verify", ok=(0,))
    scan.run("audit verify json", "-o", "json", "audit", "verify")

    allowed = set(files_under(scan.inputs)) | {exported, scan.tmp / "ready", scan.tmp / "go"}
    leaks = scan.leaks(allowed=allowed)
    assert not leaks, "secret material leaked: " + "; ".join(leaks)
    # The scan does look: the export the user asked for holds the keys, the bundle does not.
    assert find_leaks(scan.forms, {"export": exported.read_bytes()})
    assert not find_leaks(scan.forms, {"bundle": scan.bundle.read_bytes()})
    if HAS_ANSIBLE:
        assert not list(run_dir.glob("ansible/*/secret-vars-*")), "resume removed them"
        assert list(run_dir.glob("ansible/*/artifacts/*/job_events/*.json")), "scanned too"


def test_the_scan_finds_each_form(tmp_path: Path) -> None:
    """The forms are what a leak looks like: each one is found inside a larger blob."""
    import base64

    forms = text_forms("token", TOKEN)
    for blob in (
        TOKEN.encode(),
        base64.b64encode(b"x" + TOKEN.encode()),
        base64.b64encode(b"xy" + TOKEN.encode() + b"tail"),
        TOKEN.encode().hex().encode(),
        b"data: " + base64.b64encode(TOKEN.encode()),
    ):
        assert find_leaks(forms, {"blob": b"prefix " + blob + b" suffix"}), blob
    assert not find_leaks(forms, {"blob": b"K10leakscan"}), "a prefix alone is no leak"
    key = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    line = key.splitlines()[2]
    assert find_leaks(pem_forms("deploy key", key), {"log": b"error near " + line})
