"""The SITE argument: the site file read once, and those very bytes validated and kept.

A site file given as ``<(sops -d site.yaml)`` or a named pipe can be read only
once: reading it again to keep a copy would keep nothing, and ``resume`` would
then fail. So it is read here, once, with a size cap (a site file is a few KiB;
anything over 1 MiB is refused before it is parsed), and the run
folder keeps exactly the bytes that were validated (for a site that ``extends`` a base: the
flattened document those files assembled, so a resume needs neither file again).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from bootstrap.settings import Site

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
    from bootstrap.siteload import load_site_document, read_site_bytes, site_text

    data, regular = read_site_bytes(path)
    text = site_text(data, str(path))
    # A pipe has no folder of its own: its relative paths mean the current directory.
    base_dir = path.absolute().parent if regular else Path.cwd()
    doc = load_site_document(text, str(path), base_dir=base_dir)
    kept = doc.flat.encode("utf-8") if doc.flat is not None else data
    return GivenSite(doc.site, kept, base_dir)
