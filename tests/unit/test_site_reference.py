"""docs/SITE-REFERENCE.md is what the generator makes from the schema, and it names every field.

The reference is generated (``bootstrap.sitefile.reference``), so it cannot drift: the first
test fails when the checked-in file differs from what the models produce now, and says the
one command that regenerates it. The second walks the pydantic models themselves (not the
JSON Schema the generator reads) and checks each field has its row, with its description
and its default, so a generator that skipped a kind of field would fail too.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from bootstrap.cli import cli
from bootstrap.settings import Site
from bootstrap.sitefile.reference import REGENERATE, site_reference
from bootstrap.sitetypes.durations import format_duration
from bootstrap.sitetypes.secretrefs import EscrowRef, SecretRef
from tests.conftest import REPO

DOC = REPO / "docs" / "SITE-REFERENCE.md"
INLINE = (EscrowRef, SecretRef)


def test_the_checked_in_reference_is_what_the_schema_generates() -> None:
    made = site_reference()
    kept = DOC.read_text() if DOC.exists() else ""
    if kept != made:
        diff = "".join(
            list(
                difflib.unified_diff(
                    kept.splitlines(True), made.splitlines(True), str(DOC), "generated"
                )
            )[:60]
        )
        raise AssertionError(
            f"{DOC.relative_to(REPO)} differs from the schema; regenerate it with\n"
            f"    {REGENERATE}\n(from the repository root) and commit it.\n{diff}"
        )


def test_the_command_prints_exactly_the_reference() -> None:
    res = CliRunner().invoke(cli, ["schema", "--format", "markdown"])
    assert res.exit_code == 0, res.output
    assert res.output == site_reference()
    json_res = CliRunner().invoke(cli, ["schema"])
    assert json_res.output.lstrip().startswith("{")  # the JSON Schema is still the default


def _models(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for arg in typing.get_args(annotation):
        yield from _models(arg)


def _is_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        return any(_is_list(a) for a in typing.get_args(annotation))
    return origin in (tuple, list)


def _fields(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, Any]]:
    for name, info in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        yield path, info
        below = [m for m in _models(info.annotation) if m not in INLINE]
        for sub in below:
            yield from _fields(sub, f"{path}[]" if _is_list(info.annotation) else path)


def _shown(default: Any) -> str | None:
    if default is PydanticUndefined:
        return None
    if isinstance(default, timedelta):
        return f"`{format_duration(default)}`"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, int | float) or (isinstance(default, str) and default):
        return f"`{default}`"
    if isinstance(default, Path):
        return f"`{default}`"
    return None


def test_every_field_of_the_models_has_its_row() -> None:
    text = site_reference()
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("| `"):
            rows.setdefault(line.split("|")[1].strip().strip("`"), []).append(line)
    seen = list(_fields(Site, ""))
    assert len(seen) > 80  # the walk found the nested sections, not just the top level
    for path, info in seen:
        assert path in rows, f"{path} has no row in the reference"
        description = " ".join((info.description or "").split()).replace("|", "\\|")
        assert description, f"{path} has no description in the model"
        # a union's choices share paths (provider.type of static and of lab): find its own
        mine = [r for r in rows[path] if f"| {description} |" in r]
        assert mine, (path, description, rows[path])
        shown = _shown(info.default)
        if info.is_required():
            assert any("| *required* |" in r for r in mine), mine
        elif shown is not None:
            assert any(f"| {shown} |" in r for r in mine), (path, shown, mine)
