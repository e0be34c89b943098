"""Paths in a site file: ``~`` expanded, relative ones anchored at the site file's directory.

Why a module of its own: the loader passes ``{"base_dir": ...}`` as validation context
(``bootstrap.siteload`` always does), and every path-like field, including a
repository given as a local path (``bootstrap.settings.Repo``), is resolved against it
the same way, so a site file means the same thing from whatever directory it is used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ValidationInfo
from pydantic_core import PydanticCustomError


def _refuse_empty_path(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise PydanticCustomError("path_empty", "expected a path, got an empty string")
    return value


def resolve_path(value: str | Path, info: ValidationInfo) -> Path:
    """Expand ``~`` and anchor a relative path at the site file's directory."""
    # os.path.expanduser leaves an unknown ~user alone (pathlib raises RuntimeError).
    path = Path(os.path.expanduser(value))
    context = info.context if isinstance(info.context, dict) else {}
    base = context.get("base_dir")
    if not path.is_absolute() and isinstance(base, Path | str):
        path = Path(os.path.normpath(Path(base) / path))
    return path


SitePath = Annotated[Path, BeforeValidator(_refuse_empty_path), AfterValidator(resolve_path)]
