"""The base of every site model, and how a check across fields says where it failed.

Why a module of its own: every section of the site file (``bootstrap.settings``) and
every reusable value model (``bootstrap.sitetypes.secretrefs``) shares one
configuration (unknown keys refused, frozen, defaults validated), and the loader
(``bootstrap.siteload``) needs ``CrossFieldError`` and ``Loc`` to point a cross-field
problem at the right YAML line without importing every section.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

Loc = tuple[str | int, ...]


class CrossFieldError(ValueError):
    """A check across fields failed; ``problems`` are (location, text) pairs.

    Locations are relative to the model that raised it. The loader joins them
    to the model's own location and points at the YAML node of each one.
    """

    def __init__(self, problems: Sequence[tuple[Loc, str]]) -> None:
        self.problems: tuple[tuple[Loc, str], ...] = tuple(problems)
        super().__init__("; ".join(f"{'.'.join(map(str, loc))}: {text}" for loc, text in problems))


def raise_if(problems: list[tuple[Loc, str]]) -> None:
    """Raise one ``CrossFieldError`` carrying ``problems``, if there are any."""
    if problems:
        raise CrossFieldError(problems)


class SiteModel(BaseModel):
    """Base of every site model: strict about keys, frozen, defaults validated too."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        validate_default=True,
    )
