"""Load a site file into a ``Site``, or say exactly where and why it is wrong.

PyYAML's ``safe_load`` forgets where each value came from and silently keeps
the last of two duplicate keys. Here the text is *composed* into nodes (which
carry line/column marks), turned into plain Python data by hand (refusing
duplicate keys, recursive aliases and alias bombs), and validated with
pydantic. Each pydantic error is mapped back to the YAML node it is about and
rewritten in operator language: the field path (``provider.hosts[1].address``),
what was expected, and - never - the value that was given, except for a
mismatch against a fixed set of choices outside secret-like keys.

Every input ends in a ``Site`` or a ``ConfigError`` (``SiteFileError``, which
also lists every problem found); never in a traceback.
"""

from __future__ import annotations

import datetime
import difflib
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import ErrorDetails

from bootstrap.errors import ConfigError
from bootstrap.settings import Site
from bootstrap.sitetypes.durations import format_duration
from bootstrap.sitetypes.model import CrossFieldError, Loc

MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_NODES = 50_000
_SECRET_WORDS = re.compile(
    r"password|token|secret|private_key|passphrase|deploy_key|credential", re.IGNORECASE
)
_MERGE_TAG = "tag:yaml.org,2002:merge"
_HINT = "fix the site file, then check it with `drboot validate FILE`"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a site file, at a 1-based line and column."""

    line: int | None
    column: int | None
    text: str
    hint: str | None = None

    def where(self, source: str) -> str:
        """``source:line:col`` (as much of it as is known)."""
        parts = [source]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)


class SiteFileError(ConfigError):
    """A ``ConfigError`` for a site file that also carries every problem found.

    The error's own line/column/message are those of the first problem in
    document order; the message lists the others, one per line.
    """

    def __init__(self, source: str, problems: list[Problem]) -> None:
        ordered = sorted(problems, key=lambda p: (p.line is None, p.line or 0, p.column or 0))
        self.problems: tuple[Problem, ...] = tuple(ordered)
        first = ordered[0]
        lines = [first.text]
        lines += [f"{p.where(source)}: {p.text}" for p in ordered[1:]]
        super().__init__(
            "\n".join(lines),
            path=source,
            line=first.line,
            column=first.column,
            hint=first.hint or _HINT,
        )


# --------------------------------------------------------------------------- public API


def load_site(path: Path) -> Site:
    """Read, parse and validate the site file at ``path``.

    Relative paths inside it are resolved against the file's directory.
    """
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            "site file not found", path=source, hint="check the path, or `drboot init FILE`"
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            "site file is a directory", path=source, hint="pass the YAML file itself"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read site file: {exc.strerror or type(exc).__name__}",
            path=source,
            hint="check the path and its permissions",
        ) from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(
            f"site file is larger than {MAX_BYTES} bytes",
            path=source,
            hint="is this the right file?",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"site file is not UTF-8 (byte {exc.start})", path=source, hint="save it as UTF-8"
        ) from None
    return load_site_text(text, source, base_dir=Path(path).absolute().parent)


def load_site_text(text: str, source: str, *, base_dir: Path | None = None) -> Site:
    """Parse and validate site text; ``source`` is the path it came from (for messages).

    Relative paths are resolved against ``base_dir``, by default the directory
    of ``source`` (so a journal holding the text and the path reloads the same
    site). ``~`` is always expanded.
    """
    if base_dir is None:
        base_dir = Path(source).absolute().parent
    if len(text) > MAX_BYTES:
        raise ConfigError(f"site text is larger than {MAX_BYTES} characters", path=source)
    data, marks = _parse(text, source)
    try:
        return Site.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        errors = _drop_echoes(exc.errors())
        problems = [p for err in errors for p in _explain(err, data, marks)]
        raise SiteFileError(source, problems) from None


def site_schema() -> dict[str, Any]:
    """The JSON Schema of a site file (draft 2020-12), with descriptions."""
    schema = Site.model_json_schema(mode="validation", schema_generator=_SchemaGenerator)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://drboot.dev/schemas/site-v1.json"
    return schema


class _SchemaGenerator(GenerateJsonSchema):
    """Shows duration defaults the way they are written in a site file (``10s``, not ISO)."""

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, datetime.timedelta):
            return format_duration(dft)
        return super().encode_default(dft)


# --------------------------------------------------------------------------- YAML -> data + marks


@dataclass
class _Marks:
    """Where each value (and each mapping key) starts, by data path."""

    value: dict[Loc, tuple[int, int]]
    key: dict[Loc, tuple[int, int]]


def _pos(mark: yaml.Mark | None) -> tuple[int, int] | None:
    return (mark.line + 1, mark.column + 1) if mark is not None else None


def _parse(text: str, source: str) -> tuple[dict[Any, Any], _Marks]:
    """Compose ``text`` and build plain data, refusing what safe_load would accept silently."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:
        raise SiteFileError(source, [_yaml_problem(exc, text)]) from None
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as exc:
        raise SiteFileError(source, [_yaml_problem(exc, text)]) from None
    except RecursionError:
        raise SiteFileError(
            source, [Problem(None, None, f"nesting deeper than {MAX_DEPTH} levels")]
        ) from None
    finally:
        loader.dispose()
    if node is None:
        raise SiteFileError(
            source,
            [Problem(1, 1, "site file is empty", "start from `drboot init FILE`")],
        )
    if not isinstance(node, yaml.MappingNode):
        line, col = _pos(node.start_mark) or (1, 1)
        raise SiteFileError(
            source,
            [
                Problem(
                    line,
                    col,
                    "expected a mapping at the top level (apiVersion, kind, name, provider, ...)",
                    "start from `drboot init FILE`",
                )
            ],
        )
    builder = _Builder(loader)
    data = builder.build(node, (), 0)
    if builder.problems:
        raise SiteFileError(source, builder.problems)
    assert isinstance(data, dict)
    return data, builder.marks


def _yaml_problem(exc: yaml.YAMLError, text: str) -> Problem:
    """A YAML syntax error as a Problem: its own words and mark, never the source snippet."""
    if isinstance(exc, yaml.MarkedYAMLError):
        pos = _pos(exc.problem_mark) or _pos(exc.context_mark) or (None, None)
        words = exc.problem or "invalid YAML"
        if exc.context:
            started = _pos(exc.context_mark)
            since = f" (from line {started[0]}, column {started[1]})" if started else ""
            words = f"{exc.context}{since}: {words}"
        return Problem(pos[0], pos[1], f"YAML syntax error: {words}", "fix the YAML syntax")
    if isinstance(exc, yaml.reader.ReaderError):
        at = max(0, min(exc.position, len(text)))
        line = text.count("\n", 0, at) + 1
        col = at - (text.rfind("\n", 0, at) + 1) + 1
        code = exc.character if isinstance(exc.character, int) else 0
        return Problem(
            line, col, f"unacceptable character #x{code:04x} in YAML", "remove the character"
        )
    return Problem(None, None, f"YAML error: {type(exc).__name__}", "fix the YAML syntax")


class _Builder:
    """Turns composed nodes into dicts/lists/scalars, recording marks and problems."""

    def __init__(self, loader: yaml.SafeLoader) -> None:
        self.loader = loader
        self.marks = _Marks(value={}, key={})
        self.problems: list[Problem] = []
        self.nodes = 0
        self.active: set[int] = set()

    def _problem(self, node: yaml.Node, text: str, hint: str | None = None) -> None:
        line, col = _pos(node.start_mark) or (None, None)
        self.problems.append(Problem(line, col, text, hint))

    def build(self, node: yaml.Node, loc: Loc, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            if self.nodes == MAX_NODES + 1:
                self._problem(node, f"more than {MAX_NODES} YAML nodes (alias expansion?)")
            return None
        if depth > MAX_DEPTH:
            self._problem(node, f"nesting deeper than {MAX_DEPTH} levels")
            return None
        pos = _pos(node.start_mark)
        if pos is not None:
            self.marks.value.setdefault(loc, pos)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, _display(loc))
        if id(node) in self.active:
            self._problem(node, f"{_display(loc) or 'document'}: recursive YAML alias")
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [
                    self.build(child, (*loc, i), depth + 1) for i, child in enumerate(node.value)
                ]
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, loc, depth)
            self._problem(node, "unsupported YAML node")
            return None
        finally:
            self.active.discard(id(node))

    def _scalar(self, node: yaml.ScalarNode, where: str) -> Any:
        try:
            return self.loader.construct_object(node)
        except yaml.YAMLError as exc:
            words = getattr(exc, "problem", None) or "cannot read value"
            self._problem(node, f"{where or 'value'}: {words}", "quote the value")
        except (ValueError, OverflowError, TypeError):
            # e.g. a date like 2024-13-45 that PyYAML's resolver takes for a timestamp
            self._problem(node, f"{where or 'value'}: not a valid YAML value", "quote the value")
        return None

    def _mapping(self, node: yaml.MappingNode, loc: Loc, depth: int) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        merged: set[Any] = set()
        explicit: dict[Any, yaml.Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                for source in self._merge_sources(value_node, loc):
                    value = self.build(source, loc, depth + 1)
                    if isinstance(value, dict):
                        for k, v in value.items():
                            if k not in explicit:
                                result[k] = v
                                merged.add(k)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self._problem(
                    key_node, f"{_display(loc) or 'document'}: a key must be a plain value"
                )
                continue
            key = self._scalar(key_node, _display(loc))
            try:
                hash(key)
            except TypeError:  # pragma: no cover - scalars are hashable
                continue
            if key in explicit:
                first = _pos(explicit[key].start_mark)
                seen = f" (first at line {first[0]})" if first else ""
                self._problem(
                    key_node,
                    f"duplicate key {_short(key)} in {_display(loc) or 'the top level'}{seen}",
                    "remove one of them: YAML would silently keep the last",
                )
                continue
            explicit[key] = key_node
            merged.discard(key)
            key_pos = _pos(key_node.start_mark)
            if key_pos is not None:
                self.marks.key[(*loc, key)] = key_pos
            result[key] = self.build(value_node, (*loc, key), depth + 1)
        return result

    def _merge_sources(self, node: yaml.Node, loc: Loc) -> Iterator[yaml.Node]:
        if isinstance(node, yaml.MappingNode):
            yield node
        elif isinstance(node, yaml.SequenceNode) and all(
            isinstance(n, yaml.MappingNode) for n in node.value
        ):
            yield from node.value
        else:
            self._problem(node, f"{_display(loc) or 'document'}: '<<' must merge a mapping")


# ------------------------------------------------------------------ pydantic errors -> problems


def _drop_echoes(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """Drop a list's ``too_short`` that only follows from its items' own errors.

    pydantic reports a tuple whose every item failed as also being too short.
    """
    locs = [tuple(e["loc"]) for e in errors]
    return [
        e
        for e in errors
        if not (
            e["type"] == "too_short"
            and any(len(o) > len(e["loc"]) and o[: len(e["loc"])] == tuple(e["loc"]) for o in locs)
        )
    ]


def _display(loc: Loc) -> str:
    out = ""
    for el in loc:
        if isinstance(el, int) and not isinstance(el, bool):
            out += f"[{el}]"
        else:
            out += ("." if out else "") + str(el)
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _walk(data: Any, prefix: Loc, rel: Loc) -> tuple[Loc, bool]:
    """Map a pydantic location onto the data path; True if the last element is absent.

    Elements of ``prefix`` that are not in the data are union tags pydantic adds
    (``provider.static.hosts``) and are dropped. An absent last element of
    ``rel`` is a missing field and is kept.
    """
    kept: list[str | int] = []
    cur = data
    full = (*prefix, *rel)
    for index, el in enumerate(full):
        found, child = _child(cur, el)
        if found:
            kept.append(el)
            cur = child
        elif index >= len(prefix):
            kept.extend(full[index:])
            return tuple(kept), True
    return tuple(kept), False


def _child(container: Any, el: str | int) -> tuple[bool, Any]:
    """(True, container[el]) if the data has that key or index, else (False, None)."""
    if isinstance(container, dict):
        try:
            if el in container:
                return True, container[el]
        except TypeError:
            return False, None
    elif isinstance(container, list) and isinstance(el, int) and 0 <= el < len(container):
        return True, container[el]
    return False, None


def _mark_for(loc: Loc, absent: bool, on_key: bool, marks: _Marks) -> tuple[int | None, int | None]:
    if absent:
        # a missing field: point at the key of the mapping that lacks it
        parent = loc[:-1]
        while True:
            pos = marks.key.get(parent) or marks.value.get(parent)
            if pos is not None or not parent:
                break
            parent = parent[:-1]
    elif on_key:
        pos = marks.key.get(loc) or marks.value.get(loc)
    else:
        pos = marks.value.get(loc) or marks.key.get(loc)
    if pos is None:
        pos = marks.value.get((), (1, 1))
    return pos


_SIMPLE = {
    "missing": "required field is missing",
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "finite_number": "expected a finite number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "dict_type": "expected a mapping",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "path_type": "expected a path",
    "string_too_short": "expected a non-empty string",
    "string_unicode": "expected a string",
}


def _explain(err: ErrorDetails, data: dict[Any, Any], marks: _Marks) -> list[Problem]:
    """One pydantic error as one or more located Problems."""
    etype = err["type"]
    loc: Loc = tuple(err["loc"])
    ctx: Mapping[str, Any] = err.get("ctx") or {}
    cross = ctx.get("error")
    if etype == "value_error" and isinstance(cross, CrossFieldError):
        return [_problem(data, marks, loc, rel, text, None) for rel, text in cross.problems]

    hint: str | None = None
    rel: Loc = ()
    prefix = loc
    on_key = False
    if etype == "missing":
        prefix, rel = loc[:-1], loc[-1:]
        text = _SIMPLE[etype]
    elif etype == "extra_forbidden":
        on_key = True
        close, hint = _did_you_mean(loc)
        text = f"unknown field (did you mean '{close}'?)" if close else "unknown field"
    elif etype in ("union_tag_invalid", "union_tag_not_found"):
        disc = str(ctx.get("discriminator", "type")).strip("'")
        rel = (disc,)
        expected = ctx.get("expected_tags") or _choices(loc, disc)
        if etype == "union_tag_invalid":
            text = f"expected one of {expected}"
            got = ctx.get("tag")
            if got is not None and not _secretish(loc):
                text += f" (got {_short(got)})"
        else:
            text = (
                f"required field is missing: one of {expected}" if expected else _SIMPLE["missing"]
            )
    elif etype == "literal_error":
        expected = str(ctx.get("expected", "")).replace(" or ", ", ")
        text = f"expected one of {expected}"
        got = err.get("input")
        if not _secretish(loc) and isinstance(got, str | int | float | bool) and got is not None:
            text += f" (got {_short(got)})"
    elif etype == "inline_secret":
        path, absent = _walk(data, loc, ())
        line, col = _mark_for(path, absent, False, marks)
        return [
            Problem(
                line,
                col,
                f"inline secret not allowed at {_display(path)}: use {ctx.get('suggest', '')}",
                "put the secret in an environment variable, a 0600 file or the escrow bundle, "
                "and reference it",
            )
        ]
    elif etype in _SIMPLE:
        text = _SIMPLE[etype]
        if etype == "string_type" and isinstance(
            err.get("input"), int | float | bool | datetime.date
        ):
            hint = "quote the value so YAML reads it as a string"
    elif etype in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {
            "greater_than": ">",
            "greater_than_equal": ">=",
            "less_than": "<",
            "less_than_equal": "<=",
        }[etype]
        limit = next(iter(ctx.values()), "")
        text = f"expected a number {op} {limit}"
    elif etype == "too_short":
        text = f"expected at least {ctx.get('min_length', 1)} item(s)"
    elif etype == "too_long":
        text = f"expected at most {ctx.get('max_length', '')} item(s)"
    else:
        text = _plain(err["msg"])
    return [_problem(data, marks, prefix, rel, text, hint, on_key=on_key)]


def _problem(
    data: dict[Any, Any],
    marks: _Marks,
    prefix: Loc,
    rel: Loc,
    text: str,
    hint: str | None,
    *,
    on_key: bool = False,
) -> Problem:
    path, absent = _walk(data, prefix, rel)
    if not absent and isinstance(_value_at(data, path), dict | list):
        on_key = True  # a whole mapping/list is wrong: point at its key
    line, col = _mark_for(path, absent, on_key, marks)
    where = _display(path) or "top level"
    return Problem(line, col, f"{where}: {text}", hint)


def _value_at(data: Any, path: Loc) -> Any:
    cur = data
    for el in path:
        cur = cur[el]
    return cur


def _plain(msg: str) -> str:
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if msg.startswith("Input should be "):
        msg = "expected " + msg.removeprefix("Input should be ")
    return msg


def _secretish(loc: Loc) -> bool:
    return any(isinstance(el, str) and _SECRET_WORDS.search(el) for el in loc)


# ------------------------------------------------------------------ model introspection (hints)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """Every model class reachable in a field annotation (Optional, unions, tuples, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, tuple, list, dict):
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    return []


def _models_at(loc: Loc) -> list[type[BaseModel]]:
    """Which models can sit at a pydantic location (tags narrow unions)."""
    current: list[type[BaseModel]] = [Site]
    for el in loc:
        if isinstance(el, int):
            continue
        nxt = [
            m
            for model in current
            if el in model.model_fields
            for m in _models_in(model.model_fields[el].annotation)
        ]
        if nxt:
            current = nxt
            continue
        tagged = [m for m in current if el in _tags_of(m)]
        if tagged:
            current = tagged
    return current


def _tags_of(model: type[BaseModel]) -> set[str]:
    tags = {"escrow-ref"} if model.__name__ == "EscrowRef" else set()
    if model.__name__ == "SecretRef":
        tags.add("secret-ref")
    for name in ("type", "backend"):
        field = model.model_fields.get(name)
        if field is not None and typing.get_origin(field.annotation) is typing.Literal:
            tags.update(str(a) for a in typing.get_args(field.annotation))
    return tags


def _did_you_mean(loc: Loc) -> tuple[str | None, str]:
    """The closest allowed field name (if any) and a hint listing them all."""
    names = sorted({n for m in _models_at(loc[:-1]) for n in m.model_fields})
    if not names:
        return None, "remove the unknown field"
    close = difflib.get_close_matches(str(loc[-1]), names, n=1)
    return (close[0] if close else None), f"allowed here: {', '.join(names)}"


def _choices(loc: Loc, disc: str) -> str:
    tags = sorted(
        {
            str(a)
            for m in _models_at(loc)
            if (f := m.model_fields.get(disc)) is not None
            and typing.get_origin(f.annotation) is typing.Literal
            for a in typing.get_args(f.annotation)
        }
    )
    return ", ".join(f"'{t}'" for t in tags)
