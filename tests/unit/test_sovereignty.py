"""The sovereignty guard: country codes validated at the edge, hosts and the repo located, a
site with a host outside the allowed countries refused in preflight before anything exists,
and the locations in the report and in ``drboot plan``."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootstrap.errors import ConfigError, PreflightError
from bootstrap.outputs import SovereigntyChecked
from bootstrap.providers.static import StaticHosts
from bootstrap.siteload import load_site_text
from bootstrap.sovereignty import locate, repo_host
from bootstrap.steps import preflight
from tests.stepkit import step_context

SITE = """\
apiVersion: drboot.dev/v1
name: sov
provider:
  type: static
  hosts:
    - {{name: s1, address: 10.0.0.1{c1}}}
    - {{name: a1, address: 10.0.0.2, role: agent{c2}}}
escrow: {{backend: age, bundle: kit.age, identity_files: [id.txt]}}
repo: {{url: git@git.example.no:platform/config.git{repo}}}
{extra}"""


def text(c1: str = "SE", c2: str = "'NO'", repo: str = "FI", extra: str = "") -> str:
    return SITE.format(
        c1=f", country: {c1}" if c1 else "",
        c2=f", country: {c2}" if c2 else "",
        repo=f", country: {repo}" if repo else "",
        extra=extra,
    )


def run(tmp_path: Path, site_text: str) -> dict[str, object]:
    s = load_site_text(site_text, "site.yaml", base_dir=tmp_path)
    ctx = step_context(s, tmp_path / "runs" / "r1", "preflight-sovereignty")
    preflight.check_sovereignty(ctx)
    return ctx.outputs


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("git@git.example.no:org/repo.git", "git.example.no"),
        ("ssh://git@gitea.example.se:2222/org/repo.git", "gitea.example.se"),
        ("https://github.com/org/repo.git", "github.com"),
        ("file:///srv/git/repo", "local"),
        ("/srv/git/repo", "local"),
    ],
)
def test_repo_host_from_its_url(url: str, host: str) -> None:
    assert repo_host(url) == host


ALLOWED = "sovereignty: {allowed_countries: ['NO', SE, FI, DK]}\n"


@pytest.mark.parametrize(
    ("site_kw", "refusal"),
    [
        ({}, None),
        ({"c1": "DE"}, "host s1: in DE, not in the allowed NO, SE, FI, DK"),
        ({"c2": ""}, "host a1: country unknown"),
        ({"repo": "US"}, "repo on git.example.no: in US, not in the allowed"),
        ({"repo": ""}, "repo on git.example.no: country unknown, set repo.country"),
    ],
)
def test_a_host_or_repo_outside_the_allowed_countries_is_refused_in_preflight(
    tmp_path: Path, site_kw: dict[str, str], refusal: str | None
) -> None:
    site_text = text(**site_kw, extra=ALLOWED)
    if refusal is None:
        out = SovereigntyChecked.from_json(run(tmp_path, site_text))
        assert out.hosts == {"s1": "SE", "a1": "NO"}
        assert (out.repo_host, out.repo_country) == ("git.example.no", "FI")
        assert out.allowed == ["NO", "SE", "FI", "DK"]
        return
    with pytest.raises(PreflightError) as err:
        run(tmp_path, site_text)
    assert err.value.exit_code == 3
    assert refusal in err.value.format() and "preflight-sovereignty" in err.value.format()


def test_without_a_list_nothing_is_refused_and_locations_are_still_reported(
    tmp_path: Path,
) -> None:
    out = SovereigntyChecked.from_json(run(tmp_path, text(c1="US", c2="", repo="")))
    assert out.hosts == {"s1": "US", "a1": None} and out.allowed == []
    assert locate(out.hosts, "https://x.example/r.git", None, []).problems() == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("UK", "ISO 3166-1 alpha-2"),
        ("no", "ISO 3166-1 alpha-2"),  # YAML 1.1: 'no' is false too, but quoted it is lower case
        ("NOR", "ISO 3166-1 alpha-2"),
        ("NO", "quote the country code"),  # bare NO: YAML reads false
    ],
)
def test_country_codes_are_validated_with_their_location(
    tmp_path: Path, value: str, message: str
) -> None:
    quoted = f"'{value}'" if value == "no" else value
    with pytest.raises(ConfigError) as err:
        load_site_text(text(c1=quoted), "site.yaml", base_dir=tmp_path)
    out = err.value.format()
    assert "site.yaml:6:" in out and message in out, out
    with pytest.raises(ConfigError) as err:
        load_site_text(text(extra=f"sovereignty: {{allowed_countries: [{quoted}]}}\n"), "site.yaml",
                       base_dir=tmp_path)  # fmt: skip
    assert message in err.value.format()


def test_static_hosts_report_their_country_to_later_steps(tmp_path: Path) -> None:
    prov = StaticHosts(load_site_text(text(), "site.yaml", base_dir=tmp_path))
    assert prov.countries() == {"s1": "SE", "a1": "NO"}
    assert {h.name: h.country for h in prov.observe()} == {"s1": "SE", "a1": "NO"}


def test_the_guard_runs_before_any_host_is_created_and_the_cpu_gate_before_k3s() -> None:
    from bootstrap.steps import pipelines

    ids = pipelines()["restore"].ids()
    assert ids.index("preflight-sovereignty") < ids.index("provision")
    assert ids.index("disk-gate") < ids.index("cpu-gate") < ids.index("prepare-hosts")
    assert ids.index("cpu-gate") < ids.index("install-k3s")


def test_plan_shows_where_every_host_and_the_repo_are(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    for name in ("id.txt", "kit.age"):
        (tmp_path / name).touch()
    site = tmp_path / "site.yaml"
    site.write_text(text(repo="DE", extra=ALLOWED))
    res = subprocess.run(
        [sys.executable, "-m", "bootstrap.cli", "--state-dir", str(tmp_path / "state"), "plan",
         str(site)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = res.stdout + res.stderr
    assert "preflight-sovereignty" in out
    assert "repo on git.example.no: in DE, not in the allowed NO, SE, FI, DK" in out, out
    site.write_text(text())
    res = subprocess.run(
        [sys.executable, "-m", "bootstrap.cli", "--state-dir", str(tmp_path / "state"), "plan",
         str(site)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "s1 in SE, a1 in NO; repo on git.example.no in FI (no country list)" in res.stdout
