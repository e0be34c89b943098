"""The only module that imports pyrage (age encryption).

The escrow bundle is an armored age file so ``age -d`` can open it without drboot.
pyrage's errors are plain strings; this adapter turns them into one ``AgeFailure``
with a ``kind`` that ``bootstrap.escrow.age_file`` maps to operator-facing errors.
Passphrases and identities never appear in a message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from bootstrap.errors import EscrowError

FailureKind = Literal["no-match", "bad-passphrase", "corrupt", "bad-recipient", "bad-identity"]


class AgeFailure(EscrowError):
    """pyrage refused; ``kind`` says why in a form the escrow layer can act on."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind


def generate_identity() -> tuple[str, str]:
    """A new X25519 identity: (``AGE-SECRET-KEY-1...`` text, ``age1...`` recipient)."""
    from pyrage import x25519

    ident = x25519.Identity.generate()
    return str(ident), str(ident.to_public())


def recipient_of(identity: str) -> str:
    """The ``age1...`` recipient of an ``AGE-SECRET-KEY-1...`` identity."""
    from pyrage import x25519

    return str(x25519.Identity.from_str(identity.strip()).to_public())


def encrypt_to_recipients(data: bytes, recipients: Sequence[str]) -> bytes:
    """Armored age ciphertext readable by any one of ``recipients`` (``age1...``)."""
    import pyrage
    from pyrage import x25519

    parsed = []
    for text in recipients:
        try:
            parsed.append(x25519.Recipient.from_str(text.strip()))
        except pyrage.RecipientError:
            shown = text.strip()[:12]
            raise AgeFailure("bad-recipient", f"not an age X25519 recipient: {shown}...") from None
    if not parsed:
        raise AgeFailure("bad-recipient", "no age recipients given")
    try:
        return bytes(pyrage.encrypt(data, parsed, armored=True))
    except pyrage.EncryptError as exc:
        raise AgeFailure("corrupt", f"age encryption failed: {exc}") from None


def encrypt_with_passphrase(data: bytes, passphrase: str) -> bytes:
    """Armored age ciphertext under an scrypt passphrase stanza."""
    import pyrage
    from pyrage import passphrase as pp

    try:
        return bytes(pp.encrypt(data, passphrase, armored=True))
    except pyrage.EncryptError:
        raise AgeFailure("corrupt", "age passphrase encryption failed") from None


def parse_identities(text: str) -> list[object]:
    """Parse an age identity file (comments and blank lines allowed)."""
    import pyrage
    from pyrage import x25519

    out: list[object] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            out.append(x25519.Identity.from_str(line))
        except pyrage.IdentityError:
            raise AgeFailure(
                "bad-identity", "identity file holds a line that is not an AGE-SECRET-KEY-1"
            ) from None
    return out


def decrypt_with_identities(data: bytes, identity_texts: Sequence[str]) -> bytes:
    """Decrypt with the identities found in the given identity-file texts."""
    import pyrage

    idents: list[object] = []
    for text in identity_texts:
        idents.extend(parse_identities(text))
    if not idents:
        raise AgeFailure("bad-identity", "the identity files hold no identities")
    try:
        return bytes(pyrage.decrypt(data, idents))
    except pyrage.DecryptError as exc:
        raise _classify(str(exc), passphrase=False) from None


def decrypt_with_passphrase(data: bytes, passphrase: str) -> bytes:
    """Decrypt a passphrase (scrypt) age file."""
    import pyrage
    from pyrage import passphrase as pp

    try:
        return bytes(pp.decrypt(data, passphrase))
    except pyrage.DecryptError as exc:
        raise _classify(str(exc), passphrase=True) from None


def _classify(text: str, *, passphrase: bool) -> AgeFailure:
    low = text.lower()
    if passphrase and "decryption failed" in low:
        return AgeFailure("bad-passphrase", "the passphrase does not open the bundle")
    if "no matching keys" in low:
        return AgeFailure("no-match", "no identity matches the bundle's recipients")
    return AgeFailure("corrupt", f"age could not decrypt the payload ({text.splitlines()[0]})")
