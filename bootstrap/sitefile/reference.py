"""The site-file reference (docs/SITE-REFERENCE.md), generated from the schema.

Why a module of its own: a hand-written reference drifts from the models the day a field
is added. This one is made from ``site_schema()`` (the pydantic models, their defaults and
descriptions), so every field appears with its path, type, default, allowed values and
description, and ``tests/unit/test_site_reference.py`` fails when the checked-in file is
not what this produces. Regenerate, from the repository root, with ``drboot schema
--format markdown > docs/SITE-REFERENCE.md``.

Sections follow the file: one per model, in field order; a discriminated union (``provider``
by ``type``, ``escrow`` by ``backend``, ``reconciler`` by ``type``) gets one section per
choice; list items are written ``hosts[]``. Secret references are value types, written
inline (``{env: VAR}``, ``{file: PATH}``, ``{escrow: ITEM}``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

from bootstrap.sitefile.schema import site_schema
from bootstrap.sitetypes.durations import Duration
from bootstrap.sitetypes.secretrefs import EscrowRef, SecretRef

REGENERATE = "drboot schema --format markdown > docs/SITE-REFERENCE.md"
_INLINE_MODELS = frozenset({EscrowRef.__name__, SecretRef.__name__})
Schema = dict[str, Any]


@dataclass(frozen=True)
class _Row:
    path: str
    type: str
    required: bool
    default: str
    allowed: str
    description: str


@dataclass(frozen=True)
class _Section:
    title: str
    description: str
    rows: tuple[_Row, ...]


def site_reference() -> str:
    """The Markdown reference of every site-file field."""
    schema = site_schema()
    walker = _Walker(schema.get("$defs", {}))
    sections = list(walker.sections("", "the site file", schema))
    out = [
        "# Site file reference",
        "",
        "Generated from the site-file schema; do not edit by hand. Regenerate with",
        "",
        f"    {REGENERATE}",
        "",
        "(`tests/unit/test_site_reference.py` fails when this file and the schema differ).",
        "`drboot schema` prints the same schema as JSON Schema, for editors; `drboot init`",
        "writes a commented example. Durations are written `90s`, `5m`, `1h30m`, `30d` or a",
        "number of seconds; secrets are never inline, only references: `{env: VAR}`,",
        "`{file: PATH}` or `{escrow: ITEM}`. A field marked *required* has no default.",
        "",
        "## Contents",
        "",
    ]
    out += [f"- [{s.title}](#{_anchor(s.title)})" for s in sections]
    for section in sections:
        out += ["", f"## {section.title}", ""]
        if section.description:
            out += [_text(section.description), ""]
        out += [
            "| field | type | default | allowed values | description |",
            "|---|---|---|---|---|",
        ]
        for row in section.rows:
            default = "*required*" if row.required else row.default or _implied(row.type)
            out.append(
                f"| `{row.path}` | {row.type} | {default} | {row.allowed} | "
                f"{_text(row.description)} |"
            )
    return "\n".join(out) + "\n"


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    kept = "".join(c for c in title.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def _implied(kind: str) -> str:
    """The default pydantic leaves out of the schema (a ``default_factory``)."""
    if kind.startswith("section"):
        return "its fields' defaults"
    if kind.startswith(("list", "map")):
        return "empty"
    return ""


def _text(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _code(value: Any) -> str:
    text = value if isinstance(value, str) and value else json.dumps(value)
    return f"`{text}`".replace("|", "\\|")


class _Walker:
    def __init__(self, defs: dict[str, Schema]) -> None:
        self.defs = defs
        self.duration = TypeAdapter(Duration).json_schema()

    def resolve(self, schema: Schema) -> tuple[Schema, str | None]:
        """The schema behind a ``$ref`` (and the model's name), else itself."""
        ref = schema.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            return self.defs[name], name
        return schema, None

    def sections(self, path: str, title: str, model: Schema) -> Iterator[_Section]:
        rows: list[_Row] = []
        nested: list[tuple[str, str, Schema]] = []
        required = set(model.get("required", []))
        for name, prop in model.get("properties", {}).items():
            field = f"{path}.{name}" if path else name
            rows.append(self.row(field, prop, name in required))
            nested += self.children(field, prop)
        yield _Section(title, str(model.get("description", "")), tuple(rows))
        for child_path, child_title, child in nested:
            yield from self.sections(child_path, child_title, child)

    def children(self, field: str, prop: Schema) -> list[tuple[str, str, Schema]]:
        """The models below a field: its own section, or one per choice of a union."""
        value = _non_null(prop)
        if "discriminator" in value:
            key = value["discriminator"]["propertyName"]
            found = []
            for choice, ref in value["discriminator"]["mapping"].items():
                model, _ = self.resolve({"$ref": ref})
                found.append((field, f"`{field}` with `{key}: {choice}`", model))
            return found
        if value.get("type") == "array" and "items" in value:
            return self._model(f"{field}[]", value["items"])
        return [(field, c[1], c[2]) for c in self._model(field, value)]

    def _model(self, field: str, schema: Schema) -> list[tuple[str, str, Schema]]:
        model, name = self.resolve(schema)
        if name is None or name in _INLINE_MODELS or "properties" not in model:
            return []
        return [(field, f"`{field}`", model)]

    def row(self, field: str, prop: Schema, required: bool) -> _Row:
        value = _non_null(prop)
        nullable = value is not prop
        kind, allowed = self.describe(value)
        if nullable:
            kind += " or null"
        default = _code(prop["default"]) if "default" in prop else ""
        if prop.get("default") is None and "default" in prop:
            default = "`null`"
        return _Row(field, kind, required, default, allowed, str(prop.get("description", "")))

    def describe(self, schema: Schema) -> tuple[str, str]:
        """A short type name and the values it allows (enum, range, pattern, examples)."""
        if self._is_duration(schema):
            return "duration", "e.g. " + ", ".join(_code(e) for e in schema.get("examples", []))
        if "discriminator" in schema:
            key = schema["discriminator"]["propertyName"]
            choices = ", ".join(_code(c) for c in schema["discriminator"]["mapping"])
            return f"section, chosen by `{key}`", f"`{key}`: {choices}"
        for union in ("oneOf", "anyOf"):
            if union in schema:
                parts = [self.describe(self.resolve(s)[0] | _named(s)) for s in schema[union]]
                return " or ".join(p[0] for p in parts), "; ".join(p[1] for p in parts if p[1])
        model, name = self.resolve(schema)
        if name is not None or schema.get("_model"):
            name = name or str(schema["_model"])
            if name in _INLINE_MODELS:
                return _inline(model)
            return "section", ""
        if schema.get("type") == "array" and "$ref" in schema.get("items", {}):
            return f"list of sections (`{schema['items']['$ref'].rsplit('/', 1)[-1]}`)", ""
        return _scalar(schema)

    def _is_duration(self, schema: Schema) -> bool:
        return bool(schema.get("anyOf")) and schema.get("anyOf") == self.duration.get("anyOf")


def _named(schema: Schema) -> Schema:
    ref = schema.get("$ref")
    return {"_model": ref.rsplit("/", 1)[-1]} if isinstance(ref, str) else {}


def _non_null(prop: Schema) -> Schema:
    """``X | None`` as ``X`` (the caller says "or null")."""
    options = prop.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        (value,) = [o for o in options if o != {"type": "null"}]
        return value if isinstance(value, dict) else prop
    return prop


def _inline(model: Schema) -> tuple[str, str]:
    """A value type written inline, ``{escrow: ITEM}``, and what ITEM may be."""
    parts, allowed = [], []
    for key, prop in model.get("properties", {}).items():
        value = _non_null(prop)
        what = {"env": "VAR", "file": "PATH", "escrow": "ITEM"}.get(key, key.upper())
        parts.append(f"`{{{key}: {what}}}`")
        if "enum" in value:
            allowed.append(f"{what}: one of " + ", ".join(_code(v) for v in value["enum"]))
    return " or ".join(parts), "; ".join(allowed)


def _scalar(schema: Schema) -> tuple[str, str]:
    kind = str(schema.get("type", "any"))
    allowed: list[str] = []
    if "const" in schema:
        return kind, f"only {_code(schema['const'])}"
    if "enum" in schema:
        allowed.append("one of " + ", ".join(_code(v) for v in schema["enum"]))
    if kind == "array":
        item_kind, item_allowed = _scalar(schema.get("items", {}))
        kind = f"list of {item_kind}"
        if item_allowed:
            allowed.append(f"each: {item_allowed}")
    if kind == "object" and "additionalProperties" in schema:
        value_kind, _ = _scalar(schema["additionalProperties"])
        kind = f"map of string to {value_kind}"
    if schema.get("format") == "path":
        kind = "path"
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    if low is not None or high is not None:
        left = "" if low is None else f"{low} {'<' if 'exclusiveMinimum' in schema else '≤'} "
        right = "" if high is None else f" {'<' if 'exclusiveMaximum' in schema else '≤'} {high}"
        allowed.append(f"{left}n{right}")
    if "minLength" in schema:
        allowed.append(f"at least {schema['minLength']} character(s)")
    if "pattern" in schema:
        allowed.append(f"matches {_code(schema['pattern'])}")
    return kind, "; ".join(allowed)
