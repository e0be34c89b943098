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

import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from bootstrap.adapters import kustomize
from bootstrap.errors import ConfigError, PreflightError

if TYPE_CHECKING:
    from bootstrap.escrow.kit import RecoveryKit
    from bootstrap.sealing import PrivateKey as RSAPrivateKey
    from bootstrap.sealing import Scope

Reason = Literal["no-key-decrypts", "wrong-scope-or-name", "malformed", "tampered"]
_RERANK = 32  # values between re-rankings of the key order
_PARALLEL_MIN = 200
_MAX_ALTERNATIVES = 3  # below this, forking costs more than it saves
_SKIP_DIRS = {".git", "node_modules", ".venv", "__pycache__"}


@dataclass(frozen=True)
class Found:
    """One SealedSecret: where it was found and the manifest (ciphertexts are not secret)."""

    namespace: str
    name: str
    source: str
    manifest: Mapping[str, Any] = field(repr=False, compare=False)
    files: tuple[str, ...] = field(default=(), compare=False)
    # (namespace, name, where seen) it may have been sealed for; only read on failure
    alternatives: tuple[tuple[str, str, str], ...] = field(default=(), compare=False)

    @property
    def ref(self) -> str:
        return f"{self.namespace or '<no namespace>'}/{self.name}"

    def with_alternatives(self, alts: tuple[tuple[str, str, str], ...]) -> Found:
        return Found(self.namespace, self.name, self.source, self.manifest, self.files, alts)


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
    # one row per SealedSecret: namespace, name, file, scope, verdict (no values)
    results: list[dict[str, Any]] = field(default_factory=list)
    rsa_operations: int = 0
    cache_hits: int = 0
    new_cache_entries: set[str] = field(default_factory=set, repr=False)
    pending: list[Found] = field(default_factory=list, repr=False)  # cache-only pass: misses

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


def _loader() -> type[yaml.SafeLoader]:
    """The C loader when libyaml is there (7x faster), with YAML-1.1 timestamps off.

    Kubernetes reads manifests as JSON-like data: ``release: 2024-13-45`` is a
    string to the API server, and must not be a ``ValueError`` here.
    """
    base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class _Loader(base):  # type: ignore[valid-type,misc]
        pass

    _Loader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in base.yaml_implicit_resolvers.items()
    }
    return _Loader


MANIFEST_LOADER = _loader()
# what a malformed or hostile file can raise while being parsed and constructed
_PARSE_ERRORS = (yaml.YAMLError, ValueError, TypeError, RecursionError, OverflowError)
MAX_FILE_BYTES = 4 * 1024 * 1024  # a manifest this big is data, not config


def _docs(text: str) -> Iterator[Mapping[str, Any]]:
    for doc in yaml.load_all(text, Loader=MANIFEST_LOADER):
        if isinstance(doc, Mapping):
            if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
                yield from (d for d in doc["items"] if isinstance(d, Mapping))
            else:
                yield doc


def _is_sealed(doc: Mapping[str, Any]) -> bool:
    return doc.get("kind") == "SealedSecret" and str(doc.get("apiVersion", "")).startswith(
        "bitnami.com/"
    )


def _meta_ref(doc: Mapping[str, Any]) -> tuple[str, str]:
    meta = doc.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _ciphertexts(doc: Mapping[str, Any]) -> frozenset[str]:
    """The sealed values: what kustomize never changes, so the identity of a SealedSecret."""
    spec = doc.get("spec")
    enc = spec.get("encryptedData") if isinstance(spec, Mapping) else None
    return frozenset(str(v) for v in enc.values()) if isinstance(enc, Mapping) else frozenset()


def _found(doc: Mapping[str, Any], source: str, files: Sequence[str] = ()) -> Found:
    ns, name = _meta_ref(doc)
    return Found(ns, name, source, doc, files=tuple(files))


def _yaml_files(root: Path, warnings: list[str]) -> Iterator[tuple[Path, str]]:
    """(path, text) of every YAML file worth parsing; every file skipped is named in warnings.

    Symlinks are never followed: one that points inside the repo is scanned as its
    target, one that points outside is skipped without being read.
    """
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for fname in sorted(filenames):
            p = Path(dirpath) / fname
            if p.suffix not in (".yaml", ".yml"):
                continue
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                target = p.resolve()
                if not target.is_relative_to(root):
                    warnings.append(f"{rel}: skipped, a symlink pointing outside the repo")
                continue  # inside the repo: its target is scanned on its own
            try:
                size = p.stat().st_size
                if not p.is_file():
                    continue
                if size > MAX_FILE_BYTES:
                    warnings.append(
                        f"{rel}: skipped, {size} bytes is over the {MAX_FILE_BYTES}-byte limit"
                    )
                    continue
                data = p.read_bytes()
            except OSError as exc:
                warnings.append(
                    f"{rel}: skipped, unreadable ({exc.strerror or type(exc).__name__})"
                )
                continue
            if b"\0" in data[:8192]:
                warnings.append(f"{rel}: skipped, a binary file")
                continue
            try:
                yield p, data.decode("utf-8")
            except UnicodeDecodeError:
                warnings.append(f"{rel}: skipped, not UTF-8 text")


@dataclass
class RepoScan:
    """What the repo holds: each SealedSecret once, what was skipped, and the renderer used."""

    found: list[Found]
    warnings: list[str] = field(default_factory=list)
    renderer: str | None = None


def scan_repo(repo_dir: str | Path, path: str = ".") -> RepoScan:
    """Every SealedSecret in the repo, counted once.

    The kustomize render of ``path`` is what the reconciler applies, so a rendered
    object wins; a raw file holding the same ciphertexts is the file it came from
    (named in ``files``), not a second SealedSecret. Raw files outside the render are
    scanned too, so nothing sealed is missed. Nothing a repo holds makes this crash:
    files that do not parse are skipped and named in ``warnings``.
    """
    root = Path(repo_dir).resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root):
        raise ConfigError(f"repo path {path!r} points outside the repo")
    result = RepoScan(found=[])
    rendered: list[Mapping[str, Any]] = []
    raw: list[tuple[str, list[Mapping[str, Any]]]] = []
    # kustomize runs in its own process while the raw files are read and parsed here
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kustomize") as bg:
        render: Future[str] | None = None
        if kustomize.has_kustomization(target):
            kubectl = kustomize.renderer()
            result.renderer = kubectl.describe()
            render = bg.submit(kustomize.build, target, kubectl=kubectl)
        for file, text in _yaml_files(root, result.warnings):
            rel_file = file.relative_to(root).as_posix()
            try:
                raw.append((rel_file, [d for d in _docs(text) if _is_sealed(d)]))
            except _PARSE_ERRORS as exc:
                kind = (
                    "nested too deeply" if isinstance(exc, RecursionError) else type(exc).__name__
                )
                result.warnings.append(
                    f"{rel_file}: skipped, not a readable YAML document ({kind})"
                )
        if render is not None:
            rel = target.relative_to(root).as_posix()
            text = render.result()
            try:
                rendered = [d for d in _docs(text) if _is_sealed(d)]
            except _PARSE_ERRORS as exc:
                raise PreflightError(
                    f"the kustomize render of {rel} is not readable YAML ({type(exc).__name__})",
                    hint="run `kubectl kustomize` on that path and look at the output",
                ) from None
    # ciphertexts -> (object, source, raw files, (namespace, name, file) as the raw files say)
    by_cipher: dict[
        frozenset[str], tuple[Mapping[str, Any], str, list[str], list[tuple[str, str, str]]]
    ] = {}
    order: list[frozenset[str]] = []
    seen_refs: set[tuple[str, str]] = set()
    if rendered:
        rel = target.relative_to(root).as_posix()
        for doc in rendered:
            ct = _ciphertexts(doc) or frozenset({f"<empty:{len(order)}>"})
            if ct not in by_cipher and _meta_ref(doc) not in seen_refs:
                by_cipher[ct] = (doc, f"kustomize:{rel}", [], [])
                order.append(ct)
                seen_refs.add(_meta_ref(doc))
    for rel_file, docs in raw:
        for doc in docs:
            ct = _ciphertexts(doc)
            if ct and ct in by_cipher:
                _, _, files, raw_refs = by_cipher[ct]
                if rel_file not in files:
                    files.append(rel_file)
                raw_refs.append((*_meta_ref(doc), rel_file))
                continue
            ref = _meta_ref(doc)
            if ref in seen_refs:
                continue
            key = ct or frozenset({f"<empty:{len(order)}>"})
            by_cipher[key] = (doc, rel_file, [rel_file], [])
            order.append(key)
            seen_refs.add(ref)
    for ct in order:
        doc, source, files, raw_refs = by_cipher[ct]
        f = _found(doc, source, files)
        result.found.append(f.with_alternatives(_alternatives(f, doc, raw_refs)))
    return result


def _alternatives(
    f: Found,
    doc: Mapping[str, Any],
    raw_refs: Sequence[tuple[str, str, str]],
) -> tuple[tuple[str, str, str], ...]:
    """(namespace, name, where) a value may have been sealed for, to say why it does not open.

    Only what the repo itself says about this object (its template metadata, the raw
    files it was rendered from), at most ``_MAX_ALTERNATIVES``: each costs an RSA
    operation per key on a failing value, and a repo full of foreign values must still
    fail fast.
    """
    alts: list[tuple[str, str, str]] = []
    template = _sub(_sub(doc, "spec"), "template").get("metadata")
    if isinstance(template, Mapping):
        alts.append(
            (
                str(template.get("namespace") or f.namespace),
                str(template.get("name") or f.name),
                "spec.template.metadata",
            )
        )
    alts += [(ns or f.namespace, name or f.name, rel) for ns, name, rel in raw_refs]
    out: list[tuple[str, str, str]] = []
    for a in alts:
        if (a[0], a[1]) != (f.namespace, f.name) and all(a[:2] != o[:2] for o in out):
            out.append(a)
    return tuple(out[:_MAX_ALTERNATIVES])


def find_sealed_secrets(repo_dir: str | Path, path: str = ".") -> list[Found]:
    """Every SealedSecret in the repo (see ``scan_repo``), without the warnings."""
    return scan_repo(repo_dir, path).found


class _KeyRing:
    """Keys in try-order: the key that opened a sibling value first, then the most used.

    Values of one SealedSecret are sealed with the same key, so after the first value
    its siblings cost one RSA operation each. Across SealedSecrets the key that opened
    the most so far goes first (repos are mostly sealed with one key), ties newest
    first. With a ``VerifyCache`` a value this kit opened before costs none.
    """

    def __init__(
        self,
        keys: Sequence[RSAPrivateKey],
        labels: Sequence[str],
        cache: VerifyCache | None = None,
    ) -> None:
        from bootstrap import sealing

        self.keys = list(keys)
        self.fps = [sealing.fingerprint(k.public_key()) for k in keys]
        self.labels = list(labels)
        self.uses = [0] * len(keys)
        self.cache = cache
        self.tag_keys = [cache.tag_key(k) for k in keys] if cache is not None else []
        self.rsa_ops = 0
        self.cache_only = False
        self.opened = 0
        self.ranked = list(range(len(keys)))

    def _order(self, first: int | None) -> list[int]:
        # re-ranked every _RERANK opens, not after each: a per-value "last key first" is
        # the worst order when keys alternate (3 tries a value with 3 keys, not 2)
        if self.opened % _RERANK == 0:
            self.ranked = sorted(range(len(self.keys)), key=lambda i: -self.uses[i])
        order = list(self.ranked)  # sorted() is stable: ties stay newest first
        if first is not None:
            order.remove(first)
            order.insert(0, first)
        return order

    def open(self, raw: bytes, label: bytes, first: int | None = None) -> int:
        """Index of the key that opened ``raw`` (RSA-OAEP and AES-GCM both checked)."""
        from bootstrap import sealing

        digest = _digest(raw, label) if self.cache is not None else b""
        if self.cache is not None:
            for i, tk in enumerate(self.tag_keys):
                if self.cache.has(tk, digest):
                    self.cache.hits += 1
                    self.uses[i] += 1
                    return i
            if self.cache_only:
                raise _CacheMiss
        order = self._order(first)
        try:
            _, pos = sealing.hybrid_decrypt_indexed([self.keys[i] for i in order], raw, label)
        except sealing.NoKeyDecrypts:
            self.rsa_ops += len(order)
            raise
        self.rsa_ops += pos + 1
        self.opened += 1
        idx = order[pos]
        self.uses[idx] += 1
        if self.cache is not None:
            self.cache.add(self.tag_keys[idx], digest)
        return idx

    def describe(self, idx: int) -> tuple[str, str]:
        """(fingerprint, active|compromised) of key ``idx``."""
        return self.fps[idx], self.labels[idx]


class _CacheMiss(Exception):
    """Cache-only pass: this value needs an RSA operation (it goes to the pool)."""


def _digest(raw: bytes, label: bytes) -> bytes:
    return hashlib.sha256(len(label).to_bytes(4, "big") + label + raw).digest()


class VerifyCache:
    """Incremental verify: which (ciphertext digest, key) pairs opened before. No plaintext.

    An entry is ``HMAC(k, sha256(label || ciphertext))`` where ``k`` is derived from the
    private key that opened it: the file says nothing about any value, and nobody
    without the escrowed key can forge an entry that makes a value pass. A value is
    trusted from the cache only if the same ciphertext under the same label opened,
    in full (RSA-OAEP and AES-GCM), with a key the kit still holds.
    """

    VERSION = 1

    def __init__(self, tags: set[str] | None = None) -> None:
        self.tags: set[str] = tags or set()
        self.new: set[str] = set()
        self.hits = 0

    @staticmethod
    def tag_key(key: RSAPrivateKey) -> bytes:
        d = key.private_numbers().d
        return hashlib.sha256(
            b"drboot-verify-cache-v1\0" + d.to_bytes((d.bit_length() + 7) // 8, "big")
        ).digest()

    @staticmethod
    def _tag(tag_key: bytes, digest: bytes) -> str:
        return hmac.new(tag_key, digest, hashlib.sha256).hexdigest()

    def has(self, tag_key: bytes, digest: bytes) -> bool:
        t = self._tag(tag_key, digest)
        return t in self.tags or t in self.new

    def add(self, tag_key: bytes, digest: bytes) -> None:
        self.new.add(self._tag(tag_key, digest))

    @classmethod
    def load(cls, path: str | Path) -> VerifyCache:
        """Read a cache file; a missing or unreadable one is an empty cache (it is only a cache)."""
        try:
            doc = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            return cls()
        if not isinstance(doc, dict) or doc.get("version") != cls.VERSION:
            return cls()
        tags = doc.get("entries")
        return cls({t for t in tags if isinstance(t, str)} if isinstance(tags, list) else set())

    def save(self, path: str | Path, *, keep_old: bool = False) -> None:
        """Write the entries of this run (and the old ones with ``keep_old``), atomically, 0600."""
        from bootstrap.fsutil import write_atomic

        entries = sorted(self.new | (self.tags if keep_old else set()))
        write_atomic(Path(path), json.dumps({"version": self.VERSION, "entries": entries}))


def _sub(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    val = doc.get(key)
    return val if isinstance(val, Mapping) else {}


def _why(ring: _KeyRing, f: Found, raw: bytes, key: str, scope: Scope) -> tuple[Reason, str]:
    """Why a value no escrowed key opens under its manifest's label: try what it may have been."""
    from bootstrap import sealing

    for other in sealing.Scope:
        if other is scope or (not f.namespace and other is not sealing.Scope.CLUSTER_WIDE):
            continue
        try:
            fp = ring.fps[ring.open(raw, sealing.encryption_label(f.namespace, f.name, other))]
        except sealing.UnsealError:
            continue
        return "wrong-scope-or-name", (
            f"value {key!r} opens with key {fp} sealed {other}, but the manifest says {scope}: "
            "the scope annotation was changed in Git after sealing; re-seal it"
        )
    if scope is not sealing.Scope.CLUSTER_WIDE:
        for ns, name, where in f.alternatives:
            tried = [(ns, name, sealing.Scope.STRICT), (ns, name, sealing.Scope.NAMESPACE_WIDE)]
            for a_ns, a_name, a_scope in tried:
                if a_scope is sealing.Scope.NAMESPACE_WIDE and a_ns == f.namespace:
                    continue
                try:
                    fp = ring.fps[ring.open(raw, sealing.encryption_label(a_ns, a_name, a_scope))]
                except sealing.UnsealError:
                    continue
                what = []
                if a_ns != f.namespace:
                    what.append(f"namespace {a_ns!r} (now {f.namespace!r})")
                if a_name != f.name and a_scope is sealing.Scope.STRICT:
                    what.append(f"name {a_name!r} (now {f.name!r})")
                changed = " and ".join(w.split()[0] for w in what)
                return "wrong-scope-or-name", (
                    f"value {key!r} opens with key {fp} when sealed for "
                    f"{' and '.join(what)}, as {where} says: the {changed} was changed in Git "
                    "after sealing; re-seal it for the rendered namespace/name"
                )
    return "no-key-decrypts", (
        f"value {key!r}: no escrowed key opens it, under any scope, name or namespace tried "
        "(sealed with a key the escrow lacks; back it up, or re-seal the value)"
    )


def _check_one(ring: _KeyRing, f: Found) -> tuple[VerifyFailure | None, list[tuple[str, str]], int]:
    """Open every value of one SealedSecret; (failure or None, fingerprints used, values)."""
    from bootstrap import sealing

    def fail(reason: Reason, detail: str) -> tuple[VerifyFailure, list[tuple[str, str]], int]:
        return VerifyFailure(f.namespace, f.name, f.source, reason, detail), [], 0

    encrypted = _sub(f.manifest, "spec").get("encryptedData")
    if not f.name:
        return fail("malformed", "no metadata.name")
    if not isinstance(encrypted, Mapping) or not encrypted:
        return fail("malformed", "no spec.encryptedData")
    scope = sealing.scope_of(f.manifest)
    if not f.namespace and scope is not sealing.Scope.CLUSTER_WIDE:
        return fail("malformed", f"no metadata.namespace; a {scope} value cannot be checked")
    label = sealing.encryption_label(f.namespace, f.name, scope)
    used: list[tuple[str, str]] = []
    sibling: int | None = None
    for key, b64 in encrypted.items():
        try:
            raw = sealing.b64decode_sealed(str(b64))
            sibling = ring.open(raw, label, sibling)
            used.append(ring.describe(sibling))
        except sealing.MalformedSealedValue as exc:
            return fail("malformed", f"value {key!r}: {exc.message}")
        except sealing.TamperedSealedValue:
            return fail("tampered", f"value {key!r}: AES-GCM authentication failed")
        except sealing.NoKeyDecrypts:
            return fail(*_why(ring, f, raw, str(key), scope))
    return None, used, len(used)


def _verify_chunk(
    key_pems: Sequence[str],
    labels: Sequence[str],
    found: Sequence[Found],
    cache_tags: set[str] | None = None,
    *,
    cache_only: bool = False,
) -> VerifyReport:
    """Verify one slice with its own key ring (runs in-process or in a pool worker).

    Each key is parsed once per process; its RSA consistency checks already ran when
    the key entered the kit (``SealingKey.from_pem``), so they are not repeated here.
    """
    from bootstrap import sealing

    cache = VerifyCache(cache_tags) if cache_tags is not None else None
    keys = [sealing.load_private_key(p, trusted=True) for p in key_pems]
    ring = _KeyRing(keys, labels, cache)
    ring.cache_only = cache_only
    report = VerifyReport(total=len(found))
    for f in found:
        try:
            failure, used, n = _check_one(ring, f)
        except _CacheMiss:
            report.total -= 1
            report.pending.append(f)
            continue
        report.values_checked += n
        scope = str(sealing.scope_of(f.manifest)) if f.manifest else ""
        row: dict[str, Any] = {
            "namespace": f.namespace,
            "name": f.name,
            "file": f.files[0] if f.files else f.source,
            "source": f.source,
            "scope": scope,
        }
        if failure is not None:
            report.failures.append(failure)
            report.results.append(dict(row, verdict=failure.reason, detail=failure.detail))
            continue
        report.ok += 1
        report.results.append(dict(row, verdict="ok", keys=sorted({fp for fp, _ in used})))
        for fp, _ in used:
            report.key_usage[fp] = report.key_usage.get(fp, 0) + 1
        if any(lab == "compromised" for _, lab in used):
            report.opened_with_compromised.append(f.ref)
    report.rsa_operations = ring.rsa_ops
    if cache is not None:
        report.cache_hits = cache.hits
        report.new_cache_entries = cache.new
    return report


def _merge(parts: Sequence[VerifyReport]) -> VerifyReport:
    out = VerifyReport()
    for p in parts:
        out.total += p.total
        out.ok += p.ok
        out.values_checked += p.values_checked
        out.failures += p.failures
        out.results += p.results
        out.opened_with_compromised += p.opened_with_compromised
        out.rsa_operations += p.rsa_operations
        out.cache_hits += p.cache_hits
        out.new_cache_entries |= p.new_cache_entries
        for fp, n in p.key_usage.items():
            out.key_usage[fp] = out.key_usage.get(fp, 0) + n
    return out


def verify(
    kit: RecoveryKit,
    found: Sequence[Found],
    *,
    workers: int | None = None,
    cache: VerifyCache | None = None,
) -> VerifyReport:
    """Unseal every value of every SealedSecret in memory with the kit's keys.

    Keys are tried newest first and the last key that worked is tried first next
    time. RSA-4096 private operations dominate (~1.7 ms each), so above
    ``_PARALLEL_MIN`` secrets (or when ``workers`` > 1 is asked for) the work is split
    over ``workers`` processes (default: CPU count, at most 4); key PEMs reach the
    workers through the pool's pipes only, never a file. With ``cache``, values that
    opened before with a key the kit holds are not decrypted again, and the entries
    of this run are added to ``cache.new`` (the caller saves it).
    """
    started = time.perf_counter()
    ordered = sorted(kit.sealing_keys, key=lambda k: k.not_before, reverse=True)
    pems = [k.tls_key for k in ordered]
    labels = [k.label for k in ordered]
    tags = cache.tags if cache is not None else None
    done: list[VerifyReport] = []
    if tags is not None:
        # what the cache proves is settled here, without a pool; only misses go on
        done.append(_verify_chunk(pems, labels, found, tags, cache_only=True))
        found = done[0].pending
    n_workers = workers if workers is not None else min(os.cpu_count() or 1, 4)
    if n_workers <= 1 or len(found) < 2 or (workers is None and len(found) < _PARALLEL_MIN):
        report = _merge([*done, _verify_chunk(pems, labels, found, tags)])
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        size = -(-len(found) // n_workers)
        chunks = [list(found[i : i + size]) for i in range(0, len(found), size)]
        # forkserver: forking a process that may run engine threads is unsafe
        ctx = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(max_workers=len(chunks), mp_context=ctx) as pool:
            parts = list(
                pool.map(
                    _verify_chunk,
                    [pems] * len(chunks),
                    [labels] * len(chunks),
                    chunks,
                    [tags] * len(chunks),
                )
            )
        report = _merge([*done, *parts])
    if cache is not None:
        cache.new |= report.new_cache_entries
        cache.hits = report.cache_hits
    report.seconds = time.perf_counter() - started
    return report
