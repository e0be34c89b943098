"""How long ``escrow verify`` takes on a big repo: 1,000 SealedSecrets, RSA-4096.

Run on demand (not part of the test suite)::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_escrow_verify.py [--secrets 1000] [--values 2]

The kit holds two 4096-bit keys (a renewed one and the old one); 10% of the secrets
were sealed with the old key, so key ordering matters. The peer in the same run is
pycryptodome opening the same values with the right key given up front (no key
search, no scope logic), i.e. a floor for "RSA-OAEP + AES-GCM per value".
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import os
import time

from Crypto.Cipher import AES, PKCS1_OAEP
from Crypto.Hash import SHA256
from Crypto.PublicKey import RSA
from Crypto.Signature.pss import MGF1

from bootstrap import sealing
from bootstrap.escrow.kit import RecoveryKit, SealingKey
from bootstrap.escrow.scan import Found, verify


def build(n_secrets: int, n_values: int) -> tuple[RecoveryKit, list[Found], list[str]]:
    new, new_crt = sealing.generate_key(4096)
    old, old_crt = sealing.generate_key(4096)
    new_sk = SealingKey.from_pem("key-new", sealing.private_key_pem(new), new_crt)
    old_sk = SealingKey.from_pem("key-old", sealing.private_key_pem(old), old_crt)
    old_sk = SealingKey(
        old_sk.name, "active", old_sk.tls_key, old_sk.tls_crt, old_sk.fingerprint,
        old_sk.not_before - dt.timedelta(days=30),
    )  # fmt: skip
    kit = RecoveryKit(site="bench", sealing_keys=[old_sk, new_sk], k3s_token="bench-token")
    found, which = [], []
    for i in range(n_secrets):
        k, pem_name = (old, "old") if i % 10 == 0 else (new, "new")
        secret = {
            "metadata": {"name": f"s{i}", "namespace": f"ns{i % 37}"},
            "stringData": {f"v{j}": os.urandom(24).hex() for j in range(n_values)},
        }
        sealed = sealing.seal_secret(k.public_key(), secret)
        found.append(Found(f"ns{i % 37}", f"s{i}", "bench", sealed))
        which.append(pem_name)
    return kit, found, which


def peer_pycryptodome(kit: RecoveryKit, found: list[Found], which: list[str]) -> float:
    keys = {
        "new": RSA.import_key(kit.sealing_keys[1].tls_key),
        "old": RSA.import_key(kit.sealing_keys[0].tls_key),
    }
    started = time.perf_counter()
    for f, w in zip(found, which, strict=True):
        label = f"{f.namespace}/{f.name}".encode()
        oaep = PKCS1_OAEP.new(
            keys[w], hashAlgo=SHA256, mgfunc=lambda x, y: MGF1(x, y, SHA256), label=label
        )
        for b64 in f.manifest["spec"]["encryptedData"].values():
            raw = base64.b64decode(b64)
            n = int.from_bytes(raw[:2], "big")
            session = oaep.decrypt(raw[2 : 2 + n])
            body = raw[2 + n :]
            AES.new(session, AES.MODE_GCM, nonce=bytes(12)).decrypt_and_verify(
                body[:-16], body[-16:]
            )
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--secrets", type=int, default=1000)
    ap.add_argument("--values", type=int, default=2)
    args = ap.parse_args()
    t0 = time.perf_counter()
    kit, found, which = build(args.secrets, args.values)
    print(f"built {len(found)} SealedSecrets x {args.values} values in "
          f"{time.perf_counter() - t0:.1f}s (2 RSA-4096 keys)")  # fmt: skip
    report = verify(kit, found)  # default: process pool over the CPUs
    assert report.passed, report.summary()
    serial = verify(kit, found, workers=1)
    assert serial.passed, serial.summary()
    peer = peer_pycryptodome(kit, found, which)
    print(f"load average (1 min): {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"drboot verify (pool):   {report.seconds:6.2f}s  ({report.values_checked} values)")
    print(f"drboot verify (serial): {serial.seconds:6.2f}s")
    print(f"pycryptodome (known key, no search, serial): {peer:6.2f}s")
    print(f"ratio serial drboot/pycryptodome: {serial.seconds / peer:5.2f}")
    print(f"ratio pool/serial:                {report.seconds / serial.seconds:5.2f}")


if __name__ == "__main__":
    main()
