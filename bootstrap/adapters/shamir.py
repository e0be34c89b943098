"""The only module that imports pycryptodome (``Crypto``): Shamir secret sharing.

pycryptodome's ``Shamir`` splits exactly 16-byte secrets over GF(2^128). The escrow
layer splits a 32-byte data key as two 16-byte halves with the same indexes. The
AES-256-GCM that protects the bundle under that data key lives here too (with
``cryptography``), so ``bootstrap.escrow`` imports no crypto library itself.
"""

from __future__ import annotations

import os
from collections.abc import Sequence


def split16(threshold: int, count: int, secret: bytes) -> list[tuple[int, bytes]]:
    """``count`` shares (index from 1, 16 bytes each); any ``threshold`` rebuild ``secret``."""
    from Crypto.Protocol.SecretSharing import Shamir

    if len(secret) != 16:
        raise ValueError("Shamir works on 16-byte secrets")
    return [(int(i), bytes(s)) for i, s in Shamir.split(threshold, count, secret)]


def combine16(shares: Sequence[tuple[int, bytes]]) -> bytes:
    """Rebuild the 16-byte secret from exactly ``threshold`` shares.

    Wrong shares give a wrong secret, not an error: callers must authenticate it.
    """
    from Crypto.Protocol.SecretSharing import Shamir

    return bytes(Shamir.combine(list(shares)))


class BundleAuthFailed(Exception):
    """AES-GCM rejected the bundle: wrong key or altered bytes. Carries nothing secret."""


def new_data_key() -> bytes:
    """A random 32-byte AES-256 key."""
    return os.urandom(32)


def aead_seal(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-256-GCM ciphertext || tag."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key).encrypt(nonce, plaintext, aad)


def aead_open(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    """Inverse of ``aead_seal``; ``BundleAuthFailed`` if the tag does not verify."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        return AESGCM(key).decrypt(nonce, ciphertext, aad)
    except InvalidTag:
        raise BundleAuthFailed("AES-GCM authentication failed") from None
