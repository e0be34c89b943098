"""The demo's platform repo as ``drboot lab seed`` writes it: every SealedSecret opens with
the escrowed key (whatever its scope), the root declares six child apps following the site's
repo URL, and re-seeding with another layout or URL rewrites the repo with the same key."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from bootstrap.escrow import age_file
from bootstrap.escrow.scan import scan_repo, verify
from bootstrap.lab import platform_repo
from bootstrap.lab.seed import seed
from bootstrap.reconcilers import argocd


def test_platform_repo_opens_with_the_escrow_and_declares_six_apps(tmp_path: Path) -> None:
    url = "git@10.200.9.250:platform-config.git"
    made = seed(tmp_path, "demo", key_bits=2048, layout="platform", repo_url=url)
    kit = age_file.read_kit(made.bundle, identity_files=[made.identity])
    scan = scan_repo(made.repo, platform_repo.ROOT_ARGOCD)
    report = verify(kit, scan.found)
    assert report.passed and report.total == 3
    scopes = {r["name"]: r["scope"] for r in report.results}
    assert scopes == {"payment-gateway-db": "strict", "ledger-db": "namespace-wide",
                      "registry-credentials": "cluster-wide"}  # fmt: skip
    docs = [yaml.safe_load(f.read_text())
            for f in sorted((made.repo / platform_repo.ROOT_ARGOCD).iterdir())]  # fmt: skip
    apps = argocd.declared_apps(docs, url, "argocd")
    assert sorted(a.name for a in apps) == sorted(a.name for a in platform_repo.APPS)
    assert all(a.child_path for a in apps)  # every child follows the same repo, at its own path
    for a in apps:
        assert (made.repo / str(a.child_path)).is_dir()


def test_reseed_switches_layout_and_url_with_the_same_key(tmp_path: Path) -> None:
    first = seed(tmp_path, "demo", key_bits=2048)
    assert (first.repo / "apps/overlays/lab/kustomization.yaml").is_file()
    again = seed(tmp_path, "demo", key_bits=2048, layout="platform", repo_url="ssh://x/y.git")
    assert again.fingerprint == first.fingerprint
    assert not (again.repo / "apps/base/guestbook").exists()
    child = yaml.safe_load((again.repo / platform_repo.ROOT_ARGOCD / "ledger.yaml").read_text())
    assert child["spec"]["source"]["repoURL"] == "ssh://x/y.git"
    log = subprocess.run(["git", "log", "--oneline"], cwd=again.repo, capture_output=True,
                         text=True, check=True).stdout.splitlines()  # fmt: skip
    assert len(log) == 2
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=again.repo, capture_output=True,
                          text=True, check=True).stdout  # fmt: skip
    seed(tmp_path, "demo", key_bits=2048, layout="platform", repo_url="ssh://x/y.git")
    assert subprocess.run(["git", "rev-parse", "HEAD"], cwd=again.repo, capture_output=True,
                          text=True, check=True).stdout == head  # idempotent  # fmt: skip


@pytest.mark.parametrize("reconciler", ["argocd", "flux"])
def test_demo_site_follows_the_forge_and_the_reconcilers_root(reconciler: str) -> None:
    """What `drboot demo --reconciler X` runs: a valid site whose repo is the lab forge of its
    subnet and whose root follows X's app-of-apps path, etcd on the host's own disk."""
    from bootstrap.lab.forge import forge_url
    from bootstrap.lab.manage import demo_site_text
    from bootstrap.settings import LabProvider
    from bootstrap.siteload import load_site_text

    site = load_site_text(demo_site_text(reconciler), "demo.yaml", base_dir=Path("/"))
    assert isinstance(site.provider, LabProvider)
    assert site.reconciler.type == reconciler
    assert site.repo.path == platform_repo.root_path(reconciler)
    assert site.provider.subnet_index is not None
    assert site.repo.url == forge_url(site.provider.subnet_index)
    assert site.repo.kind() == "ssh" and site.provider.disk == "host"


def test_forge_seed_escrows_a_deploy_key_and_the_forges_known_hosts(tmp_path: Path) -> None:
    """A forge site's seed: the kit holds an OpenSSH deploy key and the forge's known_hosts
    line; a forge host key that changed (a re-keyed forge) is re-escrowed, the key kept."""
    from bootstrap.lab import forge

    keys = forge.forge_keys(tmp_path / "state", forge.forge_address(7))
    known = keys.known_hosts()
    assert known.startswith("10.200.7.249 ssh-ed25519 ")
    made = seed(tmp_path / "state", "demo", key_bits=2048, layout="platform",
                repo_url=forge.forge_url(7), known_hosts=known)  # fmt: skip
    kit = age_file.read_kit(made.bundle, identity_files=[made.identity])
    assert kit.known_hosts == known
    assert kit.deploy_key and kit.deploy_key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert forge.public_of(kit.deploy_key).startswith("ssh-ed25519 ")
    assert (tmp_path / "state" / "forge" / forge.HOST_KEY).stat().st_mode & 0o077 == 0
    rekeyed = forge.forge_keys(tmp_path / "other", forge.forge_address(7)).known_hosts()
    seed(tmp_path / "state", "demo", key_bits=2048, layout="platform",
         repo_url=forge.forge_url(7), known_hosts=rekeyed)  # fmt: skip
    again = age_file.read_kit(made.bundle, identity_files=[made.identity])
    assert again.known_hosts == rekeyed and again.deploy_key == kit.deploy_key
    assert again.fingerprints() == kit.fingerprints()
