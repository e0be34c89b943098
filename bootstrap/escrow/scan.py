"""Prove the kit opens the repo: find every SealedSecret and unseal it in memory.

A restore that brings back a controller whose keys cannot open the repo's
SealedSecrets fails late and silently (apps stay Degraded). ``verify`` catches that
before anything is provisioned. The repo is searched twice: the kustomize render of
the deployed path (names and namespaces as applied) and every raw YAML file (so
nothing outside the render is missed); results are deduplicated by namespace/name.
Plaintexts are discarded as soon as they authenticate; reports hold names,
counts and reasons only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from bootstrap.adapters import kustomize
from bootstrap.errors import ConfigError

if TYPE_CHECKING:
    from bootstrap.escrow.kit import RecoveryKit
    from bootstrap.sealing import PrivateKey as RSAPrivateKey

Reason = Literal["no-key-decrypts", "wrong-scope-or-name", "malformed", "tampered"]
_PARALLEL_MIN = 200  # below this, forking costs more than it saves
_SKIP_DIRS = {".git", "node_modules", ".venv", "__pycache__"}


@dataclass(frozen=True)
class Found:
    """One SealedSecret: where it was found and the manifest (ciphertexts are not secret)."""

    namespace: str
    name: str
    source: str
    manifest: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def ref(self) -> str:
        return f"{self.namespace or '<no namespace>'}/{self.name}"


@dataclass(frozen=True)
class VerifyFailure:
    """A SealedSecret the kit cannot open, and why."""

    namespace: str
    name: str
    source: str
    reason: Reason
    detail: str


@dataclass
class VerifyReport:
    """Outcome of ``verify``: counts, failures by namespace/name, which keys did the work."""

    total: int = 0
    ok: int = 0
    values_checked: int = 0
    failures: list[VerifyFailure] = field(default_factory=list)
    key_usage: dict[str, int] = field(default_factory=dict)
    opened_with_compromised: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        """One line for logs: counts and the first failures."""
        text = f"{self.ok}/{self.total} SealedSecrets open with the kit ({self.seconds:.1f}s)"
        if self.failures:
            shown = "; ".join(f"{f.namespace}/{f.name}: {f.reason}" for f in self.failures[:5])
            more = f" (+{len(self.failures) - 5} more)" if len(self.failures) > 5 else ""
            text += f"; failing: {shown}{more}"
        return text


def _docs(text: str) -> Iterator[Mapping[str, Any]]:
    for doc in yaml.safe_load_all(text):
        if isinstance(doc, Mapping):
            if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
                yield from (d for d in doc["items"] if isinstance(d, Mapping))
            else:
                yield doc


def _is_sealed(doc: Mapping[str, Any]) -> bool:
    return doc.get("kind") == "SealedSecret" and str(doc.get("apiVersion", "")).startswith(
        "bitnami.com/"
    )


def _found(doc: Mapping[str, Any], source: str) -> Found:
    meta = doc.get("metadata") or {}
    return Found(str(meta.get("namespace") or ""), str(meta.get("name") or ""), source, doc)


def _yaml_files(root: Path) -> Iterator[Path]:
    for p in sorted(root.rglob("*")):
        if any(part in _SKIP_DIRS for part in p.relative_to(root).parts):
            continue
        if p.suffix in (".yaml", ".yml") and p.is_file():
            yield p


def find_sealed_secrets(repo_dir: str | Path, path: str = ".") -> list[Found]:
    """Every SealedSecret in the repo: kustomize render of ``path`` first, then raw files."""
    root = Path(repo_dir).resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root):
        raise ConfigError(f"repo path {path!r} points outside the repo")
    seen: dict[tuple[str, str], Found] = {}
    rendered_names: set[str] = set()
    if kustomize.has_kustomization(target):
        rel = target.relative_to(root).as_posix()
        for doc in _docs(kustomize.build(target)):
            if _is_sealed(doc):
                f = _found(doc, f"kustomize:{rel}")
                seen.setdefault((f.namespace, f.name), f)
                rendered_names.add(f.name)
    for file in _yaml_files(root):
        try:
            docs = list(_docs(file.read_text(errors="replace")))
        except yaml.YAMLError:
            continue  # templates (helm, jinja) are not YAML until rendered
        for doc in docs:
            if not _is_sealed(doc):
                continue
            f = _found(doc, file.relative_to(root).as_posix())
            if not f.namespace and f.name in rendered_names:
                continue  # the render gave it its namespace
            seen.setdefault((f.namespace, f.name), f)
    return list(seen.values())


class _KeyRing:
    """Keys in try-order; the last key that worked moves to the front."""

    def __init__(self, keys: Sequence[RSAPrivateKey], labels: Sequence[str]) -> None:
        from bootstrap import sealing

        self.entries = [
            (k, sealing.fingerprint(k.public_key()), lab)
            for k, lab in zip(keys, labels, strict=True)
        ]

    def open(self, raw: bytes, label: bytes) -> tuple[str, str]:
        """(fingerprint, active|compromised) of the key that opened ``raw``."""
        from bootstrap import sealing

        _, idx = sealing.hybrid_decrypt_indexed([e[0] for e in self.entries], raw, label)
        entry = self.entries[idx]
        if idx:
            self.entries.insert(0, self.entries.pop(idx))
        return entry[1], entry[2]


def _check_one(ring: _KeyRing, f: Found) -> tuple[VerifyFailure | None, list[tuple[str, str]], int]:
    """Open every value of one SealedSecret; (failure or None, fingerprints used, values)."""
    from bootstrap import sealing

    def fail(reason: Reason, detail: str) -> tuple[VerifyFailure, list[tuple[str, str]], int]:
        return VerifyFailure(f.namespace, f.name, f.source, reason, detail), [], 0

    spec = f.manifest.get("spec") or {}
    encrypted = spec.get("encryptedData") if isinstance(spec, Mapping) else None
    if not f.name:
        return fail("malformed", "no metadata.name")
    if not isinstance(encrypted, Mapping) or not encrypted:
        return fail("malformed", "no spec.encryptedData")
    scope = sealing.scope_of(f.manifest)
    if not f.namespace and scope is not sealing.Scope.CLUSTER_WIDE:
        return fail("malformed", f"no metadata.namespace; a {scope} value cannot be checked")
    label = sealing.encryption_label(f.namespace, f.name, scope)
    used: list[tuple[str, str]] = []
    for key, b64 in encrypted.items():
        try:
            raw = sealing.b64decode_sealed(str(b64))
            used.append(ring.open(raw, label))
        except sealing.MalformedSealedValue as exc:
            return fail("malformed", f"value {key!r}: {exc.message}")
        except sealing.TamperedSealedValue:
            return fail("tampered", f"value {key!r}: AES-GCM authentication failed")
        except sealing.NoKeyDecrypts:
            for other in sealing.Scope:
                if other is scope or (not f.namespace and other is not sealing.Scope.CLUSTER_WIDE):
                    continue
                try:
                    ring.open(raw, sealing.encryption_label(f.namespace, f.name, other))
                except sealing.UnsealError:
                    continue
                return fail(
                    "wrong-scope-or-name",
                    f"value {key!r} was sealed {other} but the manifest says {scope}",
                )
            return fail(
                "no-key-decrypts",
                f"value {key!r}: no kit key opens it (another key, or sealed for another "
                "name/namespace)",
            )
    return None, used, len(used)


def _verify_chunk(
    key_pems: Sequence[str], labels: Sequence[str], found: Sequence[Found]
) -> VerifyReport:
    """Verify one slice with its own key ring (runs in-process or in a pool worker)."""
    from bootstrap import sealing

    ring = _KeyRing([sealing.load_private_key(p) for p in key_pems], labels)
    report = VerifyReport(total=len(found))
    for f in found:
        failure, used, n = _check_one(ring, f)
        report.values_checked += n
        if failure is not None:
            report.failures.append(failure)
            continue
        report.ok += 1
        for fp, _ in used:
            report.key_usage[fp] = report.key_usage.get(fp, 0) + 1
        if any(lab == "compromised" for _, lab in used):
            report.opened_with_compromised.append(f.ref)
    return report


def _merge(parts: Sequence[VerifyReport]) -> VerifyReport:
    out = VerifyReport()
    for p in parts:
        out.total += p.total
        out.ok += p.ok
        out.values_checked += p.values_checked
        out.failures += p.failures
        out.opened_with_compromised += p.opened_with_compromised
        for fp, n in p.key_usage.items():
            out.key_usage[fp] = out.key_usage.get(fp, 0) + n
    return out


def verify(kit: RecoveryKit, found: Sequence[Found], *, workers: int | None = None) -> VerifyReport:
    """Unseal every value of every SealedSecret in memory with the kit's keys.

    Keys are tried newest first and the last key that worked is tried first next
    time. RSA-4096 private operations dominate (~1.7 ms each), so above
    ``_PARALLEL_MIN`` secrets (or when ``workers`` > 1 is asked for) the work is split
    over ``workers`` processes (default: CPU count, at most 4); key PEMs reach the
    workers through the pool's pipes only, never a file.
    """
    started = time.perf_counter()
    ordered = sorted(kit.sealing_keys, key=lambda k: k.not_before, reverse=True)
    pems = [k.tls_key for k in ordered]
    labels = [k.label for k in ordered]
    n_workers = workers if workers is not None else min(os.cpu_count() or 1, 4)
    if n_workers <= 1 or len(found) < 2 or (workers is None and len(found) < _PARALLEL_MIN):
        report = _verify_chunk(pems, labels, found)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        size = -(-len(found) // n_workers)
        chunks = [list(found[i : i + size]) for i in range(0, len(found), size)]
        # forkserver: forking a process that may run engine threads is unsafe
        ctx = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(max_workers=len(chunks), mp_context=ctx) as pool:
            parts = list(
                pool.map(_verify_chunk, [pems] * len(chunks), [labels] * len(chunks), chunks)
            )
        report = _merge(parts)
    report.seconds = time.perf_counter() - started
    return report
