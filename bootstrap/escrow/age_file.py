"""The recovery kit as one armored age file, to X25519 recipients or to a passphrase.

age is the format an operator can still open by hand (``age -d -i key.txt kit.age``)
on the worst day. The bundle is written armored: a missing ``END`` line then tells a
truncated copy apart from a corrupted one. Before pyrage sees the bytes this module
classifies the file itself (missing, not age, truncated, wrong mode) so each failure
gets its own error and a next step. The passphrase comes from an environment
variable or a prompt callback, never from a command-line value.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bootstrap.adapters import age as age_adapter
from bootstrap.errors import ConfigError, EscrowError
from bootstrap.escrow import (
    EscrowCorrupted,
    EscrowMissing,
    EscrowNotAgeFile,
    EscrowTruncated,
    PassphraseUnavailable,
    WrongIdentity,
    WrongPassphrase,
)
from bootstrap.escrow.kit import RecoveryKit
from bootstrap.fsutil import read_error, shown_path, write_atomic

_MAGIC = b"age-encryption.org/v1\n"
_ARMOR_BEGIN = b"-----BEGIN AGE ENCRYPTED FILE-----"
_ARMOR_END = b"-----END AGE ENCRYPTED FILE-----"
_MIN_PAYLOAD = 16 + 16  # STREAM nonce + one chunk's tag
Mode = Literal["recipients", "passphrase"]
PromptFn = Callable[[], str]


def read_passphrase(env_name: str | None, prompt: PromptFn | None = None) -> str:
    """The passphrase from ``$env_name``, else from ``prompt()``; never from a flag value."""
    if env_name:
        value = os.environ.get(env_name)
        if value:
            return value
    if prompt is not None:
        value = prompt()
        if value:
            return value
    where = f"${env_name}" if env_name else "no environment variable configured"
    raise PassphraseUnavailable(
        f"no escrow passphrase available ({where} is empty or unset, no prompt)",
        hint=f"export {env_name or 'DRBOOT_ESCROW_PASSPHRASE'} or run interactively",
    )


@dataclass(frozen=True)
class BundleInfo:
    """What the header says, learned without decrypting."""

    mode: Mode
    armored: bool
    stanzas: tuple[str, ...]


def _dearmor(data: bytes, where: str) -> bytes:
    lines = data.strip().split(b"\n")
    if lines[-1].strip() != _ARMOR_END:
        raise EscrowTruncated(
            f"escrow bundle {where} is truncated (no END line)",
            hint="copy the bundle again from its source; a partial copy cannot be opened",
        )
    body = b"".join(line.strip() for line in lines[1:-1])
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise EscrowCorrupted(
            f"escrow bundle {where} is corrupted (armor is not valid base64)",
            hint="restore the bundle from another copy",
        ) from None


def inspect_bundle(data: bytes, where: str = "") -> BundleInfo:
    """Classify bundle bytes: not age, truncated, corrupted, or its mode (no secrets needed)."""
    armored = data.lstrip().startswith(_ARMOR_BEGIN)
    if armored:
        binary = _dearmor(data, where)
    elif data.startswith(_MAGIC):
        binary = data
    elif not data or _MAGIC.startswith(data) or _ARMOR_BEGIN.startswith(data.lstrip()):
        raise EscrowTruncated(
            f"escrow bundle {where} is truncated (empty or cut inside its first line)",
            hint="copy the bundle again from its source",
        )
    else:
        raise EscrowNotAgeFile(
            f"{where or 'escrow bundle'} is not an age file",
            hint="point the escrow path at the .age bundle written by `drboot escrow`",
        )
    damaged: type[EscrowError] = EscrowCorrupted if armored else EscrowTruncated
    end = binary.find(b"\n---")
    if not binary.startswith(_MAGIC) or end < 0:
        raise damaged(
            f"escrow bundle {where} has no complete age header",
            hint="restore the bundle from another copy",
        )
    header_end = binary.find(b"\n", end + 1)
    payload = binary[header_end + 1 :] if header_end >= 0 else b""
    if header_end < 0 or len(payload) < _MIN_PAYLOAD:
        raise damaged(
            f"escrow bundle {where} has no complete payload",
            hint="restore the bundle from another copy",
        )
    stanzas = tuple(
        line[3:].split(b" ", 1)[0].decode("ascii", "replace")
        for line in binary[:end].split(b"\n")
        if line.startswith(b"-> ")
    )
    mode: Mode = "passphrase" if "scrypt" in stanzas else "recipients"
    return BundleInfo(mode=mode, armored=armored, stanzas=stanzas)


def encrypt_kit(
    kit: RecoveryKit, *, recipients: Sequence[str] = (), passphrase: str | None = None
) -> bytes:
    """Armored age bytes of the kit, to recipients XOR a passphrase."""
    if bool(recipients) == (passphrase is not None):
        raise ConfigError("age escrow needs either recipients or a passphrase, not both/neither")
    data = kit.to_json()
    if passphrase is not None:
        return age_adapter.encrypt_with_passphrase(data, passphrase)
    try:
        return age_adapter.encrypt_to_recipients(data, recipients)
    except age_adapter.AgeFailure as exc:
        raise ConfigError(
            exc.message, hint="recipients look like age1... (age-keygen -y)"
        ) from None


def write_kit(
    path: str | os.PathLike[str],
    kit: RecoveryKit,
    *,
    recipients: Sequence[str] = (),
    passphrase: str | None = None,
) -> None:
    """Encrypt then write atomically 0600; on any failure nothing is written."""
    write_atomic(path, encrypt_kit(kit, recipients=recipients, passphrase=passphrase))


def _read_bundle(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise EscrowMissing(
            f"escrow bundle {path} does not exist",
            hint="check the escrow path in the site file",
        ) from None
    except IsADirectoryError:
        raise EscrowNotAgeFile(f"escrow bundle {path} is a directory") from None
    except (OSError, ValueError) as exc:
        raise EscrowMissing(
            f"escrow bundle {shown_path(path)} {read_error(exc)}",
            hint="check escrow.bundle in the site file",
        ) from None


def _read_identity_files(files: Sequence[str | os.PathLike[str]]) -> list[str]:
    texts = []
    for f in files:
        try:
            texts.append(Path(f).read_text())
        except FileNotFoundError:
            raise EscrowMissing(
                f"age identity file {f} does not exist",
                hint="check the identity file path (age-keygen output)",
            ) from None
        except (OSError, ValueError) as exc:
            raise EscrowMissing(
                f"age identity file {shown_path(f)} {read_error(exc)}",
                hint="escrow.identity_files must name age identity files (age-keygen output)",
            ) from None
    return texts


def decrypt_bundle(
    data: bytes,
    *,
    where: str = "",
    identity_files: Sequence[str | os.PathLike[str]] = (),
    passphrase: str | None = None,
) -> bytes:
    """Decrypt bundle bytes to plaintext, with one distinct error per failure mode."""
    info = inspect_bundle(data, where)
    if info.mode == "passphrase" and passphrase is None:
        raise WrongIdentity(
            f"escrow bundle {where} is passphrase-encrypted; identity files cannot open it",
            hint="give escrow.passphrase ({env: VAR} or {file: PATH}), not identity files",
        )
    if info.mode == "recipients" and passphrase is not None:
        raise WrongPassphrase(
            f"escrow bundle {where} is encrypted to age recipients, not a passphrase",
            hint="configure the age identity files instead of a passphrase",
        )
    try:
        if passphrase is not None:
            return age_adapter.decrypt_with_passphrase(data, passphrase)
        return age_adapter.decrypt_with_identities(data, _read_identity_files(identity_files))
    except age_adapter.AgeFailure as exc:
        if exc.kind == "bad-passphrase":
            raise WrongPassphrase(
                f"escrow passphrase rejected for {where}",
                hint="check the passphrase that escrow.passphrase points at (an environment "
                "variable or a file), then retry",
            ) from None
        if exc.kind == "no-match":
            raise WrongIdentity(
                f"none of the identities opens escrow bundle {where}",
                hint="use the identity file whose public key (age1...) the kit was sealed to",
            ) from None
        if exc.kind == "bad-identity":
            raise WrongIdentity(
                f"identity files for {where}: {exc.message}",
                hint="check the identity file (age-keygen output)",
            ) from None
        what = "corrupted" if info.armored else "corrupted or truncated"
        raise EscrowCorrupted(
            f"escrow bundle {where} is {what}: {exc.message}",
            hint="restore the bundle from another copy",
        ) from None


def read_kit(
    path: str | os.PathLike[str],
    *,
    identity_files: Sequence[str | os.PathLike[str]] = (),
    passphrase: str | None = None,
) -> RecoveryKit:
    """Open an age bundle into a ``RecoveryKit``; plaintext stays in memory."""
    p = Path(path)
    data = _read_bundle(p)
    plain = decrypt_bundle(data, where=str(p), identity_files=identity_files, passphrase=passphrase)
    return RecoveryKit.from_json(plain)
