"""How long ``escrow verify`` takes on a big config repo, clone and render included.

Run on demand (not part of the test suite)::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_escrow_verify.py [--secrets 1000] [--values 1]

A real git repo with ``--secrets`` SealedSecrets in 10 kustomize apps, sealed with 3
RSA-4096 keys interleaved (secret i with key i % 3: the worst case for any "last key
that worked" ordering). Each run is what ``drboot escrow verify`` does: ``git clone``,
``kubectl kustomize`` (the pinned one), parse, unseal every value in a process pool.

The floor, measured in the same run: one RSA-OAEP + AES-GCM decryption per value with
the right key given up front, serially, with the same library (no search, no render,
no clone). The ratio to it is printed; so are the RSA operations actually done.
Then the incremental mode: the same repo again with the cache of the first run, and
after a one-file change.
"""

from __future__ import annotations

import argparse
import base64
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bootstrap import sealing
from bootstrap.adapters import git, kustomize
from bootstrap.escrow.kit import RecoveryKit, SealingKey
from bootstrap.escrow.scan import VerifyCache, VerifyReport, scan_repo, verify

APPS = 10
N_KEYS = 3


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=b@b", "-c", "user.name=b", *args],
        check=True,
        capture_output=True,
    )


def build(root: Path, n_secrets: int, n_values: int) -> tuple[RecoveryKit, list[Any]]:
    keys = [sealing.generate_key(4096) for _ in range(N_KEYS)]
    kit = RecoveryKit(
        site="bench",
        sealing_keys=[
            SealingKey.from_pem(f"key{i}", sealing.private_key_pem(k), crt)
            for i, (k, crt) in enumerate(keys)
        ],
        k3s_token=None,
    )
    per_app: list[list[dict[str, Any]]] = [[] for _ in range(APPS)]
    for i in range(n_secrets):
        app = i % APPS
        secret = {
            "metadata": {"name": f"s{i}", "namespace": f"app{app}"},
            "stringData": {f"v{j}": os.urandom(24).hex() for j in range(n_values)},
        }
        per_app[app].append(sealing.seal_secret(keys[i % N_KEYS][0].public_key(), secret))
    for app, docs in enumerate(per_app):
        d = root / "apps" / f"app{app}"
        d.mkdir(parents=True)
        (d / "sealed.yaml").write_text(yaml.safe_dump_all(docs))
        (d / "kustomization.yaml").write_text(
            yaml.safe_dump(
                {"namespace": f"app{app}", "labels": [{"pairs": {"app": f"app{app}"}}],
                 "resources": ["sealed.yaml"]}
            )
        )  # fmt: skip
    (root / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": [f"apps/app{a}" for a in range(APPS)]})
    )
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "bench")
    return kit, [k for k, _ in keys]


def floor(kit_keys: list[Any], repo: Path) -> tuple[float, int]:
    """Serial decryption of every value with the right key known: the crypto floor."""
    found = scan_repo(repo).found
    jobs = []
    for f in found:
        label = sealing.encryption_label(f.namespace, f.name, "strict")
        i = int(f.name[1:]) % N_KEYS
        for b64 in f.manifest["spec"]["encryptedData"].values():
            jobs.append((kit_keys[i], base64.b64decode(b64), label))
    started = time.perf_counter()
    for key, raw, label in jobs:
        n = int.from_bytes(raw[:2], "big")
        session = key.decrypt(raw[2 : 2 + n], sealing._oaep(label))
        AESGCM(session).decrypt(bytes(12), raw[2 + n :], None)
    return time.perf_counter() - started, len(jobs)


def run(kit: RecoveryKit, url: str, cache: VerifyCache | None) -> tuple[float, VerifyReport]:
    """What `drboot escrow verify` does: clone, render, parse, unseal."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "repo"
        git.clone(url, "main", dest)
        scan = scan_repo(dest, ".")
        report = verify(kit, scan.found, cache=cache)
    assert report.passed, report.summary()
    return time.perf_counter() - started, report


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--secrets", type=int, default=1000)
    ap.add_argument("--values", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "config"
        repo.mkdir()
        t0 = time.perf_counter()
        kit, keys = build(repo, args.secrets, args.values)
        print(
            f"built {args.secrets} SealedSecrets x {args.values} value(s), {N_KEYS} RSA-4096 keys "
            f"interleaved, {APPS} kustomize apps, in {time.perf_counter() - t0:.1f}s"
        )
        print(f"renderer: {kustomize.renderer().describe()}")
        print(f"CPUs: {os.cpu_count()}, load average (1 min): {os.getloadavg()[0]:.2f}")
        url = f"file://{repo}"
        run(kit, url, None)  # warm the page cache and the forkserver's imports
        cold, report = run(kit, url, None)
        floor_s, n_values = floor(keys, repo)
        print(
            f"verify, clone+render+unseal: {cold:6.2f}s wall  ({report.values_checked} values, "
            f"{report.rsa_operations} RSA operations = "
            f"{report.rsa_operations / max(n_values, 1):.2f} per value)"
        )
        print(f"serial crypto floor ({n_values} OAEP+GCM, right key known): {floor_s:6.2f}s")
        print(f"ratio verify / floor: {cold / floor_s:5.2f}")

        cache_file = Path(tmp) / "cache.json"
        c = VerifyCache()
        run(kit, url, c)
        c.save(cache_file)
        warm, wreport = run(kit, url, VerifyCache.load(cache_file))
        print(
            f"incremental, unchanged repo: {warm:6.2f}s wall  "
            f"({wreport.rsa_operations} RSA operations, {wreport.cache_hits} cache hits)"
        )
        extra = sealing.seal_secret(
            keys[1].public_key(),
            {"metadata": {"name": "s1", "namespace": "app1"}, "stringData": {"new": "value"}},
        )
        (repo / "apps" / "app1" / "sealed.yaml").write_text(
            yaml.safe_dump_all(
                [extra if d["metadata"]["name"] == "s1" else d
                 for d in yaml.safe_load_all((repo / "apps/app1/sealed.yaml").read_text())]
            )
        )  # fmt: skip
        _git(repo, "commit", "-qam", "one secret changed")
        delta, dreport = run(kit, url, VerifyCache.load(cache_file))
        print(
            f"incremental, one secret changed: {delta:6.2f}s wall  "
            f"({dreport.rsa_operations} RSA operations, {dreport.cache_hits} cache hits)"
        )


if __name__ == "__main__":
    main()
