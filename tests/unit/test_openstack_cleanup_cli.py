"""`drboot teardown RUN_ID` and `drboot janitor SITE` for an OpenStack site, against
OpenStackDouble (a local HTTP DOUBLE of Keystone/Nova/Glance/Neutron whose servers are
records here)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bootstrap.providers.openstack import OpenStackHosts
from bootstrap.siteload import load_site_text
from tests.doubles.openstack import DoubleCloud, OpenStackDouble
from tests.unit.test_cloud_cleanup_cli import RUN, _invoke, _journalled

PASSWORD = "Cleanup-Password-31d7"
SITE = """\
apiVersion: drboot.dev/v1
name: oslo
provider:
  type: openstack
  auth: {{auth_url: "{auth_url}", username: drboot, password: {{env: DRB_TEST_OS_PW}},
          project_name: drboot}}
  region: RegionOne
  flavor: m1.small
  image: debian-12
  network: public
  operator_cidrs: [203.0.113.7/32]
escrow: {{backend: age, bundle: b.age, identity_files: [id.txt]}}
repo: {{url: "https://git.example.org/x.git"}}
ssh: {{private_key_file: {key}}}
"""


@pytest.fixture
def double(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenStackDouble]:
    monkeypatch.setenv("DRB_TEST_OS_PW", PASSWORD)
    with OpenStackDouble(DoubleCloud(password=PASSWORD)) as d:
        yield d


def _site_text(tmp_path: Path, double: OpenStackDouble) -> str:
    key = tmp_path / "op"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return SITE.format(auth_url=double.auth_url, key=key)


def test_teardown_destroys_exactly_the_drill_runs_servers(
    tmp_path: Path, double: OpenStackDouble
) -> None:
    state = tmp_path / "state"
    text = _site_text(tmp_path, double)
    _journalled(state, text, "drill")
    site = load_site_text(text, str(tmp_path / "s.yaml"))
    drill = OpenStackHosts(site, state, RUN, poll_interval=0.05)
    drill.create(drill.wanted(), lambda _: None)
    cloud = double.cloud
    keep = {
        cloud.add_server("oslo-server-1", {"drboot.dev/site": "oslo"}).id,  # production
        cloud.add_server("bergen-server-1", {"drboot.dev/site": "bergen"}).id,
        cloud.add_server("hand-made", {}).id,
    }
    code, out = _invoke(state, "teardown", RUN)
    assert code == 0, out
    doc = json.loads(out)
    assert doc["destroyed"] == ["oslo-20261130t014000-ab12-server-1"]
    assert doc["provider"] == "openstack" and PASSWORD not in out
    assert set(cloud.servers) == keep

    code, out = _invoke(state, "teardown", RUN)  # again: nothing left, nothing touched
    assert code == 0 and json.loads(out)["destroyed"] == []
    assert set(cloud.servers) == keep
    assert PASSWORD not in (state / "audit.jsonl").read_text()


def test_janitor_lists_drboot_servers_older_than_the_age_read_only(
    tmp_path: Path, double: OpenStackDouble
) -> None:
    site = tmp_path / "oslo.yaml"
    site.write_text(_site_text(tmp_path, double))
    now = datetime.now(UTC)
    cloud = double.cloud
    cloud.add_server("oslo-old-server-1", {"drboot.dev/site": "oslo",
                     "drboot.dev/run": "oslo-20261120T000000-aaaa"},
                     created=now - timedelta(days=3))  # fmt: skip
    cloud.add_server("bergen-server-1", {"drboot.dev/site": "bergen"},
                     created=now - timedelta(days=9))  # fmt: skip
    cloud.add_server("oslo-new-server-1", {"drboot.dev/site": "oslo"})  # just made
    cloud.add_server("hand-made", {}, created=now - timedelta(days=30))  # not drboot's
    code, out = _invoke(tmp_path / "state", "janitor", str(site), "--older-than", "2d")
    assert code == 0, out
    rows = json.loads(out)["servers"]
    assert [(r["name"], r["site"], r["run"]) for r in rows] == [
        ("bergen-server-1", "bergen", None),
        ("oslo-old-server-1", "oslo", "oslo-20261120T000000-aaaa"),
    ]
    assert 71 < rows[1]["age_hours"] < 73 and rows[0]["provider_id"].startswith("openstack:")
    assert cloud.count("DELETE", "") == 0 and cloud.count("POST", "/compute") == 0
