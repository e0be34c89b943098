"""Builds the lab's stand-in for the k3s air-gap bundle.

Why it exists: lab hosts have no route to k3s releases, yet drboot's k3s playbooks must install
"k3s" there and get a real Kubernetes API on port 6443. ``build_bundle`` lays out a directory the
playbook uploads instead of the real air-gap bundle::

    <dest>/k3s                      the LAB STAND-IN script (python3, stdlib only)
    <dest>/bin/etcd, etcdctl, kube-apiserver, kube-controller-manager
    <dest>/lib/controlplane.py      the control plane the script starts
    <dest>/STANDIN.txt              what this is and how to install it

Install on a host: copy ``<dest>`` to ``/usr/local/lib/k3s-standin/`` and ``<dest>/k3s`` to
``/usr/local/bin/k3s`` (or symlink it); the script finds its payload in either place. Then the
usual unit (``ExecStart=/usr/local/bin/k3s server ...``, ``Type=notify``) works.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bootstrap.lab import controlplane

STANDIN_SCRIPT = Path(__file__).with_name("k3s.py")
BINARIES = ("etcd", "etcdctl", "kube-apiserver", "kube-controller-manager")
INSTALL_HOME = "/usr/local/lib/k3s-standin"

_README = f"""LAB STAND-IN for the k3s air-gap bundle. THIS IS NOT k3s.

`k3s server` runs a real etcd + kube-apiserver + kube-controller-manager (Kubernetes v1.20.2,
built from Debian source by bootstrap/lab/scripts/build-kube.sh) with k3s's flags, files and
port 6443. No kubelet, no containerd, no CNI: nodes never register and pods never run.

Install: copy this directory to {INSTALL_HOME}/ and `k3s` to /usr/local/bin/k3s (0755).
Only `k3s server` and `k3s --version` are implemented; unknown flags are logged and ignored.
"""


def build_bundle(dest_dir: Path | str, bin_dir: Path | str) -> Path:
    """Lay out the stand-in bundle in ``dest_dir`` (created or refreshed); returns it."""
    dest = Path(dest_dir)
    src_bin = Path(bin_dir)
    missing = [n for n in BINARIES if not (src_bin / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{src_bin} lacks {', '.join(missing)}: run bootstrap/lab/scripts/build-kube.sh"
        )
    (dest / "bin").mkdir(parents=True, exist_ok=True)
    (dest / "lib").mkdir(exist_ok=True)
    for name in BINARIES:
        target = dest / "bin" / name
        src = src_bin / name
        if not target.exists() or target.stat().st_size != src.stat().st_size:
            tmp = target.with_suffix(".tmp")
            shutil.copy2(src, tmp)
            os.replace(tmp, target)
        target.chmod(0o755)
    shutil.copy2(controlplane.__file__, dest / "lib" / "controlplane.py")
    shutil.copy2(STANDIN_SCRIPT, dest / "k3s")
    (dest / "k3s").chmod(0o755)
    (dest / "STANDIN.txt").write_text(_README)
    return dest
