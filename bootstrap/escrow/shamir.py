"""The recovery kit under a key split among custodians (Shamir, any M of N).

No single person can open the kit, and losing N-M shares loses nothing. The kit
JSON is encrypted with AES-256-GCM (via ``adapters/shamir``) under a random 32-byte data
key; the data key's two 16-byte halves are split with pycryptodome's Shamir (which
only takes 16-byte secrets) using the same share indexes, so one printable share
carries both halves::

    drboot-share-2-of-5:3:9f0c2a7d41b3e6aa:<64 hex>:<8 hex checksum>
                 i    N M  split id        share     sha256(prefix)[:4]

The split id is also the bundle's associated data, so shares from another split
are refused before any combining. A share that fails its checksum is named by
position and file, never printed.

The checksum only catches typos: whoever edits a share can recompute it. So a bundle
(format /2) also records a short commitment to each share it was split into (8 bytes
of SHA-256 over the split id, index and share value; it reveals nothing of the key).
A share that does not match its commitment is left out and named; if the remaining
shares open the bundle, the bundle is proven intact and the share was edited.
Format /1 bundles (no commitments) are still read.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bootstrap.adapters import shamir as shamir_adapter
from bootstrap.errors import ConfigError
from bootstrap.escrow import (
    CorruptShare,
    EscrowCorrupted,
    EscrowMissing,
    EscrowNotAgeFile,
    EscrowTruncated,
    MixedShares,
    TooFewShares,
)
from bootstrap.escrow.kit import RecoveryKit
from bootstrap.fsutil import (
    Staged,
    commit_staged,
    discard_staged,
    read_error,
    shown_path,
    stage_write,
)

MAGIC_V1: Final = b"DRBOOT-KIT-SHAMIR/1\n"
MAGIC: Final = b"DRBOOT-KIT-SHAMIR/2\n"  # /1 plus one share commitment per index
_HEAD = struct.Struct(">8sBB12s")  # split id, threshold, count, nonce
_COMMIT_LEN = 8
_SHARE_RE = re.compile(
    r"^drboot-share-(\d+)-of-(\d+):(\d+):([0-9a-f]{16}):([0-9a-f]{64}):([0-9a-f]{8})$"
)


def _checksum(prefix: str) -> str:
    return hashlib.sha256(prefix.encode()).hexdigest()[:8]


def _commitment(split: bytes, index: int, value: bytes) -> bytes:
    return hashlib.sha256(b"drboot-share\0" + split + bytes([index]) + value).digest()[:_COMMIT_LEN]


@dataclass(frozen=True, repr=False)
class Share:
    """One parsed custodian share; repr names it, never shows it."""

    index: int
    count: int
    threshold: int
    split_id: str
    value: bytes
    source: str = field(default="", compare=False)  # "share file PATH", for messages

    def __repr__(self) -> str:
        return (
            f"Share({self.index}-of-{self.count}, threshold={self.threshold}, "
            f"split={self.split_id})"
        )

    def text(self) -> str:
        """The printable form handed to a custodian."""
        prefix = (
            f"drboot-share-{self.index}-of-{self.count}:{self.threshold}:"
            f"{self.split_id}:{self.value.hex()}"
        )
        return f"{prefix}:{_checksum(prefix)}"


def parse_share(text: str, where: str = "share") -> Share:
    """Parse and checksum one share; ``CorruptShare`` names ``where``, not the content."""
    m = _SHARE_RE.match(text.strip())
    if not m:
        raise CorruptShare(
            f"{where} is not a drboot share (expected drboot-share-I-of-N:M:split:hex:sum)",
            hint="ask the custodian to re-read the share; it may be cut or mistyped",
        )
    index, count, threshold = int(m[1]), int(m[2]), int(m[3])
    prefix = text.strip().rsplit(":", 1)[0]
    if _checksum(prefix) != m[6]:
        raise CorruptShare(
            f"{where} ({index}-of-{count}) fails its checksum",
            hint="ask that custodian to re-read the share; a character is wrong",
        )
    if not (1 <= index <= count and 1 <= threshold <= count):
        raise CorruptShare(f"{where} has an impossible index/threshold")
    return Share(index, count, threshold, m[4], bytes.fromhex(m[5]), source=where)


def seal_kit(kit: RecoveryKit, threshold: int, count: int) -> tuple[bytes, list[Share]]:
    """Encrypt the kit under a fresh data key; return the bundle and ``count`` shares."""
    if not (2 <= threshold <= count <= 255):
        raise ConfigError(
            f"shamir escrow needs 2 <= threshold <= shares <= 255 (got {threshold} of {count})"
        )
    data_key = shamir_adapter.new_data_key()
    split = os.urandom(8)
    nonce = os.urandom(12)
    lo = shamir_adapter.split16(threshold, count, data_key[:16])
    hi = shamir_adapter.split16(threshold, count, data_key[16:])
    shares = [
        Share(i, count, threshold, split.hex(), a + b)
        for (i, a), (j, b) in zip(lo, hi, strict=True)
        if i == j
    ]
    commitments = b"".join(_commitment(split, s.index, s.value) for s in shares)
    head = MAGIC + _HEAD.pack(split, threshold, count, nonce) + commitments
    bundle = head + shamir_adapter.aead_seal(data_key, nonce, kit.to_json(), head)
    return bundle, shares


@dataclass(frozen=True)
class _Bundle:
    head: bytes  # the associated data: magic, header, commitments
    threshold: int
    count: int
    split: bytes
    commitments: dict[int, bytes]  # empty for format /1
    nonce: bytes
    body: bytes


def _parse_bundle(bundle: bytes, where: str) -> _Bundle:
    magic = next((m for m in (MAGIC, MAGIC_V1) if bundle.startswith(m)), None)
    if magic is None:
        if MAGIC.startswith(bundle) or MAGIC_V1.startswith(bundle):
            raise EscrowTruncated(f"shamir escrow bundle {where} is empty or cut")
        raise EscrowNotAgeFile(f"{where} is not a drboot shamir escrow bundle")
    fixed = len(magic) + _HEAD.size
    if len(bundle) < fixed + 16:
        raise EscrowTruncated(
            f"shamir escrow bundle {where} is truncated",
            hint="copy the bundle again from its source",
        )
    split, threshold, count, nonce = _HEAD.unpack(bundle[len(magic) : fixed])
    head_len = fixed + (count * _COMMIT_LEN if magic == MAGIC else 0)
    if len(bundle) < head_len + 16:
        raise EscrowTruncated(
            f"shamir escrow bundle {where} is truncated",
            hint="copy the bundle again from its source",
        )
    table = bundle[fixed:head_len]
    commitments = {
        i + 1: table[i * _COMMIT_LEN : (i + 1) * _COMMIT_LEN]
        for i in range(len(table) // _COMMIT_LEN)
    }
    return _Bundle(
        bundle[:head_len], threshold, count, split, commitments, nonce, bundle[head_len:]
    )


def _combine(b: _Bundle, chosen: Sequence[Share]) -> bytes | None:
    lo = shamir_adapter.combine16([(s.index, s.value[:16]) for s in chosen])
    hi = shamir_adapter.combine16([(s.index, s.value[16:]) for s in chosen])
    try:
        return shamir_adapter.aead_open(lo + hi, b.nonce, b.body, b.head)
    except shamir_adapter.BundleAuthFailed:
        return None


def _name(s: Share) -> str:
    return f"{s.source or 'share'} ({s.index}-of-{s.count})"


def open_kit(bundle: bytes, shares: Sequence[Share], where: str = "bundle") -> RecoveryKit:
    """Combine shares and open the bundle; distinct errors for each way this fails.

    A share that does not match the bundle's commitment to it is left out and named.
    """
    b = _parse_bundle(bundle, where)
    by_index: dict[int, Share] = {}
    edited: list[Share] = []
    for s in shares:
        if s.split_id != b.split.hex():
            raise MixedShares(
                f"share {s.index}-of-{s.count} belongs to split {s.split_id}, "
                f"the bundle {where} to split {b.split.hex()}",
                hint="collect shares handed out with this bundle (same split id)",
            )
        if b.commitments and b.commitments.get(s.index) != _commitment(b.split, s.index, s.value):
            edited.append(s)
            continue
        by_index.setdefault(s.index, s)
    if len(by_index) < b.threshold:
        if edited:
            raise CorruptShare(
                f"{', '.join(map(_name, edited))} does not match the share the bundle {where} "
                "was split into: the share was edited (its checksum recomputed) or the bundle "
                f"was; {len(by_index)} matching share(s), {b.threshold} needed",
                hint="ask that custodian for the share again, or bring other shares; "
                "if other shares open the bundle, the bundle is intact",
            )
        raise TooFewShares(
            f"{len(by_index)} distinct valid share(s) for {where}; {b.threshold} of "
            f"{b.count} needed",
            hint=f"collect {b.threshold - len(by_index)} more custodian share(s)",
        )
    chosen = [by_index[i] for i in sorted(by_index)[: b.threshold]]
    plain = _combine(b, chosen)
    if plain is None:
        used = "" if b.commitments else f" or one of {', '.join(map(_name, chosen))} was edited"
        raise EscrowCorrupted(
            f"shamir escrow bundle {where} does not authenticate with these shares "
            f"(bundle altered or truncated{used})",
            hint="restore the bundle from another copy",
        )
    return RecoveryKit.from_json(plain)


def write_kit(
    path: str | os.PathLike[str],
    kit: RecoveryKit,
    share_paths: Sequence[str | os.PathLike[str]],
    threshold: int,
) -> list[Path]:
    """Write the bundle and one 0600 share file per custodian (all or nothing, mostly)."""
    bundle, shares = seal_kit(kit, threshold, len(share_paths))
    # All files are staged before any is renamed, so a failure part-way never leaves
    # new shares next to an old bundle (or the reverse).
    staged: list[Staged] = []
    try:
        for share, sp in zip(shares, share_paths, strict=True):
            staged.append((stage_write(sp, (share.text() + "\n").encode()), sp))
        staged.append((stage_write(path, bundle), path))
    except BaseException:
        discard_staged(staged)
        raise
    commit_staged(staged)
    return [Path(sp) for sp in share_paths]


def read_kit(
    path: str | os.PathLike[str], share_paths: Sequence[str | os.PathLike[str]]
) -> RecoveryKit:
    """Read the bundle and whichever share files exist, then ``open_kit``."""
    p = Path(path)
    try:
        bundle = p.read_bytes()
    except FileNotFoundError:
        raise EscrowMissing(
            f"shamir escrow bundle {p} does not exist", hint="check the escrow path"
        ) from None
    except (OSError, ValueError) as exc:
        raise EscrowMissing(
            f"shamir escrow bundle {shown_path(p)} {read_error(exc)}",
            hint="check escrow.bundle in the site file",
        ) from None
    shares: list[Share] = []
    missing: list[str] = []
    for sp in share_paths:
        try:
            text = Path(sp).read_text()
        except FileNotFoundError:
            missing.append(str(sp))
            continue
        except (OSError, ValueError) as exc:
            raise EscrowMissing(
                f"share file {shown_path(sp)} {read_error(exc)}",
                hint="escrow.shares must name the share files written by `drboot escrow backup`",
            ) from None
        shares.append(parse_share(text, where=f"share file {sp}"))
    try:
        return open_kit(bundle, shares, where=str(p))
    except TooFewShares as exc:
        if missing:
            exc.message += f" (missing share files: {', '.join(missing)})"
        raise
