"""Sealed Secrets hybrid crypto, byte-compatible with kubeseal and the controller.

drboot has to prove, before a restore, that the escrowed sealing keys really open
every SealedSecret in the config repo, and it has to rebuild the controller's
key Secrets. Both need the controller's exact wire format, implemented here
with ``cryptography`` (the one vendor library this module may import):

* a fresh 32-byte session key per value, wrapped with RSA-OAEP (SHA-256,
  MGF1-SHA-256) under the label ``"<namespace>/<name>"`` (strict),
  ``"<namespace>"`` (namespace-wide) or ``""`` (cluster-wide);
* the value sealed with AES-256-GCM under that key, a 12-byte zero nonce (the key
  is used once) and no associated data;
* ``uint16_be(len(rsa_ct)) || rsa_ct || gcm_ct_and_tag``, standard base64.

No key id is embedded, so unsealing tries every key. Plaintexts and key bytes
never enter an exception message or a repr.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

from bootstrap import hostkeys
from bootstrap.errors import ConfigError, PermanentError

CLUSTER_WIDE_ANNOTATION: Final = "sealedsecrets.bitnami.com/cluster-wide"
NAMESPACE_WIDE_ANNOTATION: Final = "sealedsecrets.bitnami.com/namespace-wide"
KEY_LABEL: Final = "sealedsecrets.bitnami.com/sealed-secrets-key"
API_VERSION: Final = "bitnami.com/v1alpha1"
SESSION_KEY_BYTES: Final = 32
_ZERO_NONCE: Final = bytes(12)
_GCM_TAG_BYTES: Final = 16
_CERT_VALIDITY: Final = dt.timedelta(days=3650)


PrivateKey = rsa.RSAPrivateKey  # for type hints elsewhere, without importing cryptography


class Scope(StrEnum):
    """How far a sealed value may travel: kubeseal's ``--scope`` values."""

    STRICT = "strict"
    NAMESPACE_WIDE = "namespace-wide"
    CLUSTER_WIDE = "cluster-wide"


class UnsealError(PermanentError):
    """A sealed value could not be opened. Never carries key or plaintext bytes."""

    reason = "unseal-failed"


class NoKeyDecrypts(UnsealError):
    """No key opened the RSA part: wrong key, wrong name/namespace/scope, or a flipped bit."""

    reason = "no-key-decrypts"


class MalformedSealedValue(UnsealError):
    """The bytes are not a sealed value at all (bad base64, too short, bad length field)."""

    reason = "malformed"


class TamperedSealedValue(UnsealError):
    """A key opened the RSA part but AES-GCM rejected the payload: it was altered or cut."""

    reason = "tampered"


def _oaep(label: bytes) -> padding.OAEP:
    return padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=label
    )


def encryption_label(namespace: str, name: str, scope: Scope | str) -> bytes:
    """The RSA-OAEP label the controller uses for this namespace/name under ``scope``."""
    scope = Scope(scope)
    if scope is Scope.CLUSTER_WIDE:
        return b""
    if scope is Scope.NAMESPACE_WIDE:
        return namespace.encode()
    return f"{namespace}/{name}".encode()


def _mapping(value: object) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else empty: manifests from git can hold any shape."""
    return value if isinstance(value, Mapping) else {}


def scope_from_annotations(annotations: Mapping[str, Any] | None) -> Scope:
    """The scope a set of annotations declares (cluster-wide wins, as in the controller)."""
    annotations = _mapping(annotations)
    if str(annotations.get(CLUSTER_WIDE_ANNOTATION, "")) == "true":
        return Scope.CLUSTER_WIDE
    if str(annotations.get(NAMESPACE_WIDE_ANNOTATION, "")) == "true":
        return Scope.NAMESPACE_WIDE
    return Scope.STRICT


def scope_of(sealed: Mapping[str, Any]) -> Scope:
    """Scope of a SealedSecret: its own metadata first, then ``spec.template.metadata``.

    The controller labels with the SealedSecret's metadata annotations; kubeseal writes
    the same annotation in both places, so either being set is honoured.
    """
    own = scope_from_annotations(_mapping(sealed.get("metadata")).get("annotations"))
    if own is not Scope.STRICT:
        return own
    template = _mapping(_mapping(sealed.get("spec")).get("template"))
    return scope_from_annotations(_mapping(template.get("metadata")).get("annotations"))


def _scope_annotations(scope: Scope) -> dict[str, str]:
    if scope is Scope.CLUSTER_WIDE:
        return {CLUSTER_WIDE_ANNOTATION: "true"}
    if scope is Scope.NAMESPACE_WIDE:
        return {NAMESPACE_WIDE_ANNOTATION: "true"}
    return {}


def hybrid_encrypt(pub: rsa.RSAPublicKey, plaintext: bytes, label: bytes) -> bytes:
    """Raw (not base64) sealed bytes for ``plaintext`` under ``label``."""
    session_key = os.urandom(SESSION_KEY_BYTES)
    rsa_ct = pub.encrypt(session_key, _oaep(label))
    gcm_ct = AESGCM(session_key).encrypt(_ZERO_NONCE, plaintext, None)
    return len(rsa_ct).to_bytes(2, "big") + rsa_ct + gcm_ct


def _split(raw: bytes) -> tuple[bytes, bytes]:
    if len(raw) < 2:
        raise MalformedSealedValue("sealed value is too short (no length prefix)")
    rsa_len = int.from_bytes(raw[:2], "big")
    if len(raw) < 2 + rsa_len:
        raise MalformedSealedValue(
            f"sealed value is too short: RSA part says {rsa_len} bytes, "
            f"only {len(raw) - 2} present (truncated?)"
        )
    return raw[2 : 2 + rsa_len], raw[2 + rsa_len :]


def hybrid_decrypt_indexed(
    keys: Sequence[rsa.RSAPrivateKey], raw: bytes, label: bytes
) -> tuple[bytes, int]:
    """Open raw sealed bytes; return the plaintext and the index of the key that worked."""
    rsa_ct, gcm_ct = _split(raw)
    sizes = {k.key_size // 8 for k in keys}
    if sizes and len(rsa_ct) not in sizes:
        raise MalformedSealedValue(
            f"RSA part is {len(rsa_ct)} bytes; the keys use {sorted(sizes)} "
            "(truncated, or sealed with a key of another size)"
        )
    if len(gcm_ct) < _GCM_TAG_BYTES:
        raise MalformedSealedValue("AES-GCM part is shorter than its tag (truncated?)")
    oaep = _oaep(label)
    for index, key in enumerate(keys):
        if key.key_size // 8 != len(rsa_ct):
            continue
        try:
            session_key = key.decrypt(rsa_ct, oaep)
        except ValueError:
            continue
        if len(session_key) != SESSION_KEY_BYTES:
            raise MalformedSealedValue("RSA part holds a session key of the wrong size")
        try:
            return AESGCM(session_key).decrypt(_ZERO_NONCE, gcm_ct, None), index
        except InvalidTag:
            raise TamperedSealedValue(
                "AES-GCM authentication failed: the sealed payload was altered or truncated",
                hint="re-seal the value from its source; the ciphertext in git is damaged",
            ) from None
    raise NoKeyDecrypts(
        f"no key decrypts this value (tried {len(keys)} key(s))",
        hint="the value was sealed with a key not in the escrow, or for another "
        "namespace/name/scope",
    )


def b64decode_sealed(b64: str) -> bytes:
    """Standard base64 of an ``encryptedData`` value; ``MalformedSealedValue`` if not."""
    try:
        return base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedSealedValue("sealed value is not valid standard base64") from None


def seal_value(
    pub: rsa.RSAPublicKey, value: bytes, namespace: str, name: str, scope: Scope | str
) -> str:
    """Seal one value the way kubeseal does; returns the base64 for ``encryptedData``."""
    raw = hybrid_encrypt(pub, value, encryption_label(namespace, name, scope))
    return base64.b64encode(raw).decode("ascii")


def unseal_value(
    private_keys: Sequence[rsa.RSAPrivateKey],
    b64: str,
    namespace: str,
    name: str,
    scope: Scope | str,
) -> bytes:
    """Open one ``encryptedData`` value, trying every key (no key id is embedded).

    Raises ``MalformedSealedValue``, ``NoKeyDecrypts`` or ``TamperedSealedValue``.
    """
    plaintext, _ = hybrid_decrypt_indexed(
        private_keys, b64decode_sealed(b64), encryption_label(namespace, name, scope)
    )
    return plaintext


def seal_secret(
    pub: rsa.RSAPublicKey, secret: Mapping[str, Any], scope: Scope | str | None = None
) -> dict[str, Any]:
    """Turn a v1 Secret manifest into a SealedSecret manifest (per-value sealing).

    ``scope`` None means: take it from the Secret's annotations, as kubeseal does.
    ``data`` values are base64 (as in a Secret), ``stringData`` values are text.
    """
    meta = dict(secret.get("metadata") or {})
    name = str(meta.get("name") or "")
    namespace = str(meta.get("namespace") or "")
    if not name:
        raise ConfigError("secret has no metadata.name; cannot seal it")
    annotations = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if k
        not in (
            CLUSTER_WIDE_ANNOTATION,
            NAMESPACE_WIDE_ANNOTATION,
            "kubectl.kubernetes.io/last-applied-configuration",
        )
    }
    eff = Scope(scope) if scope is not None else scope_from_annotations(meta.get("annotations"))
    if eff is not Scope.CLUSTER_WIDE and not namespace:
        raise ConfigError(f"secret {name} must declare a namespace to be sealed as {eff}")
    annotations.update(_scope_annotations(eff))

    values: dict[str, bytes] = {}
    for key, b64 in (secret.get("data") or {}).items():
        values[key] = b64decode_sealed(str(b64))
    for key, text in (secret.get("stringData") or {}).items():
        values[key] = str(text).encode()

    label = encryption_label(namespace, name, eff)
    encrypted = {
        key: base64.b64encode(hybrid_encrypt(pub, val, label)).decode("ascii")
        for key, val in sorted(values.items())
    }
    template_meta: dict[str, Any] = {"name": name}
    if namespace:
        template_meta["namespace"] = namespace
    if meta.get("labels"):
        template_meta["labels"] = dict(meta["labels"])
    if annotations:
        template_meta["annotations"] = annotations
    template: dict[str, Any] = {"metadata": template_meta}
    if secret.get("type"):
        template["type"] = secret["type"]
    if secret.get("immutable") is not None:
        template["immutable"] = secret["immutable"]
    out_meta: dict[str, Any] = {"name": name}
    if namespace:
        out_meta["namespace"] = namespace
    if _scope_annotations(eff):
        out_meta["annotations"] = _scope_annotations(eff)
    return {
        "apiVersion": API_VERSION,
        "kind": "SealedSecret",
        "metadata": out_meta,
        "spec": {"encryptedData": encrypted, "template": template},
    }


def unseal_sealed_secret(
    keys: Sequence[rsa.RSAPrivateKey], sealed: Mapping[str, Any]
) -> dict[str, bytes]:
    """Open every ``spec.encryptedData`` value of a SealedSecret manifest.

    The first failing value raises its ``UnsealError`` (with the data key named).
    """
    meta = sealed.get("metadata") or {}
    name = str(meta.get("name") or "")
    namespace = str(meta.get("namespace") or "")
    spec = sealed.get("spec") or {}
    encrypted = spec.get("encryptedData")
    if not isinstance(encrypted, Mapping):
        if spec.get("data"):
            raise MalformedSealedValue(
                f"SealedSecret {namespace}/{name} uses the deprecated v1 'spec.data' field",
                hint="re-seal it with a current kubeseal",
            )
        raise MalformedSealedValue(f"SealedSecret {namespace}/{name} has no spec.encryptedData")
    label = encryption_label(namespace, name, scope_of(sealed))
    out: dict[str, bytes] = {}
    for key, b64 in encrypted.items():
        try:
            out[str(key)], _ = hybrid_decrypt_indexed(keys, b64decode_sealed(str(b64)), label)
        except UnsealError as exc:
            exc.message = f"{namespace}/{name} key {key!r}: {exc.message}"
            raise
    return out


def _ssh_wire_rsa(pub: rsa.RSAPublicKey) -> bytes:
    line = pub.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return base64.b64decode(line.split()[1])


def fingerprint(public_key: rsa.RSAPublicKey) -> str:
    """The controller's key fingerprint: ``SHA256:<unpadded base64>`` of the SSH wire key.

    This is what ``crypto.PublicKeyFingerprint`` (golang.org/x/crypto/ssh
    ``FingerprintSHA256``) returns and what the controller keys its registry by; it
    also equals ``ssh-keygen -lf`` on the key.
    """
    return hostkeys.fingerprint(_ssh_wire_rsa(public_key))


def spki_sha256_hex(public_key: rsa.RSAPublicKey) -> str:
    """SHA-256 hex of the DER SubjectPublicKeyInfo (the form ``openssl`` tooling shows)."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def generate_key(bits: int = 4096) -> tuple[rsa.RSAPrivateKey, bytes]:
    """A new sealing key and a self-signed CA cert like the controller's (10 years).

    The controller also sets an encipher-only key usage; ``cryptography`` cannot
    express that bit alone and kubeseal only reads the public key, so it is left out.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "sealed-secret"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sealed-secret"),
        ]
    )
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(os.urandom(16), "big") >> 1)
        .not_valid_before(now)
        .not_valid_after(now + _CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


def private_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    """PEM PKCS#1 (``RSA PRIVATE KEY``), the encoding the controller writes to ``tls.key``."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def load_private_key(pem: bytes | str, *, trusted: bool = False) -> rsa.RSAPrivateKey:
    """Parse a PEM RSA private key (PKCS#1 or PKCS#8); errors never echo the bytes.

    ``trusted``: the key was validated when it entered the kit (``SealingKey.from_pem``)
    and comes back from the authenticated escrow, so OpenSSL's RSA consistency checks
    (about 0.3 s for a 4096-bit key) are skipped.
    """
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(
            data, password=None, unsafe_skip_rsa_key_validation=trusted
        )
    except (ValueError, TypeError):
        raise MalformedSealedValue(
            "tls.key is not a readable unencrypted PEM private key",
            hint="check the escrowed key material (it may be damaged)",
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise MalformedSealedValue("tls.key is not an RSA key; Sealed Secrets needs RSA")
    return key


def cert_not_before(cert_pem: bytes | str) -> dt.datetime:
    """``notBefore`` of the first cert (the controller orders keys by it)."""
    data = cert_pem.encode() if isinstance(cert_pem, str) else cert_pem
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise MalformedSealedValue("tls.crt is not a readable PEM certificate") from None
    return cert.not_valid_before_utc


def cert_fingerprint(cert_pem: bytes | str) -> str:
    """Fingerprint of the public key in a PEM certificate (what ``/v1/cert.pem`` serves)."""
    data = cert_pem.encode() if isinstance(cert_pem, str) else cert_pem
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise MalformedSealedValue("the certificate is not readable PEM") from None
    public = cert.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise MalformedSealedValue("the certificate does not hold an RSA public key")
    return fingerprint(public)


def key_secret_manifest(
    key: rsa.RSAPrivateKey,
    cert_pem: bytes,
    name: str,
    namespace: str,
    label: str = "active",
) -> dict[str, Any]:
    """The ``kubernetes.io/tls`` Secret the controller reads its sealing key from."""
    if label not in ("active", "compromised"):
        raise ConfigError(f"sealing key label must be active or compromised, not {label!r}")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": namespace, "labels": {KEY_LABEL: label}},
        "data": {
            "tls.key": base64.b64encode(private_key_pem(key)).decode("ascii"),
            "tls.crt": base64.b64encode(cert_pem).decode("ascii"),
        },
    }


@dataclass(frozen=True, repr=False)
class KeyMaterial:
    """A sealing key read back from a Secret; repr shows only the fingerprint."""

    name: str
    label: str
    private_key: rsa.RSAPrivateKey
    cert_pem: bytes

    def __repr__(self) -> str:
        return (
            f"KeyMaterial(name={self.name!r}, label={self.label!r}, "
            f"fingerprint={fingerprint(self.private_key.public_key())!r})"
        )


def keys_from_secret(secret: Mapping[str, Any]) -> KeyMaterial:
    """Read the key pair out of a controller key Secret (``data`` is base64)."""
    meta = _mapping(secret.get("metadata"))
    data = _mapping(secret.get("data"))
    name = str(meta.get("name") or "")
    if "tls.key" not in data or "tls.crt" not in data:
        raise MalformedSealedValue(f"secret {name!r} has no tls.key/tls.crt; not a sealing key")
    try:
        key_pem = base64.b64decode(str(data["tls.key"]), validate=True)
        cert_pem = base64.b64decode(str(data["tls.crt"]), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedSealedValue(f"secret {name!r}: tls.key/tls.crt is not base64") from None
    label = str(_mapping(meta.get("labels")).get(KEY_LABEL, "active"))
    return KeyMaterial(
        name=name, label=label, private_key=load_private_key(key_pem), cert_pem=cert_pem
    )


def public_keys(keys: Iterable[rsa.RSAPrivateKey]) -> list[rsa.RSAPublicKey]:
    """The public halves, for sealing test values or fingerprinting."""
    return [k.public_key() for k in keys]
