"""What is wrong with a site file, and where: ``Problem`` and ``SiteFileError``.

Why a module of its own: the YAML reader (``yamlnodes``), the explanation of pydantic
errors (``explain``) and the loader (``bootstrap.siteload``) all report the same way, a
1-based line and column plus a text that names the field path
(``provider.hosts[1].address``), so the record, the error and the path display live
apart from each of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bootstrap.errors import ConfigError
from bootstrap.sitetypes.model import Loc

_HINT = "fix the site file, then check it with `drboot validate FILE`"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a site file, at a 1-based line and column."""

    line: int | None
    column: int | None
    text: str
    hint: str | None = None
    # the file it is in, when not the one the error is about (a base named by ``extends``)
    source: str | None = None

    def where(self, source: str) -> str:
        """``source:line:col`` (as much of it as is known)."""
        parts = [self.source or source]
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
        ordered = sorted(
            problems,
            key=lambda p: (
                p.source not in (None, source),
                p.source or "",
                p.line is None,
                p.line or 0,
                p.column or 0,
            ),
        )
        self.problems: tuple[Problem, ...] = tuple(ordered)
        first = ordered[0]
        lines = [first.text]
        lines += [f"{p.where(source)}: {p.text}" for p in ordered[1:]]
        super().__init__(
            "\n".join(lines),
            path=first.source or source,
            line=first.line,
            column=first.column,
            hint=first.hint or _HINT,
        )


def display(loc: Loc) -> str:
    """A data path as an operator writes it: ``provider.hosts[1].address``."""
    out = ""
    for el in loc:
        if isinstance(el, int) and not isinstance(el, bool):
            out += f"[{el}]"
        else:
            out += ("." if out else "") + str(el)
    return out


def short(value: Any) -> str:
    """``repr(value)``, cut to 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
