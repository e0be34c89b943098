"""`drboot drill` through the Hetzner Cloud code path, end to end.

The provider talks to HcloudDouble (a local HTTP DOUBLE of the Hetzner Cloud API, loopback
only) through the official ``hcloud`` library; the double's servers are REAL lab hosts booted
with the user data drboot sent as their cloud-init NoCloud seed (``LabServers``). drboot runs
as a separate process (``tests.doubles.drboot_lab_cluster``: the CLI with the lab's k3s and
controller STAND-INS as the cluster plug-in of ``hcloud``, test only), so a kill is a real
kill and the double outlives it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bootstrap.lab.hosts import Lab
from bootstrap.lab.seed import OVERLAY, seed
from bootstrap.lab.standins.process import StandinProcess
from tests.doubles.drboot_lab_cluster import standin_dir
from tests.doubles.hcloud_double import TOKEN, HcloudDouble
from tests.doubles.servers import LabServers
from tests.integration.conftest_lab import lab_missing_reason
from tests.integration.labrun import REPO, LiveRun, run_id, step_events

pytestmark = [pytest.mark.integration, pytest.mark.lab]

SITE = """\
apiVersion: drboot.dev/v1
kind: Site
name: {name}
provider:
  type: hcloud
  token: {{env: DRB_HCLOUD_TOKEN}}
  location: hel1
  server_type: cx22
  servers: {servers}
  endpoint: {endpoint}
  create_timeout: 3m
{network}kubernetes:
  topology: {topology}
  install: airgap
  airgap_dir: {root}
  api_ready_timeout: 3m
disk_gate: {{runtime_limit: 8s, p99_fdatasync_ms: 2000}}
cpu_gate: {{window: 1s, max_steal_percent: 100, min_throughput_ratio: 0.05}}
sovereignty: {{allowed_countries: [FI]}}
escrow:
  backend: age
  bundle: {root}/escrow/kit.age
  identity_files: [{root}/escrow/identity.txt]
repo:
  url: file://{root}/config-repo
  path: {overlay}
  country: FI
ssh:
  private_key_file: {root}/operator
sync_wait: {{stable_for: 3s}}
"""


@dataclass
class CloudSite:
    name: str
    root: Path
    state: Path
    site: Path
    env: dict[str, str]
    double: HcloudDouble
    lab: Lab

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "tests.doubles.drboot_lab_cluster", "-o", "json", *args]

    def drboot(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), env=self.env, cwd=REPO, capture_output=True,
                              text=True, timeout=timeout)  # fmt: skip

    def start(self, *args: str) -> LiveRun:
        return LiveRun(subprocess.Popen(
            self.argv(*args), env=self.env, cwd=REPO, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        ))  # fmt: skip

    def drboot_servers(self) -> list[dict[str, Any]]:
        labelled = self.double.labelled()
        return [s for s in labelled if s["labels"].get("drboot.dev/site") == self.name]


def _cloud_site(tmp: Path, servers: int = 1, network: bool = False) -> Iterator[CloudSite]:
    reason = lab_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    name = f"hc{os.getpid() % 100000}"
    root, state = tmp / "root", tmp / "state"
    seed(root, name)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "operator")],
                   check=True)  # fmt: skip
    lab = Lab.create(f"{name}c", tmp / "cloud-lab")
    double = HcloudDouble(backend=LabServers(lab)).start()
    site = tmp / f"{name}.yaml"
    site.write_text(SITE.format(
        name=name, servers=servers, endpoint=double.endpoint, root=root, overlay=OVERLAY,
        topology="ha" if servers > 1 else "single",
        network="  network: {ip_range: 10.0.0.0/16, subnet: 10.0.1.0/24}\n" if network else "",
    ))  # fmt: skip
    env = dict(os.environ)
    env.update(DRBOOT_STATE_DIR=str(state), DRB_HCLOUD_TOKEN=TOKEN,
               PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))  # fmt: skip
    cs = CloudSite(name, root, state, site, env, double, lab)
    try:
        yield cs
    finally:
        StandinProcess(standin_dir(state, name)).stop()
        double.wait_idle()
        double.stop()
        lab.down()


@pytest.fixture
def single(tmp_path: Path) -> Iterator[CloudSite]:
    yield from _cloud_site(tmp_path)


@pytest.fixture
def ha(tmp_path: Path) -> Iterator[CloudSite]:
    yield from _cloud_site(tmp_path, servers=3, network=True)


def _done(proc: subprocess.CompletedProcess[str], step: str) -> bool:
    return any(e["kind"] == "step.done" for e in step_events(proc, step))


def _apps(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [e["message"] for e in step_events(proc, "wait-synced")]


def test_drill_through_the_hetzner_double_reaches_synced_and_leaves_nothing(
    single: CloudSite,
) -> None:
    cs = single
    decoy = cs.double.add_server("bergen-server-1", {"drboot.dev/site": "bergen"})
    bare = cs.double.add_server("hand-made", {})

    plan = cs.drboot("plan", "--pipeline", "drill", str(cs.site))
    assert plan.returncode == 0, plan.stderr + plan.stdout[-2000:]
    (provision,) = [s for s in json.loads(plan.stdout)["steps"] if s["step"] == "provision"]
    (change,) = provision["changes"]
    assert change.startswith(f"hcloud: create 1 host(s): {cs.name}-"), change
    assert change.endswith(
        "-server-1 (1 x cx22 (x86) in hel1 (Helsinki, FI) at EUR 0.0071/h each, image debian-12)"
    ), change
    assert cs.double.count("POST") == 0  # a plan buys nothing

    # a burst of 429s as the drill starts: each retry waits for the announced reset
    cs.double.faults.rate_limited = 3
    cs.double.faults.rate_limit_reset_in = 2.0
    before = len(cs.double.requests)
    res = cs.drboot("drill", str(cs.site))
    assert res.returncode == 0, res.stderr[-3000:] + res.stdout[-5000:]
    rid = run_id(res)
    seen = cs.double.requests[before:]
    limited = [i for i, r in enumerate(seen) if r.status == 429]
    print(f"drill {rid}: {len(seen)} API requests, {len(limited)} answered 429")
    assert len(limited) == 3
    for i in limited:  # the next try came after the reset the 429 announced (whole seconds)
        assert seen[i + 1].at >= seen[i].at + 1.0
    for step in ("provision", "connect", "install-k3s", "wait-synced", "teardown"):
        assert _done(res, step), step
    assert any("Synced+Healthy" in m for m in _apps(res)), _apps(res)
    # the connection verified the host key drboot pinned before the server existed
    connected = [e for e in step_events(res, "connect") if e["kind"] == "step.done"]
    assert connected
    assert cs.double.servers_created == 1 and cs.double.max_per_site[cs.name] == 1
    created = [r for r in cs.double.requests if r.method == "POST" and r.path == "/v1/servers"]
    assert len(created) == 1
    # neither the token nor a host private key is anywhere in drboot's state (journal, audit
    # log, run folders, pinned keys) or its output
    secrets = [TOKEN.encode()]
    for text in cs.double.user_data.values():  # what the double was sent, private keys in it
        private = yaml.safe_load(text or "")["ssh_keys"]["ed25519_private"]
        secrets += [line.encode() for line in private.splitlines()[1:-1] if len(line) > 20]
    assert len(secrets) > 2
    for path in (p for p in cs.state.rglob("*") if p.is_file()):
        data = path.read_bytes()
        assert not [s for s in secrets if s in data], path
    shown = (res.stdout + res.stderr).encode()
    assert not [s for s in secrets if s in shown]
    # nothing of the drill is left: no drboot server of this site, no lab host
    cs.double.wait_idle()
    assert cs.drboot_servers() == []
    assert cs.lab.hosts() == []
    assert set(cs.double.servers) == {decoy, bare}


def test_sigkill_between_create_and_running_then_resume_uses_the_same_server(
    single: CloudSite,
) -> None:
    cs = single
    cs.double.faults.boot_delay = 4.0  # the server stays initializing a while
    live = cs.start("drill", str(cs.site), "--until", "connect")
    live.wait_for(
        lambda e: e.get("step") == "provision" and "creating server" in e.get("message", ""),
        timeout=300, what="the create request",
    )  # fmt: skip
    # the double has the server (the request went out): kill drboot before it runs
    assert cs.double.server_created.wait(120)
    live.proc.send_signal(signal.SIGKILL)
    killed = live.finish(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    rid = live.run_id
    assert cs.double.servers_created == 1
    assert [s["status"] for s in cs.drboot_servers()] in (["initializing"], ["starting"])

    res = cs.drboot("resume", rid, "--until", "connect")
    assert res.returncode == 0, res.stderr[-3000:] + res.stdout[-5000:]
    assert any("exists" in e.get("message", "") for e in step_events(res, "provision"))
    assert cs.double.servers_created == 1 and cs.double.max_per_site[cs.name] == 1
    (server,) = cs.drboot_servers()
    assert server["status"] == "running"

    down = cs.drboot("teardown", rid)
    assert down.returncode == 0, down.stderr[-3000:] + down.stdout[-3000:]
    cs.double.wait_idle()
    assert cs.drboot_servers() == [] and cs.lab.hosts() == []


def test_quota_half_way_through_ha_then_resume_completes_without_duplicates(
    ha: CloudSite,
) -> None:
    cs = ha
    cs.double.faults.max_servers = 2
    res = cs.drboot("drill", str(cs.site))
    assert res.returncode == 4, res.stderr[-3000:] + res.stdout[-5000:]
    failed = [e for e in step_events(res, "provision") if e["kind"] == "step.failed"]
    assert failed and "limit is reached" in failed[0]["message"], res.stdout[-3000:]
    assert "resume" in failed[0]["data"]["hint"]
    assert TOKEN not in res.stdout + res.stderr
    rid = run_id(res)
    assert len(cs.drboot_servers()) == 2

    cs.double.faults.max_servers = None  # the operator had the limit raised
    again = cs.drboot("resume", rid)
    assert again.returncode == 0, again.stderr[-3000:] + again.stdout[-5000:]
    assert _done(again, "wait-synced") and _done(again, "teardown")
    assert cs.double.servers_created == 3 and cs.double.max_per_site[cs.name] == 3
    cs.double.wait_idle()
    assert cs.drboot_servers() == [] and cs.lab.hosts() == []
    assert not cs.double.networks  # the drill's private network went with it
