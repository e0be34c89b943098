"""Whether to trust an SSH host key: the decision, kept apart from the SSH library.

A disaster-recovery run talks to freshly provisioned machines, often at recycled addresses,
so "the key in ~/.ssh/known_hosts" is both the most common and the least trustworthy source.
The order of trust is therefore: the key the provider reported when it created the host, a
fingerprint pinned in the site file, and only then a known_hosts file. The first source that
knows the host decides. Trust-on-first-use happens only when the operator asked for it, and
the accepted key is handed back to be recorded in the journal and the audit log.

Everything here is pure (no sockets, no paramiko) so the table of decisions is unit-tested.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from bootstrap.errors import HostKeyMismatch, PermanentError

RSA_ALGORITHMS = ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")


class KeySource(StrEnum):
    PROVIDER = "provider"
    PINNED = "pinned"
    KNOWN_HOSTS = "known_hosts"
    FIRST_USE = "first-use"


@dataclass(frozen=True)
class PublicKey:
    """An SSH public key: its type (``ssh-ed25519``) and wire blob."""

    key_type: str
    blob: bytes = field(repr=False)

    @classmethod
    def parse(cls, text: str) -> PublicKey:
        """Parse ``"TYPE BASE64 [comment]"`` (an OpenSSH public key line)."""
        parts = text.split()
        if len(parts) < 2:
            raise ValueError("expected 'TYPE BASE64' for an SSH public key")
        try:
            blob = base64.b64decode(parts[1], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the SSH public key is not valid base64") from None
        return cls(parts[0], blob)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.blob)

    def openssh(self) -> str:
        return f"{self.key_type} {base64.b64encode(self.blob).decode()}"

    def __str__(self) -> str:
        return f"{self.key_type} {self.fingerprint}"


def fingerprint(blob: bytes) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of a key blob (unpadded base64)."""
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def normalize_fingerprint(fp: str) -> str:
    """Accept ``SHA256:xxx`` with or without base64 padding; reject anything else (MD5)."""
    fp = fp.strip()
    if not fp.startswith("SHA256:") or len(fp) < 8:
        raise ValueError(f"host key fingerprint must look like 'SHA256:...', got {fp!r}")
    return fp.rstrip("=")


def host_pattern(address: str, port: int) -> str:
    """The known_hosts name of a host: ``addr`` on port 22, else ``[addr]:port``."""
    return address if port == 22 else f"[{address}]:{port}"


def known_hosts_line(address: str, port: int, key: PublicKey) -> str:
    return f"{host_pattern(address, port)} {key.openssh()}"


@dataclass(frozen=True)
class KnownHostsEntry:
    """One line of a known_hosts file (plain or hashed host names)."""

    patterns: tuple[str, ...]
    key: PublicKey
    marker: str | None = None  # "@revoked" / "@cert-authority"

    def matches(self, name: str) -> bool:
        negated = False
        hit = False
        for pat in self.patterns:
            if pat.startswith("|1|"):
                if _hashed_match(pat, name):
                    hit = True
                continue
            neg = pat.startswith("!")
            pat = pat[1:] if neg else pat
            if _glob(pat, name):
                if neg:
                    negated = True
                else:
                    hit = True
        return hit and not negated


def _hashed_match(pattern: str, name: str) -> bool:
    try:
        _, _, salt_b64, hash_b64 = pattern.split("|", 3)
        salt = base64.b64decode(salt_b64)
        want = base64.b64decode(hash_b64)
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), want)


def _glob(pattern: str, name: str) -> bool:
    """known_hosts wildcards: ``*`` and ``?`` only (``[`` is literal, as in ``[addr]:port``)."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name) is not None


def parse_known_hosts(text: str) -> list[KnownHostsEntry]:
    """Parse known_hosts text; malformed lines are skipped, like OpenSSH does."""
    entries: list[KnownHostsEntry] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        marker = None
        if fields[0].startswith("@"):
            marker, fields = fields[0], fields[1:]
        if len(fields) < 3:
            continue
        try:
            key = PublicKey.parse(f"{fields[1]} {fields[2]}")
        except ValueError:
            continue
        entries.append(KnownHostsEntry(tuple(fields[0].split(",")), key, marker))
    return entries


@dataclass(frozen=True)
class HostKeyExpectation:
    """What the caller knows about a host's key before connecting."""

    provider_key: PublicKey | None = None
    pinned_fingerprint: str | None = None
    known_hosts: tuple[KnownHostsEntry, ...] = ()
    trust_on_first_use: bool = False

    def __post_init__(self) -> None:
        if self.pinned_fingerprint is not None:
            object.__setattr__(
                self, "pinned_fingerprint", normalize_fingerprint(self.pinned_fingerprint)
            )


@dataclass(frozen=True)
class TrustedKey:
    """A verified host key and why it was trusted. ``record`` is True for first-use keys."""

    address: str
    port: int
    key: PublicKey
    source: KeySource

    @property
    def record(self) -> bool:
        return self.source is KeySource.FIRST_USE

    @property
    def fingerprint(self) -> str:
        return self.key.fingerprint


def _mismatch(
    target: str,
    source: KeySource,
    expected: Iterable[str],
    seen: PublicKey,
) -> HostKeyMismatch:
    exp = ", ".join(expected)
    return HostKeyMismatch(
        f"SSH host key of {target} differs from the {source.value} key: expected {exp}, "
        f"the host presented {seen.key_type} {seen.fingerprint}",
        target=target,
        hint="if the host was rebuilt, verify the new key out of band (provider console) and "
        "update the site file / known_hosts; otherwise treat this as a possible "
        "man-in-the-middle and stop",
    )


def _entries_for(entries: Sequence[KnownHostsEntry], names: Sequence[str]) -> list[KnownHostsEntry]:
    return [e for e in entries if any(e.matches(n) for n in names)]


def acceptable_key_types(
    address: str, port: int, expectation: HostKeyExpectation
) -> tuple[str, ...] | None:
    """Host key types to offer during key exchange so the server presents the expected key.

    ``None`` means any type (pinned fingerprint or first use, where the type is not known).
    """
    if expectation.provider_key is not None:
        types = [expectation.provider_key.key_type]
    else:
        if expectation.pinned_fingerprint is not None:
            return None
        names = [host_pattern(address, port)]
        found = [e for e in _entries_for(expectation.known_hosts, names) if e.marker is None]
        if not found:
            return None
        types = list(dict.fromkeys(e.key.key_type for e in found))
    out: list[str] = []
    for t in types:
        out.extend(RSA_ALGORITHMS if t == "ssh-rsa" else (t,))
    return tuple(out)


def decide(address: str, port: int, seen: PublicKey, expectation: HostKeyExpectation) -> TrustedKey:
    """Trust ``seen`` or raise ``HostKeyMismatch`` / ``PermanentError``.

    The first source that knows the host decides; a revoked key is refused whatever the source.
    """
    target = host_pattern(address, port)
    names = [target]
    entries = _entries_for(expectation.known_hosts, names)
    for e in entries:
        if e.marker == "@revoked" and e.key == seen:
            raise HostKeyMismatch(
                f"SSH host key of {target} ({seen.fingerprint}) is marked @revoked in known_hosts",
                target=target,
                hint="the host must get a new host key; then record it and re-run",
            )
    if expectation.provider_key is not None:
        if seen == expectation.provider_key:
            return TrustedKey(address, port, seen, KeySource.PROVIDER)
        raise _mismatch(target, KeySource.PROVIDER, [str(expectation.provider_key)], seen)
    if expectation.pinned_fingerprint is not None:
        if seen.fingerprint == expectation.pinned_fingerprint:
            return TrustedKey(address, port, seen, KeySource.PINNED)
        raise _mismatch(target, KeySource.PINNED, [expectation.pinned_fingerprint], seen)
    plain = [e for e in entries if e.marker is None]
    if plain:
        if any(e.key == seen for e in plain):
            return TrustedKey(address, port, seen, KeySource.KNOWN_HOSTS)
        raise _mismatch(target, KeySource.KNOWN_HOSTS, [str(e.key) for e in plain], seen)
    if expectation.trust_on_first_use:
        return TrustedKey(address, port, seen, KeySource.FIRST_USE)
    raise PermanentError(
        f"no trusted SSH host key known for {target} (the host presented {seen})",
        target=target,
        hint="pin the fingerprint in the site file (hosts[].host_key_fingerprint), add the "
        "host to known_hosts, or re-run with --trust-on-first-use",
    )
