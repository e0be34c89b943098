"""The SITE argument: a site file, validated, with the text a run folder keeps a copy of."""

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
    """A site file as the operator gave it: the validated model, its bytes, and where
    relative paths in it resolve."""

    site: Site
    data: bytes
    base_dir: Path


def read_site(path: Path) -> GivenSite:
    """Validate ``path``; a ``ConfigError`` for anything wrong."""
    from bootstrap.siteload import load_site

    site = load_site(path)
    return GivenSite(site, path.read_bytes(), path.resolve().parent)
