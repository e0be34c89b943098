"""Plausible bad input, as a table (``tests/badinput/cases.py``): each row is a command line an
operator could type, the exit code the README documents for it, and words the message must
hold. None may end in exit 70 (an internal error) or a traceback; nothing past the refusal is
done, no input changes, no secret shows. A full run writes docs/BAD-INPUT.md from what the rows
really did (``tests/badinput/document.py``); ``test_bad_input_doc.py`` holds the checked-in copy
to the case list.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from bootstrap.cli import Deps, cli
from tests.badinput import document
from tests.badinput.cases import CASES, Case
from tests.badinput.observe import Observation, observe
from tests.badinput.world import PASSPHRASE, Lab, World
from tests.leaks import Form, find_leaks


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return Lab.make(tmp_path_factory.mktemp("badinput"))


@pytest.fixture(scope="module")
def forms(lab: Lab) -> list[Form]:
    return lab.secret_forms()


@pytest.fixture(scope="module")
def table() -> Iterator[dict[str, Observation]]:
    """The observations of this session; after a run of every case, the document."""
    seen: dict[str, Observation] = {}
    yield seen
    if set(seen) == {c.name for c in CASES}:
        document.write([seen[c.name] for c in CASES])


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_its_exit_code_and_a_clear_message(
    case: Case, lab: Lab, forms: list[Form], table: dict[str, Observation], tmp_path: Path
) -> None:
    world = World(tmp_path, lab)
    try:
        seen = observe(case, world, forms)
    finally:
        world.close()
    table[case.name] = seen
    assert seen.passed, "; ".join(seen.problems) + f"\n  message: {seen.message}"


def test_the_leak_scan_of_the_table_finds_each_secret_it_looks_for(
    lab: Lab, forms: list[Form]
) -> None:
    """The "secrets in output: none" column means something: each secret a row could leak is
    found when it is there (the age identity and passphrase, a deploy key, a custodian share,
    the kit's k3s token and sealing keys as the kit holds them)."""
    shown = {
        "age identity": lab.seed.identity.read_bytes(),
        "passphrase": PASSPHRASE.encode(),
        "wrong identity": lab.wrong_identity.read_bytes(),
        "deploy key": lab.deploy_key.private.read_bytes(),
        "custodian share": lab.split_b[1][2].read_bytes(),
        "kit": lab.kit.to_json(),
    }
    for what, blob in shown.items():
        assert find_leaks(forms, {what: blob}), f"the scan does not see the {what}"


def test_a_commit_the_branch_moved_on_to_that_cannot_be_cloned_stays_a_step_failure(
    lab: Lab, tmp_path: Path
) -> None:
    """The site's revision failing to clone is a preflight refusal (exit 3, the rows above);
    a commit met later, while waiting, is the waiting step's failure (its policy decides)."""
    from bootstrap.errors import PermanentError, PreflightError
    from bootstrap.escrow.service import check_repo
    from bootstrap.siteload import load_site

    site = load_site(Path(World(tmp_path, lab).site(revision="no-such-branch")))
    with pytest.raises(PreflightError, match="does not exist in the repo"):
        check_repo(site, lab.kit)
    with pytest.raises(PermanentError, match="does not exist in the repo") as moved:
        check_repo(site, lab.kit, revision="0" * 40)
    assert not isinstance(moved.value, PreflightError)


def test_an_existing_world_writable_state_dir_is_refused_and_left_as_it_was(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    res = CliRunner().invoke(cli, ["--state-dir", str(shared), "status"], obj=Deps())
    assert res.exit_code == 2, res.output
    assert "writable by group or others (mode 1777)" in res.output
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert list(shared.iterdir()) == []


def test_an_existing_private_state_dir_keeps_its_mode(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    mine.chmod(0o750)
    res = CliRunner().invoke(cli, ["--state-dir", str(mine), "status"], obj=Deps())
    assert res.exit_code == 0, res.output
    assert stat.S_IMODE(mine.stat().st_mode) == 0o750


def test_a_state_dir_drboot_creates_is_0700_whatever_the_umask(tmp_path: Path) -> None:
    new = tmp_path / "a" / "new-state"
    old = os.umask(0o000)
    try:
        res = CliRunner().invoke(cli, ["--state-dir", str(new), "status"], obj=Deps())
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    assert stat.S_IMODE(new.stat().st_mode) == 0o700
