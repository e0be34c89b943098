"""Sealing keys from the files people already have, and back to the documented format.

The Sealed Secrets docs tell users to back up their keys with
``kubectl get secret -n kube-system -l sealedsecrets.bitnami.com/sealed-secrets-key -o yaml
> main.key``: a ``v1 List`` of ``kubernetes.io/tls`` Secrets (or one Secret, YAML or
JSON). Others keep the PEM private key and its certificate (``tls.key``/``tls.crt``).
Both are read here so a user with no live cluster can build a recovery kit, and
``to_main_key`` writes the documented format back so the manual procedure
(``kubectl apply -f main.key``) stays open. Errors name the file and the problem,
never the bytes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from bootstrap.errors import ConfigError
from bootstrap.escrow.kit import SealingKey

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)
_KEY_TYPES = {b"RSA PRIVATE KEY", b"PRIVATE KEY"}
_PARSE_ERRORS = (yaml.YAMLError, ValueError, TypeError, RecursionError, OverflowError)
MAX_KEY_FILE_BYTES = 4 * 1024 * 1024


def _read(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_KEY_FILE_BYTES:
            raise ConfigError(f"{path}: {size} bytes is too big for a key file")
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{path} is not readable ({exc.strerror or type(exc).__name__})"
        ) from None


def _secrets(path: Path, data: bytes) -> list[Mapping[str, Any]]:
    from bootstrap.escrow.scan import MANIFEST_LOADER

    try:
        docs = list(yaml.load_all(data.decode("utf-8"), Loader=MANIFEST_LOADER))
    except UnicodeDecodeError:
        raise ConfigError(
            f"{path} is neither PEM nor UTF-8 YAML/JSON", hint="pass main.key or PEM files"
        ) from None
    except _PARSE_ERRORS:
        raise ConfigError(
            f"{path} is not a readable YAML/JSON document (nor PEM)",
            hint="pass the output of `kubectl get secret -n kube-system -l "
            "sealedsecrets.bitnami.com/sealed-secrets-key -o yaml`, or PEM files",
        ) from None
    out: list[Mapping[str, Any]] = []
    for doc in docs:
        if not isinstance(doc, Mapping):
            continue
        items = doc.get("items") if doc.get("kind") == "List" else [doc]
        out += [d for d in items or [] if isinstance(d, Mapping) and d.get("kind") == "Secret"]
    if not out:
        raise ConfigError(
            f"{path} holds no Secret (expected a v1 List of Secrets, one Secret, or PEM)",
            hint="the documented backup is `kubectl get secret -n kube-system -l "
            "sealedsecrets.bitnami.com/sealed-secrets-key -o yaml > main.key`",
        )
    return out


def _pem_name(fingerprint: str) -> str:
    return "sealed-secrets-key" + hashlib.sha256(fingerprint.encode()).hexdigest()[:5]


def read_key_files(paths: Sequence[Path]) -> list[SealingKey]:
    """Every sealing key in ``paths`` (main.key lists/Secrets, PEM keys and certificates).

    PEM private keys and certificates are paired by public key across all the files,
    so ``tls.key`` and ``tls.crt`` may be given separately. The same key twice is one
    key; the same Secret name with two different keys is an error.
    """
    from bootstrap import sealing

    keys: list[SealingKey] = []
    pem_keys: list[tuple[Path, bytes]] = []
    certs: dict[str, bytes] = {}
    for path in paths:
        data = _read(path)
        blocks = list(_PEM_BLOCK.finditer(data))
        if not blocks:
            for secret in _secrets(path, data):
                meta = secret.get("metadata")
                name = str(meta.get("name") or "") if isinstance(meta, Mapping) else ""
                try:
                    keys.append(SealingKey.from_secret(secret))
                except sealing.UnsealError as exc:
                    raise ConfigError(
                        f"{path}: Secret {name!r} is not a usable sealing key: {exc.message}"
                    ) from None
            continue
        for m in blocks:
            kind = m.group(1)
            if kind in _KEY_TYPES:
                pem_keys.append((path, m.group(0) + b"\n"))
            elif kind == b"CERTIFICATE":
                try:
                    certs.setdefault(sealing.cert_fingerprint(m.group(0)), m.group(0) + b"\n")
                except sealing.UnsealError:
                    raise ConfigError(f"{path}: a CERTIFICATE block is not readable") from None
            elif b"ENCRYPTED" in kind:
                raise ConfigError(
                    f"{path}: the private key is encrypted",
                    hint=f"decrypt it first (openssl rsa -in {path} -out plain.key; chmod 600)",
                )
    used_certs: set[str] = set()
    for path, pem in pem_keys:
        try:
            private = sealing.load_private_key(pem)
        except sealing.UnsealError as exc:
            raise ConfigError(f"{path}: {exc.message}") from None
        fp = sealing.fingerprint(private.public_key())
        cert = certs.get(fp)
        if cert is None:
            raise ConfigError(
                f"{path}: private key {fp} has no matching certificate",
                hint="pass its certificate too (the controller's tls.crt; "
                "`kubeseal --fetch-cert` prints it)",
            )
        used_certs.add(fp)
        keys.append(SealingKey.from_pem(_pem_name(fp), pem, cert))
    stray = sorted(set(certs) - used_certs)
    if stray and not pem_keys and not keys:
        raise ConfigError(
            f"only certificates given ({', '.join(stray)}): a certificate cannot open anything",
            hint="pass the private key (tls.key) with it",
        )
    return merge([], keys, where="the files given")[0]


def merge(
    old: Iterable[SealingKey], new: Iterable[SealingKey], *, where: str = "the escrow"
) -> tuple[list[SealingKey], list[str]]:
    """Union by fingerprint, oldest first; (keys, fingerprints added). Name clashes are errors."""
    old = list(old)
    by_fp: dict[str, SealingKey] = {}
    by_name: dict[str, str] = {}
    for k in [*old, *new]:
        if k.fingerprint in by_fp:
            continue
        if by_name.get(k.name, k.fingerprint) != k.fingerprint:
            raise ConfigError(
                f"two different keys are both named {k.name!r} ({by_name[k.name]} in {where}, "
                f"{k.fingerprint} imported)",
                hint="check which backup is right; a key Secret name holds one key",
            )
        by_fp[k.fingerprint] = k
        by_name[k.name] = k.fingerprint
    old_fps = {k.fingerprint for k in old}
    added = [fp for fp in by_fp if fp not in old_fps]
    return sorted(by_fp.values(), key=lambda k: k.not_before), added


def to_main_key(keys: Sequence[SealingKey], namespace: str = "kube-system") -> str:
    """The documented backup format: a ``v1 List`` of the controller's key Secrets (YAML)."""
    doc = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [k.to_secret(namespace) for k in keys],
        "metadata": {"resourceVersion": ""},
    }
    return yaml.safe_dump(doc, sort_keys=False)
