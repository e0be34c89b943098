"""docs/BAD-INPUT.md cannot drift from the case list: the checked-in document has one row per
case, in order, with the case's expected exit code and words, the same actual exit code, and
every row passing; the README states the same figure."""

from __future__ import annotations

import re

from tests.badinput import document
from tests.badinput.cases import CASES


def test_the_checked_in_document_has_one_passing_row_per_case() -> None:
    text = document.DOC.read_text()
    rows = document.read(text)
    assert [(r.case, r.expected) for r in rows] == [document.expected_cells(c) for c in CASES]
    assert [r.number for r in rows] == list(range(1, len(CASES) + 1))
    assert [r.actual_code for r in rows] == [str(c.code) for c in CASES]
    assert [r.result for r in rows] == ["pass"] * len(CASES)
    assert f"**{len(CASES)} cases, {len(CASES)} pass, 0 fail**" in text


def test_the_readme_states_the_figure_of_the_document() -> None:
    readme = (document.REPO / "README.md").read_text()
    assert "[docs/BAD-INPUT.md](docs/BAD-INPUT.md)" in readme
    stated = re.search(r"(\d+) bad-input cases, all pass", readme)
    assert stated is not None and int(stated.group(1)) == len(CASES)
