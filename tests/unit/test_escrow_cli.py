"""`drboot escrow verify` and the preflight-escrow step, on real git repos and real age bundles.

Also the leak test for these paths: the key material (PEM, base64 and DER
forms), the k3s token and the age identity appear in no stdout, stderr,
journal row, audit record or run-folder file.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from bootstrap import sealing
from bootstrap.cli import Deps, cli
from bootstrap.escrow import age_file
from bootstrap.lab.seed import OVERLAY, Seed, seed, write_repo
from tests.leaks import assert_no_leak as _assert_no_leak
from tests.leaks import seed_forms as _secret_forms

SITE = """\
apiVersion: drboot.dev/v1
name: escrowtest
provider:
  type: static
  hosts:
    - name: h1
      address: 127.0.0.1
escrow:
  backend: age
  bundle: {bundle}
  identity_files: [{identity}]
ssh:
  private_key_file: {ssh_key}
repo:
  url: {url}
  path: {path}
"""


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seed:
    return seed(tmp_path_factory.mktemp("lab"), "escrowtest", key_bits=2048)


def _site(tmp: Path, s: Seed, *, identity: Path | None = None, repo: Path | None = None) -> Path:
    path = tmp / "site.yaml"
    ssh_key = tmp / "id_ed25519"
    ssh_key.write_text("not used: no host is contacted in these tests\n")
    ssh_key.chmod(0o600)
    path.write_text(
        SITE.format(
            bundle=s.bundle,
            identity=identity or s.identity,
            ssh_key=ssh_key,
            url=f"file://{repo or s.repo}",
            path=OVERLAY,
        )
    )
    return path


def _invoke(args: list[str], state: Path) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, ["--state-dir", str(state), *args], obj=Deps())
    return res.exit_code, res.stdout, res.stderr


def test_verify_passes_and_reports_counts(tmp_path: Path, seeded: Seed) -> None:
    site = _site(tmp_path, seeded)
    code, out, err = _invoke(["escrow", "verify", str(site)], tmp_path / "state")
    assert code == 0, err
    assert "1/1 SealedSecrets open" in out
    code, out, _ = _invoke(["-o", "json", "escrow", "verify", str(site)], tmp_path / "state")
    doc = json.loads(out)
    assert doc["sealed_secrets"] == 1 and doc["decrypted"] == 1 and doc["failures"] == []
    assert doc["key_usage"] == {seeded.fingerprint: 2} or seeded.fingerprint in doc["key_usage"]
    _assert_no_leak(_secret_forms(seeded), out.encode(), err.encode(), state=tmp_path / "state")


def test_verify_names_every_secret_no_key_opens(tmp_path: Path, seeded: Seed) -> None:
    repo = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(seeded.repo), str(repo)], check=True)
    other, _ = sealing.generate_key(2048)
    stray = sealing.seal_secret(
        other.public_key(),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "sealed-after-backup", "namespace": "payments"},
            "stringData": {"token": "x"},
        },
    )
    kit = age_file.read_kit(seeded.bundle, identity_files=[seeded.identity])
    write_repo(repo, kit.sealing_keys[0].private_key(), extra_sealed=[stray])
    site = _site(tmp_path, seeded, repo=repo)
    code, out, err = _invoke(["escrow", "verify", str(site)], tmp_path / "state")
    assert code == 3
    assert "payments/sealed-after-backup" in err and "no-key-decrypts" in err
    assert "drboot escrow backup" in err  # the next action
    code, jout, jerr = _invoke(["-o", "json", "escrow", "verify", str(site)], tmp_path / "state")
    assert code == 3
    details = json.loads(jout)["details"]  # the structured result on failure too
    rows = {(r["namespace"], r["name"]): r for r in details["secrets"]}
    assert rows[("payments", "sealed-after-backup")]["verdict"] == "no-key-decrypts"
    assert rows[("payments", "sealed-after-backup")]["scope"] == "strict"
    assert all(r["file"] for r in rows.values())
    assert sum(r["verdict"] == "ok" for r in rows.values()) == details["decrypted"]
    assert "kustomize v5" in details["renderer"]
    _assert_no_leak(_secret_forms(seeded), jout.encode(), jerr.encode())

    # The same check refuses a restore before anything is provisioned.
    code, out, err = _invoke(["-o", "json", "restore", str(site)], tmp_path / "state")
    assert code == 3, err
    db = sqlite3.connect(tmp_path / "state" / "journal.sqlite")
    rows = dict(db.execute("SELECT step_id, status FROM steps"))
    assert rows["preflight-escrow"] == "failed"
    assert rows["provision"] == "pending"
    _assert_no_leak(_secret_forms(seeded), out.encode(), err.encode(), state=tmp_path / "state")


def test_wrong_identity_is_a_distinct_clear_error(tmp_path: Path, seeded: Seed) -> None:
    from bootstrap.adapters.age import generate_identity

    wrong = tmp_path / "wrong.txt"
    wrong.write_text(generate_identity()[0] + "\n")
    wrong.chmod(0o600)
    site = _site(tmp_path, seeded, identity=wrong)
    code, _, err = _invoke(["escrow", "verify", str(site)], tmp_path / "state")
    assert code == 3
    assert "identit" in err.lower()
    assert wrong.read_text().strip() not in err


def test_plan_lists_every_restore_step(tmp_path: Path, seeded: Seed) -> None:
    site = _site(tmp_path, seeded)
    code, out, err = _invoke(["-o", "json", "plan", str(site)], tmp_path / "state")
    doc = json.loads(out)
    assert (code == 0) == all(s["error"] is None for s in doc["steps"])
    steps = [s["step"] for s in doc["steps"]]
    assert steps[:4] == [
        "preflight-references",
        "preflight-sovereignty",
        "preflight-escrow",
        "provision",
    ]
    assert "wait-synced" in steps and "report" in steps
    assert steps.index("disk-gate") < steps.index("cpu-gate") < steps.index("prepare-hosts")
    escrow_step = doc["steps"][2]
    assert escrow_step["error"] is None and escrow_step["noops"], escrow_step
    _assert_no_leak(_secret_forms(seeded), out.encode(), err.encode(), state=tmp_path / "state")


SHAMIR_SITE = """\
apiVersion: drboot.dev/v1
name: escrowtest
provider:
  type: static
  hosts: [{{name: h1, address: 127.0.0.1}}]
escrow:
  backend: shamir
  bundle: {bundle}
  shares: [{shares}]
  threshold: 3
  total: 5
repo:
  url: file://{repo}
  path: {path}
"""


def test_shamir_escrow_opens_with_threshold_shares_only(tmp_path: Path, seeded: Seed) -> None:
    from bootstrap.escrow import shamir

    kit = age_file.read_kit(seeded.bundle, identity_files=[seeded.identity])
    shares = [tmp_path / f"custodian-{i}.share" for i in range(1, 6)]
    bundle = tmp_path / "kit.shamir"
    shamir.write_kit(bundle, kit, shares, threshold=3)
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in [bundle, *shares])

    def site_with(available: list[Path]) -> Path:
        path = tmp_path / "shamir-site.yaml"
        path.write_text(SHAMIR_SITE.format(bundle=bundle, shares=", ".join(map(str, available)),
                                           repo=seeded.repo, path=OVERLAY))
        return path

    # Any three custodians' shares open it.
    code, out, err = _invoke(["escrow", "verify", str(site_with(shares[1:4]))], tmp_path / "st")
    assert code == 0, err
    assert "1/1 SealedSecrets open" in out
    # Two are not enough: a distinct, clear error and exit 3.
    for p in shares[2:]:
        p.unlink()
    code, out, err = _invoke(["escrow", "verify", str(site_with(shares[:2]))], tmp_path / "st")
    assert code == 3
    assert "share" in err.lower() and "3" in err
    for share in shares[:2]:
        assert share.read_text().strip()[-20:] not in err
