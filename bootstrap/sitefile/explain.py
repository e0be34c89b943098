"""Pydantic validation errors -> ``Problem``s at the YAML location each one is about.

Why a module of its own: pydantic speaks of ``provider.static.hosts.1.address`` and
``Input should be ...``; an operator needs ``provider.hosts[1].address`` at line 12,
column 14, what was expected, and - never - the value that was given, except for a
mismatch against a fixed set of choices outside secret-like keys. Unknown fields get
the closest allowed name, found by walking the ``Site`` models.
"""

from __future__ import annotations

import datetime
import difflib
import re
import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from bootstrap.settings import Site
from bootstrap.sitefile.problems import Problem, display, short
from bootstrap.sitefile.yamlnodes import Marks
from bootstrap.sitetypes.model import CrossFieldError, Loc

_SECRET_WORDS = re.compile(
    r"password|token|secret|private_key|passphrase|deploy_key|credential", re.IGNORECASE
)


def problems_of(errors: list[ErrorDetails], data: dict[Any, Any], marks: Marks) -> list[Problem]:
    """Every error of one validation as located Problems (echoes of other errors dropped)."""
    return [p for err in _drop_echoes(errors) for p in _explain(err, data, marks)]


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


def _mark_for(
    loc: Loc, absent: bool, on_key: bool, marks: Marks
) -> tuple[int | None, int | None, str | None]:
    """Line, column and (for a site assembled with ``extends``) the file of ``loc``."""
    found: Loc = loc
    if absent:
        # a missing field: point at the key of the mapping that lacks it
        found = loc[:-1]
        while True:
            pos = marks.key.get(found) or marks.value.get(found)
            if pos is not None or not found:
                break
            found = found[:-1]
    elif on_key:
        pos = marks.key.get(loc) or marks.value.get(loc)
    else:
        pos = marks.value.get(loc) or marks.key.get(loc)
    if pos is None:
        found = ()
        pos = marks.value.get((), (1, 1))
    return pos[0], pos[1], marks.files.get(found)


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


def _explain(err: ErrorDetails, data: dict[Any, Any], marks: Marks) -> list[Problem]:
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
                text += f" (got {short(got)})"
        else:
            text = (
                f"required field is missing: one of {expected}" if expected else _SIMPLE["missing"]
            )
    elif etype == "literal_error":
        expected = str(ctx.get("expected", "")).replace(" or ", ", ")
        text = f"expected one of {expected}"
        got = err.get("input")
        if not _secretish(loc) and isinstance(got, str | int | float | bool) and got is not None:
            text += f" (got {short(got)})"
    elif etype == "inline_secret":
        path, absent = _walk(data, loc, ())
        line, col, source = _mark_for(path, absent, False, marks)
        return [
            Problem(
                line,
                col,
                f"inline secret not allowed at {display(path)}: use {ctx.get('suggest', '')}",
                "put the secret in an environment variable, a 0600 file or the escrow bundle, "
                "and reference it",
                source,
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
    marks: Marks,
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
    line, col, source = _mark_for(path, absent, on_key, marks)
    where = display(path) or "top level"
    return Problem(line, col, f"{where}: {text}", hint, source)


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
