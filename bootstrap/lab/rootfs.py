"""Seeding a lab host's root filesystem (its overlay's upper layer) before first boot.

Why a module of its own: a host must boot already knowing its name, its apt proxy, the
operator's key and its own ed25519 host key, so the provider can REPORT that key (the
first source of SSH host-key verification) instead of learning it on first contact.
The files are written into the upper layer with the lower layer's directory metadata,
so seeding never loosens a permission of the golden image.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bootstrap.fsutil import write_atomic
from bootstrap.lab import net


def _mkdirs_like(upper: Path, lower: Path, rel: str) -> Path:
    """mkdir -p in the upper layer, copying mode/owner from the lower one.

    An upper directory hides the lower one's metadata: creating ``/root`` with
    the default 0755 would open root's home to everyone.
    """
    cur_u, cur_l = upper, lower
    for part in Path(rel).parts:
        cur_u, cur_l = cur_u / part, cur_l / part
        if not cur_u.exists():
            cur_u.mkdir()
            if cur_l.is_dir():
                st = cur_l.stat()
                os.chown(cur_u, st.st_uid, st.st_gid)
                os.chmod(cur_u, st.st_mode & 0o7777)
    return cur_u


def _put(upper: Path, lower: Path, rel: str, content: str, mode: int = 0o644) -> None:
    """Write ``rel`` into the upper layer atomically, its directories made like the lower ones."""
    write_atomic(_mkdirs_like(upper, lower, str(Path(rel).parent)) / Path(rel).name, content, mode)


# cloud-init is in the golden image for cloud doubles' servers; a plain lab host switches it
# off before boot, so it boots exactly as it did before cloud-init was in the image.
CLOUD_INIT_DISABLED = "etc/cloud/cloud-init.disabled"
NOCLOUD_SEED = "var/lib/cloud/seed/nocloud"


@dataclass(frozen=True)
class CloudSeed:
    """What a cloud double hands a new server: cloud-init's NoCloud user data and meta data.

    ``user_data`` may hold a host private key (cloud-init ``ssh_keys``): it is written only
    into the host's own root (0600, under /var/lib/cloud, like a cloud's metadata)."""

    instance_id: str
    hostname: str
    user_data: str = field(repr=False)


def prepare_cloud_upper(upper: Path, lower: Path, apt_proxy: str, seed: CloudSeed) -> None:
    """Seed a cloud double's server: the lab's plumbing (machine id, apt proxy) and the
    NoCloud seed, and nothing else. Its name, users, authorised keys and SSH host key are
    what the user data says, applied by the real cloud-init at first boot."""
    _put(upper, lower, "etc/machine-id", f"{uuid.uuid4().hex}\n", 0o444)
    _put(
        upper,
        lower,
        "etc/apt/apt.conf.d/01drboot-lab-proxy",
        f'Acquire::http::Proxy "{apt_proxy}";\n',
    )
    meta = json.dumps({"instance-id": seed.instance_id, "local-hostname": seed.hostname})
    _put(upper, lower, f"{NOCLOUD_SEED}/meta-data", meta + "\n", 0o600)
    _put(upper, lower, f"{NOCLOUD_SEED}/user-data", seed.user_data, 0o600)


def prepare_upper(upper: Path, lower: Path, name: str, apt_proxy: str, operator_pub: str) -> str:
    """Write the host's identity into its upper layer before first boot; returns its public key."""
    _put(upper, lower, CLOUD_INIT_DISABLED, "a plain lab host: identity seeded by the lab\n")
    _put(upper, lower, "etc/hostname", f"{name}\n")
    _put(upper, lower, "etc/hosts", f"127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n")
    _put(upper, lower, "etc/machine-id", f"{uuid.uuid4().hex}\n", 0o444)
    _put(
        upper,
        lower,
        "etc/apt/apt.conf.d/01drboot-lab-proxy",
        f'Acquire::http::Proxy "{apt_proxy}";\n',
    )
    ssh_dir = _mkdirs_like(upper, lower, "root/.ssh")
    os.chmod(ssh_dir, 0o700)
    _put(upper, lower, "root/.ssh/authorized_keys", f"{operator_pub}\n", 0o600)
    key = _mkdirs_like(upper, lower, "etc/ssh") / "ssh_host_ed25519_key"
    if not key.exists():
        for p in (key, Path(f"{key}.pub")):
            p.unlink(missing_ok=True)
        net.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{name}", "-f", str(key)],
            what=f"host key for {name}",
        )
        os.chmod(key, 0o600)
    return Path(f"{key}.pub").read_text().strip()
