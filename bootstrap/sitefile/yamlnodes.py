"""YAML text -> plain data, remembering where each value and key came from.

Why a module of its own: PyYAML's ``safe_load`` forgets where each value came from and
silently keeps the last of two duplicate keys. Here the text is *composed* into nodes
(which carry line/column marks) and turned into plain Python data by hand, refusing
duplicate keys, recursive aliases and alias bombs; the marks let ``explain`` point a
validation error at the right line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from bootstrap.sitefile.problems import Problem, SiteFileError, display, short
from bootstrap.sitetypes.model import Loc

MAX_DEPTH = 64
MAX_NODES = 50_000
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STD = "tag:yaml.org,2002:"
_MAP_TAG, _SEQ_TAG, _INT_TAG, _FLOAT_TAG = (f"{_STD}{t}" for t in ("map", "seq", "int", "float"))
# Scalar tags the site file may carry (implicitly or written out); anything else is refused.
_VALUE_TAG = f"{_STD}value"  # what YAML 1.1 makes of a plain "=": text here
_SCALAR_TAGS = {f"{_STD}{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")}
# YAML 1.1 reads 0x10, 017, 0b1, 1_000 and 1:30 (sexagesimal, = 90) as numbers: a site file
# means a decimal number or text, so only these are numbers; the others stay text (and a
# number field then refuses them at their line).
_DECIMAL_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)")
_DECIMAL_FLOAT = re.compile(r"[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?")


@dataclass
class Marks:
    """Where each value (and each mapping key) starts, by data path."""

    value: dict[Loc, tuple[int, int]]
    key: dict[Loc, tuple[int, int]]
    # the file each mark is in, for a site assembled from several files (``extends``);
    # a loc not listed is in the file the error is about
    files: dict[Loc, str] = field(default_factory=dict)


def _pos(mark: yaml.Mark | None) -> tuple[int, int] | None:
    return (mark.line + 1, mark.column + 1) if mark is not None else None


def parse(text: str, source: str) -> tuple[dict[Any, Any], Marks]:
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
        self.marks = Marks(value={}, key={})
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
        if not self._known_tag(node, loc):
            return None
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, display(loc))
        if id(node) in self.active:
            self._problem(node, f"{display(loc) or 'document'}: recursive YAML alias")
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

    def _known_tag(self, node: yaml.Node, loc: Loc) -> bool:
        """Refuse a tag the loader does not know (``!foo``, ``!!set``, ``!!python/...``)."""
        if isinstance(node, yaml.MappingNode):
            known = node.tag == _MAP_TAG
        elif isinstance(node, yaml.SequenceNode):
            known = node.tag == _SEQ_TAG
        elif isinstance(node, yaml.ScalarNode):
            known = node.tag in _SCALAR_TAGS or (node.tag == _VALUE_TAG and node.style is None)
        else:
            known = False
        if not known:
            tag = node.tag.replace(_STD, "!!") if node.tag.startswith(_STD) else node.tag
            self._problem(
                node,
                f"{display(loc) or 'document'}: YAML tag {short(tag)} is not supported here",
                "remove the tag: a site file holds plain mappings, lists and values",
            )
        return known

    def _scalar(self, node: yaml.ScalarNode, where: str) -> Any:
        if node.style is None and (
            (node.tag == _INT_TAG and not _DECIMAL_INT.fullmatch(node.value))
            or (node.tag == _FLOAT_TAG and not _DECIMAL_FLOAT.fullmatch(node.value))
            or node.tag == _VALUE_TAG
        ):
            return node.value  # 0x10, 017, 1:30, .inf, a plain "=": text, not a number
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
                    key_node, f"{display(loc) or 'document'}: a key must be a plain value"
                )
                continue
            key = self._scalar(key_node, display(loc))
            try:
                hash(key)
            except TypeError:  # pragma: no cover - scalars are hashable
                continue
            if key in explicit:
                first = _pos(explicit[key].start_mark)
                seen = f" (first at line {first[0]})" if first else ""
                self._problem(
                    key_node,
                    f"duplicate key {short(key)} in {display(loc) or 'the top level'}{seen}",
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
            self._problem(node, f"{display(loc) or 'document'}: '<<' must merge a mapping")
