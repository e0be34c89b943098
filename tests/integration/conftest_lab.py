"""Pytest plugin: lab hosts (fresh Debian under systemd-nspawn) for integration tests.

Why it exists: anything that talks SSH to a machine, prepares a host or faults
one is tested against real Debian hosts booted by ``bootstrap.lab.hosts``, not
a fake. tests/integration/conftest.py re-exports its fixtures.

Fixtures:
  lab         (session)  a Lab with its own /24, torn down at the end. Skips when
                         the machine is not prepared (not root, no golden image,
                         no apt-cacher-ng) with a loud reason, and FAILS instead
                         when ``CI=true``: CI runs setup-lab.sh first, so a skip
                         there would hide breakage.
  lab_hosts   (function) ``lab_hosts(n, **create_host_kwargs) -> list[LabHost]``;
                         every host it made is destroyed afterwards.
  lab_ssh     (function) ``lab_ssh(host, command, known_hosts=..., timeout=...)``
                         runs the real openssh client with StrictHostKeyChecking.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bootstrap.errors import BootstrapError
from bootstrap.lab import net
from bootstrap.lab.hosts import APT_PROXY_PORT, Lab, LabHost, tcp_port_open
from bootstrap.lab.image import SETUP_SCRIPT, find_image, image_path

LabHosts = Callable[..., list[LabHost]]
LabSsh = Callable[..., "subprocess.CompletedProcess[str]"]
_TOOLS = ("systemd-nspawn", "unshare", "nsenter", "ip", "ssh", "ssh-keygen", "losetup", "mkfs.ext4")


def _unavailable(reason: str) -> None:
    text = (
        f"LAB HOSTS UNAVAILABLE: {reason}. "
        f"Prepare this machine with `sudo bash {SETUP_SCRIPT}` to run the lab tests."
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(text, pytrace=False)
    pytest.skip(text)


def lab_missing_reason() -> str | None:
    """Why lab hosts cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "the lab needs root (netns, mounts, cgroups)"
    missing = [t for t in _TOOLS if shutil.which(t) is None]
    if missing:
        return f"missing tools: {', '.join(missing)}"
    if find_image() is None:
        return f"golden image {image_path()} is not built"
    if not tcp_port_open("127.0.0.1", APT_PROXY_PORT):
        return f"apt-cacher-ng is not listening on :{APT_PROXY_PORT}"
    return None


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    reason = lab_missing_reason()
    if reason is not None:
        _unavailable(reason)
    state = tmp_path_factory.mktemp("lab") / "state"
    try:
        the_lab = Lab.create(f"t{os.getpid()}", state)
    except BootstrapError as exc:
        _unavailable(f"Lab.create failed: {exc}")
        raise
    # The network rule: the /16 is blackholed before any host exists.
    assert net.blackhole_present(), "blackhole route for 10.200.0.0/16 missing after Lab.create"
    assert the_lab.hosts() == []
    try:
        yield the_lab
    finally:
        the_lab.down()


@pytest.fixture
def lab_hosts(lab: Lab) -> Iterator[LabHosts]:
    made: list[str] = []
    counter = itertools.count()

    def make(n: int, **kwargs: Any) -> list[LabHost]:
        hosts = []
        for _ in range(n):
            name = f"h{os.getpid() % 10000}-{len(made)}-{next(counter)}"
            made.append(name)
            hosts.append(lab.create_host(name, **kwargs))
        return hosts

    yield make
    for name in made:
        lab.destroy_host(name)


def ssh_argv(lab: Lab, host: LabHost, known_hosts: Path, timeout: int = 5) -> list[str]:
    """Real openssh client argv: the lab's operator key, strict host-key checking."""
    return [
        "ssh",
        "-F",
        "/dev/null",
        "-i",
        str(lab.ssh_key_path),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={timeout}",
        "-p",
        str(host.ssh_port),
        f"{host.ssh_user}@{host.address}",
    ]


@pytest.fixture
def lab_ssh(lab: Lab) -> LabSsh:
    def run(
        host: LabHost,
        command: str,
        *,
        known_hosts: Path | None = None,
        timeout: int = 5,
    ) -> subprocess.CompletedProcess[str]:
        argv = ssh_argv(lab, host, known_hosts or lab.known_hosts_path, timeout)
        return subprocess.run(
            [*argv, command], capture_output=True, text=True, timeout=timeout + 120, check=False
        )

    return run
