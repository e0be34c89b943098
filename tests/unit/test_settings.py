"""The site file: inventory and example validate, bad files fail where and how they should."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator
from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from bootstrap.errors import ConfigError, ExitCode
from bootstrap.settings import AgeEscrow, LabProvider, Site, StaticProvider
from bootstrap.site_example import EXAMPLE_SITE
from bootstrap.siteload import SiteFileError, load_site, load_site_text, site_schema
from bootstrap.sitetypes.durations import format_duration, parse_duration
from bootstrap.sitetypes.secretrefs import EscrowRef, SecretRef

REPO = Path(__file__).resolve().parents[2]
INVENTORY = sorted((REPO / "inventory").glob("*.yaml"))
BAD_SITES = sorted((Path(__file__).parent / "bad_sites").glob("*.yaml"))
EXPECT = re.compile(r"^# expect: (\d+):(\d+) (.+)$", re.MULTILINE)

MINIMAL = """\
apiVersion: drboot.dev/v1
name: mini
provider: {type: lab}
escrow: {backend: age, bundle: escrow/b.age, identity_files: [keys/id.txt]}
repo: {url: "https://git.example.org/x.git"}
"""


def _error(text: str, source: str = "/sites/s.yaml") -> SiteFileError:
    with pytest.raises(SiteFileError) as info:
        load_site_text(text, source)
    return info.value


# --------------------------------------------------------------------------- good files


def test_inventory_has_the_examples() -> None:
    names = {p.name for p in INVENTORY}
    assert {"oslo-prod.yaml", "lab.yaml", "lab-ha.yaml"} <= names


@pytest.mark.parametrize("path", INVENTORY, ids=[p.name for p in INVENTORY])
def test_inventory_file_validates(path: Path) -> None:
    site = load_site(path)
    assert site.name == path.stem


def test_oslo_prod_is_ha_static_argocd() -> None:
    site = load_site(REPO / "inventory" / "oslo-prod.yaml")
    assert isinstance(site.provider, StaticProvider)
    assert site.server_count() == 3
    assert [h.role for h in site.provider.hosts].count("agent") == 2
    assert all(h.host_key_fingerprint for h in site.provider.hosts)
    assert all(h.address.startswith("203.0.113.") for h in site.provider.hosts)
    assert site.kubernetes.topology == "ha"
    assert site.reconciler.type == "argocd"
    assert site.repo.kind() == "ssh"
    assert site.repo.path == "apps/overlays/prod"
    assert site.repo.deploy_key == EscrowRef(escrow="deploy_key")
    assert site.escrow.backend == "age"
    assert site.ssh.use_sudo()


def test_lab_sites_may_omit_airgap_dir() -> None:
    site = load_site(REPO / "inventory" / "lab.yaml")
    assert isinstance(site.provider, LabProvider)
    assert site.kubernetes.install == "airgap"
    assert site.kubernetes.airgap_dir is None
    assert site.repo.kind() == "file"
    assert site.repo.deploy_key is None
    assert load_site(REPO / "inventory" / "lab-ha.yaml").server_count() == 3


def test_flux_with_a_file_repo_is_refused_at_the_url(tmp_path: Path) -> None:
    text = (REPO / "inventory" / "lab.yaml").read_text().replace("type: argocd", "type: flux")
    path = tmp_path / "flux.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_site(path)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.strip().startswith("url:"))
    assert err.value.line == line
    assert "https" in err.value.message


def test_example_site_validates_from_text_and_from_a_written_file(tmp_path: Path) -> None:
    site = load_site_text(EXAMPLE_SITE, str(tmp_path / "site.yaml"))
    assert site.name == "example"
    written = tmp_path / "site.yaml"
    written.write_text(EXAMPLE_SITE)
    assert load_site(written).digest() == site.digest()
    assert EXAMPLE_SITE.count("#") > 20  # it is the commented example


def test_defaults_are_filled_and_documented_values_hold() -> None:
    site = load_site_text(MINIMAL, "/sites/mini.yaml")
    assert site.kind == "Site"
    assert site.kubernetes.version == "v1.30.4+k3s1"
    assert site.kubernetes.token == EscrowRef(escrow="k3s_token")
    assert site.ssh.connect_timeout == timedelta(seconds=10)
    assert site.ssh.command_timeout == timedelta(minutes=10)
    assert site.sealed_secrets.key_renewal_period == timedelta(days=30)
    assert site.sync_wait.stable_for == timedelta(seconds=30)
    assert site.reconciler.type == "argocd"
    assert site.report.formats == ("json", "markdown", "junit", "html")
    assert site.disk_gate.p99_fdatasync_ms == 10.0
    assert not site.ssh.use_sudo()


def test_paths_resolve_against_the_site_directory_and_expand_home(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOME", "/home/ops")
    site = load_site_text(MINIMAL, "/sites/oslo/site.yaml")
    assert site.escrow.bundle == Path("/sites/oslo/escrow/b.age")
    assert site.escrow.backend == "age"
    assert site.escrow.identity_files == (Path("/sites/oslo/keys/id.txt"),)
    assert site.ssh.private_key_file == Path("/home/ops/.ssh/id_ed25519")
    other = load_site_text(MINIMAL, "ignored", base_dir=Path("/elsewhere"))
    assert other.escrow.bundle == Path("/elsewhere/escrow/b.age")


def test_local_repo_path_is_made_absolute() -> None:
    text = MINIMAL.replace('"https://git.example.org/x.git"', "../config-repo")
    assert load_site_text(text, "/sites/lab/site.yaml").repo.url == "/sites/config-repo"


def test_repo_reference_defaults_follow_the_url_kind() -> None:
    https = load_site_text(MINIMAL, "/s/site.yaml").repo
    assert https.deploy_key is None and https.known_hosts is None
    ssh = load_site_text(MINIMAL.replace('"https://git.example.org/x.git"', "ssh://git@h/x"), "/s")
    assert ssh.repo.known_hosts == EscrowRef(escrow="known_hosts")
    explicit = MINIMAL.replace(
        '{url: "https://git.example.org/x.git"}',
        "{url: git@h:o/r.git, deploy_key: {env: DEPLOY_KEY}}",
    )
    assert load_site_text(explicit, "/s").repo.deploy_key == SecretRef(env="DEPLOY_KEY")


def test_models_are_frozen_and_sequences_immutable() -> None:
    site = load_site_text(MINIMAL, "/s/site.yaml")
    with pytest.raises(ValidationError):
        site.name = "other"
    assert isinstance(site.escrow, AgeEscrow)
    assert isinstance(site.escrow.identity_files, tuple)


def test_digest_is_stable_and_sensitive() -> None:
    one = load_site_text(MINIMAL, "/s/site.yaml").digest()
    assert one == load_site_text("# comment\n" + MINIMAL, "/s/site.yaml").digest()
    assert one != load_site_text(MINIMAL.replace("mini", "maxi"), "/s/site.yaml").digest()
    assert re.fullmatch(r"[0-9a-f]{64}", one)


def test_yaml_merge_keys_are_not_mistaken_for_duplicates() -> None:
    text = MINIMAL.replace(
        "provider: {type: lab}",
        "x-host: &h {role: server}\nprovider: {type: lab}",
    )
    # x-host is not a site field: the merge anchor itself must still be refused as unknown
    assert "x-host: unknown field" in _error(text).message
    static = """\
apiVersion: drboot.dev/v1
name: merge
provider:
  type: static
  hosts:
    - &base {name: a, address: 192.0.2.1, ssh_port: 2222}
    - <<: *base
      name: b
      address: 192.0.2.2
      role: agent
escrow: {backend: age, bundle: b.age, identity_files: [id.txt]}
repo: {url: "https://git.example.org/x.git"}
"""
    site = load_site_text(static, "/s/site.yaml")
    assert isinstance(site.provider, StaticProvider)
    assert [(h.name, h.ssh_port, h.role) for h in site.provider.hosts] == [
        ("a", 2222, "server"),
        ("b", 2222, "agent"),
    ]


@pytest.mark.parametrize("kind", ["aws"])
def test_cloud_providers_are_not_in_the_schema_until_they_work(kind: str) -> None:
    """A provider type nothing implements is refused at validation, before anything runs."""
    text = MINIMAL.replace("provider: {type: lab}", f"provider: {{type: {kind}}}")
    err = _error(text)
    expected = "provider.type: expected one of 'static', 'lab', 'hcloud', 'openstack'"
    assert expected in err.format()


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("given", "seconds"),
    [("90s", 90), ("5m", 300), ("1h30m", 5400), ("30d", 2592000), (600, 600), ("45", 45)],
)
def test_durations_parse(given: str | int, seconds: int) -> None:
    assert parse_duration(given) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "given", ["", "0s", 0, -5, "5x", "m", "1.5h", True, None, 10**30, "99999d"]
)
def test_nonsense_durations_are_refused(given: object) -> None:
    with pytest.raises(PydanticCustomError):
        parse_duration(given)


def test_durations_print_in_site_file_form() -> None:
    assert format_duration(timedelta(seconds=5400)) == "1h30m"
    assert format_duration(timedelta(days=30)) == "30d"
    site = load_site_text(MINIMAL, "/s/site.yaml")
    assert site.model_dump(mode="json")["ssh"]["command_timeout"] == "10m"


# --------------------------------------------------------------------------- bad files


def _expectations(path: Path) -> list[tuple[int, int, str]]:
    found = [(int(a), int(b), c) for a, b, c in EXPECT.findall(path.read_text())]
    assert found, f"{path.name} has no '# expect: LINE:COL fragment' header"
    return found


def test_there_are_at_least_fifteen_bad_sites() -> None:
    assert len(BAD_SITES) >= 15


@pytest.mark.parametrize("path", BAD_SITES, ids=[p.name for p in BAD_SITES])
def test_bad_site_is_refused_at_the_expected_place(path: Path) -> None:
    expected = _expectations(path)
    with pytest.raises(ConfigError) as info:
        load_site(path)
    err = info.value
    assert err.exit_code == ExitCode.USAGE
    line, col, fragment = expected[0]
    assert (err.line, err.column) == (line, col), err.format()
    assert fragment in err.message
    assert err.format().startswith(f"{path}:{line}:{col}: ")
    assert err.hint
    problems = err.problems if isinstance(err, SiteFileError) else ()
    for line, col, fragment in expected[1:]:
        assert any((p.line, p.column) == (line, col) and fragment in p.text for p in problems), (
            f"{fragment!r} at {line}:{col} not in {problems}"
        )
        assert f"{path}:{line}:{col}: " in err.message  # one line per further problem


def test_several_problems_are_all_reported_first_one_primary() -> None:
    err = _error(
        MINIMAL.replace("name: mini", "name: Bad_Name").replace(
            "{type: lab}", "{type: lab, servers: 2, agents: -1}"
        )
    )
    assert (err.line, err.column) == (2, 7)
    texts = [p.text for p in err.problems]
    assert texts[0].startswith("name:")
    assert any(t.startswith("provider.agents: expected a number >= 0") for t in texts)
    assert len(err.message.splitlines()) == len(err.problems)


@pytest.mark.timeout(120)  # expanded, the bomb is 10**9 nodes: refusing it must not expand it
def test_alias_bomb_and_deep_nesting_are_refused() -> None:
    bomb = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    bomb += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    assert "alias" in _error("\n".join(bomb) + "\n").message
    assert "nesting" in _error("x: " + "[" * 200 + "]" * 200 + "\n").message
    assert "nesting" in _error("x: " + "[" * 5000 + "\n").message


def test_file_problems_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_site(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="directory"):
        load_site(tmp_path)
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes(MINIMAL.replace("mini", "m\xe9").encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_site(latin)
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (1 << 21))
    with pytest.raises(ConfigError, match="larger than"):
        load_site(big)


# --------------------------------------------------------------------------- secrets


SECRET = "s3cr3t-V4lue-never-shown"


@pytest.mark.parametrize(
    "text",
    [
        MINIMAL + f"kubernetes: {{token: {SECRET}}}\n",
        MINIMAL + f"kubernetes: {{token: {{value: {SECRET}}}}}\n",
        MINIMAL + f"kubernetes: {{token: {{env: {SECRET}}}}}\n",
        MINIMAL + f"kubernetes: {{token: [{SECRET}]}}\n",
        MINIMAL + f"kubernetes: {{token: {{escrow: {SECRET}}}}}\n",
        MINIMAL.replace("identity_files: [keys/id.txt]", f"passphrase: {SECRET}"),
        MINIMAL.replace("repo: {", f"repo: {{deploy_key: {SECRET}, "),
        MINIMAL.replace("provider: {type: lab}", f"provider: {{type: hcloud, token: {SECRET}}}"),
        MINIMAL + f"ssh: {{private_key_file: 12, user: [{SECRET}]}}\n",
        MINIMAL + f"sync_wait: {{timeout: {SECRET}}}\n",
        MINIMAL.replace("name: mini", f"name: {SECRET}"),
    ],
)
def test_secret_values_are_never_echoed(text: str) -> None:
    err = _error(text)
    shown = " ".join([str(err), repr(err), err.format(), *(repr(p) for p in err.problems)])
    assert SECRET not in shown
    assert SECRET.lower() not in shown.lower()


def test_literal_mismatch_echoes_the_value_only_outside_secret_keys() -> None:
    err = _error(MINIMAL + "kubernetes: {topology: triple}\n")
    assert "expected one of 'single', 'ha' (got 'triple')" in err.message
    err = _error(MINIMAL + "kubernetes: {token: {escrow: my-token-value}}\n")
    assert "expected one of 'k3s_token', 'deploy_key', 'known_hosts'" in err.message
    assert "my-token-value" not in err.format()


# --------------------------------------------------------------------------- schema


def test_schema_is_valid_json_schema_with_descriptions() -> None:
    schema = site_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["description"]
    assert "apiVersion" in schema["required"]
    for name, model in schema["$defs"].items():
        assert model.get("description"), name
        for prop, spec in model.get("properties", {}).items():
            assert spec.get("description"), f"{name}.{prop}"
    for prop, spec in schema["properties"].items():
        assert spec.get("description"), prop
    assert schema["$defs"]["Ssh"]["properties"]["connect_timeout"]["default"] == "10s"


@pytest.mark.parametrize("path", INVENTORY, ids=[p.name for p in INVENTORY])
def test_schema_accepts_the_inventory(path: Path) -> None:
    Draft202012Validator(site_schema()).validate(yaml.safe_load(path.read_text()))


def test_schema_accepts_the_example_and_rejects_unknown_keys() -> None:
    validator = Draft202012Validator(site_schema())
    example = yaml.safe_load(EXAMPLE_SITE)
    validator.validate(example)
    example["ssh"]["usr"] = "admin"
    assert not validator.is_valid(example)


def test_site_constructed_in_python_gets_the_same_checks() -> None:
    with pytest.raises(ValidationError):
        Site.model_validate(
            {
                "apiVersion": "drboot.dev/v1",
                "name": "py",
                "provider": {"type": "lab", "servers": 3},
                "escrow": {"backend": "age", "bundle": "b", "identity_files": ["i"]},
                "repo": {"url": "https://h/x.git"},
            }
        )  # three servers with the default topology 'single'
