"""Property tests: any input ends in a Site or a located ConfigError, never a traceback.

Also: a value planted in a site is never echoed back, except in a "expected
one of ... (got ...)" choice mismatch outside secret-like keys.
"""

from __future__ import annotations

import copy
import datetime
import os
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootstrap.errors import ConfigError
from bootstrap.settings import Site
from bootstrap.site_example import EXAMPLE_SITE
from bootstrap.siteload import SiteFileError, load_site_text

REPO = Path(__file__).resolve().parents[2]
SOURCES = [EXAMPLE_SITE] + [p.read_text() for p in sorted((REPO / "inventory").glob("*.yaml"))]
# DRBOOT_PROP_EXAMPLES=5000 for a longer hunt (CI nightly); 300 keeps the unit run fast.
SETTINGS = settings(
    max_examples=int(os.environ.get("DRBOOT_PROP_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
MARKER = "Pl4nted-V4lue"
SECRET_WORDS = ("token", "passphrase", "password", "secret", "private_key", "deploy_key")


def _outcome(text: str) -> Site | ConfigError:
    """Load ``text``; anything but a Site or a ConfigError fails the test."""
    try:
        return load_site_text(text, "/prop/site.yaml")
    except ConfigError as err:
        assert err.message
        assert err.line is None or err.line >= 1
        assert err.column is None or err.column >= 1
        err.format()
        return err


YAML_BITS = st.sampled_from(
    [
        ":",
        ": ",
        "- ",
        " ",
        "  ",
        "\n",
        "\n  ",
        "[",
        "]",
        "{",
        "}",
        ",",
        "&a ",
        "*a",
        "!!str ",
        "!!binary ",
        "!x ",
        "'",
        '"',
        "#",
        "|",
        ">",
        "? ",
        "<<: ",
        "---\n",
        "...\n",
        "\t",
        "%YAML 1.1\n",
        "apiVersion",
        "drboot.dev/v1",
        "name",
        "provider",
        "type",
        "static",
        "lab",
        "hosts",
        "address",
        "token",
        "escrow",
        "k3s_token",
        "1",
        "-3",
        "0x1f",
        "1e400",
        ".nan",
        "true",
        "null",
        "~",
        "2024-13-45",
        "1h30m",
        "\\x00",
        "\u00e9",
        "\ufeff",
        "\x85",
        "\ud800",
    ]
)


@SETTINGS
@given(st.text(max_size=300))
def test_arbitrary_text_never_raises_anything_else(text: str) -> None:
    _outcome(text)


@SETTINGS
@given(st.lists(YAML_BITS, max_size=60).map("".join))
def test_yaml_ish_text_never_raises_anything_else(text: str) -> None:
    _outcome(text)


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.dates().map(datetime.date.isoformat)
    | st.sampled_from(
        [
            "drboot.dev/v1",
            "Site",
            "static",
            "lab",
            "argocd",
            "flux",
            "age",
            "shamir",
            "30m",
            "k3s_token",
            "192.0.2.1",
            "ha",
        ]
    )
)
KEYS = st.sampled_from(
    [
        "apiVersion",
        "kind",
        "name",
        "provider",
        "type",
        "hosts",
        "address",
        "servers",
        "kubernetes",
        "topology",
        "token",
        "escrow",
        "backend",
        "bundle",
        "repo",
        "url",
        "env",
        "file",
        "ssh",
        "sync_wait",
        "timeout",
        "report",
        "formats",
    ]
) | st.text(max_size=8)
NESTED = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=30,
)


@SETTINGS
@given(st.dictionaries(KEYS, NESTED, max_size=8))
def test_random_nested_mappings_never_raise_anything_else(data: dict[str, Any]) -> None:
    _outcome(yaml.safe_dump(data, allow_unicode=True))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*prefix, index))
    return out


def _replace(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    data = copy.deepcopy(data)
    cur = data
    for el in path[:-1]:
        cur = cur[el]
    cur[path[-1]] = value
    return data


@SETTINGS
@given(st.data())
def test_mutated_valid_sites_fail_located_and_never_echo_values(data: st.DataObject) -> None:
    base = yaml.safe_load(data.draw(st.sampled_from(SOURCES)))
    path = data.draw(st.sampled_from(_paths(base)))
    planted = data.draw(
        st.sampled_from([MARKER, f"{MARKER}-x", f"{MARKER}://h", f"/{MARKER}"])
        | st.builds(lambda n: {MARKER: n}, SCALARS)
        | st.builds(lambda n: [MARKER, n], SCALARS)
        | NESTED
    )
    text = yaml.safe_dump(_replace(base, path, planted), allow_unicode=True, sort_keys=False)
    result = _outcome(text)
    if isinstance(result, SiteFileError):
        assert result.problems
        assert all(p.line is not None for p in result.problems)
        for line in result.format().splitlines():
            if MARKER in line:
                _, field, said = line.removeprefix("/prop/site.yaml:").split(": ", 2)
                # a planted *key* may be named in the field path: keys are names, not values
                if MARKER not in said:
                    continue
                # a value only in a choice mismatch, and never under a secret-like key
                secretish = any(w in field for w in SECRET_WORDS)
                assert "expected one of" in said and not secretish, line
