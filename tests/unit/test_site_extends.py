"""``extends:``: a site derived from another, merged before validation, errors at their file."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bootstrap.cli import Deps, cli
from bootstrap.cli.sitearg import read_site
from bootstrap.errors import ExitCode
from bootstrap.settings import LabProvider
from bootstrap.siteload import SiteFileError, load_site, load_site_document, load_site_text

BASE = """\
apiVersion: drboot.dev/v1
kind: Site
name: oslo
description: the first region
provider:
  type: lab
  servers: 1
  subnet_index: 41
  disk: fast
escrow:
  backend: age
  bundle: escrow/kit.age
  identity_files: [keys/a.txt, keys/b.txt]
repo:
  url: https://git.example.org/platform.git
  path: apps/overlays/oslo
  revision: main
sync_wait:
  stable_for: 20s
"""

REGION = """\
extends: base.yaml
name: bergen
provider:
  subnet_index: 42
escrow:
  identity_files: [keys/bergen.txt]
repo:
  path: apps/overlays/bergen
"""


def _files(tmp: Path, **files: str) -> None:
    for name, text in files.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(text)


def _error(path: Path) -> SiteFileError:
    with pytest.raises(SiteFileError) as info:
        load_site(path)
    return info.value


def test_extends_lays_the_region_over_its_base(tmp_path: Path) -> None:
    _files(tmp_path, **{"base.yaml": BASE, "bergen.yaml": REGION})
    site = load_site(tmp_path / "bergen.yaml")
    base = load_site(tmp_path / "base.yaml")
    assert isinstance(site.provider, LabProvider) and isinstance(base.provider, LabProvider)
    # values the region sets replace the base's; mappings are merged key by key
    assert (site.name, base.name) == ("bergen", "oslo")
    assert (site.provider.subnet_index, base.provider.subnet_index) == (42, 41)
    assert site.provider.servers == 1 and site.provider.disk == "fast"  # kept from the base
    assert site.repo.path == "apps/overlays/bergen"
    assert site.repo.url == base.repo.url and site.repo.revision == "main"
    assert site.description == "the first region"
    assert site.sync_wait.stable_for == base.sync_wait.stable_for
    # a list is replaced, never concatenated
    assert site.escrow.identity_files == (tmp_path / "keys" / "bergen.txt",)
    assert len(base.escrow.identity_files) == 2
    # relative paths resolve against the folder of the file named on the command line
    assert site.escrow.bundle == tmp_path / "escrow" / "kit.age"
    assert site.extends == "base.yaml"
    # without extends, nothing changes
    assert base.extends is None


def test_a_chain_of_bases_is_merged_in_order(tmp_path: Path) -> None:
    _files(
        tmp_path,
        **{
            "common/base.yaml": BASE,
            "nordics.yaml": "extends: common/base.yaml\nsync_wait: {stable_for: 40s}\n"
            "provider: {servers: 3}\nkubernetes: {topology: ha}\n",
            "bergen.yaml": REGION.replace("base.yaml", "nordics.yaml"),
        },
    )
    doc = load_site_document((tmp_path / "bergen.yaml").read_text(), str(tmp_path / "bergen.yaml"))
    site = doc.site
    assert isinstance(site.provider, LabProvider)
    assert site.provider.servers == 3 and site.provider.subnet_index == 42
    assert site.kubernetes.topology == "ha"
    assert site.sync_wait.stable_for.total_seconds() == 40
    assert doc.files == (
        str(tmp_path / "bergen.yaml"),
        str(tmp_path / "nordics.yaml"),
        str(tmp_path / "common" / "base.yaml"),
    )


def test_the_run_keeps_the_flattened_site_which_loads_to_the_same_site(tmp_path: Path) -> None:
    _files(tmp_path, **{"base.yaml": BASE, "bergen.yaml": REGION})
    given = read_site(tmp_path / "bergen.yaml")
    kept = given.data.decode()
    assert "extends" not in kept.replace("extends chain", "")
    assert str(tmp_path / "base.yaml") in kept  # the header names the files it came from
    # the copy stands alone: the base may change or go, a resume still loads the same site
    (tmp_path / "base.yaml").unlink()
    again = load_site_text(kept, str(tmp_path / "runs" / "site.yaml"), base_dir=given.base_dir)
    assert again.model_dump(exclude={"extends"}) == given.site.model_dump(exclude={"extends"})
    # a file without extends is kept byte for byte, as before
    _files(tmp_path, **{"plain.yaml": BASE})
    assert read_site(tmp_path / "plain.yaml").data == BASE.encode()


def test_an_error_points_at_the_file_and_line_the_field_came_from(tmp_path: Path) -> None:
    _files(
        tmp_path,
        **{
            "base.yaml": BASE.replace("  stable_for: 20s", "  stable_for: soon"),
            "bergen.yaml": REGION.replace("  subnet_index: 42", "  subnet_index: many"),
        },
    )
    err = _error(tmp_path / "bergen.yaml")
    where = {(p.source, p.line): p.text for p in err.problems}
    assert "provider.subnet_index" in where[(str(tmp_path / "bergen.yaml"), 4)]
    assert "sync_wait.stable_for" in where[(str(tmp_path / "base.yaml"), 19)]
    # the error is about the derived file first; the base's problem names the base file
    assert err.path == str(tmp_path / "bergen.yaml") and err.line == 4
    assert f"{tmp_path / 'base.yaml'}:19:" in err.format()
    # a field the region overrides is no longer the base's problem
    _files(tmp_path, **{"bergen.yaml": REGION + "sync_wait: {stable_for: 30s}\n"})
    assert isinstance(load_site(tmp_path / "bergen.yaml").provider, LabProvider)


@pytest.mark.parametrize(
    ("files", "line", "words"),
    [
        ({"bergen.yaml": REGION.replace("base.yaml", "gone.yaml")}, 1, "site file not found"),
        ({"bergen.yaml": REGION.replace("base.yaml", "[base.yaml]")}, 1, "expected the path"),
        ({"bergen.yaml": REGION.replace("base.yaml", "7")}, 1, "expected the path"),
        ({"bergen.yaml": REGION.replace("base.yaml", "null")}, 1, "expected the path"),
        ({"bergen.yaml": REGION.replace("base.yaml", "''")}, 1, "expected the path"),
        ({"bergen.yaml": REGION.replace("base.yaml", "keys")}, 1, "is a directory"),
        (
            {
                "base.yaml": "extends: bergen.yaml\n" + BASE,
                "bergen.yaml": REGION,
            },
            1,
            "a cycle: ",
        ),
        (
            {"bergen.yaml": "kind: Site\n" + REGION.replace("base.yaml", "./bergen.yaml")},
            2,
            "a cycle",
        ),
    ],
    ids=["missing", "list", "number", "null", "empty", "directory", "cycle", "itself"],
)
def test_a_bad_extends_is_a_located_error(
    tmp_path: Path, files: dict[str, str], line: int, words: str
) -> None:
    _files(tmp_path, **{"base.yaml": BASE, "keys/a.txt": "", **files})
    err = _error(tmp_path / "bergen.yaml")
    assert words in err.format()
    # located at the extends line of the file that names the bad base (cycle: the one closing it)
    problem = err.problems[0]
    assert problem.line == line and problem.column is not None
    assert err.exit_code == ExitCode.USAGE


def test_a_cycle_names_every_file_in_it(tmp_path: Path) -> None:
    _files(
        tmp_path,
        **{
            "a.yaml": "extends: b.yaml\n",
            "b.yaml": "extends: c.yaml\n",
            "c.yaml": "extends: a.yaml\n",
        },
    )
    err = _error(tmp_path / "a.yaml")
    assert err.path == str(tmp_path / "c.yaml") and err.line == 1
    assert " -> ".join(str(tmp_path / f) for f in ("a.yaml", "b.yaml", "c.yaml", "a.yaml")) in (
        err.format()
    )


def test_a_base_that_is_not_yaml_is_reported_in_the_base(tmp_path: Path) -> None:
    _files(tmp_path, **{"base.yaml": BASE + "repo: {url: x}\n", "bergen.yaml": REGION})
    err = _error(tmp_path / "bergen.yaml")
    assert err.path == str(tmp_path / "base.yaml")
    assert "duplicate key" in err.format()


def test_validate_plan_and_restore_read_extends_through_the_cli(tmp_path: Path) -> None:
    _files(tmp_path, **{"base.yaml": BASE, "bergen.yaml": REGION})
    runner = CliRunner()
    state = ["--state-dir", str(tmp_path / "state")]
    ok = runner.invoke(cli, [*state, "validate", str(tmp_path / "bergen.yaml")], obj=Deps())
    assert ok.exit_code == 0, ok.output
    assert "site bergen" in ok.output
    _files(tmp_path, **{"bergen.yaml": REGION.replace("base.yaml", "nope.yaml")})
    for command in ("validate", "plan", "restore"):
        bad = runner.invoke(cli, [*state, command, str(tmp_path / "bergen.yaml")], obj=Deps())
        assert bad.exit_code == ExitCode.USAGE, (command, bad.output)
        assert f"{tmp_path / 'bergen.yaml'}:1:10: extends: cannot use" in bad.output
