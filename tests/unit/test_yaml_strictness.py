"""What the site-file reader makes of YAML 1.1's surprises: numbers only in decimal (0x10, 017,
1:30 and a plain "=" stay text), and no tag it does not know, on a value, a mapping or a list."""

from __future__ import annotations

import pytest

from bootstrap.sitefile import yamlnodes
from bootstrap.sitefile.problems import SiteFileError

TEXT = """\
hex: 0x10
octal: 017
binary: 0b11
sexagesimal: 1:30
sexagesimal_float: 1:30.5
underscored: 1_000
infinity: .inf
equals: =
decimal: 10
negative: -3
plus: +4
float: 1.5
exponent: 1e3
quoted: "0x10"
tagged_str: !!str 5
yes_no: true
nothing: null
"""


def test_only_decimal_numbers_are_numbers() -> None:
    data, _ = yamlnodes.parse(TEXT, "s.yaml")
    assert data == {
        "hex": "0x10",
        "octal": "017",
        "binary": "0b11",
        "sexagesimal": "1:30",
        "sexagesimal_float": "1:30.5",
        "underscored": "1_000",
        "infinity": ".inf",
        "equals": "=",
        "decimal": 10,
        "negative": -3,
        "plus": 4,
        "float": 1.5,
        "exponent": "1e3",  # YAML 1.1: no dot, no float
        "quoted": "0x10",
        "tagged_str": "5",
        "yes_no": True,
        "nothing": None,
    }


@pytest.mark.parametrize(
    ("text", "where", "tag"),
    [
        ("a: !foo 1\n", (1, 4), "!foo"),
        ("a: !foo {b: 1}\n", (1, 4), "!foo"),
        ("a: !foo [1]\n", (1, 4), "!foo"),
        ("a: !!set {b: null}\n", (1, 4), "!!set"),
        ("a: !!omap [{b: 1}]\n", (1, 4), "!!omap"),
        ("a: !!binary aGVsbG8=\n", (1, 4), "!!binary"),
        ("a: !!python/tuple [1]\n", (1, 4), "!!python/tuple"),
        ("a: {b: !!map [1]}\n", (1, 8), "!!map"),
        ("!!python/object:os.system {}\n", (1, 1), "!!python/object:os.system"),
    ],
)
def test_a_tag_the_loader_does_not_know_is_refused_where_it_is(
    text: str, where: tuple[int, int], tag: str
) -> None:
    with pytest.raises(SiteFileError) as info:
        yamlnodes.parse(text, "s.yaml")
    (problem,) = info.value.problems
    assert (problem.line, problem.column) == where
    assert f"YAML tag '{tag}' is not supported" in problem.text
