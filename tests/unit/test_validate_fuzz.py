"""Fuzzing ``drboot validate`` through the CLI, in-process: mutations of the inventory files and
random YAML-ish text must only ever exit 0, or 2 with ``FILE:LINE:COL:`` - never 70 (an internal
error), never another code, never a traceback.

Bounded for CI (200 examples per test); ``DRBOOT_FUZZ_EXAMPLES=5000`` for a longer hunt.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootstrap.cli import Deps, cli

REPO = Path(__file__).resolve().parents[2]
INVENTORY = {p.name: p.read_text() for p in sorted((REPO / "inventory").glob("*.yaml"))}
SETTINGS = settings(
    max_examples=int(os.environ.get("DRBOOT_FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# What a hand, an editor or a bad merge puts into a site file.
TOKENS = [
    "true", "false", "null", "~", "0x10", "017", "0b11", "1:30", "1_000", ".inf", "-1", "0",
    "9" * 309, "1e400", "2024-13-45", "!foo", "!!set", "!!python/object:os.system", "!!binary",
    "&a", "*a", "*undefined", "<<: *a", "{", "}", "[", "]", "- ", ": ", "? ", "|", ">", "'", '"',
    "#", "\t", "\n", "  ", "---", "...", "%YAML 1.1", "@", "`", "\\", "\u00e9", "\u202e", "\ufeff",
    "key: value", "servers: true", "hosts: []", "{env: X}", "{file: /nonexistent}", "\x00",
]  # fmt: skip


def _validate(text: str) -> tuple[int, str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "site.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        res = CliRunner().invoke(
            cli, ["--state-dir", str(Path(tmp) / "state"), "validate", str(path)], obj=Deps()
        )
        assert not (Path(tmp) / "state" / "crashes").exists(), res.output
    return res.exit_code, res.output, str(path)


def _check(text: str) -> None:
    code, output, path = _validate(text)
    assert code in (0, 2), f"exit {code}:\n{output}"
    assert "Traceback" not in output
    if code == 2:
        assert re.search(rf"^error: {re.escape(path)}:\d+:\d+: ", output, re.MULTILINE), output


VALUE = re.compile(r"^(\s*(?:- )?[\w.-]+:\s+)(\S.*?)(\s*)$", re.DOTALL)
# Mostly the tokens above (each a known way to trip a loader), some arbitrary text.
TOKEN = st.one_of(st.sampled_from(TOKENS), st.sampled_from(TOKENS), st.text(max_size=8))


@st.composite
def mutated(draw: st.DrawFn) -> str:
    lines = INVENTORY[draw(st.sampled_from(sorted(INVENTORY)))].splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        values = [n for n, line in enumerate(lines) if VALUE.match(line)]
        op = draw(
            st.sampled_from(["set-value", "set-value", "insert", "delete", "duplicate", "cut"])
        )
        token = draw(TOKEN)
        if op == "set-value" and values:
            i = draw(st.sampled_from(values))
            m = VALUE.match(lines[i])
            assert m is not None
            lines[i] = m[1] + token + m[3]
            continue
        if not lines:
            lines = [""]
        i = draw(st.integers(0, len(lines) - 1))
        line = lines[i]
        if op == "insert":
            at = draw(st.integers(0, len(line)))
            lines[i] = line[:at] + token + line[at:]
        elif op == "delete":
            del lines[i : i + draw(st.integers(1, 3))]
        elif op == "duplicate":
            lines.insert(i, line)
        else:
            lines[i] = line[: draw(st.integers(0, len(line)))]
    return "".join(lines)


@SETTINGS
@given(mutated())
def test_mutated_inventory_files_exit_0_or_2_with_a_location(text: str) -> None:
    _check(text)


@SETTINGS
@given(st.lists(TOKEN, max_size=40).map("".join))
def test_yaml_ish_text_exits_0_or_2_with_a_location(text: str) -> None:
    _check(text)


def test_the_inventory_files_themselves_validate() -> None:
    for name, text in INVENTORY.items():
        code, output, _ = _validate(text)
        assert code == 0, f"{name}: {output}"
