"""bootstrap.sealing: kubeseal wire format, scopes, tamper detection, interop, key Secrets."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootstrap import sealing
from bootstrap.sealing import Scope

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sealing"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


SECRET = b"p@ss\x00word-\xff-value"


@pytest.mark.parametrize("scope", list(Scope))
def test_round_trip_every_scope(key: rsa.RSAPrivateKey, scope: Scope) -> None:
    b64 = sealing.seal_value(key.public_key(), SECRET, "apps", "db", scope)
    assert sealing.unseal_value([key], b64, "apps", "db", scope) == SECRET


def test_wire_layout_matches_controller(key: rsa.RSAPrivateKey) -> None:
    raw = base64.b64decode(sealing.seal_value(key.public_key(), b"abc", "ns", "n", Scope.STRICT))
    (rsa_len,) = struct.unpack(">H", raw[:2])
    assert rsa_len == 256  # 2048-bit modulus
    assert len(raw) == 2 + 256 + 3 + 16  # length || rsa || gcm(ct) || tag


def test_fresh_session_key_per_value(key: rsa.RSAPrivateKey) -> None:
    a = sealing.seal_value(key.public_key(), SECRET, "ns", "n", Scope.STRICT)
    b = sealing.seal_value(key.public_key(), SECRET, "ns", "n", Scope.STRICT)
    assert a != b


@pytest.mark.parametrize(
    ("scope", "ns", "name", "opens"),
    [
        (Scope.STRICT, "apps", "other", False),
        (Scope.STRICT, "prod", "db", False),
        (Scope.NAMESPACE_WIDE, "apps", "other", True),
        (Scope.NAMESPACE_WIDE, "prod", "db", False),
        (Scope.CLUSTER_WIDE, "prod", "other", True),
    ],
)
def test_scope_binds_name_and_namespace(
    key: rsa.RSAPrivateKey, scope: Scope, ns: str, name: str, opens: bool
) -> None:
    b64 = sealing.seal_value(key.public_key(), SECRET, "apps", "db", scope)
    if opens:
        assert sealing.unseal_value([key], b64, ns, name, scope) == SECRET
    else:
        with pytest.raises(sealing.NoKeyDecrypts):
            sealing.unseal_value([key], b64, ns, name, scope)


def test_sealed_under_one_scope_does_not_open_under_another(key: rsa.RSAPrivateKey) -> None:
    b64 = sealing.seal_value(key.public_key(), SECRET, "apps", "db", Scope.STRICT)
    with pytest.raises(sealing.NoKeyDecrypts):
        sealing.unseal_value([key], b64, "apps", "db", Scope.CLUSTER_WIDE)


def test_tries_every_key(key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey) -> None:
    b64 = sealing.seal_value(key.public_key(), SECRET, "a", "b", Scope.STRICT)
    assert sealing.unseal_value([other_key, key], b64, "a", "b", Scope.STRICT) == SECRET
    with pytest.raises(sealing.NoKeyDecrypts, match="tried 1 key"):
        sealing.unseal_value([other_key], b64, "a", "b", Scope.STRICT)


def _flip(raw: bytes, pos: int) -> str:
    b = bytearray(raw)
    b[pos] ^= 0x01
    return base64.b64encode(bytes(b)).decode()


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda raw: _flip(raw, 2 + 10), sealing.NoKeyDecrypts),  # inside the RSA part
        (lambda raw: _flip(raw, len(raw) - 20), sealing.TamperedSealedValue),  # GCM body
        (lambda raw: _flip(raw, len(raw) - 1), sealing.TamperedSealedValue),  # GCM tag
        (lambda raw: base64.b64encode(raw[:-1]).decode(), sealing.TamperedSealedValue),
        (lambda raw: base64.b64encode(raw[:-40]).decode(), sealing.MalformedSealedValue),
        (lambda raw: base64.b64encode(raw[:100]).decode(), sealing.MalformedSealedValue),
        (lambda raw: base64.b64encode(raw[:1]).decode(), sealing.MalformedSealedValue),
        (lambda raw: _flip(raw, 0), sealing.MalformedSealedValue),  # length field
        (lambda raw: "not base64!!", sealing.MalformedSealedValue),
    ],
)
def test_tampering_and_truncation_are_detected(
    key: rsa.RSAPrivateKey, mutate: Any, error: type[Exception]
) -> None:
    raw = base64.b64decode(sealing.seal_value(key.public_key(), b"x" * 30, "a", "b", "strict"))
    with pytest.raises(error) as info:
        sealing.unseal_value([key], mutate(raw), "a", "b", "strict")
    assert isinstance(info.value, sealing.UnsealError)
    assert "x" * 30 not in str(info.value)


def _fixture_key() -> rsa.RSAPrivateKey:
    return sealing.load_private_key((FIXTURES / "fixture-key.pem").read_bytes())


@pytest.mark.parametrize(
    "filename", ["sealed-strict.yaml", "sealed-namespace-wide.yaml", "sealed-cluster-wide.yaml"]
)
def test_known_answer_fixtures_built_with_pycryptodome(filename: str) -> None:
    expected = json.loads((FIXTURES / "expected.json").read_text())[filename]
    doc = yaml.safe_load((FIXTURES / filename).read_text())
    opened = sealing.unseal_sealed_secret([_fixture_key()], doc)
    assert opened == {k: base64.b64decode(v) for k, v in expected.items()}


def test_fixture_scope_is_enforced_on_rename() -> None:
    doc = yaml.safe_load((FIXTURES / "sealed-strict.yaml").read_text())
    doc["metadata"]["name"] = "renamed"
    with pytest.raises(sealing.NoKeyDecrypts, match="renamed"):
        sealing.unseal_sealed_secret([_fixture_key()], doc)


def test_pycryptodome_opens_what_sealing_seals() -> None:
    from Crypto.Cipher import AES, PKCS1_OAEP
    from Crypto.Hash import SHA256
    from Crypto.PublicKey import RSA
    from Crypto.Signature.pss import MGF1

    pem = (FIXTURES / "fixture-key.pem").read_bytes()
    b64 = sealing.seal_value(_fixture_key().public_key(), SECRET, "apps", "db", "namespace-wide")
    raw = base64.b64decode(b64)
    (n,) = struct.unpack(">H", raw[:2])
    oaep = PKCS1_OAEP.new(
        RSA.import_key(pem), hashAlgo=SHA256, mgfunc=lambda x, y: MGF1(x, y, SHA256), label=b"apps"
    )
    session = oaep.decrypt(raw[2 : 2 + n])
    gcm = AES.new(session, AES.MODE_GCM, nonce=bytes(12))
    body = raw[2 + n :]
    assert gcm.decrypt_and_verify(body[:-16], body[-16:]) == SECRET


def test_seal_secret_manifest_and_back(key: rsa.RSAPrivateKey) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": "web",
            "namespace": "apps",
            "labels": {"app": "web"},
            "annotations": {sealing.NAMESPACE_WIDE_ANNOTATION: "true"},
        },
        "data": {"a": base64.b64encode(b"plain-a").decode()},
        "stringData": {"b": "beta"},
    }
    sealed = sealing.seal_secret(key.public_key(), secret)
    assert sealed["apiVersion"] == "bitnami.com/v1alpha1"
    assert sealed["kind"] == "SealedSecret"
    assert sealed["metadata"]["annotations"] == {sealing.NAMESPACE_WIDE_ANNOTATION: "true"}
    assert sealed["spec"]["template"]["metadata"]["labels"] == {"app": "web"}
    assert sealed["spec"]["template"]["type"] == "Opaque"
    assert sealing.scope_of(sealed) is Scope.NAMESPACE_WIDE
    assert sealing.unseal_sealed_secret([key], sealed) == {"a": b"plain-a", "b": b"beta"}
    assert b"plain-a" not in json.dumps(sealed).encode()
    # explicit scope overrides the annotation
    cw = sealing.seal_secret(key.public_key(), secret, Scope.CLUSTER_WIDE)
    cw["metadata"]["namespace"] = "elsewhere"
    assert sealing.unseal_sealed_secret([key], cw)["b"] == b"beta"


def test_scope_from_template_annotations_only() -> None:
    doc = {
        "metadata": {"name": "x", "namespace": "y"},
        "spec": {
            "template": {"metadata": {"annotations": {sealing.CLUSTER_WIDE_ANNOTATION: "true"}}}
        },
    }
    assert sealing.scope_of(doc) is Scope.CLUSTER_WIDE
    assert sealing.scope_of({"metadata": {}}) is Scope.STRICT


def test_seal_secret_requires_namespace_unless_cluster_wide(key: rsa.RSAPrivateKey) -> None:
    from bootstrap.errors import ConfigError

    with pytest.raises(ConfigError):
        sealing.seal_secret(key.public_key(), {"metadata": {"name": "n"}, "stringData": {"a": "b"}})
    sealed = sealing.seal_secret(
        key.public_key(), {"metadata": {"name": "n"}, "stringData": {"a": "b"}}, "cluster-wide"
    )
    assert sealing.unseal_sealed_secret([key], sealed) == {"a": b"b"}


def test_fingerprint_is_the_controllers_ssh_sha256() -> None:
    # Known answer: `ssh-keygen -lf` style over the SSH wire form, computed here by hand.
    import hashlib

    pub = _fixture_key().public_key()
    nums = pub.public_numbers()

    def mpint(v: int) -> bytes:
        b = v.to_bytes((v.bit_length() + 8) // 8, "big")
        return struct.pack(">I", len(b)) + b

    wire = struct.pack(">I", 7) + b"ssh-rsa" + mpint(nums.e) + mpint(nums.n)
    want = "SHA256:" + base64.b64encode(hashlib.sha256(wire).digest()).decode().rstrip("=")
    assert sealing.fingerprint(pub) == want
    assert len(sealing.spki_sha256_hex(pub)) == 64


def test_generate_key_cert_and_key_secret_round_trip() -> None:
    priv, cert_pem = sealing.generate_key(bits=2048)
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "sealed-secret"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
        "sealed-secret"
    )
    assert cert.issuer == cert.subject
    validity = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert validity.days == 3650
    assert cert.public_key().public_numbers() == priv.public_key().public_numbers()  # type: ignore[union-attr]

    manifest = sealing.key_secret_manifest(priv, cert_pem, "sealed-secrets-key1", "kube-system")
    assert manifest["type"] == "kubernetes.io/tls"
    assert manifest["metadata"]["labels"] == {sealing.KEY_LABEL: "active"}
    key_pem = base64.b64decode(manifest["data"]["tls.key"])
    assert key_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")  # PKCS#1 like the controller
    back = sealing.keys_from_secret(manifest)
    assert back.label == "active"
    assert sealing.fingerprint(back.private_key.public_key()) == sealing.fingerprint(
        priv.public_key()
    )
    r = repr(back)
    assert "PRIVATE" not in r and manifest["data"]["tls.key"][:40] not in r
    assert sealing.fingerprint(priv.public_key()) in r
    comp = sealing.key_secret_manifest(priv, cert_pem, "k", "kube-system", label="compromised")
    assert sealing.keys_from_secret(comp).label == "compromised"


def test_bad_key_material_errors_do_not_echo_it() -> None:
    junk = (
        "-----BEGIN RSA PRIVATE KEY-----\n"
        "TUlJRXBBSUJBQUtDQVFFQXh4eHh4eA==\n"
        "-----END RSA PRIVATE KEY-----\n"
    )
    with pytest.raises(sealing.MalformedSealedValue) as info:
        sealing.load_private_key(junk)
    assert "TUlJRXBB" not in str(info.value) and "TUlJRXBB" not in repr(info.value)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    value=st.binary(max_size=2048),
    namespace=st.text(min_size=1, max_size=20),
    name=st.text(min_size=1, max_size=20),
    scope=st.sampled_from(list(Scope)),
)
def test_round_trip_property(
    key: rsa.RSAPrivateKey, value: bytes, namespace: str, name: str, scope: Scope
) -> None:
    b64 = sealing.seal_value(key.public_key(), value, namespace, name, scope)
    assert sealing.unseal_value([key], b64, namespace, name, scope) == value


def test_cert_fingerprint_matches_the_key_fingerprint() -> None:
    key, cert = sealing.generate_key(2048)
    assert sealing.cert_fingerprint(cert) == sealing.fingerprint(key.public_key())
    with pytest.raises(sealing.MalformedSealedValue):
        sealing.cert_fingerprint(b"-----BEGIN CERTIFICATE-----\nnot a cert\n")
