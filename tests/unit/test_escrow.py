"""The recovery kit and its age-file / Shamir backends: round trips, every failure, no leaks."""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import os
import stat
from pathlib import Path

import pytest

from bootstrap import sealing
from bootstrap.adapters import age as age_adapter
from bootstrap.errors import ConfigError, EscrowError
from bootstrap.escrow import (
    CorruptShare,
    EscrowCorrupted,
    EscrowMissing,
    EscrowNotAgeFile,
    EscrowTruncated,
    KitFormatError,
    MixedShares,
    PassphraseUnavailable,
    TooFewShares,
    WrongIdentity,
    WrongPassphrase,
    age_file,
    shamir,
)
from bootstrap.escrow.backend import AgeFileBackend, ShamirBackend, make_backend
from bootstrap.escrow.kit import RecoveryKit, SealingKey
from bootstrap.fsutil import write_atomic

TOKEN = "K10-fixture-k3s-token-0123456789abcdef::server:feedface"
DEPLOY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "Zml4dHVyZS1kZXBsb3kta2V5\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)


@pytest.fixture(scope="module")
def kit() -> RecoveryKit:
    old_priv, old_crt = sealing.generate_key(bits=2048)
    new_priv, new_crt = sealing.generate_key(bits=2048)
    old = SealingKey.from_pem("sealed-secrets-keyold", sealing.private_key_pem(old_priv), old_crt)
    new = SealingKey.from_pem("sealed-secrets-keynew", sealing.private_key_pem(new_priv), new_crt)
    # make "old" visibly older, as after a key renewal
    old = SealingKey(
        old.name, "compromised", old.tls_key, old.tls_crt, old.fingerprint,
        old.not_before - dt.timedelta(days=30),
    )  # fmt: skip
    return RecoveryKit(
        site="oslo",
        sealing_keys=[old, new],
        k3s_token=TOKEN,
        deploy_key=DEPLOY,
        known_hosts="git.example.invalid ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFixture\n",
    )


def secret_fragments(kit: RecoveryKit) -> list[str]:
    """Strings that must never show up in any str/repr/error text."""
    out = [TOKEN, "Zml4dHVyZS1kZXBsb3kta2V5"]
    for k in kit.sealing_keys:
        body = "".join(k.tls_key.splitlines()[1:-1])
        out += [body[:40], body[200:240], base64.b64encode(k.tls_key.encode()).decode()[:40]]
    return out


def assert_no_leak(kit: RecoveryKit, *objs: object) -> None:
    for obj in objs:
        for text in (str(obj), repr(obj)):
            for frag in secret_fragments(kit):
                assert frag not in text, f"secret fragment leaked into {type(obj).__name__}"


# --------------------------------------------------------------------------- kit


def test_kit_json_round_trip_and_accessors(kit: RecoveryKit) -> None:
    back = RecoveryKit.from_json(kit.to_json())
    assert back == kit
    assert back.fingerprints() == [k.fingerprint for k in kit.sealing_keys]
    assert all(fp.startswith("SHA256:") for fp in back.fingerprints())
    assert back.newest_key_not_before() == kit.sealing_keys[1].not_before
    # newest first, so the key that sealed recent values is tried first
    newest = back.private_keys()[0]
    assert sealing.fingerprint(newest.public_key()) == kit.sealing_keys[1].fingerprint
    assert b'"version": 1' in kit.to_json()


def test_kit_repr_is_safe(kit: RecoveryKit) -> None:
    assert_no_leak(kit, kit, *kit.sealing_keys)
    assert kit.sealing_keys[0].fingerprint in repr(kit)


def test_sealing_key_from_controller_secret(kit: RecoveryKit) -> None:
    manifest = kit.sealing_keys[1].to_secret()
    again = SealingKey.from_secret(manifest)
    assert again.fingerprint == kit.sealing_keys[1].fingerprint
    assert again.label == "active"


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"[]", "format field"),
        (b'{"format": "drboot-recovery-kit", "version": 99}', "version 99"),
        (b'{"format": "drboot-recovery-kit", "version": 1}', "lacks"),
    ],
)
def test_kit_format_errors(data: bytes, match: str) -> None:
    with pytest.raises(KitFormatError, match=match):
        RecoveryKit.from_json(data)


# --------------------------------------------------------------------------- age file


@pytest.fixture(scope="module")
def ident(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    secret, recipient = age_adapter.generate_identity()
    path = tmp_path_factory.mktemp("id") / "key.txt"
    path.write_text(f"# created by test\n# public key: {recipient}\n{secret}\n")
    return path, recipient


def test_age_recipients_round_trip_0600_and_armored(
    kit: RecoveryKit, ident: tuple[Path, str], tmp_path: Path
) -> None:
    _, other = age_adapter.generate_identity()
    out = tmp_path / "sub" / "kit.age"
    age_file.write_kit(out, kit, recipients=[other, ident[1]])
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    data = out.read_bytes()
    assert data.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----")
    assert TOKEN.encode() not in data
    assert age_file.inspect_bundle(data).mode == "recipients"
    assert age_file.read_kit(out, identity_files=[ident[0]]) == kit
    assert [p.name for p in out.parent.iterdir()] == ["kit.age"]  # no tmp left behind


@pytest.fixture(scope="module")
def age_bundle(kit: RecoveryKit, ident: tuple[Path, str]) -> bytes:
    return age_file.encrypt_kit(kit, recipients=[ident[1]])


def _write(tmp_path: Path, data: bytes) -> Path:
    p = tmp_path / "kit.age"
    p.write_bytes(data)
    return p


def _flip_armor_char(data: bytes) -> bytes:
    lines = data.split(b"\n")
    mid = len(lines) // 2
    line = bytearray(lines[mid])
    line[10] = ord("A") if line[10] != ord("A") else ord("B")
    lines[mid] = bytes(line)
    return b"\n".join(lines)


@pytest.mark.parametrize(
    ("mutate", "error", "match"),
    [
        (lambda d: d[: len(d) // 2], EscrowTruncated, "truncated"),
        (lambda d: d[:-40], EscrowTruncated, "truncated"),
        (lambda d: d[:20], EscrowTruncated, "truncated"),
        (lambda d: b"", EscrowTruncated, "empty"),
        (_flip_armor_char, EscrowCorrupted, "corrupted"),
        (lambda d: d.replace(b"\n", b"\n!", 3), EscrowCorrupted, "corrupted"),
        (lambda d: b"apiVersion: v1\nkind: Secret\n", EscrowNotAgeFile, "not an age file"),
        (lambda d: b"\x00\x01binary junk" * 10, EscrowNotAgeFile, "not an age file"),
    ],
)
def test_age_damaged_bundles_have_distinct_errors(
    kit: RecoveryKit,
    ident: tuple[Path, str],
    age_bundle: bytes,
    tmp_path: Path,
    mutate: object,
    error: type[EscrowError],
    match: str,
) -> None:
    p = _write(tmp_path, mutate(age_bundle))  # type: ignore[operator]
    with pytest.raises(error, match=match) as info:
        age_file.read_kit(p, identity_files=[ident[0]])
    assert info.value.hint
    assert_no_leak(kit, info.value)


def test_age_binary_bundle_damage(
    kit: RecoveryKit, ident: tuple[Path, str], tmp_path: Path
) -> None:
    import pyrage  # only to build a non-armored bundle for this test
    from pyrage import x25519

    binary = pyrage.encrypt(kit.to_json(), [x25519.Recipient.from_str(ident[1])])
    assert age_file.read_kit(_write(tmp_path, binary), identity_files=[ident[0]]) == kit
    with pytest.raises(EscrowCorrupted, match="corrupted or truncated"):
        age_file.read_kit(_write(tmp_path, binary[:-10]), identity_files=[ident[0]])
    with pytest.raises(EscrowTruncated):
        age_file.read_kit(_write(tmp_path, binary[:60]), identity_files=[ident[0]])


def test_age_wrong_identity(age_bundle: bytes, tmp_path: Path) -> None:
    secret, _ = age_adapter.generate_identity()
    other = tmp_path / "other.txt"
    other.write_text(secret + "\n")
    with pytest.raises(WrongIdentity, match="none of the identities") as info:
        age_file.read_kit(_write(tmp_path, age_bundle), identity_files=[other])
    assert secret not in str(info.value)
    bad = tmp_path / "bad.txt"
    bad.write_text("AGE-SECRET-KEY-1NOTBECH32\n")
    with pytest.raises(WrongIdentity, match="not an AGE-SECRET-KEY"):
        age_file.read_kit(_write(tmp_path, age_bundle), identity_files=[bad])


def test_age_missing_files(ident: tuple[Path, str], age_bundle: bytes, tmp_path: Path) -> None:
    with pytest.raises(EscrowMissing, match="does not exist"):
        age_file.read_kit(tmp_path / "nope.age", identity_files=[ident[0]])
    with pytest.raises(EscrowMissing, match="identity file"):
        age_file.read_kit(_write(tmp_path, age_bundle), identity_files=[tmp_path / "no.txt"])


def test_age_recipients_bundle_refuses_passphrase(age_bundle: bytes, tmp_path: Path) -> None:
    with pytest.raises(WrongPassphrase, match="recipients, not a passphrase"):
        age_file.read_kit(_write(tmp_path, age_bundle), passphrase="anything")


def test_nothing_written_when_encryption_fails(kit: RecoveryKit, tmp_path: Path) -> None:
    out = tmp_path / "kit.age"
    out.write_bytes(b"previous good bundle")
    with pytest.raises(ConfigError, match="not an age X25519 recipient"):
        age_file.write_kit(out, kit, recipients=["age1notarecipient"])
    assert out.read_bytes() == b"previous good bundle"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kit.age"]
    with pytest.raises(ConfigError):
        age_file.write_kit(tmp_path / "x.age", kit)
    assert not (tmp_path / "x.age").exists()


def test_passphrase_mode(kit: RecoveryKit, tmp_path: Path) -> None:
    """One scrypt encrypt + two decrypts (~2.5 s each, age's fixed work factor)."""
    pw = "correct horse battery staple"
    out = tmp_path / "kit.age"
    age_file.write_kit(out, kit, passphrase=pw)
    assert age_file.inspect_bundle(out.read_bytes()).mode == "passphrase"
    assert age_file.read_kit(out, passphrase=pw) == kit
    with pytest.raises(WrongPassphrase, match="rejected") as info:
        age_file.read_kit(out, passphrase="wrong horse")
    assert pw not in str(info.value) and "wrong horse" not in str(info.value)
    with pytest.raises(WrongIdentity, match="passphrase-encrypted"):
        age_file.read_kit(out, identity_files=[tmp_path / "unused"])


def test_read_passphrase_env_then_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRBOOT_TEST_PW", "from-env")
    assert age_file.read_passphrase("DRBOOT_TEST_PW", lambda: "from-prompt") == "from-env"
    monkeypatch.delenv("DRBOOT_TEST_PW")
    assert age_file.read_passphrase("DRBOOT_TEST_PW", lambda: "from-prompt") == "from-prompt"
    with pytest.raises(PassphraseUnavailable, match=r"\$DRBOOT_TEST_PW"):
        age_file.read_passphrase("DRBOOT_TEST_PW", None)


def test_escrow_files_are_written_atomic_0600(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_text("old")
    os.chmod(p, 0o644)
    write_atomic(p, b"new")  # the writer age_file and shamir use
    assert p.read_bytes() == b"new"
    assert stat.S_IMODE(p.stat().st_mode) == 0o600


# --------------------------------------------------------------------------- shamir


def test_shamir_any_m_of_n_opens(kit: RecoveryKit) -> None:
    bundle, shares = shamir.seal_kit(kit, threshold=3, count=5)
    assert TOKEN.encode() not in bundle
    texts = [s.text() for s in shares]
    assert all(t.startswith(f"drboot-share-{i}-of-5:3:") for i, t in enumerate(texts, 1))
    for combo in itertools.combinations(texts, 3):
        assert shamir.open_kit(bundle, [shamir.parse_share(t) for t in combo]) == kit
    # more than the threshold is fine too
    assert shamir.open_kit(bundle, [shamir.parse_share(t) for t in texts]) == kit
    assert_no_leak(kit, *shares)
    for s in shares:
        assert s.value.hex() not in repr(s)


def test_shamir_too_few_and_duplicate_shares(kit: RecoveryKit) -> None:
    bundle, shares = shamir.seal_kit(kit, threshold=3, count=5)
    with pytest.raises(TooFewShares, match="2 distinct valid share"):
        shamir.open_kit(bundle, shares[:2])
    with pytest.raises(TooFewShares):
        shamir.open_kit(bundle, [shares[0], shares[0], shares[1]])


@pytest.mark.parametrize("pos", [-1, -5, 30, 50])
def test_shamir_corrupt_share_fails_checksum(kit: RecoveryKit, pos: int) -> None:
    _, shares = shamir.seal_kit(kit, threshold=2, count=3)
    text = shares[0].text()
    ch = text[pos]
    bad = text[:pos] + ("0" if ch != "0" else "1") + (text[pos + 1 :] if pos != -1 else "")
    with pytest.raises(CorruptShare) as info:
        shamir.parse_share(bad, where="custodian 1")
    assert "custodian 1" in str(info.value)
    assert shares[0].value.hex() not in str(info.value)
    with pytest.raises(CorruptShare, match="not a drboot share"):
        shamir.parse_share(text[:-12])


def test_shamir_shares_from_another_split(kit: RecoveryKit) -> None:
    bundle, shares = shamir.seal_kit(kit, threshold=2, count=3)
    _, others = shamir.seal_kit(kit, threshold=2, count=3)
    with pytest.raises(MixedShares, match="split"):
        shamir.open_kit(bundle, [shares[0], others[1]])
    with pytest.raises(MixedShares):
        shamir.open_kit(bundle, others[:2])


def test_shamir_bundle_damage(kit: RecoveryKit) -> None:
    bundle, shares = shamir.seal_kit(kit, threshold=2, count=3)
    flipped = bytearray(bundle)
    flipped[-30] ^= 1
    with pytest.raises(EscrowCorrupted):
        shamir.open_kit(bytes(flipped), shares[:2])
    with pytest.raises(EscrowCorrupted):
        shamir.open_kit(bundle[:-7], shares[:2])
    with pytest.raises(EscrowTruncated):
        shamir.open_kit(bundle[:30], shares[:2])
    with pytest.raises(EscrowNotAgeFile):
        shamir.open_kit(b"something else entirely", shares[:2])


def test_shamir_files_and_missing_custodians(kit: RecoveryKit, tmp_path: Path) -> None:
    paths = [tmp_path / f"custodian-{i}.share" for i in range(1, 6)]
    shamir.write_kit(tmp_path / "kit.shamir", kit, paths, threshold=3)
    for p in [tmp_path / "kit.shamir", *paths]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    paths[0].unlink()
    paths[3].unlink()
    assert shamir.read_kit(tmp_path / "kit.shamir", paths) == kit
    paths[1].unlink()
    with pytest.raises(TooFewShares, match="missing share files"):
        shamir.read_kit(tmp_path / "kit.shamir", paths)
    with pytest.raises(EscrowMissing):
        shamir.read_kit(tmp_path / "none.shamir", paths)


def test_shamir_rejects_bad_parameters(kit: RecoveryKit) -> None:
    with pytest.raises(ConfigError):
        shamir.seal_kit(kit, threshold=1, count=3)
    with pytest.raises(ConfigError):
        shamir.seal_kit(kit, threshold=4, count=3)


# --------------------------------------------------------------------------- backends


def test_backend_factory_age_and_shamir(
    kit: RecoveryKit, ident: tuple[Path, str], tmp_path: Path
) -> None:
    age_b = make_backend(
        "age", tmp_path / "kit.age", recipients=[ident[1]], identity_files=[ident[0]]
    )
    assert isinstance(age_b, AgeFileBackend)
    age_b.write(kit)
    assert age_b.read() == kit
    assert "kit.age" in age_b.describe() and "1 recipient" in age_b.describe()

    shares = [tmp_path / f"s{i}" for i in range(3)]
    sh = make_backend("shamir", tmp_path / "kit.shamir", share_paths=shares, threshold=2)
    assert isinstance(sh, ShamirBackend)
    sh.write(kit)
    assert sh.read() == kit
    assert sh.describe().endswith("(2 of 3 custodian shares)")
    assert_no_leak(kit, age_b.describe(), sh.describe())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"backend": "vault"},
        {"backend": "age"},
        {"backend": "shamir", "threshold": 1, "share_paths": ["a", "b"]},
        {"backend": "shamir", "threshold": 2, "share_paths": []},
        # Fewer share files than the threshold is not a config error: reading says how many
        # shares are missing (TooFewShares, exit 3; tested in test_escrow_cli.py).
    ],
)
def test_backend_factory_refuses_bad_settings(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        make_backend(path="kit", **kwargs)  # type: ignore[arg-type]


def test_shamir_write_failure_leaves_old_files(kit: RecoveryKit, tmp_path: Path) -> None:
    paths = [tmp_path / f"s{i}" for i in range(3)]
    shamir.write_kit(tmp_path / "kit.shamir", kit, paths, threshold=2)
    before = {p: p.read_bytes() for p in [tmp_path / "kit.shamir", *paths]}
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("file")
    with pytest.raises(OSError):
        shamir.write_kit(tmp_path / "kit.shamir", kit, [*paths[:2], blocker / "s3"], threshold=2)
    assert {p: p.read_bytes() for p in before} == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert shamir.read_kit(tmp_path / "kit.shamir", paths) == kit
