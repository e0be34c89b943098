"""The SITE argument: the site file read once, and those very bytes validated and kept.

A site file given as ``<(sops -d site.yaml)`` or a named pipe can be read only
once: reading it again to keep a copy would keep nothing, and ``resume`` would
then fail. So it is read here, once, with a size cap (a site file is a few KiB;
anything over ``MAX_SITE_BYTES`` is refused before it is parsed), and the run
folder keeps exactly the bytes that were validated.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bootstrap.errors import ConfigError

if TYPE_CHECKING:
    from bootstrap.settings import Site

MAX_SITE_BYTES = 1 << 20  # 1 MiB

site_argument = click.argument("site", type=click.Path(path_type=Path, dir_okay=False))


@dataclass(frozen=True)
class GivenSite:
    """A site file as the operator gave it: the validated model, the exact bytes, and where
    relative paths in it resolve (the file's folder; the current one for a pipe)."""

    site: Site
    data: bytes
    base_dir: Path


def read_site(path: Path) -> GivenSite:
    """Read ``path`` once, validate it, keep the bytes; a ``ConfigError`` for anything wrong."""
    from bootstrap.siteload import load_site_text

    source = str(path)
    data, regular = _read_capped(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"site file is not UTF-8 (byte {exc.start})", path=source, hint="save it as UTF-8"
        ) from None
    # A pipe has no folder of its own: its relative paths mean the current directory.
    base_dir = path.absolute().parent if regular else Path.cwd()
    return GivenSite(load_site_text(text, source, base_dir=base_dir), data, base_dir)


def _read_capped(path: Path) -> tuple[bytes, bool]:
    """At most ``MAX_SITE_BYTES`` of ``path``, and whether it is a regular file."""
    source = str(path)
    try:
        with open(path, "rb") as fh:
            regular = stat.S_ISREG(os.fstat(fh.fileno()).st_mode)
            data = fh.read(MAX_SITE_BYTES + 1)
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
    if len(data) > MAX_SITE_BYTES:
        raise ConfigError(
            f"site file is larger than 1 MiB ({MAX_SITE_BYTES} bytes)",
            path=source,
            hint="is this the right file? a site file is a few KiB",
        )
    return data, regular
