"""Atomic, private file writes (tmp -> fsync -> rename), the way ansible-runner writes artifacts.

The one implementation in the package (``bootstrap.lab.controlplane`` keeps a stdlib-only copy
because it runs on lab hosts without the package). Several files that must change together
(an escrow bundle and its shares) are staged first and renamed only when all are written.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bootstrap.errors import ConfigError

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
    """``path`` as a private directory: made 0700 if drboot creates it, checked if it exists.

    An existing directory is never chmodded (pointed at ``/tmp`` that would strip the system's
    temp directory); one that other users can write to is refused instead. A path that is a
    file, runs through a file, is too long or holds a NUL is a ``ConfigError`` (exit 2).
    """
    path = Path(path)
    shown = str(path).replace("\0", "\\0")
    try:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.mkdir(path, 0o700)
                os.chmod(path, 0o700)  # the umask may have taken bits away; none were added
                return path
            except FileExistsError:
                st = os.stat(path)  # made by someone else meanwhile: check it like any other
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            f"cannot use {shown!r} as a directory: {reason}",
            hint="pass a directory path (--state-dir / DRBOOT_STATE_DIR)",
        ) from None
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(
            f"{shown} is not a directory",
            hint="pass a directory path (--state-dir / DRBOOT_STATE_DIR)",
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            f"refusing {shown}: it is writable by group or others (mode "
            f"{stat.S_IMODE(st.st_mode):04o}); drboot keeps its journal and audit log there",
            hint="use a directory only you can write to (chmod go-w), or a new path drboot creates",
        )
    return path


def read_error(exc: OSError | ValueError) -> str:
    """Why a path could not be read, for an operator: "is a directory", "is not text", ...

    ``ValueError`` covers an embedded NUL and undecodable bytes (``UnicodeDecodeError``).
    """
    if isinstance(exc, FileTooLarge):
        return str(exc)
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    if isinstance(exc, FileNotFoundError):
        return "does not exist"
    if isinstance(exc, UnicodeDecodeError):
        return "is not a text file (binary content)"
    if isinstance(exc, ValueError):
        return "is not a usable path (it contains a NUL byte)"
    return f"cannot be read ({exc.strerror or exc})"


def read_bounded(path: str | os.PathLike[str], limit: int) -> bytes:
    """Read at most ``limit`` bytes of ``path``; more raises ``ValueError`` (no full read first).

    ``/dev/zero`` or a multi-GB file given by mistake stops at ``limit`` + 1 bytes.
    """
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(f"is larger than {limit} bytes")
    return data


class FileTooLarge(ValueError):
    """A file past the size drboot reads for that purpose."""


def shown_path(path: str | os.PathLike[str], limit: int = 200) -> str:
    """``path`` fit for a message: a NUL made visible, a very long path cut."""
    text = os.fspath(path)
    text = text if isinstance(text, str) else text.decode(errors="replace")
    text = text.replace("\0", "\\0")
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
