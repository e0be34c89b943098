"""`drboot escrow import` / `export`: the key backups users already have, with no cluster.

tests/fixtures/escrow/main.key and main.key.json were written by a real
`kubectl get secret -l sealedsecrets.bitnami.com/sealed-secrets-key -o yaml|json`
against the test API server (tests/integration/test_escrow_import.py regenerates
them); the keys are test-only. Real age bundles, real git repos, real kustomize.
Every output and every file of the state directory is scanned for key bytes.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import stat
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bootstrap import sealing
from bootstrap.adapters.age import generate_identity
from bootstrap.cli import Deps, cli
from bootstrap.escrow import age_file
from bootstrap.lab.seed import OVERLAY, write_repo

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "escrow"
MAIN_KEY = FIXTURES / "main.key"
MAIN_JSON = FIXTURES / "main.key.json"

SITE = """\
apiVersion: drboot.dev/v1
name: importtest
provider:
  type: static
  hosts: [{{name: h1, address: 127.0.0.1}}]
escrow:
  backend: age
  bundle: {bundle}
{auth}
ssh:
  private_key_file: {ssh_key}
repo:
  url: file://{repo}
  path: {path}
"""


def _fixture_keys() -> list[sealing.KeyMaterial]:
    doc = yaml.safe_load(MAIN_KEY.read_text())
    return [sealing.keys_from_secret(s) for s in doc["items"]]


def _forms() -> list[bytes]:
    out: list[bytes] = [b"K10-import-token-secret"]
    for m in _fixture_keys():
        pem = sealing.private_key_pem(m.private_key)
        body = b"".join(pem.splitlines()[1:-1])
        out += [pem, body[:64], body[-64:], base64.b64encode(pem)[:64]]
    return out


class Env:
    def __init__(self, tmp: Path, *, passphrase_env: str | None = None) -> None:
        self.tmp = tmp
        self.state = tmp / "state"
        self.bundle = tmp / "kit.age"
        self.seen: list[bytes] = []
        ssh_key = tmp / "id_ed25519"
        ssh_key.write_text("not used\n")
        ssh_key.chmod(0o600)
        self.repo = tmp / "repo"
        write_repo(self.repo, _fixture_keys()[1].private_key)
        if passphrase_env:
            auth = f"  passphrase: {{env: {passphrase_env}}}"
        else:
            secret_identity, recipient = generate_identity()
            self.identity = tmp / "identity.txt"
            self.identity.write_text(secret_identity + "\n")
            self.identity.chmod(0o600)
            self.forms_extra = [secret_identity.encode()]
            auth = f"  identity_files: [{self.identity}]\n  recipients: [{recipient}]"
        self.site = tmp / "site.yaml"
        self.site.write_text(
            SITE.format(
                bundle=self.bundle, auth=auth, ssh_key=ssh_key, repo=self.repo, path=OVERLAY
            )
        )

    def run(self, *args: str) -> tuple[int, str, str]:
        res = CliRunner().invoke(cli, ["--state-dir", str(self.state), *args], obj=Deps())
        self.seen += [res.stdout.encode(), res.stderr.encode()]
        assert res.exit_code != 70, res.stdout + res.stderr
        return res.exit_code, res.stdout, res.stderr

    def assert_no_leak(self, *, allow_stdout_of: int | None = None) -> None:
        blobs = [b for i, b in enumerate(self.seen) if i != allow_stdout_of]
        blobs += [f.read_bytes() for f in self.state.rglob("*") if f.is_file()]
        for blob in blobs:
            for form in _forms():
                assert form not in blob, "secret material leaked"


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def _fps() -> list[str]:
    return sorted(sealing.fingerprint(m.private_key.public_key()) for m in _fixture_keys())


def test_import_real_main_key_then_verify_without_token(env: Env) -> None:
    code, out, err = env.run("-o", "json", "escrow", "import", str(env.site), str(MAIN_KEY))
    assert code == 0, err
    doc = json.loads(out)
    assert sorted(k["fingerprint"] for k in doc["keys"]) == _fps()
    assert "k3s_token" in doc["lacks"]
    assert stat.S_IMODE(env.bundle.stat().st_mode) == 0o600
    code, out, err = env.run("escrow", "import", str(env.site), str(MAIN_KEY))
    assert code == 0 and "0 new" in out and "lacks: k3s_token" in out  # same keys: one key each

    code, out, err = env.run("escrow", "verify", str(env.site))
    assert code == 0, err
    assert "1/1 SealedSecrets open" in out and "kustomize v5" in out
    cache = env.tmp / "ci" / "verify-cache.json"
    for expected in ("0 value(s) from the cache, 2 RSA", "1 value(s) from the cache, 0 RSA"):
        code, out, err = env.run("escrow", "verify", str(env.site), "--cache", str(cache))
        assert code == 0 and expected in out, out + err
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    (env.tmp / "a-file").write_text("x")
    code, out, err = env.run(
        "escrow", "verify", str(env.site), "--cache", str(env.tmp / "a-file" / "c")
    )
    assert code == 0 and "not written" in out + err

    # a restore says in preflight what the kit lacks, before anything is provisioned
    code, out, err = env.run("restore", str(env.site))
    assert code == 3
    assert "the recovery kit lacks" in err and "k3s_token" in err
    assert "kubernetes.token: {escrow: k3s_token}" in err
    assert "--k3s-token-file" in err
    rows = dict(
        sqlite3.connect(env.state / "journal.sqlite").execute("SELECT step_id, status FROM steps")
    )
    assert rows["preflight-escrow"] == "failed" and rows["provision"] == "pending"

    token = env.tmp / "token"
    token.write_text("K10-import-token-secret\n")
    code, out, err = env.run("escrow", "import", str(env.site), "--k3s-token-file", str(token))
    assert code == 0, err
    kit = age_file.read_kit(env.bundle, identity_files=[env.identity])
    assert kit.k3s_token == "K10-import-token-secret" and sorted(kit.fingerprints()) == _fps()
    assert "K10-import" not in repr(kit)
    env.assert_no_leak()


def test_import_json_secret_and_pem_pairs_merge(env: Env) -> None:
    keys = _fixture_keys()
    key_pem = env.tmp / "tls.key"
    key_pem.write_bytes(sealing.private_key_pem(keys[0].private_key))
    crt = env.tmp / "tls.crt"
    crt.write_bytes(keys[0].cert_pem)
    code, out, err = env.run(
        "-o", "json", "escrow", "import", str(env.site), str(key_pem), str(crt)
    )
    assert code == 0, err
    assert json.loads(out)["added"] == [sealing.fingerprint(keys[0].private_key.public_key())]
    code, out, err = env.run("-o", "json", "escrow", "import", str(env.site), str(MAIN_JSON))
    assert code == 0, err
    doc = json.loads(out)
    assert sorted(k["fingerprint"] for k in doc["keys"]) == _fps() and len(doc["added"]) == 1
    # the PEM-imported key again, now inside main.key under its Secret name: still one key
    code, out, err = env.run("-o", "json", "escrow", "import", str(env.site), str(MAIN_KEY))
    assert code == 0 and json.loads(out)["added"] == []
    env.assert_no_leak()


def test_a_different_key_under_an_escrowed_name_is_refused(env: Env) -> None:
    assert env.run("escrow", "import", str(env.site), str(MAIN_KEY))[0] == 0
    key, cert = sealing.generate_key(2048)
    clash = sealing.key_secret_manifest(key, cert, _fixture_keys()[0].name, "kube-system")
    f = env.tmp / "clash.yaml"
    f.write_text(yaml.safe_dump(clash))
    code, _out, err = env.run("escrow", "import", str(env.site), str(f))
    assert code == 2
    assert f"two different keys are both named {_fixture_keys()[0].name!r}" in err
    env.assert_no_leak()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x01\x02\xff binary", "neither PEM nor UTF-8"),
        (b"release: 2024-13-45\nkind: Secret\n", "has no tls.key/tls.crt"),
        (b"a: " + b"[" * 20000 + b"]" * 20000, "not a readable YAML/JSON"),
        (b"{not json", "not a readable YAML/JSON"),
        (b"kind: Secret\nmetadata: [1]\ndata: [tls.key]\n", "has no tls.key/tls.crt"),
        (b"kind: Secret\nmetadata: {labels: 1}\ndata: {tls.key: 1, tls.crt: 2}\n", "not base64"),
        (b"apiVersion: v1\nkind: List\nitems: []\n", "holds no Secret"),
        (
            b"apiVersion: v1\nkind: Secret\nmetadata: {name: x}\n"
            b"data: {tls.key: '!!', tls.crt: eA==}\n",
            "not a usable sealing key",
        ),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not readable"),
        (
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
            "encrypted",
        ),
    ],
)
def test_bad_key_files_are_usage_errors(env: Env, content: bytes, message: str) -> None:
    f = env.tmp / "bad.key"
    f.write_bytes(content)
    code, _out, err = env.run("escrow", "import", str(env.site), str(f))
    assert code == 2, err
    assert message in err
    assert not env.bundle.exists()


def test_pem_key_without_its_certificate(env: Env) -> None:
    f = env.tmp / "tls.key"
    f.write_bytes(sealing.private_key_pem(_fixture_keys()[0].private_key))
    code, _out, err = env.run("escrow", "import", str(env.site), str(f))
    assert code == 2 and "has no matching certificate" in err
    env.assert_no_leak()


def test_binary_token_file_is_a_usage_error(env: Env) -> None:
    f = env.tmp / "token"
    f.write_bytes(b"\xff\xfe\x00")
    code, _, err = env.run(
        "escrow", "import", str(env.site), str(MAIN_KEY), "--k3s-token-file", str(f)
    )
    assert code == 2 and "not UTF-8" in err


def test_export_main_key_to_file_or_stdout_only_when_asked(env: Env) -> None:
    assert env.run("escrow", "import", str(env.site), str(MAIN_KEY))[0] == 0
    code, out, err = env.run("escrow", "export", str(env.site), "--format", "main.key")
    assert code == 2 and "--to FILE" in err and "PRIVATE" not in out
    dest = env.tmp / "exported.key"
    code, out, err = env.run(
        "escrow", "export", str(env.site), "--format", "main.key", "--to", str(dest)
    )
    assert code == 0, err
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    doc = yaml.safe_load(dest.read_text())
    assert doc["kind"] == "List" and all(i["kind"] == "Secret" for i in doc["items"])
    assert (
        sorted(
            sealing.fingerprint(sealing.keys_from_secret(s).private_key.public_key())
            for s in doc["items"]
        )
        == _fps()
    )
    code, out, err = env.run(
        "escrow", "export", str(env.site), "--format", "main.key", "--to", str(dest)
    )
    assert code == 2 and "exists" in err
    (env.tmp / "a-file").write_text("x")
    nowhere = env.tmp / "a-file" / "main.key"  # its "directory" is a file
    code, out, err = env.run(
        "escrow", "export", str(env.site), "--format", "main.key", "--to", str(nowhere)
    )
    assert code == 2 and "cannot write" in err and not nowhere.exists()
    code, out, err = env.run("escrow", "export", str(env.site), "--format", "main.key", "--stdout")
    assert code == 0 and yaml.safe_load(out) == doc
    env.assert_no_leak(allow_stdout_of=len(env.seen) - 2)  # the one output asked to hold keys


def test_unset_env_passphrase_says_how_to_set_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DRBOOT_TEST_IMPORT_PASS", raising=False)
    env = Env(tmp_path, passphrase_env="DRBOOT_TEST_IMPORT_PASS")
    code, _, err = env.run("escrow", "import", str(env.site), str(MAIN_KEY))
    assert code in (2, 3), err
    assert "DRBOOT_TEST_IMPORT_PASS" in err and "is not set" in err
    assert "export DRBOOT_TEST_IMPORT_PASS" in err
    assert "interactive" not in err
    monkeypatch.setenv("DRBOOT_TEST_IMPORT_PASS", "correct horse battery staple")
    code, _, err = env.run("escrow", "import", str(env.site), str(MAIN_KEY))
    assert code == 0, err
    code, _out, err = env.run("escrow", "verify", str(env.site))
    assert code == 0, err
    env.assert_no_leak()
