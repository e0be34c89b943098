"""The cloud-init user data that gives a new server its identity, and the host key in it.

Why: the first SSH connection to a fresh cloud server must not trust blindly. drboot makes
the server's ed25519 host key itself, hands the private half to the server in its user data
(cloud-init's ``ssh_keys``), and pins the public half (``HostInfo.host_public_key``) before
the server even exists. The private half lives only in memory and in the API request: it is
never written to drboot's state, the journal, a log or an error.

The operator's public key goes in ``ssh_authorized_keys``; a non-root SSH user is created
with password-less sudo. Nothing else of the server is configured here: the restore's own
steps (Ansible) do that over the pinned connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

USER_DATA_LIMIT = 32 * 1024  # Hetzner's limit on user_data (OpenStack: 64 KiB base64)


@dataclass(frozen=True)
class HostKeyPair:
    """An SSH host key made by drboot. ``private_openssh`` is a secret: never persist it."""

    public_openssh: str  # "ssh-ed25519 AAAA… comment"
    private_openssh: str = field(repr=False)


def generate_host_key(comment: str) -> HostKeyPair:
    """A fresh ed25519 host key in OpenSSH formats."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return HostKeyPair(public_openssh=f"{public} {comment}", private_openssh=private)


def build_user_data(
    *, hostname: str, host_key: HostKeyPair, authorized_keys: list[str], user: str = "root"
) -> str:
    """``#cloud-config`` user data: hostname, the given host key only, the operator's key."""
    config: dict[str, object] = {
        "hostname": hostname,
        "preserve_hostname": False,
        # exactly the key drboot pinned: drop any image keys, generate none
        "ssh_deletekeys": True,
        "ssh_genkeytypes": [],
        "ssh_keys": {
            "ed25519_private": host_key.private_openssh,
            "ed25519_public": host_key.public_openssh,
        },
        "ssh_pwauth": False,
    }
    if user == "root":
        config["disable_root"] = False
        config["users"] = []
        config["ssh_authorized_keys"] = list(authorized_keys)
    else:
        config["disable_root"] = True
        config["users"] = [
            {
                "name": user,
                "shell": "/bin/bash",
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "lock_passwd": True,
                "ssh_authorized_keys": list(authorized_keys),
            }
        ]
    text = "#cloud-config\n" + yaml.safe_dump(
        config, sort_keys=True, default_flow_style=False, width=4096
    )
    if len(text.encode()) > USER_DATA_LIMIT:
        raise ValueError(f"user data is {len(text.encode())} bytes, over {USER_DATA_LIMIT}")
    return text
