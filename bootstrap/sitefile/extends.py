"""``extends:``: a site file derived from another, merged before it is validated.

Why a module of its own: a new region is the old one with another provider location, other
names and another repo overlay path. Copy-paste would let the two drift apart; ``extends:
base.yaml`` (a path relative to the file that says it) takes the base and lays the derived
file over it:

* mappings are merged key by key, recursively;
* anything else (a list, a value, ``null``) in the derived file replaces the base's;
* a base may itself extend another (a chain, at most ``MAX_CHAIN`` files); a cycle is refused
  at the ``extends`` line that closes it.

The merge works on the plain data *and* the marks ``yamlnodes`` read, so a validation error
in the assembled site still points at the file and line the offending field came from: the
derived file's, or a base's. A base need not be a complete site (a shared ``common.yaml``
without a ``name`` is fine); the assembled site is validated as a whole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootstrap.errors import ConfigError
from bootstrap.sitefile import yamlnodes
from bootstrap.sitefile.problems import Problem, SiteFileError
from bootstrap.sitefile.yamlnodes import Marks
from bootstrap.sitetypes.model import Loc

MAX_CHAIN = 8
KEY = "extends"
_HINT = "`extends:` takes the path of the base site file, relative to the file that names it"

# reads a base site file as text; raises ConfigError (not found, too big, not UTF-8, ...)
Reader = Callable[[Path], str]


@dataclass(frozen=True)
class Assembled:
    """A site's data after its ``extends`` chain was merged in, with the marks of every value
    (``marks.files`` says which file each is in) and the files used, the named one first."""

    data: dict[Any, Any]
    marks: Marks
    files: tuple[str, ...]


def assemble(
    data: dict[Any, Any], marks: Marks, source: str, base_dir: Path, read: Reader
) -> Assembled:
    """Merge the chain of bases ``data`` (read from ``source``) extends into it.

    ``base_dir`` is where ``source``'s relative ``extends`` path starts (the file's folder;
    the current directory for a pipe). Without ``extends`` the data comes back as it is.
    """
    here = _identity(source)
    return _assemble(data, marks, source, base_dir, read, [(here, source)])


def _identity(source: str) -> Path | None:
    """What tells two files apart in a chain (a pipe has no identity, so it is never a base)."""
    path = Path(source)
    try:
        return path.resolve() if path.is_file() else None
    except OSError:
        return None


def _assemble(
    data: dict[Any, Any],
    marks: Marks,
    source: str,
    base_dir: Path,
    read: Reader,
    chain: list[tuple[Path | None, str]],
) -> Assembled:
    own = _stamped(marks, data, source)
    if KEY not in data:
        return Assembled(data, own, (source,))
    where = own.value.get((KEY,), (None, None))

    def refuse(text: str, hint: str = _HINT) -> SiteFileError:
        return SiteFileError(source, [Problem(where[0], where[1], text, hint, source)])

    named = data[KEY]
    if not isinstance(named, str) or not named.strip():
        raise refuse("extends: expected the path of the base site file (a string)")
    base_path = Path(base_dir) / Path(named).expanduser()
    try:
        ident = base_path.resolve()
    except (OSError, RuntimeError):
        ident = base_path.absolute()
    seen = [i for i, _ in chain]
    if ident in seen:
        names = [s for _, s in chain[seen.index(ident) :]] + [str(base_path)]
        raise refuse(
            "extends: a cycle: " + " -> ".join(names),
            "a site file cannot extend itself, directly or through its bases: break the cycle",
        )
    if len(chain) >= MAX_CHAIN:
        raise refuse(
            f"extends: a chain longer than {MAX_CHAIN} files",
            "flatten the chain: a region needs a base, rarely a base of a base",
        )
    try:
        text = read(base_path)
    except SiteFileError:
        raise
    except ConfigError as exc:
        raise refuse(
            f"extends: cannot use the base site file {base_path}: {exc.message}",
            exc.hint or _HINT,
        ) from None
    base_source = str(base_path)
    base_data, base_marks = yamlnodes.parse(text, base_source)
    base = _assemble(
        base_data, base_marks, base_source, base_path.parent, read, [*chain, (ident, base_source)]
    )
    merged = Marks(value={}, key={}, files={})
    out = _merge(base.data, base.marks, data, own, (), merged)
    assert isinstance(out, dict)
    return Assembled(out, merged, (source, *base.files))


def _stamped(marks: Marks, data: Any, source: str) -> Marks:
    """``marks`` with every mark of ``data`` said to be in ``source`` (unless already placed)."""
    out = Marks(value=dict(marks.value), key=dict(marks.key), files=dict(marks.files))
    _each_loc(data, (), lambda loc: out.files.setdefault(loc, source))
    return out


def _each_loc(value: Any, loc: Loc, visit: Callable[[Loc], object]) -> None:
    visit(loc)
    if isinstance(value, dict):
        for k, v in value.items():
            _each_loc(v, (*loc, k), visit)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _each_loc(v, (*loc, i), visit)


def _take(src: Marks, loc: Loc, into: Marks) -> None:
    """The marks of ``loc`` itself (not of what it holds) from ``src``."""
    for mine, theirs in ((src.value, into.value), (src.key, into.key)):
        if loc in mine:
            theirs[loc] = mine[loc]
        else:
            theirs.pop(loc, None)
    if loc in src.files:
        into.files[loc] = src.files[loc]


def _take_all(src: Marks, value: Any, loc: Loc, into: Marks) -> None:
    _each_loc(value, loc, lambda at: _take(src, at, into))


def _merge(base: Any, bmarks: Marks, derived: Any, dmarks: Marks, loc: Loc, into: Marks) -> Any:
    """``derived`` laid over ``base``: mappings merged, anything else replaced."""
    if not (isinstance(base, dict) and isinstance(derived, dict)):
        _take_all(dmarks, derived, loc, into)
        return derived
    _take(dmarks, loc, into)  # the mapping itself: where the derived file opens it
    out: dict[Any, Any] = {}
    for key, value in base.items():
        at = (*loc, key)
        if key in derived:
            out[key] = _merge(value, bmarks, derived[key], dmarks, at, into)
        else:
            out[key] = value
            _take_all(bmarks, value, at, into)
    for key, value in derived.items():
        if key not in base:
            out[key] = value
            _take_all(dmarks, value, (*loc, key), into)
    return out
