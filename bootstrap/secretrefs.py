"""Secret references: the one reader of ``{env: VAR}``, ``{file: PATH}`` and ``{escrow: ITEM}``.

Why it exists: a site file never holds a secret, only a reference to one, and preflight, the
escrow service and the restore steps all need the value behind a reference. They used to read
references each their own way (and disagreed about a trailing newline); this module is the
only reader, and ``references`` is the only walk that finds them in a ``Site``.

The trailing-newline rule: **a resolved value never ends with a line break.** Trailing ``\\r``
and ``\\n`` are stripped from every value, whatever its source (``echo $TOKEN > file`` and a
CRLF editor both add one; no secret drboot reads ends with one on purpose). A consumer that
writes the value into a key file adds the final newline itself, as ``flux.deploy_key_secret``,
``argocd.repo_secret`` and ``escrow.service.private_files`` do.

An environment variable that is unset or empty, or a file that cannot be read, is empty or is
not UTF-8 text, does not resolve: ``resolve`` raises ``UnresolvedReference`` (a
``PreflightError``) naming the field, the variable or the file and what to do, never the value.
An ``{escrow: ITEM}`` the recovery kit does not hold resolves to None: whether that is an
error is the consumer's call (a missing known_hosts is fine, a missing deploy key is not).
The kit is opened lazily: only an ``{escrow: ...}`` reference calls the opener.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias, overload

from pydantic import BaseModel

from bootstrap.errors import PreflightError
from bootstrap.sitetypes.secretrefs import EscrowRef, SecretRef

if TYPE_CHECKING:
    from bootstrap.escrow.kit import RecoveryKit
    from bootstrap.settings import Site

Ref: TypeAlias = SecretRef | EscrowRef
KitOpener: TypeAlias = Callable[[], "RecoveryKit"]

# The escrow items a reference can name, and where the recovery kit keeps each.
_ESCROW_ITEMS: dict[str, Callable[[RecoveryKit], str | None]] = {
    "k3s_token": lambda kit: kit.k3s_token,
    "deploy_key": lambda kit: kit.deploy_key,
    "known_hosts": lambda kit: kit.known_hosts,
}


class UnresolvedReference(PreflightError):
    """A secret reference in the site file does not resolve (the message never holds a value)."""


class _Unreadable(Exception):
    """Why an env/file reference cannot be read, in words fit for an operator."""

    def __init__(self, why: str, hint: str) -> None:
        super().__init__(why)
        self.why = why
        self.hint = hint


def strip_line_breaks(value: str) -> str:
    """``value`` without trailing ``\\r``/``\\n`` (the module's one trailing-newline rule)."""
    return value.rstrip("\r\n")


def _read(ref: SecretRef) -> str:
    """The value of an env/file reference, or ``_Unreadable`` saying why not."""
    if ref.env is not None:
        value = strip_line_breaks(os.environ.get(ref.env, ""))
        if not value:
            state = "is empty" if ref.env in os.environ else "is not set"
            raise _Unreadable(
                f"environment variable {ref.env} {state}", f"export {ref.env}, then run again"
            )
        return value
    assert ref.file is not None  # SecretRef validates exactly one of env/file
    path = Path(ref.file).expanduser()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise _Unreadable(
            f"file {path} is not readable ({why})", f"create {path} (mode 0600), then run again"
        ) from None
    try:
        value = strip_line_breaks(raw.decode())
    except UnicodeDecodeError:
        raise _Unreadable(
            f"file {path} is not UTF-8 text", f"check what {path} holds, then run again"
        ) from None
    if not value:
        raise _Unreadable(f"file {path} is empty", f"put the secret in {path}, then run again")
    return value


def problem(ref: Ref) -> str | None:
    """Why an ``{env}``/``{file}`` reference does not resolve now, or None when it does.

    ``{escrow}`` references give None: they resolve once the kit opens (preflight-escrow).
    The value read is dropped at once; only the reason is returned.
    """
    if isinstance(ref, EscrowRef):
        return None
    try:
        _read(ref)
    except _Unreadable as exc:
        return exc.why
    return None


@overload
def resolve(ref: SecretRef, kit: KitOpener | None = None, *, field: str = ...) -> str: ...


@overload
def resolve(ref: Ref | None, kit: KitOpener | None = None, *, field: str = ...) -> str | None: ...


def resolve(
    ref: Ref | None, kit: KitOpener | None = None, *, field: str = "secret reference"
) -> str | None:
    """The value behind ``ref`` (trailing line breaks stripped), or None when ``ref`` is None
    or names an escrow item the kit does not hold.

    ``kit`` opens the recovery kit; it is called only for an ``{escrow}`` reference. ``field``
    is the reference's place in the site file (``kubernetes.token``), used in errors.
    Raises ``UnresolvedReference`` when an env/file reference cannot be read.
    """
    if ref is None:
        return None
    if isinstance(ref, EscrowRef):
        if kit is None:
            raise UnresolvedReference(
                f"{field}: {{escrow: {ref.escrow}}} cannot be used here (no recovery kit)",
                target=field,
                hint=f"give {field} as {{env: VAR}} or {{file: PATH}}",
            )
        value = _ESCROW_ITEMS[ref.escrow](kit())
        return strip_line_breaks(value) if value else None
    try:
        return _read(ref)
    except _Unreadable as exc:
        raise UnresolvedReference(f"{field}: {exc.why}", target=field, hint=exc.hint) from None


def references(site: Site) -> Iterator[tuple[str, Ref]]:
    """Every secret reference in ``site`` with its field path (``repo.deploy_key``), in field
    order. Walks the typed models, so a reference added to the schema is found without a list
    to keep up to date."""
    yield from _walk(site, "")


def _walk(value: object, path: str) -> Iterator[tuple[str, Ref]]:
    if isinstance(value, SecretRef | EscrowRef):
        yield path, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _walk(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]")
