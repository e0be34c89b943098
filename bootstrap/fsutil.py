"""Atomic, private file writes (tmp -> fsync -> rename), the way ansible-runner writes artifacts.

The one implementation in the package (``bootstrap.lab.controlplane`` keeps a stdlib-only copy
because it runs on lab hosts without the package). Several files that must change together
(an escrow bundle and its shares) are staged first and renamed only when all are written.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

Staged = tuple[Path, str | os.PathLike[str]]
"""A written, fsynced tmp file and the path it will be renamed to."""


def write_atomic(path: str | os.PathLike[str], data: bytes | str, mode: int = 0o600) -> Path:
    """Write ``data`` to ``path`` atomically with permissions ``mode`` from the first byte."""
    path = Path(path)
    staged = [(stage_write(path, data, mode), path)]
    try:
        commit_staged(staged)
    except BaseException:
        discard_staged(staged)
        raise
    return path


def stage_write(path: str | os.PathLike[str], data: bytes | str, mode: int = 0o600) -> Path:
    """Write ``data`` to a tmp file (``mode`` from the start) next to ``path`` and fsync it.

    Returns the tmp path; ``commit_staged`` renames it onto ``path``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return Path(tmp)


def commit_staged(staged: Sequence[Staged]) -> None:
    """Rename staged tmp files onto their targets, then fsync the directories."""
    for tmp, target in staged:
        os.replace(tmp, target)
    for parent in {Path(target).parent for _, target in staged}:
        dir_fd = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def discard_staged(staged: Sequence[Staged]) -> None:
    """Remove tmp files of a write that failed part-way."""
    for tmp, _ in staged:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) with mode 0700 for the leaf."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path
