"""Where recovery secrets live between disasters: the recovery kit and its backends.

A restore starts from nothing but the config repo and this kit (sealing keys, k3s
token, deploy key). The kit is only ever on disk encrypted: an age file (recipients
or passphrase) or an AES-GCM bundle whose key is split into Shamir custodian shares.

This module holds only the escrow error leaves so importing it stays cheap; see
``kit``, ``age_file``, ``shamir``, ``backend`` and ``scan``.
"""

from __future__ import annotations

from bootstrap.errors import EscrowError


class EscrowMissing(EscrowError):
    """The bundle or a share file does not exist."""


class EscrowNotAgeFile(EscrowError):
    """The file is not an age file at all."""


class EscrowTruncated(EscrowError):
    """The bundle ends early (partial copy or upload)."""


class EscrowCorrupted(EscrowError):
    """The bundle is complete but its bytes were altered."""


class WrongPassphrase(EscrowError):
    """The passphrase does not open the bundle."""


class WrongIdentity(EscrowError):
    """None of the identities is a recipient of the bundle."""


class PassphraseUnavailable(EscrowError):
    """No passphrase could be obtained (env var unset and no prompt)."""


class KitFormatError(EscrowError):
    """The decrypted bytes are not a recovery kit this drboot understands."""


class TooFewShares(EscrowError):
    """Fewer valid custodian shares than the threshold."""


class CorruptShare(EscrowError):
    """A share fails its checksum or cannot be parsed."""


class MixedShares(EscrowError):
    """Shares come from different splits (or do not match the bundle)."""


__all__ = [
    "CorruptShare",
    "EscrowCorrupted",
    "EscrowError",
    "EscrowMissing",
    "EscrowNotAgeFile",
    "EscrowTruncated",
    "KitFormatError",
    "MixedShares",
    "PassphraseUnavailable",
    "TooFewShares",
    "WrongIdentity",
    "WrongPassphrase",
]
