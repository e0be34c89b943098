"""A wheel (`pip install .`, not editable) carries everything a restore needs outside Python:
the playbooks, the pinned manifests, the lab scripts and the embedded demo site."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO


def test_wheel_carries_playbooks_manifests_and_lab_files(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    (wheel,) = tmp_path.glob("drboot-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    data = "drboot-0.1.0.data/data/share/drboot/playbooks/"
    for playbook in (
        "prepare-host.yml",
        "disk-gate.yml",
        "k3s.yml",
        "teardown.yml",
        "ansible.cfg",
        "roles/k3s/tasks/main.yml",
        "roles/k3s/defaults/main.yml",
    ):
        assert data + playbook in names, playbook
    for path in (
        "bootstrap/manifests/argo-cd/install.yaml",
        "bootstrap/manifests/flux/install.yaml",
        "bootstrap/manifests/sealed-secrets/crd.yaml",
        "bootstrap/manifests/sealed-secrets/controller.yaml",
        "bootstrap/manifests/SOURCES.json",  # their provenance travels with them
        "bootstrap/lab/scripts/build-kube.sh",
        "bootstrap/lab/scripts/setup-lab.sh",
        "bootstrap/lab/demo-site.yaml",
        "bootstrap/lab/k3s_standin/k3s.py",
    ):
        assert path in names, path
