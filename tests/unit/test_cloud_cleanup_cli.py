"""`drboot teardown RUN_ID` and `drboot janitor SITE`, against HcloudDouble (a local HTTP
DOUBLE of the Hetzner Cloud API whose servers are records here)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from bootstrap.cli import Deps, cli
from bootstrap.engine.journal import Journal
from bootstrap.providers.hcloud import HcloudHosts
from bootstrap.siteload import load_site_text
from tests.doubles.hcloud_double import TOKEN, HcloudDouble

RUN = "oslo-20261130T014000-ab12"
SITE = """\
apiVersion: drboot.dev/v1
name: oslo
provider: {{type: hcloud, token: {{env: DRB_TEST_HCLOUD_TOKEN}}, location: hel1,
           endpoint: "{endpoint}"}}
escrow: {{backend: age, bundle: b.age, identity_files: [id.txt]}}
repo: {{url: "https://git.example.org/x.git"}}
ssh: {{private_key_file: {key}}}
"""


@pytest.fixture
def double(monkeypatch: pytest.MonkeyPatch) -> Iterator[HcloudDouble]:
    monkeypatch.setenv("DRB_TEST_HCLOUD_TOKEN", TOKEN)
    d = HcloudDouble().start()
    yield d
    d.stop()


def _journalled(state: Path, text: str, pipeline: str, run_id: str = RUN) -> None:
    j = Journal(state / "journal.sqlite")
    j.create_run(run_id, "oslo", pipeline, ["provision"], {"site_dir": str(state)}, "digest")
    j.close()
    run_dir = state / "runs" / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "site.yaml").write_text(text)


def _site_text(tmp_path: Path, double: HcloudDouble) -> str:
    key = tmp_path / "op"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return SITE.format(endpoint=double.endpoint, key=key)


def _invoke(state: Path, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, ["--state-dir", str(state), "-o", "json", *args], obj=Deps())
    return res.exit_code, res.output


def test_teardown_destroys_exactly_the_drill_runs_servers(
    tmp_path: Path, double: HcloudDouble
) -> None:
    state = tmp_path / "state"
    text = _site_text(tmp_path, double)
    _journalled(state, text, "drill")
    site = load_site_text(text, str(tmp_path / "s.yaml"))
    HcloudHosts(site, state, RUN).create(["oslo-20261130t014000-ab12-server-1"], lambda _: None)
    keep = {
        double.add_server("oslo-server-1", {"drboot.dev/site": "oslo"}),  # production
        double.add_server("bergen-server-1", {"drboot.dev/site": "bergen"}),
        double.add_server("hand-made", {}),
    }
    code, out = _invoke(state, "teardown", RUN)
    assert code == 0, out
    doc = json.loads(out)
    assert doc["destroyed"] == ["oslo-20261130t014000-ab12-server-1"]
    assert doc["provider"] == "hcloud" and TOKEN not in out
    double.wait_idle()
    assert set(double.servers) == keep
    audit = (state / "audit.jsonl").read_text()
    assert "drill torn down" in audit and RUN in audit

    code, out = _invoke(state, "teardown", RUN)  # again: nothing left, nothing touched
    assert code == 0 and json.loads(out)["destroyed"] == []
    assert set(double.servers) == keep


def test_teardown_refuses_a_restore_run_and_an_unknown_one(
    tmp_path: Path, double: HcloudDouble
) -> None:
    state = tmp_path / "state"
    _journalled(state, _site_text(tmp_path, double), "restore")
    prod = double.add_server("oslo-server-1", {"drboot.dev/site": "oslo"})
    code, out = _invoke(state, "teardown", RUN)
    assert code == 2 and "is a restore, not a drill" in out
    code, out = _invoke(state, "teardown", "oslo-nope")
    assert code == 2 and "no run oslo-nope" in out
    assert set(double.servers) == {prod} and double.count("DELETE") == 0


def test_janitor_lists_drboot_servers_older_than_the_age_read_only(
    tmp_path: Path, double: HcloudDouble
) -> None:
    site = tmp_path / "oslo.yaml"
    site.write_text(_site_text(tmp_path, double))
    now = datetime.now(UTC)
    double.add_server(
        "oslo-old-server-1",
        {"drboot.dev/site": "oslo", "drboot.dev/run": "oslo-20261120T000000-aaaa"},
        created=now - timedelta(days=3),
    )
    double.add_server(
        "bergen-server-1", {"drboot.dev/site": "bergen"}, created=now - timedelta(days=9)
    )
    double.add_server("oslo-new-server-1", {"drboot.dev/site": "oslo"})  # just made
    double.add_server("hand-made", {}, created=now - timedelta(days=30))  # not drboot's
    code, out = _invoke(tmp_path / "state", "janitor", str(site), "--older-than", "2d")
    assert code == 0, out
    rows = json.loads(out)["servers"]
    assert [(r["name"], r["site"], r["run"]) for r in rows] == [
        ("bergen-server-1", "bergen", None),
        ("oslo-old-server-1", "oslo", "oslo-20261120T000000-aaaa"),
    ]
    assert 71 < rows[1]["age_hours"] < 73
    assert double.count("DELETE") == 0 and double.count("POST") == 0
    code, out = _invoke(tmp_path / "state", "janitor", str(site), "--older-than", "soon")
    assert code == 2 and "expected a duration" in out
