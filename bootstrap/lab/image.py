"""Where the lab's golden Debian image lives, and how to get it built.

Why: every lab host overlays ONE read-only debootstrap tree. Building it takes
about a minute, so it is cached outside the git clone under
``/var/cache/drboot-lab/images/`` and keyed by a hash of the build script (which
holds the package list); Python computes the same key to find it without
running anything.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from bootstrap.errors import PreflightError

SCRIPTS = Path(__file__).resolve().parent / "scripts"
BUILD_SCRIPT = SCRIPTS / "build-golden-image.sh"
SETUP_SCRIPT = SCRIPTS / "setup-lab.sh"
DEFAULT_CACHE = Path(os.environ.get("DRBOOT_LAB_CACHE", "/var/cache/drboot-lab"))


def image_key() -> str:
    """Same key as build-golden-image.sh: first 16 hex digits of the script's sha256."""
    return hashlib.sha256(BUILD_SCRIPT.read_bytes()).hexdigest()[:16]


def image_path(cache_root: Path = DEFAULT_CACHE) -> Path:
    return cache_root / "images" / f"bookworm-{image_key()}"


def find_image(cache_root: Path = DEFAULT_CACHE) -> Path | None:
    """The built image for the current script, or None if it has not been built."""
    path = image_path(cache_root)
    done = path.parent / f"{path.name}.complete"
    return path if path.is_dir() and done.exists() else None


def require_image(cache_root: Path = DEFAULT_CACHE) -> Path:
    found = find_image(cache_root)
    if found is None:
        raise PreflightError(
            f"lab golden image {image_path(cache_root)} is not built",
            target="lab",
            hint=f"run `sudo {SETUP_SCRIPT}` (builds it in about a minute)",
        )
    return found


def build_image(cache_root: Path = DEFAULT_CACHE) -> Path:
    """Build (or reuse) the image by running the script; returns its directory."""
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT), str(cache_root)],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if proc.returncode != 0:
        raise PreflightError(
            f"building the lab image failed: {proc.stderr.strip()[-600:]}",
            target="lab",
            hint="check that deb.debian.org is reachable and debootstrap is installed",
        )
    return Path(proc.stdout.strip().splitlines()[-1])
