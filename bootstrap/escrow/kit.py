"""The recovery kit: every secret a restore needs that is not in git.

Sealing keys (so the new controller opens the SealedSecrets already in the repo),
the k3s token, the config repo's deploy key and known_hosts. The kit is serialised
to versioned JSON bytes that are only ever written encrypted (see ``age_file`` and
``shamir``). ``repr``/``str`` show fingerprints and counts, never key material.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

from bootstrap.escrow import KitFormatError

if TYPE_CHECKING:
    from bootstrap.sealing import PrivateKey as RSAPrivateKey

FORMAT: Final = "drboot-recovery-kit"
FORMAT_VERSION: Final = 1
KeyLabel = Literal["active", "compromised"]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _parse_time(value: Any, what: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise KitFormatError(f"recovery kit: {what} is not an ISO-8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@dataclass(frozen=True, repr=False)
class SealingKey:
    """One controller key pair as the controller stores it (``tls.key`` / ``tls.crt`` PEM)."""

    name: str
    label: KeyLabel
    tls_key: str
    tls_crt: str
    fingerprint: str
    not_before: dt.datetime

    def __repr__(self) -> str:
        return (
            f"SealingKey(name={self.name!r}, label={self.label!r}, "
            f"fingerprint={self.fingerprint!r}, not_before={self.not_before.isoformat()!r})"
        )

    __str__ = __repr__

    @classmethod
    def from_pem(
        cls, name: str, tls_key: str | bytes, tls_crt: str | bytes, label: KeyLabel = "active"
    ) -> SealingKey:
        """Build from PEM text, computing the fingerprint and notBefore."""
        from bootstrap import sealing

        key_text = tls_key.decode() if isinstance(tls_key, bytes) else tls_key
        crt_text = tls_crt.decode() if isinstance(tls_crt, bytes) else tls_crt
        private = sealing.load_private_key(key_text)
        return cls(
            name=name,
            label=label,
            tls_key=key_text,
            tls_crt=crt_text,
            fingerprint=sealing.fingerprint(private.public_key()),
            not_before=sealing.cert_not_before(crt_text),
        )

    @classmethod
    def from_secret(cls, secret: Mapping[str, Any]) -> SealingKey:
        """Build from a controller key Secret manifest (``data`` base64)."""
        from bootstrap import sealing

        material = sealing.keys_from_secret(secret)
        label: KeyLabel = "compromised" if material.label == "compromised" else "active"
        return cls.from_pem(
            material.name,
            sealing.private_key_pem(material.private_key),
            material.cert_pem,
            label,
        )

    def private_key(self) -> RSAPrivateKey:
        """The parsed private key (kept out of the dataclass so repr stays safe)."""
        from bootstrap import sealing

        return sealing.load_private_key(self.tls_key)

    def to_secret(self, namespace: str = "kube-system") -> dict[str, Any]:
        """The Secret manifest the controller reads this key from."""
        from bootstrap import sealing

        return sealing.key_secret_manifest(
            self.private_key(), self.tls_crt.encode(), self.name, namespace, self.label
        )

    def _to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "tls.key": self.tls_key,
            "tls.crt": self.tls_crt,
            "fingerprint": self.fingerprint,
            "not_before": self.not_before.isoformat(),
        }

    @classmethod
    def _from_json(cls, raw: Mapping[str, Any]) -> SealingKey:
        label = raw.get("label")
        if label not in ("active", "compromised"):
            raise KitFormatError("recovery kit: a sealing key has no valid label")
        try:
            return cls(
                name=str(raw["name"]),
                label=label,
                tls_key=str(raw["tls.key"]),
                tls_crt=str(raw["tls.crt"]),
                fingerprint=str(raw["fingerprint"]),
                not_before=_parse_time(raw["not_before"], "sealing key not_before"),
            )
        except KeyError as exc:
            raise KitFormatError(f"recovery kit: a sealing key lacks field {exc.args[0]}") from None


@dataclass(frozen=True, repr=False)
class RecoveryKit:
    """Everything a restore needs that git does not hold."""

    site: str
    sealing_keys: list[SealingKey]
    k3s_token: str | None  # None: imported from key backups only; install-k3s says so
    deploy_key: str | None = None
    known_hosts: str | None = None
    created_at: dt.datetime = field(default_factory=_utcnow)

    def __repr__(self) -> str:
        return (
            f"RecoveryKit(site={self.site!r}, keys={self.fingerprints()!r}, "
            f"k3s_token={'<redacted>' if self.k3s_token else None}, "
            f"deploy_key={'<redacted>' if self.deploy_key else None}, "
            f"known_hosts={'<present>' if self.known_hosts else None}, "
            f"created_at={self.created_at.isoformat()!r})"
        )

    __str__ = __repr__

    def fingerprints(self) -> list[str]:
        """Fingerprints of the sealing keys, in kit order."""
        return [k.fingerprint for k in self.sealing_keys]

    def lacks(self) -> list[str]:
        """The kit items that are absent (a kit of sealing keys alone is valid for verify)."""
        present = {
            "sealing keys": bool(self.sealing_keys),
            "k3s_token": bool(self.k3s_token),
            "deploy_key": bool(self.deploy_key),
            "known_hosts": bool(self.known_hosts),
        }
        return [name for name, ok in present.items() if not ok]

    def newest_key_not_before(self) -> dt.datetime | None:
        """notBefore of the newest key: the controller seals with the newest one."""
        return max((k.not_before for k in self.sealing_keys), default=None)

    def private_keys(self) -> list[RSAPrivateKey]:
        """Parsed private keys, newest first (the likeliest to have sealed recent values)."""
        ordered = sorted(self.sealing_keys, key=lambda k: k.not_before, reverse=True)
        return [k.private_key() for k in ordered]

    def to_json(self) -> bytes:
        """Versioned JSON bytes. Holds secrets: only ever write them encrypted."""
        doc = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "site": self.site,
            "created_at": self.created_at.isoformat(),
            "sealing_keys": [k._to_json() for k in self.sealing_keys],
            "k3s_token": self.k3s_token,
            "deploy_key": self.deploy_key,
            "known_hosts": self.known_hosts,
        }
        return json.dumps(doc, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> RecoveryKit:
        """Parse ``to_json`` output; errors name the problem, never the content."""
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise KitFormatError(
                "decrypted escrow is not a drboot recovery kit (not JSON)",
                hint="check that the bundle was written by `drboot escrow`",
            ) from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise KitFormatError("decrypted escrow is not a drboot recovery kit (format field)")
        version = doc.get("version")
        if version != FORMAT_VERSION:
            raise KitFormatError(
                f"recovery kit format version {version!r} is not supported "
                f"(this drboot reads {FORMAT_VERSION})",
                hint="use the drboot release that wrote the kit, or re-export it",
            )
        keys = doc.get("sealing_keys")
        token = doc.get("k3s_token")
        if not isinstance(keys, list) or not (token is None or isinstance(token, str)):
            raise KitFormatError("recovery kit lacks sealing_keys, or its k3s_token is not text")
        deploy_key = doc.get("deploy_key")
        known_hosts = doc.get("known_hosts")
        return cls(
            site=str(doc.get("site", "")),
            sealing_keys=[SealingKey._from_json(k) for k in keys],
            k3s_token=token,
            deploy_key=str(deploy_key) if deploy_key is not None else None,
            known_hosts=str(known_hosts) if known_hosts is not None else None,
            created_at=_parse_time(doc.get("created_at"), "created_at"),
        )
