"""A Shamir share edited with its checksum recomputed is blamed on the share, by file, not on the
bundle: the bundle commits to each share it was split into (format /2). Bundles of format /1
(no commitments) still open."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from bootstrap import sealing
from bootstrap.adapters import shamir as shamir_adapter
from bootstrap.escrow import CorruptShare, EscrowCorrupted, shamir
from bootstrap.escrow.kit import RecoveryKit, SealingKey


@pytest.fixture(scope="module")
def kit() -> RecoveryKit:
    priv, crt = sealing.generate_key(bits=2048)
    key = SealingKey.from_pem("sealed-secrets-key1", sealing.private_key_pem(priv), crt)
    return RecoveryKit(site="oslo", sealing_keys=[key], k3s_token="K10-token::server:x")


def _forge(share: shamir.Share) -> str:
    """The share with one byte of its value changed and a valid checksum: what an editor with
    a text editor and sha256sum can make."""
    value = bytearray(share.value)
    value[5] ^= 0x40
    prefix = (
        f"drboot-share-{share.index}-of-{share.count}:{share.threshold}:"
        f"{share.split_id}:{bytes(value).hex()}"
    )
    return f"{prefix}:{hashlib.sha256(prefix.encode()).hexdigest()[:8]}\n"


def test_an_edited_share_with_a_recomputed_checksum_is_named(
    kit: RecoveryKit, tmp_path: Path
) -> None:
    paths = [tmp_path / f"custodian-{i}.share" for i in range(1, 4)]
    shamir.write_kit(tmp_path / "kit.shamir", kit, paths, threshold=2)
    shares = [shamir.parse_share(p.read_text()) for p in paths]
    paths[1].write_text(_forge(shares[1]))
    shamir.parse_share(paths[1].read_text())  # the checksum passes: only the bundle can tell
    with pytest.raises(CorruptShare) as info:
        shamir.read_kit(tmp_path / "kit.shamir", paths[:2])
    message = info.value.message
    assert f"share file {paths[1]} (2-of-3)" in message and "edited" in message
    assert str(paths[0]) not in message
    assert shares[1].value.hex() not in message
    # with another good share the bundle opens: it is intact, the edited share is left out
    assert shamir.read_kit(tmp_path / "kit.shamir", paths) == kit


def test_a_damaged_bundle_is_still_blamed_on_the_bundle(kit: RecoveryKit) -> None:
    bundle, shares = shamir.seal_kit(kit, threshold=2, count=3)
    body = bytearray(bundle)
    body[-20] ^= 1
    with pytest.raises(EscrowCorrupted, match="bundle altered"):
        shamir.open_kit(bytes(body), shares[:2])


def _v1_bundle(kit: RecoveryKit) -> tuple[bytes, list[shamir.Share]]:
    """A bundle as format /1 was written (before commitments), built from the same parts."""
    data_key = shamir_adapter.new_data_key()
    split, nonce = os.urandom(8), os.urandom(12)
    head = shamir.MAGIC_V1 + shamir._HEAD.pack(split, 2, 3, nonce)
    bundle = head + shamir_adapter.aead_seal(data_key, nonce, kit.to_json(), head)
    lo = shamir_adapter.split16(2, 3, data_key[:16])
    hi = shamir_adapter.split16(2, 3, data_key[16:])
    shares = [
        shamir.Share(i, 3, 2, split.hex(), a + b) for (i, a), (_, b) in zip(lo, hi, strict=True)
    ]
    return bundle, shares


def test_a_format_1_bundle_still_opens_and_names_its_shares_when_it_cannot(
    kit: RecoveryKit,
) -> None:
    bundle, shares = _v1_bundle(kit)
    assert shamir.open_kit(bundle, shares[:2]) == kit
    forged = shamir.parse_share(_forge(shares[1]), where="share file b.share")
    with pytest.raises(EscrowCorrupted) as info:
        shamir.open_kit(bundle, [shares[0], forged])
    assert "share file b.share (2-of-3) was edited" in info.value.message
