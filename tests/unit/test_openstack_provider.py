"""The OpenStack provider against OpenStackDouble (a local HTTP double, loopback only).

The real client library (openstacksdk, pinned) talks to the double unchanged; these tests
read the double's state and request log to show what the provider bought, found, refused and
destroyed, and how it behaved under 429s, quota errors and servers that never become ACTIVE.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from bootstrap.adapters.openstack import (
    Credentials,
    OpenStackAPI,
    OpenStackAuthError,
    OpenStackQuotaError,
)
from bootstrap.errors import ExitCode, PermanentError, PreflightError, TransientError, WaitTimeout
from bootstrap.providers import provider_for
from bootstrap.providers.cloud.labels import RUN_LABEL as RUN
from bootstrap.providers.cloud.labels import SITE_LABEL as SITE
from bootstrap.providers.cloud.retry import CloudRetryPolicy
from bootstrap.providers.openstack import OpenStackHosts
from bootstrap.siteload import load_site_text
from tests.doubles.openstack import DoubleCloud, OpenStackDouble
from tests.leaks import assert_no_leak, pem_forms, text_forms

PASSWORD_ENV = "DRBOOT_TEST_OS_PASSWORD"


@pytest.fixture
def double() -> Iterator[OpenStackDouble]:
    with OpenStackDouble(DoubleCloud(password="s3cret-Double-Pass-1")) as d:
        yield d


@pytest.fixture
def ssh_key(tmp_path: Path) -> Path:
    key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "id_ed25519"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


def site_text(double: OpenStackDouble, key: Path, extra: str = "", servers: int = 1,
              name: str = "oslo") -> str:  # fmt: skip
    topology = "ha" if servers > 1 else "single"
    return f"""\
apiVersion: drboot.dev/v1
name: {name}
provider:
  type: openstack
  auth:
    auth_url: {double.auth_url}
    username: {double.cloud.username}
    password: {{env: {PASSWORD_ENV}}}
    project_name: {double.cloud.project}
  region: RegionOne
  country: "NO"
  flavor: m1.small
  image: debian-12
  network: public
  operator_cidrs: [203.0.113.7/32]
  servers: {servers}
  build_timeout: 3s
{extra}
kubernetes: {{topology: {topology}}}
ssh: {{private_key_file: {key}}}
escrow: {{backend: age, bundle: b.age, identity_files: [id.txt]}}
repo: {{url: "https://git.example.org/x.git"}}
"""


def make(double: OpenStackDouble, key: Path, monkeypatch: pytest.MonkeyPatch, *,
         extra: str = "", servers: int = 1, run_id: str | None = None,
         password: str | None = None, name: str = "oslo",
         sleep: list[float] | None = None) -> OpenStackHosts:  # fmt: skip
    monkeypatch.setenv(PASSWORD_ENV, password or double.cloud.password)
    site = load_site_text(site_text(double, key, extra, servers, name), "/s/site.yaml")
    prov = OpenStackHosts(site, state(key), run_id, poll_interval=0.05)
    if sleep is not None:  # record the waits the retry asks for instead of sleeping them
        api = prov.api()
        api.sleep = sleep.append
    return prov


def state(key: Path) -> Path:
    """The state folder of the tests' runs (beside the operator key)."""
    return key.parent / "state"


def posts(double: OpenStackDouble, path: str) -> int:
    return double.cloud.count("POST", path)


# --------------------------------------------------------------------------- create / find


def test_create_finds_before_it_buys_and_a_rerun_buys_nothing(
    double: OpenStackDouble, ssh_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prov = make(double, ssh_key, monkeypatch, servers=3)
    assert prov.wanted() == ["oslo-server-1", "oslo-server-2", "oslo-server-3"]
    assert prov.observe() == []
    plan = prov.describe(prov.wanted())
    assert plan.startswith("3 x m1.small (1 vCPU, 2048 MiB RAM, 20 GB disk) in RegionOne")
    assert posts(double, "/compute") == 0  # the plan line is read-only
    hosts = prov.create(prov.wanted(), lambda m: None)
    assert [h.name for h in hosts] == ["oslo-server-1", "oslo-server-2", "oslo-server-3"]
    assert all(h.address.startswith("192.0.2.") and h.country == "NO" for h in hosts)
    labelled = double.cloud.labelled("oslo")
    assert sorted(s.name for s in labelled) == ["oslo-server-1", "oslo-server-2", "oslo-server-3"]
    assert {s.metadata["drboot.dev/role"] for s in labelled} == {"server"}
    assert RUN not in labelled[0].metadata  # a restore is not a drill

    again = make(double, ssh_key, monkeypatch, servers=3)  # a re-run: a new process
    assert [h.name for h in again.observe()] == prov.wanted()
    before = posts(double, "/servers")
    rerun = again.create(["oslo-server-2"], lambda m: None)  # even when asked, it finds it
    assert posts(double, "/servers") == before == 3
    assert rerun[0].provider_id == hosts[1].provider_id


def test_the_host_key_is_made_by_drboot_pinned_first_and_handed_over_in_user_data(
    double: OpenStackDouble, ssh_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prov = make(double, ssh_key, monkeypatch)
    (host,) = prov.create(prov.wanted(), lambda m: None)
    (server,) = double.cloud.labelled("oslo")
    assert server.user_data is not None
    data = yaml.safe_load(server.user_data)  # what cloud-init on the server reads
    assert server.user_data.startswith(b"#cloud-config\n")
    assert data["ssh_keys"]["ed25519_public"] == host.host_public_key
    assert host.host_public_key is not None and host.host_public_key.startswith("ssh-ed25519 ")
    # the public half is kept for a resume (a new process reads it back); the private half
    # went to the server only
    again = make(double, ssh_key, monkeypatch)
    assert [h.host_public_key for h in again.observe()] == [host.host_public_key]
    private = data["ssh_keys"]["ed25519_private"]
    assert_no_leak(pem_forms("host private key", private.encode()), state=state(ssh_key))
    prov.destroy(lambda m: None)
    assert make(double, ssh_key, monkeypatch).pins.get("oslo-server-1") is None  # type: ignore[union-attr]


def test_keypair_network_and_security_group_are_found_or_created_once(
    double: OpenStackDouble, ssh_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, double.cloud.password)
    site = load_site_text(
        site_text(double, ssh_key, "  private_cidr: 10.88.0.0/24").replace(
            "operator_cidrs: [203.0.113.7/32]",
            "operator_cidrs: [203.0.113.7/32, 198.51.100.0/24, '2001:db8::/64']",
        ),
        "/s/site.yaml",
    )
    prov = OpenStackHosts(site, poll_interval=0.05)
    prov.create(prov.wanted(), lambda m: None)
    cloud = double.cloud
    pub = ssh_key.with_name("id_ed25519.pub")
    assert not pub.exists()  # derived from the private key
    key = serialization.load_ssh_private_key(ssh_key.read_bytes(), None).public_key()
    expected = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    assert cloud.keypairs["drboot-oslo"]["public_key"] == expected.decode()
    nets = {n["name"]: n for n in cloud.networks.values()}
    assert [cloud.subnets[s]["cidr"] for s in nets["drboot-oslo"]["subnets"]] == ["10.88.0.0/24"]
    sg = next(g for g in cloud.security_groups.values() if g["name"] == "drboot-oslo")
    rules = {(r["protocol"], r["port_range_min"], r["remote_ip_prefix"])
             for r in sg["security_group_rules"]}  # fmt: skip
    assert rules == {
        ("tcp", 22, "203.0.113.7/32"), ("tcp", 6443, "203.0.113.7/32"),
        ("tcp", 22, "198.51.100.0/24"), ("tcp", 6443, "198.51.100.0/24"),
        ("tcp", 22, "2001:db8::/64"), ("tcp", 6443, "2001:db8::/64"),
        (None, None, "10.88.0.0/24"),
    }  # fmt: skip
    assert {r["ethertype"] for r in sg["security_group_rules"]
            if r["remote_ip_prefix"] == "2001:db8::/64"} == {"IPv6"}  # fmt: skip
    server = cloud.labelled("oslo")[0]
    assert server.key_name == "drboot-oslo" and server.security_groups == ["drboot-oslo"]
    assert server.network == nets["public"]["id"]  # the address drboot connects to

    kinds = ("/os-keypairs", "/networks", "/security-groups", "/security-group-rules")
    counts = tuple(posts(double, k) for k in kinds)
    assert counts == (1, 1, 1, 7)
    prov.destroy(lambda m: None)
    prov.create(prov.wanted(), lambda m: None)  # all found: only the server is bought again
    assert tuple(posts(double, k) for k in kinds) == counts
    assert double.cloud.count("POST", "/security-group-rules", 409) == 0


def test_named_resources_from_the_site_file_are_used(
    double: OpenStackDouble, ssh_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = "  keypair: ops-key\n  private_network: k3s-net\n  security_group: k3s-sg"
    prov = make(double, ssh_key, monkeypatch, extra=extra)
    prov.create(prov.wanted(), lambda m: None)
    server = double.cloud.labelled("oslo")[0]
    assert server.key_name == "ops-key" and server.security_groups == ["k3s-sg"]
    assert "k3s-net" in {n["name"] for n in double.cloud.networks.values()}
    assert "drboot-oslo" not in double.cloud.keypairs


def test_clouds_yaml_cloud_name(
    double: OpenStackDouble, ssh_key: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(double.clouds_yaml("nordic"))
    clouds.chmod(0o600)
    text = site_text(double, ssh_key).replace(
        f"""  auth:
    auth_url: {double.auth_url}
    username: {double.cloud.username}
    password: {{env: {PASSWORD_ENV}}}
    project_name: {double.cloud.project}
""",
        f"  cloud: nordic\n  clouds_file: {clouds}\n",
    )
    prov = OpenStackHosts(load_site_text(text, "/s/site.yaml"), poll_interval=0.05)
    assert prov.cfg.cloud == "nordic" and prov.cfg.auth is None
    prov.create(prov.wanted(), lambda m: None)
    assert len(double.cloud.labelled("oslo")) == 1

    wrong = OpenStackHosts(
        load_site_text(text.replace("cloud: nordic", "cloud: elsewhere"), "/s/site.yaml")
    )
    with pytest.raises(OpenStackAuthError, match="'elsewhere' is not in"):
        wrong.observe()


def test_the_provider_is_picked_by_type_and_states_the_country(
    double: OpenStackDouble, ssh_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, double.cloud.password)
    site = load_site_text(site_text(double, ssh_key, servers=3), "/s/site.yaml")
    prov = provider_for(site, Path("/nonexistent"))
    assert isinstance(prov, OpenStackHosts)
    assert prov.countries() == {"oslo-server-1": "NO", "oslo-server-2": "NO", "oslo-server-3": "NO"}
    assert prov.creates_hosts and not prov.manages_ssh_key


@pytest.mark.parametrize(
    ("field", "value", "accepted"),
    [
        ("username", "drboot", True),
        ("username", "someone-else", False),
        ("project_name", "another-project", False),
        ("user_domain_name", "Nordic", True),
        ("user_domain_name", "Default", False),
        ("project_domain_name", "Nordic", True),
        ("project_domain_name", "Default", False),
    ],
)
def test_credentials_reach_keystone_as_the_site_states_them(
    ssh_key: Path, monkeypatch: pytest.MonkeyPatch, field: str, value: str, accepted: bool
) -> None:
    """The double's Keystone accepts drboot in domain Nordic only: each auth field counts."""
    cloud = DoubleCloud(user_domain="Nordic", project_domain="Nordic")
    with OpenStackDouble(cloud) as double:
        domains = "    user_domain_name: Nordic\n    project_domain_name: Nordic\n"
        text = site_text(double, ssh_key).replace("  region:", domains + "  region:", 1)
        monkeypatch.setenv(PASSWORD_ENV, cloud.password)
        site = load_site_text(text, "/s/site.yaml")
        assert site.provider.type == "openstack" and site.provider.auth is not None
        auth = site.provider.auth.model_copy(update={field: value})
        site = site.model_copy(update={"provider": site.provider.model_copy(update={"auth": auth})})
        prov = OpenStackHosts(site, poll_interval=0.05)
        if accepted:
            assert prov.observe() == []
        else:
            with pytest.raises(OpenStackAuthError, match="refused the credentials"):
                prov.observe()


def test_auth_url_and_region_pick_the_endpoints(
    double: OpenStackDouble, ssh_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prov = make(double, ssh_key, monkeypatch)
    (host,) = prov.create(prov.wanted(), lambda m: None)
    assert host.provider_id is not None and host.provider_id.startswith("openstack:RegionOne/")
    elsewhere = prov.site.model_copy(
        update={"provider": prov.cfg.model_copy(update={"region": "RegionTwo"})}
    )
    with pytest.raises(PermanentError, match="service catalog"):
        OpenStackHosts(elsewhere).observe()  # no RegionTwo endpoint in the catalog
    assert prov.cfg.auth is not None
    wrong_url = prov.cfg.auth.model_copy(update={"auth_url": "http://127.0.0.1:9/v3"})
    unreachable = prov.site.model_copy(
        update={"provider": prov.cfg.model_copy(update={"auth": wrong_url})}
    )
    gone = OpenStackHosts(unreachable)
    gone.api().cap = CloudRetryPolicy(attempts=2, base_delay=0.01)
    with pytest.raises(TransientError, match="cannot connect"):
        gone.observe()


def test_agents_are_created_with_their_role(
    double: OpenStackDouble, ssh_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prov = make(double, ssh_key, monkeypatch, extra="  agents: 2")
    assert prov.wanted() == ["oslo-server-1", "oslo-agent-1", "oslo-agent-2"]
    hosts = prov.create(prov.wanted(), lambda m: None)
    assert [(h.name, h.role) for h in hosts] == [
        ("oslo-server-1", "server"),
        ("oslo-agent-1", "agent"),
        ("oslo-agent-2", "agent"),
    ]
    roles = {s.name: s.metadata["drboot.dev/role"] for s in double.cloud.labelled("oslo")}
    assert roles == {
        "oslo-server-1": "server", "oslo-agent-1": "agent", "oslo-agent-2": "agent"}  # fmt: skip


# --------------------------------------------------------------------------- refusals


def test_bad_credentials_are_refused_before_anything_is_created(
    double: OpenStackDouble, ssh_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "Wrong-Password-Not-Here-42"
    prov = make(double, ssh_key, monkeypatch, password=wrong)
    said: list[str] = []
    with pytest.raises(OpenStackAuthError) as info:
        prov.create(prov.wanted(), said.append)
    err = info.value
    assert err.exit_code == ExitCode.PREFLIGHT
    assert "refused the credentials" in err.format() and "nothing was created" in err.format()
    assert [m for m, _p, _s in double.cloud.requests if m == "POST"] == ["POST"]  # the token
    assert double.cloud.count("POST", "/auth/tokens", 401) == 1
    blobs = [err.format().encode(), repr(err).encode(), "\n".join(said).encode(),
             repr(prov.api().creds).encode()]  # fmt: skip
    assert_no_leak(text_forms("openstack password", wrong), *blobs)


def test_unset_password_reference_is_a_located_preflight_error(
    double: OpenStackDouble, ssh_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prov = make(double, ssh_key, monkeypatch)
    monkeypatch.delenv(PASSWORD_ENV)
    with pytest.raises(PreflightError, match=f"provider.auth.password: environment variable "
                                             f"{PASSWORD_ENV} is not set"):  # fmt: skip
        prov.observe()
    assert double.cloud.requests == []


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("flavor", "m9.huge", "flavor 'm9.huge' does not exist in region RegionOne"),
        ("image", "windows-95", "image 'windows-95' does not exist"),
        ("network", "nowhere", "network 'nowhere' does not exist"),
    ],
)
def test_unknown_flavor_image_or_network_is_refused_before_anything_is_created(
    double: OpenStackDouble, ssh_key: Path, monkeypatch: pytest.MonkeyPatch,
    field: str, value: str, words: str,
) -> None:  # fmt: skip
    prov = make(double, ssh_key, monkeypatch)
    site = prov.site.model_copy(update={"provider": prov.cfg.model_copy(update={field: value})})
    prov = OpenStackHosts(site, poll_interval=0.05)
    with pytest.raises(PreflightError, match=words) as info:
        prov.countries()  # what preflight-sovereignty asks, before any step creates anything
    assert info.value.exit_code == ExitCode.PREFLIGHT and "next:" in info.value.format()
    with pytest.raises(PreflightError, match=words):
        prov.create(prov.wanted(), lambda m: None)
    assert posts(double, "/compute") == 0 and posts(double, "/network") == 0


def test_instance_quota_is_checked_before_anything_is_created(
    double: OpenStackDouble, ssh_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    double.cloud.faults.max_instances = 2
    prov = make(double, ssh_key, monkeypatch, servers=3)
    with pytest.raises(PreflightError, match=r"room for 2 more server.*needs 3"):
        prov.create(prov.wanted(), lambda m: None)
    assert posts(double, "/compute") == 0 and posts(double, "/network") == 0


def test_quota_exceeded_half_way_then_resume_completes_without_duplicates(
    double: OpenStackDouble, ssh_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = double.cloud.faults
    faults.max_instances, faults.reported_max_instances = 2, 10  # someone took the rest
    prov = make(double, ssh_key, monkeypatch, servers=3)
    with pytest.raises(OpenStackQuotaError) as info:
        prov.create(prov.wanted(), lambda m: None)
    err = info.value
    assert err.exit_code == ExitCode.STEP_FAILED  # resumable, unlike the preflight refusal
    text = err.format()
    assert "Quota exceeded for instances" in text and "create server 'oslo-server-3'" in text
    assert "raise the project's quota" in text and "resume" in text
    assert len(double.cloud.labelled("oslo")) == 2

    faults.max_instances = faults.reported_max_instances = 10  # the quota is raised
    resumed = make(double, ssh_key, monkeypatch, servers=3)
    have = {h.name for h in resumed.observe()}
    missing = [n for n in resumed.wanted() if n not in have]
    assert missing == ["oslo-server-3"]
    resumed.create(missing, lambda m: None)
    names = sorted(s.name for s in double.cloud.labelled("oslo"))
    assert names == ["oslo-server-1", "oslo-server-2", "oslo-server-3"]
    assert double.cloud.count("POST", "/servers", 202) == 3


# --------------------------------------------------------------------------- misbehaviour


@pytest.mark.parametrize("status", [429, 413])
def test_a_rate_limit_burst_is_retried_honouring_retry_after(
    double: OpenStackDouble, ssh_key: Path, monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    prov = make(double, ssh_key, monkeypatch)
    api = prov.api()
    assert prov.observe() == []  # the SDK has discovered Nova's version: the 429s are ours
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # really sleeps, and notes how long it was asked to
        waits.append(seconds)
        time.sleep(seconds)

    api.sleep = sleep
    faults = double.cloud.faults
    faults.rate_limited, faults.rate_limit_status, faults.retry_after = 3, status, 1
    start, before = time.monotonic(), len(double.cloud.requests)
    hosts = prov.create(prov.wanted(), lambda m: None)
    elapsed = time.monotonic() - start
    answers = [s for _m, _p, s in double.cloud.requests[before:]]
    print(f"{status} burst: {answers.count(status)} limited of {len(answers)} requests, "
          f"{api.requests_retried} retried after waits of {waits} s, {elapsed:.1f} s in all")
    assert answers.count(status) == 3 and len(hosts) == 1
    # each was retried after the Retry-After (1 s, and a hair for clock skew), one at a time
    assert api.requests_retried == 3 and len(waits) == 3
    assert all(1.0 <= w <= 1.1 for w in waits) and elapsed >= 3.0


def test_a_long_rate_limit_gives_up_at_the_cap(
    double: OpenStackDouble, ssh_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    prov = make(double, ssh_key, monkeypatch, sleep=waits)
    prov.api().authenticate()
    faults = double.cloud.faults
    faults.rate_limited, faults.retry_after = 1000, 3600
    before = len(double.cloud.requests)
    with pytest.raises(TransientError, match=r"still HTTP 429 after \d+ tries") as info:
        prov.observe()
    sent = len(double.cloud.requests) - before
    cap = prov.api().cap
    print(f"429 for good: {sent} requests, waits asked {waits}")
    # at most ``attempts`` calls, each at most two requests (the SDK's version discovery of
    # the service root, until it succeeds, and the call itself)
    assert len(waits) < cap.attempts and sent <= 2 * cap.attempts
    assert sum(waits) <= cap.budget
    assert all(w == cap.max_delay for w in waits)  # a 3600 s Retry-After is cut to the cap
    assert "wait, then `drboot resume" in info.value.format()


def test_5xx_is_retried_with_backoff(
    double: OpenStackDouble, ssh_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    prov = make(double, ssh_key, monkeypatch, sleep=waits)
    assert prov.observe() == []  # the SDK has discovered Nova's version: every 503 is ours
    double.cloud.faults.server_errors = 3
    assert prov.observe() == []
    assert waits == [1.0, 2.0, 4.0] and double.cloud.count("GET", "", 503) == 3


def test_a_server_that_goes_to_error_names_its_fault(
    double: OpenStackDouble, ssh_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    double.cloud.faults.boot_errors["oslo-server-1"] = "No valid host was found."
    prov = make(double, ssh_key, monkeypatch)
    with pytest.raises(PermanentError) as info:
        prov.create(prov.wanted(), lambda m: None)
    text = info.value.format()
    server = double.cloud.labelled("oslo")[0]
    assert f"openstack: server oslo-server-1 ({server.id}) went to ERROR" in text
    assert "No valid host was found." in text and "openstack server delete" in text
    # a resume does not buy a second one next to the broken server
    with pytest.raises(PermanentError, match="went to ERROR"):
        make(double, ssh_key, monkeypatch).create(["oslo-server-1"], lambda m: None)
    assert double.cloud.count("POST", "/servers") == 1


def test_a_server_stuck_in_build_times_out_and_resume_uses_the_same_server(
    double: OpenStackDouble, ssh_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    double.cloud.faults.stuck_in_build.add("oslo-server-1")
    prov = make(double, ssh_key, monkeypatch)
    with pytest.raises(WaitTimeout, match="still BUILD after 3 s") as info:
        prov.create(prov.wanted(), lambda m: None)
    assert info.value.exit_code == ExitCode.TIMEOUT
    (stuck,) = double.cloud.labelled("oslo")
    double.cloud.finish_build("oslo-server-1")
    said: list[str] = []
    (host,) = make(double, ssh_key, monkeypatch).create(["oslo-server-1"], said.append)
    assert host.provider_id == f"openstack:RegionOne/{stuck.id}"
    assert double.cloud.count("POST", "/servers") == 1
    assert any("exists (BUILD)" in m or "exists (ACTIVE)" in m for m in said)


# --------------------------------------------------------------------------- destroy


def test_destroy_touches_only_this_sites_and_this_runs_servers(
    double: OpenStackDouble, ssh_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud = double.cloud
    decoy = cloud.add_server("bergen-server-1", {SITE: "bergen", "drboot.dev/role": "server"})
    bare = cloud.add_server("oslo-server-1", {})  # the right name, but nobody's label
    other_run = cloud.add_server("oslo-20260101t000000-beef-server-1", {
        SITE: "oslo", "drboot.dev/role": "server", RUN: "oslo-20260101T000000-beef"})
    drill = make(double, ssh_key, monkeypatch, run_id="oslo-20261130T010000-ab12")
    (host,) = drill.create(drill.wanted(), lambda m: None)
    mine = [s for s in cloud.labelled("oslo") if s.metadata.get(RUN) == drill.run_id]
    assert [s.name for s in mine] == ["oslo-20261130t010000-ab12-server-1"]
    assert host.provider_id == f"openstack:RegionOne/{mine[0].id}"
    assert drill.destroy(lambda m: None) == ["oslo-20261130t010000-ab12-server-1"]
    left = set(cloud.servers)
    assert left == {decoy.id, bare.id, other_run.id}

    restore = make(double, ssh_key, monkeypatch)  # a site-wide destroy: every oslo server
    assert restore.destroy(lambda m: None) == ["oslo-20260101t000000-beef-server-1"]
    assert set(cloud.servers) == {decoy.id, bare.id}


def test_settings_refuse_what_the_provider_cannot_honour(
    double: OpenStackDouble, ssh_key: Path
) -> None:
    from bootstrap.siteload import SiteFileError

    base = site_text(double, ssh_key)
    both = base.replace("  region:", "  cloud: x\n  region:")
    with pytest.raises(SiteFileError, match="exactly one of cloud"):
        load_site_text(both, "/s/site.yaml")
    inline = base.replace(f"{{env: {PASSWORD_ENV}}}", "hunter2-inline")
    with pytest.raises(SiteFileError, match="inline secret not allowed") as info:
        load_site_text(inline, "/s/site.yaml")
    assert "hunter2" not in info.value.format()
    with pytest.raises(SiteFileError, match="expected a network in CIDR form"):
        load_site_text(base.replace("[203.0.113.7/32]", "[not-an-address]"), "/s/site.yaml")
    even = site_text(double, ssh_key, servers=2)
    with pytest.raises(SiteFileError, match="odd number"):
        load_site_text(even, "/s/site.yaml")


def test_a_cloud_that_cannot_be_reached_is_retried_then_given_up() -> None:
    api = OpenStackAPI(Credentials(region="r", auth_url="http://127.0.0.1:9/v3",
                                   username="u", password="p", project_name="x"),
                       cap=CloudRetryPolicy(attempts=2, base_delay=0.01))  # fmt: skip
    with pytest.raises(TransientError, match="cannot connect after 2 tries"):
        api.authenticate()


def test_the_drill_teardown_step_destroys_a_server_that_never_became_active(
    double: OpenStackDouble, ssh_key: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A failed drill's server stuck in BUILD is not listed by observe() (not running), yet
    the drill's teardown step destroys it: destroy() finds it by the run's labels."""
    from bootstrap.steps.finish import teardown
    from bootstrap.steps.resources import RunResources
    from tests.stepkit import step_context

    run_id = "oslo-20261130T020000-cd34"
    double.cloud.faults.stuck_in_build.add("*")
    drill = make(double, ssh_key, monkeypatch, run_id=run_id)
    with pytest.raises(WaitTimeout):
        drill.create(drill.wanted(), lambda m: None)
    assert drill.observe() == [] and len(double.cloud.labelled("oslo")) == 1

    ctx = step_context(drill.site, tmp_path / "runs" / run_id, "teardown")
    ctx._scope.shared[RunResources]._provider = drill  # type: ignore[attr-defined]
    teardown(ctx)
    assert double.cloud.labelled("oslo") == []
    assert ctx.outputs["destroyed"] == drill.wanted()
    assert any("were not running" in c for c in map(str, ctx.changes)), ctx.changes
