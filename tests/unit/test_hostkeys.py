"""Host-key trust decisions, table-driven. Keys and fingerprints below were produced by
OpenSSH's ssh-keygen (fingerprints from ``ssh-keygen -lf``, the hashed line from
``ssh-keygen -H``), so the fingerprint code is checked against OpenSSH itself."""

from __future__ import annotations

import pytest

from bootstrap.errors import HostKeyMismatch, PermanentError
from bootstrap.hostkeys import (
    HostKeyExpectation,
    KeySource,
    PublicKey,
    acceptable_key_types,
    decide,
    known_hosts_line,
    parse_known_hosts,
)

ED = PublicKey.parse(
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGNVCOrv/zCMY362DIe0tuY5MYBdrI9SxIpFV1GILCMw"
)
ED_FP = "SHA256:dHvKyr5GyK3YZObLecwNybsc+L0ZCobiuvrlUoMzCjc"
OTHER = PublicKey.parse(
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINKJ8QvIwgj2/krPNHnDz/ENW7dQegFY94Ykj9u030Vz"
)
OTHER_FP = "SHA256:xVtqwj7ia3ZU4wIlO5JqCI5ADcFr0ID7YFjNpH2LY3o"
EC = PublicKey.parse(
    "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBH/oFrntV+rh7T1Q8IoJ"
    "nzZmUQYaUiqeNwjIeAUtZnzrjzcRFKRtQFxDFXAMNtpwBQFrfn/Bghz2G/iRgkzmwLo="
)
EC_FP = "SHA256:K2VAQfExMRQHNb8YZW7CoNoOIney5GtunzwQD5ROB0U"
HASHED_ED_AT_2222 = "|1|PdbyoXCqeeOxOAZBvtYihbNmHl4=|+YZr2y/vTdwV13dLWg4Om+6zBcw= " + ED.openssh()

ADDR, PORT = "10.200.1.2", 2222


def kh(*lines: str) -> tuple:  # type: ignore[type-arg]
    return tuple(parse_known_hosts("\n".join(lines)))


@pytest.mark.parametrize(("key", "fp"), [(ED, ED_FP), (OTHER, OTHER_FP), (EC, EC_FP)])
def test_fingerprint_matches_ssh_keygen(key: PublicKey, fp: str) -> None:
    assert key.fingerprint == fp


# name, expectation, presented key, outcome (KeySource or exception type)
CASES = [
    ("provider key matches", HostKeyExpectation(provider_key=ED), ED, KeySource.PROVIDER),
    ("provider key differs", HostKeyExpectation(provider_key=ED), OTHER, HostKeyMismatch),
    ("provider key other type", HostKeyExpectation(provider_key=ED), EC, HostKeyMismatch),
    ("pin matches", HostKeyExpectation(pinned_fingerprint=ED_FP), ED, KeySource.PINNED),
    ("pin with padding", HostKeyExpectation(pinned_fingerprint=ED_FP + "="), ED, KeySource.PINNED),
    ("pin differs", HostKeyExpectation(pinned_fingerprint=ED_FP), OTHER, HostKeyMismatch),
    (
        "provider beats stale known_hosts",
        HostKeyExpectation(provider_key=OTHER, known_hosts=kh(known_hosts_line(ADDR, PORT, ED))),
        OTHER,
        KeySource.PROVIDER,
    ),
    (
        "provider beats pin",
        HostKeyExpectation(provider_key=ED, pinned_fingerprint=OTHER_FP),
        ED,
        KeySource.PROVIDER,
    ),
    (
        "pin beats known_hosts",
        HostKeyExpectation(
            pinned_fingerprint=OTHER_FP, known_hosts=kh(known_hosts_line(ADDR, PORT, ED))
        ),
        ED,
        HostKeyMismatch,
    ),
    (
        "known_hosts plain match",
        HostKeyExpectation(known_hosts=kh(known_hosts_line(ADDR, PORT, ED))),
        ED,
        KeySource.KNOWN_HOSTS,
    ),
    (
        "known_hosts hashed match",
        HostKeyExpectation(known_hosts=kh(HASHED_ED_AT_2222)),
        ED,
        KeySource.KNOWN_HOSTS,
    ),
    (
        "known_hosts hashed differs",
        HostKeyExpectation(known_hosts=kh(HASHED_ED_AT_2222)),
        OTHER,
        HostKeyMismatch,
    ),
    (
        "known_hosts one of several keys",
        HostKeyExpectation(
            known_hosts=kh(known_hosts_line(ADDR, PORT, EC), known_hosts_line(ADDR, PORT, ED))
        ),
        ED,
        KeySource.KNOWN_HOSTS,
    ),
    (
        "known_hosts entry for port 22 does not cover 2222",
        HostKeyExpectation(known_hosts=kh(f"{ADDR} {ED.openssh()}")),
        ED,
        PermanentError,
    ),
    (
        "known_hosts wildcard",
        HostKeyExpectation(known_hosts=kh(f"[10.200.1.*]:2222 {ED.openssh()}")),
        ED,
        KeySource.KNOWN_HOSTS,
    ),
    (
        "known_hosts negated pattern",
        HostKeyExpectation(known_hosts=kh(f"[10.200.1.*]:2222,![{ADDR}]:2222 {ED.openssh()}")),
        ED,
        PermanentError,
    ),
    (
        "known_hosts differs, tofu does not override",
        HostKeyExpectation(
            known_hosts=kh(known_hosts_line(ADDR, PORT, ED)), trust_on_first_use=True
        ),
        OTHER,
        HostKeyMismatch,
    ),
    (
        "revoked even if provider says so",
        HostKeyExpectation(
            provider_key=ED, known_hosts=kh(f"@revoked [{ADDR}]:{PORT} {ED.openssh()}")
        ),
        ED,
        HostKeyMismatch,
    ),
    ("nothing known, no tofu", HostKeyExpectation(), ED, PermanentError),
    ("nothing known, tofu", HostKeyExpectation(trust_on_first_use=True), ED, KeySource.FIRST_USE),
    (
        "malformed known_hosts lines ignored",
        HostKeyExpectation(
            known_hosts=kh("garbage", "# comment", f"[{ADDR}]:{PORT} ssh-ed25519 !!")
        ),
        ED,
        PermanentError,
    ),
]


@pytest.mark.parametrize(("name", "exp", "seen", "outcome"), CASES, ids=[c[0] for c in CASES])
def test_decide(name: str, exp: HostKeyExpectation, seen: PublicKey, outcome: object) -> None:
    if isinstance(outcome, KeySource):
        trusted = decide(ADDR, PORT, seen, exp)
        assert trusted.source is outcome
        assert trusted.key == seen
        assert trusted.record is (outcome is KeySource.FIRST_USE)
    else:
        assert isinstance(outcome, type)
        with pytest.raises(outcome) as ei:
            decide(ADDR, PORT, seen, exp)
        if outcome is HostKeyMismatch:
            assert type(ei.value) is HostKeyMismatch
        else:
            assert type(ei.value) is PermanentError


def test_mismatch_message_names_host_both_fingerprints_and_next_action() -> None:
    with pytest.raises(HostKeyMismatch) as ei:
        decide(ADDR, PORT, OTHER, HostKeyExpectation(provider_key=ED))
    text = ei.value.format()
    assert f"[{ADDR}]:{PORT}" in text
    assert ED_FP in text and OTHER_FP in text
    assert "provider" in text
    assert ei.value.hint and "verify the new key" in ei.value.hint


def test_no_key_error_suggests_pin_or_tofu() -> None:
    with pytest.raises(PermanentError) as ei:
        decide(ADDR, 22, ED, HostKeyExpectation())
    assert ei.value.hint and "--trust-on-first-use" in ei.value.hint
    assert ADDR in ei.value.format()


def test_bad_pin_rejected() -> None:
    with pytest.raises(ValueError, match="SHA256"):
        HostKeyExpectation(pinned_fingerprint="MD5:aa:bb")


@pytest.mark.parametrize("text", ["", "ssh-ed25519", "ssh-ed25519 not*base64"])
def test_bad_public_key_text(text: str) -> None:
    with pytest.raises(ValueError):
        PublicKey.parse(text)


KEY_TYPE_CASES = [
    (HostKeyExpectation(provider_key=ED), ("ssh-ed25519",)),
    (HostKeyExpectation(pinned_fingerprint=ED_FP), None),
    (HostKeyExpectation(), None),
    (
        HostKeyExpectation(known_hosts=kh(known_hosts_line(ADDR, PORT, EC), HASHED_ED_AT_2222)),
        ("ecdsa-sha2-nistp256", "ssh-ed25519"),
    ),
    (
        HostKeyExpectation(provider_key=PublicKey("ssh-rsa", b"x")),
        ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"),
    ),
]


@pytest.mark.parametrize(("exp", "types"), KEY_TYPE_CASES)
def test_acceptable_key_types(exp: HostKeyExpectation, types: tuple[str, ...] | None) -> None:
    assert acceptable_key_types(ADDR, PORT, exp) == types


def test_known_hosts_line_roundtrip() -> None:
    line = known_hosts_line(ADDR, 22, ED)
    assert line.startswith(f"{ADDR} ssh-ed25519 ")
    (entry,) = parse_known_hosts(line)
    assert entry.key == ED and entry.matches(ADDR)


def test_repr_does_not_dump_key_blob() -> None:
    assert "AAAAC3" not in repr(ED)
