"""The forms a secret can take once it leaks, and the scan that looks for them.

A secret rarely leaks verbatim only: a key is logged as its PEM (or one line of it), a token
ends up base64-encoded in a YAML ``data:`` field, bytes get printed as hex. The forms below
cover raw, base64 (at each of the three byte alignments, so a secret inside a longer encoded
blob is found too), hex, every PEM body line and slices of the DER. A failed scan names the
file (or output) and the kind of form, never the secret itself.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

if TYPE_CHECKING:
    from bootstrap.lab.seed import Seed

MIN_LINE = 16  # shorter PEM lines (the last one, say) would match by chance


@dataclass(frozen=True)
class Form:
    secret: str  # what it is a form of (a name, never the value)
    kind: str  # raw, base64, hex, pem-line …
    value: bytes


def text_forms(name: str, secret: str | bytes) -> list[Form]:
    """Raw, base64 (three alignments) and hex forms of a token, passphrase or identity."""
    raw = secret.encode() if isinstance(secret, str) else secret
    raw = raw.strip()
    out = [Form(name, "raw", raw), Form(name, "hex", raw.hex().encode()),
           Form(name, "HEX", raw.hex().upper().encode())]  # fmt: skip
    for pad in range(3):
        enc = base64.b64encode(b"\0" * pad + raw)
        # Drop the characters that also encode the padding bytes or the unknown tail.
        start = (pad * 4 + 2) // 3
        out.append(Form(name, f"base64@{pad}", enc[start : len(enc) - 4]))
    return out


def pem_forms(name: str, pem: bytes, der: bytes | None = None) -> list[Form]:
    """A private key's PEM, each body line, the base64 of the PEM (as in a Secret's ``data``)
    and, with ``der``, slices of the DER raw and in hex."""
    lines = pem.strip().splitlines()
    body = [ln for ln in lines if not ln.startswith(b"-----")]
    out = [Form(name, "pem", pem.strip())]
    out += [Form(name, f"pem-line-{i}", ln) for i, ln in enumerate(body) if len(ln) >= MIN_LINE]
    out += text_forms(name, pem)[3:]  # base64 of the whole PEM, each alignment
    if der is not None:
        out += [Form(name, "der", der[40:80]), Form(name, "der-hex", der[40:80].hex().encode())]
    return out


def rsa_forms(name: str, key: rsa.RSAPrivateKey) -> list[Form]:
    from bootstrap import sealing

    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return pem_forms(name, sealing.private_key_pem(key), der)


def seed_forms(s: Seed) -> list[bytes]:
    """Every form of every secret of a lab seed: sealing keys, k3s token, age identity, and the
    deploy key when the seed has one."""
    from bootstrap.escrow import age_file

    kit = age_file.read_kit(s.bundle, identity_files=[s.identity])
    assert kit.k3s_token is not None
    forms = text_forms("k3s token", kit.k3s_token) + text_forms(
        "age identity", s.identity.read_text()
    )
    for k in kit.sealing_keys:
        forms += rsa_forms(f"sealing key {k.fingerprint}", k.private_key())
    if kit.deploy_key:  # a forge site's seed: the repo's deploy key too
        forms += text_forms("deploy key", kit.deploy_key)
    return [f.value for f in forms]


def files_under(*roots: Path) -> list[Path]:
    """Every regular file under ``roots``, recursively (hidden ones, and under hidden dirs)."""
    out: list[Path] = []
    for root in roots:
        if root.is_file():
            out.append(root)
        elif root.exists():
            out += sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    return out


def find_leaks(forms: Iterable[Form | bytes], blobs: dict[str, bytes]) -> list[str]:
    """``where: secret (kind)`` for each form found in a blob; the value is never shown."""
    found = []
    for where, blob in blobs.items():
        for i, f in enumerate(forms):
            form = f if isinstance(f, Form) else Form("secret", f"form {i}", f)
            if form.value and form.value in blob:
                found.append(f"{where}: {form.secret} ({form.kind})")
    return found


def assert_no_leak(forms: list[bytes] | list[Form], *blobs: bytes, state: Path | None = None,
                   roots: Iterable[Path] = ()) -> None:  # fmt: skip
    """No form in any of ``blobs`` nor in any file under ``state`` and ``roots``."""
    named = {f"output {i}": b for i, b in enumerate(blobs)}
    for f in files_under(*([state] if state is not None else []), *roots):
        named[str(f)] = f.read_bytes()
    leaks = find_leaks(forms, named)
    assert not leaks, "secret material leaked: " + "; ".join(leaks)
