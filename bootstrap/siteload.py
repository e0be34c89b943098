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

A site file may derive from another (``extends: base.yaml``, see
``bootstrap.sitefile.extends``); every command loads sites here, so every command gets it.
Such a site is kept by a run as one flattened document (``SiteDocument.flat``): a resume
then does not depend on the base file still being there, or unchanged.

The parts live in ``bootstrap.sitefile`` (YAML reading, ``extends``, error explanation,
the JSON schema); this module keeps the entry points callers use.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bootstrap.errors import ConfigError
from bootstrap.fsutil import read_error
from bootstrap.settings import Site
from bootstrap.sitefile import explain, extends, yamlnodes
from bootstrap.sitefile.problems import Problem, SiteFileError
from bootstrap.sitefile.schema import site_schema

__all__ = [
    "MAX_BYTES",
    "Problem",
    "SiteDocument",
    "SiteFileError",
    "load_site",
    "load_site_document",
    "load_site_text",
    "site_schema",
]

MAX_BYTES = 1 << 20


def read_site_bytes(path: Path) -> tuple[bytes, bool]:
    """The bytes of the site file at ``path`` (read once, at most ``MAX_BYTES``: the size is
    checked while reading, so ``/dev/zero`` ends) and whether it is a regular file (a pipe
    has no folder for its relative paths). A ``ConfigError`` names what is wrong."""
    source = str(path)
    try:
        with open(path, "rb") as fh:
            regular = stat.S_ISREG(os.fstat(fh.fileno()).st_mode)
            raw = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(
            "site file not found", path=source, hint="check the path, or `drboot init FILE`"
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            "site file is a directory", path=source, hint="pass the YAML file itself"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read site file: {read_error(exc)}",
            path=source,
            hint="check the path and its permissions",
        ) from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(
            f"site file is larger than 1 MiB ({MAX_BYTES} bytes)",
            path=source,
            hint="is this the right file? a site file is a few KiB",
        )
    return raw, regular


def site_text(raw: bytes, source: str) -> str:
    """The site file's bytes as text (a ``ConfigError`` if they are not UTF-8)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"site file is not UTF-8 (byte {exc.start})", path=source, hint="save it as UTF-8"
        ) from None


def load_site(path: Path) -> Site:
    """Read, parse and validate the site file at ``path``.

    Relative paths inside it are resolved against the file's directory.
    """
    raw, _ = read_site_bytes(path)
    text = site_text(raw, str(path))
    return load_site_text(text, str(path), base_dir=Path(path).absolute().parent)


@dataclass(frozen=True)
class SiteDocument:
    """A validated site and what it was assembled from."""

    site: Site
    files: tuple[str, ...]  # the site file, then each base it extends, in chain order
    flat: str | None = None  # with ``extends``: the merged document, what a run keeps

    @property
    def extended(self) -> bool:
        return len(self.files) > 1


def load_site_text(text: str, source: str, *, base_dir: Path | None = None) -> Site:
    """Parse and validate site text; ``source`` is the path it came from (for messages).

    Relative paths are resolved against ``base_dir``, by default the directory
    of ``source`` (so a journal holding the text and the path reloads the same
    site). ``~`` is always expanded.
    """
    return load_site_document(text, source, base_dir=base_dir).site


def load_site_document(text: str, source: str, *, base_dir: Path | None = None) -> SiteDocument:
    """``load_site_text``, also saying which files made the site and, when it extends a base,
    the flattened document (merged, without ``extends``) that validates to the same site.

    ``extends`` paths resolve against ``base_dir`` (then each base's own folder); every
    other relative path in the assembled site resolves against ``base_dir``, wherever it
    was written (keep a region's base beside it, or use absolute paths there).
    """
    if base_dir is None:
        base_dir = Path(source).absolute().parent
    if len(text) > MAX_BYTES:
        raise ConfigError(f"site text is larger than {MAX_BYTES} characters", path=source)
    data, marks = yamlnodes.parse(text, source)
    made = extends.assemble(data, marks, source, base_dir, _read_base)
    try:
        site = Site.model_validate(made.data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise SiteFileError(
            source, explain.problems_of(exc.errors(), made.data, made.marks)
        ) from None
    flat = _flatten(made.data, made.files) if len(made.files) > 1 else None
    return SiteDocument(site, made.files, flat)


def _read_base(path: Path) -> str:
    raw, _ = read_site_bytes(path)
    return site_text(raw, str(path))


def _flatten(data: dict[Any, Any], files: tuple[str, ...]) -> str:
    """The assembled site as one YAML document that loads (strictly) to the same data."""
    body = {k: v for k, v in data.items() if k != extends.KEY}
    head = "".join("#   " + f.replace("\n", "?") + "\n" for f in files)
    return (
        "# drboot: this site, flattened from its extends chain (the file named first):\n"
        + head
        + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, default_flow_style=False)
    )
