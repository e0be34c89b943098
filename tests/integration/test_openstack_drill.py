"""`drboot drill` through the OpenStack code path, onto real lab hosts.

OpenStackDouble (a local HTTP double of Keystone, Nova, Glance and Neutron, on loopback) boots
each server it is asked for as a REAL lab host (``LabServers``: Debian under systemd-nspawn,
the user data drboot sent applied by the real cloud-init from a NoCloud seed). The k3s binary
and the controllers are the lab's stand-ins (``tests.doubles.drboot_lab_cluster_openstack``);
everything else is the production path: openstacksdk, the provider, SSH with the host key
pinned through the user data, Ansible, the real API server.

The drill is SIGKILLed after it asked Nova for the server and before the server is ACTIVE
(the double holds it in BUILD); ``resume`` waits for that same server instead of buying a
second, reaches every app Synced+Healthy, and its teardown leaves no drboot server in the
double and no lab host behind.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bootstrap.lab.hosts import Lab
from bootstrap.lab.seed import OVERLAY, seed
from bootstrap.lab.standins.process import StandinProcess
from tests.doubles.drboot_lab_cluster import standin_dir
from tests.doubles.openstack import DoubleCloud, OpenStackDouble
from tests.doubles.servers import LabServers
from tests.integration.conftest_lab import lab_missing_reason
from tests.integration.labrun import REPO, LiveRun, events, run_id, step_events
from tests.leaks import assert_no_leak, pem_forms, text_forms

pytestmark = [pytest.mark.integration, pytest.mark.lab]

NAME = "osdrill"
PASSWORD = "Os-Drill-Password-7f3a9c"
RUNNER = "tests.doubles.drboot_lab_cluster_openstack"

SITE = """\
apiVersion: drboot.dev/v1
kind: Site
name: {name}
provider:
  type: openstack
  auth:
    auth_url: {auth_url}
    username: drboot
    password: {{file: {password}}}
    project_name: drboot
  region: RegionOne
  flavor: m1.small
  image: debian-12
  network: public
  operator_cidrs: [127.0.0.1/32]
  servers: {servers}
  build_timeout: 5m
kubernetes:
  topology: {topology}
  install: airgap
  airgap_dir: {airgap}
  api_ready_timeout: 3m
disk_gate:
  runtime_limit: 8s
cpu_gate: {{window: 1s, max_steal_percent: 100, min_throughput_ratio: 0.05}}
escrow:
  backend: age
  bundle: {bundle}
  identity_files: [{identity}]
repo:
  url: {repo}
  path: {overlay}
ssh:
  private_key_file: {key}
"""


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    reason = lab_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    lab = Lab.create(f"os{os.getpid() % 100000}", tmp_path / "lab")
    try:
        yield lab
    finally:
        lab.down()


def _outputs(state: Path, rid: str, step: str) -> dict[str, Any]:
    db = sqlite3.connect(state / "journal.sqlite")
    try:
        row = db.execute(
            "SELECT outputs FROM steps WHERE run_id=? AND step_id=?", (rid, step)
        ).fetchone()
    finally:
        db.close()
    out: dict[str, Any] = json.loads(row[0])
    return out


@dataclass
class OsSite:
    """A site file for provider openstack pointing at a running OpenStackDouble."""

    cloud: DoubleCloud
    double: OpenStackDouble
    site: Path
    state: Path
    env: dict[str, str]

    def start(self, *args: str) -> LiveRun:
        return LiveRun(subprocess.Popen(
            [sys.executable, "-m", RUNNER, "-o", "json", *args],
            env=self.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))  # fmt: skip

    def drboot(self, *args: str, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
        return self.start(*args).finish(timeout=timeout)


@contextmanager
def os_site(lab: Lab, tmp_path: Path, servers: int = 1) -> Iterator[OsSite]:
    made = seed(tmp_path / "seed", NAME, key_bits=2048)
    key = tmp_path / "operator"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    password = tmp_path / "os-password"
    password.write_text(PASSWORD + "\n")
    password.chmod(0o600)
    (tmp_path / "airgap").mkdir()
    state = tmp_path / "state"
    env = dict(os.environ, DRBOOT_STATE_DIR=str(state))
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    cloud = DoubleCloud(password=PASSWORD, backend=LabServers(lab, boot_timeout=180, prefix="os"))
    with OpenStackDouble(cloud) as double:
        site = tmp_path / f"{NAME}.yaml"
        site.write_text(SITE.format(
            name=NAME, auth_url=double.auth_url, password=password, airgap=tmp_path / "airgap",
            bundle=made.bundle, identity=made.identity, repo=made.repo_url, overlay=OVERLAY,
            key=key, servers=servers, topology="ha" if servers > 1 else "single",
        ))  # fmt: skip
        try:
            yield OsSite(cloud, double, site, state, env)
        finally:
            StandinProcess(standin_dir(state, NAME)).stop()


def test_drill_killed_while_the_server_builds_resumes_onto_the_same_server(
    lab: Lab, tmp_path: Path
) -> None:
    with os_site(lab, tmp_path) as os_:
        cloud, site, state = os_.cloud, os_.site, os_.state
        decoy = cloud.add_server("bergen-server-1", {"drboot.dev/site": "bergen"})
        bare = cloud.add_server("hand-made", {})
        # 0. The plan says what would be bought, and buys nothing.
        plan = os_.drboot("plan", "--pipeline", "drill", str(site))
        assert plan.returncode == 0, plan.stderr + plan.stdout[-2000:]
        (provision,) = [s for s in json.loads(plan.stdout)["steps"] if s["step"] == "provision"]
        (change,) = provision["changes"]
        assert change.startswith(f"openstack: create 1 host(s): {NAME}-"), change
        assert "(1 x m1.small (1 vCPU, 2048 MiB RAM, 20 GB disk) in RegionOne" in change
        assert cloud.count("POST", "/compute") == cloud.count("POST", "/network") == 0
        # 1. The drill asks for the server; the double holds it in BUILD; SIGKILL.
        cloud.faults.stuck_in_build.add("*")  # whatever name the drill gives it
        first = os_.start("drill", str(site))
        ev = first.wait_for(
            lambda e: e.get("step") == "provision" and "creating server" in
            str(e.get("message")), timeout=300, what="the server create",
        )  # fmt: skip
        name = str(ev["message"]).split()[2]
        rid = first.run_id
        assert name.startswith(f"{NAME}-") and name.endswith("-server-1")
        # wait until Nova has the server (the POST answered), still in BUILD
        _wait_for_server(cloud, name)
        first.proc.send_signal(signal.SIGKILL)
        killed = first.finish(timeout=60)
        assert killed.returncode == -signal.SIGKILL
        (building,) = cloud.labelled(NAME)
        assert building.status == "BUILD" and building.metadata["drboot.dev/run"] == rid
        host_private = _user_data_private_key(building.user_data)

        # 2. The server boots; resume waits for it (no second create) and runs to the end.
        cloud.finish_build(name)
        resumed = os_.drboot("resume", rid)
        out = resumed.stdout + resumed.stderr
        assert resumed.returncode == 0, resumed.stderr[-3000:] + resumed.stdout[-5000:]
        assert cloud.count("POST", "/servers", 202) == 1, "a second server was bought"
        said = [e["message"] for e in step_events(resumed, "provision")]
        assert any(f"server {name} exists (BUILD)" in m or f"server {name} exists (ACTIVE)"
                   in m for m in said), said  # fmt: skip
        provisioned = _outputs(state, rid, "provision")["hosts"]
        assert [h["provider_id"] for h in provisioned] == [
            f"openstack:RegionOne/{building.id}"
        ]
        connected = _outputs(state, rid, "connect")["host_keys"][name]
        assert connected["source"] == "provider" and connected["key"] in " ".join(
            building.user_data.decode().split()
        )
        waited = _outputs(state, rid, "wait-synced")
        apps = waited["apps"]
        assert apps and all(
            (a["sync"], a["health"]) == ("Synced", "Healthy") for a in apps.values()
        ), apps
        done = [e for e in step_events(resumed, "teardown") if e["kind"] == "step.done"]
        assert done and name in done[0]["message"], out[-3000:]
        finished = next(e for e in events(resumed) if e["kind"] == "run.finished")
        assert finished["data"]["exit_code"] == 0

        # 3. Nothing of the drill is left; the decoy and the unlabelled server are.
        assert cloud.labelled(NAME) == []
        assert set(cloud.servers) == {decoy.id, bare.id}
        assert lab.hosts() == [], [h.name for h in lab.hosts()]
        assert run_id(resumed) == rid
        print(f"requests to the double: {len(cloud.requests)}; "
              f"servers created: {cloud.count('POST', '/servers', 202)}")  # fmt: skip

        # 4. Neither the cloud password nor the host's private key is in drboot's state
        # or output (the public half is pinned there, the private half went to Nova).
        forms = text_forms("openstack password", PASSWORD)
        forms += pem_forms("server host key", host_private.encode())
        assert_no_leak(forms, killed.stdout.encode(), killed.stderr.encode(),
                       out.encode(), plan.stdout.encode(), state=state)  # fmt: skip


def test_quota_half_way_through_ha_then_resume_completes_without_duplicates(
    lab: Lab, tmp_path: Path
) -> None:
    with os_site(lab, tmp_path, servers=3) as os_:
        cloud = os_.cloud
        # the limits API says there is room; Nova refuses the third server (someone else took
        # the rest meanwhile): the checks before buying cannot see it coming
        cloud.faults.max_instances, cloud.faults.reported_max_instances = 2, 10
        # kept for the resume (without the flag a failed drill tears down: the Hetzner test)
        res = os_.drboot("drill", str(os_.site), "--keep-on-failure")
        assert res.returncode == 4, res.stderr[-3000:] + res.stdout[-5000:]
        failed = [e for e in step_events(res, "provision") if e["kind"] == "step.failed"]
        assert failed, res.stdout[-3000:]
        assert "Quota exceeded for instances" in failed[0]["message"]
        assert "-server-3' (POST /servers)" in failed[0]["message"]
        assert "resume" in failed[0]["data"]["hint"]
        assert PASSWORD not in res.stdout + res.stderr
        rid = run_id(res)
        assert len(cloud.labelled(NAME)) == 2

        cloud.faults.max_instances = cloud.faults.reported_max_instances = 10  # raised
        again = os_.drboot("resume", rid)
        assert again.returncode == 0, again.stderr[-3000:] + again.stdout[-5000:]
        apps = _outputs(os_.state, rid, "wait-synced")["apps"]
        assert apps and all(
            (a["sync"], a["health"]) == ("Synced", "Healthy") for a in apps.values()
        ), apps
        assert cloud.count("POST", "/servers", 202) == 3  # two, then only the missing one
        assert cloud.labelled(NAME) == [] and lab.hosts() == []
        print(f"quota half-way: {cloud.count('POST', '/servers', 403)} refused create(s), "
              f"{cloud.count('POST', '/servers', 202)} servers bought in all")  # fmt: skip


def _wait_for_server(cloud: DoubleCloud, name: str) -> None:
    from tests.waiting import wait_until

    wait_until(lambda: any(s.name == name for s in cloud.servers_named()), timeout=120,
               what=f"server {name} in the double")  # fmt: skip


def _user_data_private_key(user_data: bytes | None) -> str:
    import yaml

    assert user_data is not None
    data = yaml.safe_load(user_data)
    return str(data["ssh_keys"]["ed25519_private"])
