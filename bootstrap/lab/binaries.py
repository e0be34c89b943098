"""Where the lab's real Kubernetes control-plane binaries are (built once, cached)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from bootstrap.errors import PreflightError

BUILD_KUBE = Path(__file__).with_name("scripts") / "build-kube.sh"


def kube_bin_dir(*, build: bool = True) -> Path:
    """The bin dir with etcd, kube-apiserver, kube-controller-manager (``DRBOOT_KUBE_BIN_DIR``).

    Runs ``build-kube.sh``, which returns at once when the build is cached and
    otherwise builds from Debian source (about 8 minutes on 2 cores).
    """
    override = os.environ.get("DRBOOT_KUBE_BIN_DIR")
    if override:
        return Path(override)
    if not build:
        raise PreflightError(
            "the lab's Kubernetes binaries are not built", hint=f"run `bash {BUILD_KUBE}` as root"
        )
    proc = subprocess.run(
        ["bash", str(BUILD_KUBE)], capture_output=True, text=True, timeout=3600, check=False
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise PreflightError(
            f"building the lab's Kubernetes binaries failed (exit {proc.returncode}): "
            f"{proc.stderr.strip()[-600:]}",
            hint=f"run `bash {BUILD_KUBE}` as root and read its output",
        )
    return Path(lines[-1])
