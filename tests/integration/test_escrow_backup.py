"""`drboot escrow backup` and `escrow status` against the real API server.

Keys are real labelled kubernetes.io/tls Secrets in kube-system; the bundle is
a real age file. Also the leak test for these commands: no key bytes in any
output or any file of the state directory.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bootstrap import sealing
from bootstrap.adapters.age import generate_identity
from bootstrap.cli import Deps, cli
from bootstrap.escrow import age_file

pytestmark = [pytest.mark.integration, pytest.mark.apiserver]

SITE = """\
apiVersion: drboot.dev/v1
name: backuptest
provider:
  type: static
  hosts: [{{name: h1, address: 127.0.0.1}}]
escrow:
  backend: age
  bundle: {bundle}
  identity_files: [{identity}]
  recipients: [{recipient}]
sealed_secrets:
  namespace: {namespace}
repo:
  url: file:///nonexistent
"""


def _key_secret(name: str, namespace: str) -> tuple[dict[str, object], bytes]:
    key, cert = sealing.generate_key(2048)
    manifest = sealing.key_secret_manifest(key, cert, name, namespace)
    return manifest, sealing.private_key_pem(key)


SEEN: list[bytes] = []  # every output of every command, for the leak scan


def _invoke(args: list[str], state: Path) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, ["--state-dir", str(state), *args], obj=Deps())
    SEEN.extend([res.stdout.encode(), res.stderr.encode()])
    return res.exit_code, res.stdout, res.stderr


def test_backup_status_and_no_leak(apiserver: object, namespace: str, tmp_path: Path) -> None:
    kube = apiserver.client  # type: ignore[attr-defined]
    kubeconfig = str(apiserver.kubeconfig)  # type: ignore[attr-defined]
    secret_identity, recipient = generate_identity()
    identity = tmp_path / "identity.txt"
    identity.write_text(secret_identity + "\n")
    identity.chmod(0o600)
    bundle = tmp_path / "kit.age"
    site = tmp_path / "site.yaml"
    site.write_text(SITE.format(bundle=bundle, identity=identity, recipient=recipient,
                                namespace=namespace))
    token = tmp_path / "token"
    token.write_text("K10-lab-token-not-a-real-one-1234567890\n")
    state = tmp_path / "state"

    first, pem1 = _key_secret("sealed-secrets-key1", namespace)
    kube.create(first)

    # Without a token and without an earlier kit, backup refuses and writes nothing.
    code, out, err = _invoke(["escrow", "backup", "--kubeconfig", kubeconfig, str(site)], state)
    assert code == 3 and "k3s cluster token" in err
    assert not bundle.exists()

    code, out, err = _invoke(["-o", "json", "escrow", "backup", "--kubeconfig", kubeconfig,
                              "--k3s-token-file", str(token), str(site)], state)
    assert code == 0, err
    doc = json.loads(out)
    assert len(doc["keys"]) == 1 and doc["added"] == [doc["keys"][0]["fingerprint"]]
    assert bundle.stat().st_mode & 0o777 == 0o600
    kit = age_file.read_kit(bundle, identity_files=[identity])
    assert kit.k3s_token == token.read_text().strip()
    assert [k.name for k in kit.sealing_keys] == ["sealed-secrets-key1"]

    code, out, err = _invoke(["-o", "json", "escrow", "status", "--kubeconfig", kubeconfig,
                              str(site)], state)
    assert code == 0, err
    assert json.loads(out)["warnings"] == []

    # The controller renews its key: the cluster now has a key the escrow lacks.
    second, pem2 = _key_secret("sealed-secrets-key2", namespace)
    kube.create(second)
    code, out, err = _invoke(["-o", "json", "escrow", "status", "--kubeconfig", kubeconfig,
                              str(site)], state)
    st = json.loads(out)
    assert st["cluster_keys_missing"] and "not in the escrow" in st["warnings"][0]

    # A second backup keeps the token and the first key, and adds the new one.
    code, out, err = _invoke(["escrow", "backup", "--kubeconfig", kubeconfig, str(site)], state)
    assert code == 0, err
    kit = age_file.read_kit(bundle, identity_files=[identity])
    assert sorted(k.name for k in kit.sealing_keys) == ["sealed-secrets-key1",
                                                         "sealed-secrets-key2"]
    assert kit.k3s_token == token.read_text().strip()
    code, out, err = _invoke(["-o", "json", "escrow", "status", "--kubeconfig", kubeconfig,
                              str(site)], state)
    assert json.loads(out)["warnings"] == []

    # Leak scan: outputs of every command above and every file under the state dir.
    forms: list[bytes] = [token.read_text().strip().encode(), secret_identity.encode()]
    for pem in (pem1, pem2):
        body = b"".join(pem.splitlines()[1:-1])
        forms += [body[:64], body[-64:], base64.b64encode(pem)[:64]]
    blobs = list(SEEN)
    blobs += [f.read_bytes() for f in state.rglob("*") if f.is_file()]
    for blob in blobs:
        for form in forms:
            assert form not in blob
