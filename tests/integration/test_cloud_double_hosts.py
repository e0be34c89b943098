"""A cloud double's server is a REAL lab host configured by cloud-init from its user data.

The golden image carries the real cloud-init. ``LabServers`` boots a lab host with the user
data as its NoCloud seed and nothing of the lab's: these tests log in with the key the user
data authorised, verify the host key the user data handed over (StrictHostKeyChecking), and
check that the lab's own operator key is refused. A plain lab host has cloud-init switched
off and boots as it always did.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.lab.hosts import Lab
from bootstrap.providers.cloud.userdata import build_user_data, generate_host_key
from tests.doubles.servers import LabServers
from tests.integration.conftest_lab import lab_missing_reason

pytestmark = [pytest.mark.integration, pytest.mark.lab]


@pytest.fixture
def own_lab(tmp_path: Path) -> Iterator[Lab]:
    reason = lab_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    lab = Lab.create(f"cd{os.getpid() % 100000}", tmp_path / "lab")
    try:
        yield lab
    finally:
        lab.down()


def _key(tmp_path: Path, name: str) -> Path:
    key = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def _ssh(
    key: Path, known: Path, user: str, address: str, command: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-i", str(key), "-o", f"UserKnownHostsFile={known}",
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
         "-o", "IdentitiesOnly=yes", f"{user}@{address}", command],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("user", ["root", "ops"])
def test_user_data_decides_host_key_users_and_authorised_keys(
    own_lab: Lab, tmp_path: Path, user: str
) -> None:
    operator = _key(tmp_path, "operator")
    host_key = generate_host_key("root@oslo-server-1")
    user_data = build_user_data(
        hostname="oslo-server-1",
        host_key=host_key,
        authorized_keys=[operator.with_suffix(".pub").read_text().strip()],
        user=user,
    )
    address = LabServers(own_lab).boot(7, "oslo-server-1", user_data)
    known = tmp_path / "known_hosts"
    known.write_text(f"{address} {' '.join(host_key.public_openssh.split()[:2])}\n")

    sudo = "" if user == "root" else "sudo -n "
    res = _ssh(
        operator, known, user, address,
        f"hostname; {sudo}cloud-init status --wait; {sudo}ls /etc/ssh/ | grep host_; "
        f"{sudo}cat /root/.ssh/authorized_keys 2>/dev/null | wc -l; id -un",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    lines = res.stdout.split()
    assert lines[0] == "oslo-server-1"
    assert "status: done" in res.stdout
    # only the key drboot handed over (the verified one), no generated ones
    assert [x for x in lines if x.startswith("ssh_host_")] == [
        "ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"
    ]  # fmt: skip
    assert lines[-1] == user
    if user != "root":
        assert lines[-2] == "0"  # root got no key: the user data named another user

    # nothing of the lab's: its operator key is refused, its known_hosts has no entry
    lab_key = own_lab.ssh_key_path
    refused = _ssh(lab_key, known, "root", address, "true")
    assert refused.returncode == 255 and "Permission denied" in refused.stderr
    assert address not in own_lab.known_hosts_path.read_text()


def test_a_plain_lab_host_boots_with_cloud_init_off(own_lab: Lab, tmp_path: Path) -> None:
    host = own_lab.create_host("plain-1")
    res = subprocess.run(
        ["ssh", "-i", str(own_lab.ssh_key_path), "-o",
         f"UserKnownHostsFile={own_lab.known_hosts_path}", "-o", "StrictHostKeyChecking=yes",
         "-o", "BatchMode=yes", f"root@{host.address}",
         "cloud-init status; hostname; test ! -e /var/lib/cloud/instance && echo no-instance"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "status: disabled" in res.stdout
    assert "plain-1" in res.stdout and "no-instance" in res.stdout
