"""Durations as a site file writes them: ``"90s"``, ``"5m"``, ``"1h30m"``, ``"30d"`` or seconds.

Why a module of its own: a duration is stored as a positive ``timedelta``, read from
the short form (or an integer number of seconds) and written back to it, both in
serialised sites and in the JSON schema's defaults (``bootstrap.sitefile.schema``).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError

_DURATION_RE = re.compile(r"(?:(\d{1,6})d)?(?:(\d{1,6})h)?(?:(\d{1,6})m)?(?:(\d{1,9})s)?")
_MAX_DURATION = timedelta(days=3650)
_DURATION_HELP = "expected a duration like 30m, 1h30m, 90s, 30d or a number of seconds"


def parse_duration(value: Any) -> timedelta:
    """Turn ``"1h30m"``/``"90s"``/``"30d"``/``90`` into a positive ``timedelta``.

    Raises ``PydanticCustomError('duration', ...)`` for anything else (it never
    echoes the value).
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int) and not isinstance(value, bool):
        if value > _MAX_DURATION.total_seconds():  # before float(): 10**309 overflows it
            raise PydanticCustomError("duration", "expected a duration of at most 3650d")
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.isdigit() and len(text) <= 12:
            seconds = float(int(text))
        else:
            match = _DURATION_RE.fullmatch(text)
            if not text or match is None:
                raise PydanticCustomError("duration", _DURATION_HELP)
            d, h, m, s = (int(g) if g else 0 for g in match.groups())
            seconds = float(((d * 24 + h) * 60 + m) * 60 + s)
    else:
        raise PydanticCustomError("duration", _DURATION_HELP)
    if seconds <= 0:
        raise PydanticCustomError("duration", "expected a duration greater than zero")
    if seconds > _MAX_DURATION.total_seconds():
        raise PydanticCustomError("duration", "expected a duration of at most 3650d")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The short form of a duration: ``timedelta(seconds=5400)`` -> ``"1h30m"``."""
    total = int(value.total_seconds())
    if total <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^(\d+d)?(\d+h)?(\d+m)?(\d+s)?$|^\d+$"},
                {"type": "integer", "exclusiveMinimum": 0},
            ],
            "examples": ["90s", "5m", "1h30m", "30d", 600],
        }
    ),
]
