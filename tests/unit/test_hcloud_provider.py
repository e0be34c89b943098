"""The Hetzner Cloud provider against HcloudDouble (a local HTTP DOUBLE of the API, loopback
only, whose servers here are records: ``PaperServers``). The official ``hcloud`` library talks
to it unchanged; what is asserted is what the double saw."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bootstrap.errors import ExitCode, PermanentError, PreflightError
from bootstrap.providers import provider_for
from bootstrap.providers.cloud.labels import RUN_LABEL, SITE_LABEL
from bootstrap.providers.hcloud import HcloudHosts
from bootstrap.settings import Site
from bootstrap.siteload import load_site_text
from tests.doubles.hcloud_double import TOKEN, HcloudDouble

RUN = "oslo-20261130T014000-ab12"


@pytest.fixture
def double() -> Iterator[HcloudDouble]:
    d = HcloudDouble().start()
    yield d
    d.stop()


@pytest.fixture
def op_key(tmp_path: Path) -> Path:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def site(
    tmp_path: Path, double: HcloudDouble, op_key: Path, extra: str = "", **provider: object
) -> Site:
    fields = {
        "type": "hcloud",
        "token": {"env": "DRB_TEST_HCLOUD_TOKEN"},
        "location": "hel1",
        "endpoint": double.endpoint,
        "create_timeout": "20s",
        **provider,
    }
    text = (
        f"apiVersion: drboot.dev/v1\nname: oslo\nprovider: {fields!r}\n".replace("'", '"')
        + "escrow: {backend: age, bundle: b.age, identity_files: [id.txt]}\n"
        + 'repo: {url: "https://git.example.org/x.git"}\n'
        + f"ssh: {{private_key_file: {op_key}}}\n"
        + extra
    )
    return load_site_text(text, str(tmp_path / "site.yaml"))


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRB_TEST_HCLOUD_TOKEN", TOKEN)


def hosts(s: Site, tmp_path: Path, drill_run: str | None = None) -> HcloudHosts:
    prov = provider_for(s, tmp_path / "state", drill_run)
    assert isinstance(prov, HcloudHosts)
    return prov


def test_plan_line_and_country_come_from_the_api(
    tmp_path: Path, double: HcloudDouble, op_key: Path
) -> None:
    s = site(tmp_path, double, op_key, servers=3, extra="kubernetes: {topology: ha}\n")
    prov = hosts(s, tmp_path)
    assert prov.wanted() == ["oslo-server-1", "oslo-server-2", "oslo-server-3"]
    assert prov.countries() == {n: "FI" for n in prov.wanted()}
    line = prov.describe(prov.wanted())
    assert line == "3 x cx22 (x86) in hel1 (Helsinki, FI) at EUR 0.0071/h each, image debian-12"
    assert double.count("POST") == 0  # read-only


@pytest.mark.parametrize(
    ("provider", "token", "expected", "hint"),
    [
        ({}, "wrong-token", "token was refused", "provider.token"),
        ({"location": "mars1"}, TOKEN, "no location 'mars1'", "fsn1, nbg1, hel1, ash"),
        ({"server_type": "cx9000"}, TOKEN, "no server type 'cx9000'", "server_type"),
        ({"image": "debian-99"}, TOKEN, "no image 'debian-99'", "provider.image"),
        ({"location": "ash"}, TOKEN, "cx22 is not offered in ash", "provider.location"),
    ],
)
def test_bad_token_location_type_or_image_is_refused_before_anything_is_bought(
    tmp_path: Path,
    double: HcloudDouble,
    op_key: Path,
    monkeypatch: pytest.MonkeyPatch,
    provider: dict[str, str],
    token: str,
    expected: str,
    hint: str,
) -> None:
    monkeypatch.setenv("DRB_TEST_HCLOUD_TOKEN", token)
    prov = hosts(site(tmp_path, double, op_key, **provider), tmp_path)
    with pytest.raises(PreflightError) as err:
        prov.countries()
    assert expected in err.value.message and hint in (err.value.hint or "")
    assert err.value.exit_code == ExitCode.PREFLIGHT
    with pytest.raises(PreflightError):
        prov.create(prov.wanted(), lambda _: None)
    assert double.count("POST") == 0 and not double.servers and not double.ssh_keys
    assert token not in str(err.value) and "wrong-token" not in repr(err.value)


def test_create_labels_pins_and_finds_before_it_buys(
    tmp_path: Path, double: HcloudDouble, op_key: Path
) -> None:
    s = site(tmp_path, double, op_key, network={"ip_range": "10.0.0.0/16"},
             firewall={"operator_cidrs": ["203.0.113.7/32"]})  # fmt: skip
    prov = hosts(s, tmp_path)
    made = prov.create(prov.wanted(), lambda _: None)
    assert [h.name for h in made] == ["oslo-server-1"]
    (server,) = double.servers.values()
    assert server["labels"] == {SITE_LABEL: "oslo", "drboot.dev/role": "server"}
    assert made[0].address == server["public_net"]["ipv4"]["ip"]
    assert made[0].country == "FI" and made[0].provider_id == f"hcloud:{server['id']}"
    # the host key in the user data is the one pinned, and no other key is in it
    user_data = yaml.safe_load(double.user_data[server["id"]] or "")
    assert made[0].host_public_key == user_data["ssh_keys"]["ed25519_public"]
    op_pub = op_key.with_suffix(".pub").read_text().split()[:2]
    assert [k.split()[:2] for k in user_data["ssh_authorized_keys"]] == [op_pub]
    assert "PRIVATE KEY" not in " ".join(p.read_text() for p in (tmp_path / "state").rglob("*.pub"))
    # network, firewall, key: labelled, attached, found again
    (net,) = double.networks.values()
    (fw,) = double.firewalls.values()
    assert server["private_net"][0]["network"] == net["id"]
    assert fw["applied_to"] == [{"type": "server", "server": {"id": server["id"]}}]
    assert {r["port"] for r in fw["rules"]} == {"22", "6443", "1-65535"}
    assert [r["source_ips"] for r in fw["rules"][:2]] == [["203.0.113.7/32"]] * 2

    again = hosts(s, tmp_path)  # another process: observe finds it, create buys nothing
    assert [h.name for h in again.observe()] == ["oslo-server-1"]
    again.create(again.wanted(), lambda _: None)
    assert double.servers_created == 1
    assert len(double.networks) == len(double.firewalls) == len(double.ssh_keys) == 1


def test_a_server_requested_before_a_kill_is_used_on_resume(
    tmp_path: Path, double: HcloudDouble, op_key: Path
) -> None:
    """The process dies after POST /servers, before the server runs: a new process waits for
    that server (with the pinned key) instead of buying another."""
    double.faults.boot_delay = 1.5
    s = site(tmp_path, double, op_key)
    first = hosts(s, tmp_path, RUN)
    first._buy(  # the part of create() that ran before the kill
        first.wanted()[0],
        first.offer(),
        first._ssh_key(lambda _: None),
        None,
        None,
        lambda _: None,
    )
    pinned = first.pins.get(first.wanted()[0])
    assert [s["status"] for s in double.servers.values()] == ["initializing"]

    resumed = hosts(s, tmp_path, RUN)
    assert resumed.observe() == []  # not running yet: create() is asked
    said: list[str] = []
    (host,) = resumed.create(resumed.wanted(), said.append)
    assert double.servers_created == 1 and double.max_servers_seen == 1
    assert host.host_public_key == pinned
    assert any("exists (initializing)" in m for m in said)


def test_quota_half_way_is_a_clear_error_and_a_resume_buys_only_the_rest(
    tmp_path: Path, double: HcloudDouble, op_key: Path
) -> None:
    s = site(tmp_path, double, op_key, servers=3, extra="kubernetes: {topology: ha}\n")
    double.faults.max_servers = 2
    prov = hosts(s, tmp_path, RUN)
    with pytest.raises(PermanentError) as err:
        prov.create(prov.wanted(), lambda _: None)
    assert "limit is reached" in err.value.message
    assert f"`drboot resume {RUN}`" in (err.value.hint or "")
    assert f"`drboot teardown {RUN}` destroys what it made" in (err.value.hint or "")
    assert err.value.exit_code == ExitCode.STEP_FAILED
    assert double.servers_created == 2

    double.faults.max_servers = None  # the operator asked Hetzner for more
    resumed = hosts(s, tmp_path, RUN)
    have = {h.name for h in resumed.observe()}
    missing = [n for n in resumed.wanted() if n not in have]
    assert len(missing) == 1
    resumed.create(missing, lambda _: None)
    assert double.servers_created == 3 and len(double.servers) == 3


def test_a_server_stuck_in_initializing_ends_in_a_located_error(
    tmp_path: Path, double: HcloudDouble, op_key: Path
) -> None:
    double.faults.stuck_names = {"server-1"}
    prov = hosts(site(tmp_path, double, op_key, create_timeout="3s"), tmp_path)
    with pytest.raises(PermanentError) as err:
        prov.create(prov.wanted(), lambda _: None)
    assert "still initializing after 3 s" in err.value.message
    assert err.value.target == "oslo-server-1"


def test_a_429_burst_is_retried_after_the_reset_header_within_the_cap(
    tmp_path: Path, double: HcloudDouble, op_key: Path
) -> None:
    prov = hosts(site(tmp_path, double, op_key), tmp_path)
    prov.offer()
    double.faults.rate_limited = 2
    double.faults.rate_limit_reset_in = 1.0
    said: list[str] = []
    prov._log = said.append
    start = time.monotonic()
    before = len(double.requests)
    prov.observe()
    limited = [r for r in double.requests[before:] if r.status == 429]
    print(f"requests: {len(double.requests) - before}, of them 429: {len(limited)}")
    assert len(limited) == 2 and len(double.requests) - before == 3
    # the second try came no earlier than the reset the 429 announced
    assert double.requests[before + 1].at >= limited[0].at + 0.9
    assert time.monotonic() - start < 10
    assert sum("rate_limit_exceeded" in m for m in said) == 2

    double.faults.rate_limited = 100  # an endless burst: stop at the cap
    prov.policy = type(prov.policy)(attempts=3, max_delay=1.0)
    before = len(double.requests)
    with pytest.raises(PermanentError) as err:
        prov.observe()
    print(f"endless burst: {len(double.requests) - before} requests before giving up")
    assert len(double.requests) - before == 3
    assert "retry cap" in err.value.message


def test_5xx_and_locked_answers_are_retried(
    tmp_path: Path, double: HcloudDouble, op_key: Path
) -> None:
    prov = hosts(site(tmp_path, double, op_key), tmp_path)
    prov.policy = type(prov.policy)(base_delay=0.1)
    double.faults.server_errors = 2
    assert prov.countries() == {"oslo-server-1": "FI"}
    assert [r.status for r in double.requests[:3]] == [503, 503, 200]


def test_destroy_touches_only_the_owners_servers(
    tmp_path: Path, double: HcloudDouble, op_key: Path
) -> None:
    s = site(tmp_path, double, op_key, network={"ip_range": "10.0.0.0/16"})
    decoy = double.add_server("bergen-server-1", {SITE_LABEL: "bergen"})
    bare = double.add_server("hand-made", {})
    prod = double.add_server("oslo-server-1", {SITE_LABEL: "oslo", "drboot.dev/role": "server"})
    other_drill = double.add_server(
        "oslo-x-server-1", {SITE_LABEL: "oslo", RUN_LABEL: "oslo-20261129T000000-ffff"}
    )
    drill = hosts(s, tmp_path, RUN)
    drill.create(drill.wanted(), lambda _: None)
    assert drill.wanted() == ["oslo-20261130t014000-ab12-server-1"]
    gone = drill.destroy(lambda _: None)
    double.wait_idle()
    assert gone == ["oslo-20261130t014000-ab12-server-1"]
    assert set(double.servers) == {decoy, bare, prod, other_drill}
    assert not double.networks  # the drill's own network went with it
    assert [x.name for x in drill.labelled()] == [
        "bergen-server-1", "oslo-server-1", "oslo-x-server-1"
    ]  # fmt: skip


def test_the_token_never_reaches_errors_or_progress(
    tmp_path: Path, double: HcloudDouble, op_key: Path
) -> None:
    said: list[str] = []
    prov = hosts(site(tmp_path, double, op_key), tmp_path)
    prov.create(prov.wanted(), said.append)
    double.faults.server_errors = 50
    prov.policy = type(prov.policy)(attempts=2, base_delay=0.01)
    with pytest.raises(PermanentError) as err:
        prov.destroy(said.append)
    text = " ".join([*said, str(err.value), repr(err.value), err.value.hint or ""])
    assert TOKEN not in text


def test_site_fields_reach_the_api(tmp_path: Path, double: HcloudDouble, op_key: Path) -> None:
    """server_type, location, image, ssh_key_name, agents, network and firewall: what the
    double is asked for is what the site says."""
    s = site(
        tmp_path,
        double,
        op_key,
        location="fsn1",
        server_type="cpx31",
        image="debian-12",
        ssh_key_name="ops-laptop",
        agents=1,
        network={"ip_range": "10.1.0.0/16", "subnet": "10.1.2.0/24"},
        firewall={"operator_cidrs": ["198.51.100.0/24", "203.0.113.9/32"]},
    )
    prov = hosts(s, tmp_path)
    assert prov.wanted() == ["oslo-server-1", "oslo-agent-1"]
    made = prov.create(prov.wanted(), lambda _: None)
    assert [(h.name, h.role, h.country) for h in made] == [
        ("oslo-server-1", "server", "DE"),
        ("oslo-agent-1", "agent", "DE"),
    ]
    servers = sorted(double.servers.values(), key=lambda x: x["id"])
    assert {x["server_type"]["name"] for x in servers} == {"cpx31"}
    assert {x["location"]["name"] for x in servers} == {"fsn1"}
    assert {x["image"]["name"] for x in servers} == {"debian-12"}
    assert [x["labels"]["drboot.dev/role"] for x in servers] == ["server", "agent"]
    (key,) = double.ssh_keys.values()
    assert key["name"] == "ops-laptop"
    (net,) = double.networks.values()
    assert net["ip_range"] == "10.1.0.0/16" and net["subnets"][0]["ip_range"] == "10.1.2.0/24"
    assert [x["private_net"][0]["ip"].startswith("10.1.2.") for x in servers] == [True, True]
    (fw,) = double.firewalls.values()
    assert fw["rules"][0]["source_ips"] == ["198.51.100.0/24", "203.0.113.9/32"]


@pytest.mark.parametrize(
    ("provider", "message"),
    [
        ({"servers": 2}, "expected 1 or an odd number >= 3"),
        ({"endpoint": "http://api.example.org/v1"}, "https:// URL"),
        ({"network": {"ip_range": "10.0.0.0/16", "subnet": "10.9.0.0/24"}}, "subnet of"),
        ({"firewall": {"operator_cidrs": ["203.0.113.7/24"]}}, "CIDR form"),
        ({"token": "hunter2"}, "inline secret not allowed"),
    ],
)
def test_bad_hcloud_fields_are_refused_at_validation(
    tmp_path: Path, double: HcloudDouble, op_key: Path, provider: dict[str, object], message: str
) -> None:
    from bootstrap.sitefile.problems import SiteFileError

    with pytest.raises(SiteFileError) as err:
        site(tmp_path, double, op_key, **provider)
    shown = err.value.format() + " ".join(repr(p) for p in err.value.problems)
    assert message in shown and "hunter2" not in shown


def test_listings_follow_the_pagination_meta(
    tmp_path: Path, double: HcloudDouble, op_key: Path
) -> None:
    for i in range(60):
        double.add_server(f"old-drill-{i}", {SITE_LABEL: f"site{i}"})
    prov = hosts(site(tmp_path, double, op_key), tmp_path)
    found = prov.labelled()
    assert len(found) == 60 and {s.site for s in found} == {f"site{i}" for i in range(60)}
    assert double.count("GET", "/v1/servers") == 2  # 50 per page: two pages
