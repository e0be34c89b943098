"""One small interface over where the recovery kit is kept.

Steps and the CLI should not care whether the kit is an age file or a Shamir split;
they get an ``EscrowBackend`` from ``make_backend`` (plain arguments, so the site
model can map its fields onto it) and call ``write``/``read``/``describe``.
``describe`` is safe to log: paths, recipients, thresholds, never secrets.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from bootstrap.errors import ConfigError
from bootstrap.escrow import age_file, shamir
from bootstrap.escrow.kit import RecoveryKit

PathLike = str | os.PathLike[str]


@runtime_checkable
class EscrowBackend(Protocol):
    """Where the kit lives."""

    def write(self, kit: RecoveryKit) -> None:
        """Store the kit (encrypted, atomically, 0600)."""
        ...

    def read(self) -> RecoveryKit:
        """Open the kit; raises an ``EscrowError`` leaf naming the failure and next step."""
        ...

    def describe(self) -> str:
        """A one-line, secret-free description for logs and plans."""
        ...


@dataclass(frozen=True)
class AgeFileBackend:
    """An armored age file, to recipients (write) / identity files (read) or a passphrase."""

    path: Path
    recipients: tuple[str, ...] = ()
    identity_files: tuple[Path, ...] = ()
    passphrase_env: str | None = None
    prompt: age_file.PromptFn | None = field(default=None, compare=False)

    def _passphrase(self) -> str | None:
        if self.passphrase_env is None and self.prompt is None:
            return None
        return age_file.read_passphrase(self.passphrase_env, self.prompt)

    def write(self, kit: RecoveryKit) -> None:
        if self.recipients:
            age_file.write_kit(self.path, kit, recipients=self.recipients)
            return
        age_file.write_kit(self.path, kit, passphrase=self._passphrase())

    def read(self) -> RecoveryKit:
        if self.identity_files:
            return age_file.read_kit(self.path, identity_files=self.identity_files)
        return age_file.read_kit(self.path, passphrase=self._passphrase())

    def describe(self) -> str:
        if self.recipients:
            to = f"{len(self.recipients)} recipient(s) " + ", ".join(
                r[:12] + "..." for r in self.recipients
            )
        else:
            to = f"passphrase from ${self.passphrase_env}" if self.passphrase_env else "passphrase"
        return f"age file {self.path} ({to})"


@dataclass(frozen=True)
class ShamirBackend:
    """An AES-GCM bundle whose data key is split into custodian share files."""

    path: Path
    share_paths: tuple[Path, ...]
    threshold: int

    def write(self, kit: RecoveryKit) -> None:
        shamir.write_kit(self.path, kit, self.share_paths, self.threshold)

    def read(self) -> RecoveryKit:
        return shamir.read_kit(self.path, self.share_paths)

    def describe(self) -> str:
        return (
            f"shamir bundle {self.path} ({self.threshold} of {len(self.share_paths)} "
            "custodian shares)"
        )


def make_backend(
    backend: str,
    path: PathLike,
    *,
    recipients: Sequence[str] = (),
    identity_files: Sequence[PathLike] = (),
    passphrase_env: str | None = None,
    prompt: age_file.PromptFn | None = None,
    share_paths: Sequence[PathLike] = (),
    threshold: int | None = None,
) -> EscrowBackend:
    """Build a backend from plain settings; ``ConfigError`` on impossible combinations."""
    if backend in ("age", "age-file"):
        if not recipients and not identity_files and not passphrase_env and prompt is None:
            raise ConfigError(
                "age escrow needs recipients/identity files or a passphrase env var",
                hint="set escrow.recipients + escrow.identity_files, or escrow.passphrase_env",
            )
        return AgeFileBackend(
            Path(path),
            tuple(recipients),
            tuple(Path(p) for p in identity_files),
            passphrase_env,
            prompt,
        )
    if backend == "shamir":
        if threshold is None or not share_paths:
            raise ConfigError(
                "shamir escrow needs a threshold and share paths",
                hint="set escrow.threshold and escrow.shares",
            )
        if threshold < 2:
            raise ConfigError(f"shamir threshold {threshold} must be at least 2")
        # Fewer share files than the threshold is not a config error: reading then says
        # how many custodians' shares are missing (TooFewShares), before anything is created.
        return ShamirBackend(Path(path), tuple(Path(p) for p in share_paths), threshold)
    raise ConfigError(f"unknown escrow backend {backend!r}", hint="use 'age' or 'shamir'")
