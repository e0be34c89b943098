"""Lab hosts are real: they boot, speak SSH with the key they were given, get apt only
through the cache, and their faults (cable, power, slow disk) are real faults.

Traffic goes only to loopback and to lab hosts in 10.200.0.0/16 (blackholed);
apt traffic leaves this machine only through apt-cacher-ng, towards the Debian
mirror. Needs root and setup-lab.sh; see tests/integration/conftest_lab.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bootstrap.lab import hostcgroup, hostdisk, net
from bootstrap.lab.hosts import Lab, LabHost

if TYPE_CHECKING:
    from tests.integration.conftest_lab import LabHosts, LabSsh

pytestmark = [pytest.mark.integration, pytest.mark.lab, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
FIO = (
    "fio --name=etcd --directory={d} --rw=write --ioengine=sync --fdatasync=1 "
    "--size=22m --bs=2300 --runtime={runtime} --output-format=json"
)


def write_known_hosts(path: Path, hosts: list[LabHost]) -> Path:
    path.write_text("".join(f"{h.address} {h.host_public_key}\n" for h in hosts))
    return path


def install_fio(host: LabHost) -> None:
    proc = host.exec(
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio",
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def fio_p99_ms(host: LabHost, directory: str, runtime: int = 5) -> float:
    proc = host.exec(FIO.format(d=directory, runtime=runtime), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    job = json.loads(proc.stdout)["jobs"][0]
    assert job["sync"]["lat_ns"]["N"] > 100, "fio made too few fdatasyncs to judge"
    return float(job["sync"]["lat_ns"]["percentile"]["99.000000"]) / 1e6


def test_blackhole_is_in_place_before_any_host(tmp_path: Path, lab: Lab) -> None:
    # A second lab of our own, so the order of tests cannot matter.
    other = Lab.create("blackhole-check", tmp_path / "state")
    try:
        assert other.hosts() == []
        assert net.blackhole_present()
        assert other.index != lab.index, "two live labs must not share a /24"
        # Route lookups only: nothing is sent. An unused /24 of the lab range is
        # dropped; the lab's own /24 goes to its bridge, nowhere else.
        unused = next(i for i in range(254, 0, -1) if i not in net.used_indexes())
        dropped = subprocess.run(
            ["ip", "-j", "route", "get", f"10.200.{unused}.77"], capture_output=True, text=True
        )
        assert dropped.returncode != 0 or json.loads(dropped.stdout)[0]["type"] == "blackhole"
        own = json.loads(
            subprocess.run(
                ["ip", "-j", "route", "get", f"10.200.{other.index}.10"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )[0]
        assert own["dev"] == other.bridge
    finally:
        other.down()
    assert not net.link_exists(other.bridge)
    assert net.blackhole_present(), "down() must leave the shared blackhole route"
    assert not (tmp_path / "state").exists()


def test_hosts_boot_with_their_reported_keys_and_real_ssh(
    tmp_path: Path, lab_hosts: LabHosts, lab_ssh: LabSsh
) -> None:
    t0 = time.monotonic()
    hosts = lab_hosts(3)
    boot_s = time.monotonic() - t0
    assert boot_s < 30, f"3 hosts took {boot_s:.1f}s to become SSH-ready"

    fingerprints = {h.host_key_fingerprint for h in hosts}
    assert len(fingerprints) == 3, "every host must have its own host key"
    assert len({h.address for h in hosts}) == 3
    for h in hosts:
        inside = h.exec("ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub", check=True)
        assert inside.stdout.split()[1] == h.host_key_fingerprint
        assert h.host_key_fingerprint.startswith("SHA256:")

    known = write_known_hosts(tmp_path / "known_hosts", hosts)
    for h in hosts:
        proc = lab_ssh(h, "hostname; id -u; ip route show default | wc -l", known_hosts=known)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == [h.name, "0", "0"]  # no default route in a host

    # Strict checking really checks: host 0's address with host 1's key is refused.
    liar = tmp_path / "wrong_known_hosts"
    liar.write_text(f"{hosts[0].address} {hosts[1].host_public_key}\n")
    refused = lab_ssh(hosts[0], "true", known_hosts=liar)
    assert refused.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in refused.stderr


def test_create_host_is_idempotent_and_reattachable(lab: Lab, lab_hosts: LabHosts) -> None:
    (host,) = lab_hosts(1)
    pid = host.init_pid()
    again = lab.create_host(host.name)
    assert (again.address, again.host_public_key, again.init_pid()) == (
        host.address,
        host.host_public_key,
        pid,
    )
    # Another process attaches to the lab from its state dir and pulls the plug.
    code = (
        "import sys; from bootstrap.lab.hosts import Lab; "
        "h = Lab.attach(sys.argv[1]).host(sys.argv[2]); h.power_cut(); print(h.is_running())"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(lab.state_dir), host.name],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
    assert not lab.host(host.name).is_running()
    # create_host on a stopped host boots it again, same identity; create on a
    # state dir that holds the lab re-attaches instead of making a second one.
    booted = lab.create_host(host.name)
    assert booted.is_running() and booted.host_public_key == host.host_public_key
    assert Lab.create(lab.name, lab.state_dir).index == lab.index


def test_memory_limit_is_applied(lab_hosts: LabHosts) -> None:
    (host,) = lab_hosts(1, memory_mib=256)
    limit = host.exec("cat /sys/fs/cgroup/memory/memory.limit_in_bytes", check=True).stdout
    assert int(limit) == 256 * 1024 * 1024


def test_apt_goes_through_the_cache(lab: Lab, lab_hosts: LabHosts) -> None:
    (host,) = lab_hosts(1)
    # The host cannot route to the mirror itself (lookup only, nothing sent).
    direct = host.exec("ip route get 198.51.100.7")
    assert direct.returncode != 0 and "unreachable" in direct.stderr
    proxy = host.exec("apt-config dump Acquire::http::Proxy", check=True).stdout
    assert lab.apt_proxy in proxy

    install_fio(host)
    assert host.exec("fio --version", check=True).stdout.startswith("fio-")
    log = Path("/var/log/apt-cacher-ng/apt-cacher.log")
    if log.exists():  # apt-cacher-ng logs each transfer with the client address
        assert f"|{host.address}|" in log.read_text()


def test_net_down_breaks_ssh_and_net_up_restores_it(lab_hosts: LabHosts, lab_ssh: LabSsh) -> None:
    (host,) = lab_hosts(1)
    assert lab_ssh(host, "true").returncode == 0
    host.net_down()
    try:
        cut = lab_ssh(host, "true", timeout=2)
        assert cut.returncode == 255
        assert "timed out" in cut.stderr or "unreachable" in cut.stderr.lower()
    finally:
        host.net_up()
    assert lab_ssh(host, "true").returncode == 0


def test_power_cut_then_reboot_keeps_key_and_disk(
    lab: Lab, lab_hosts: LabHosts, lab_ssh: LabSsh
) -> None:
    (host,) = lab_hosts(1)
    assert lab_ssh(host, "echo survivor > /root/marker && sync").returncode == 0
    machine_id = host.exec("cat /etc/machine-id", check=True).stdout
    init = host.init_pid()

    host.power_cut()
    assert not host.is_running()
    assert not Path(f"/proc/{init}/status").exists() or "Z" in _state(init)
    assert hostcgroup.host_cgroups(lab.index, host.name, None).pids() == set()
    assert lab_ssh(host, "true", timeout=2).returncode == 255

    t0 = time.monotonic()
    host.reboot()
    assert time.monotonic() - t0 < 15
    # Same key: strict checking against the key reported at creation still passes.
    proc = lab_ssh(host, "cat /root/marker /etc/machine-id")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["survivor", machine_id.strip()]
    assert lab.host(host.name).host_public_key == host.host_public_key


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def test_slow_disk_is_measurably_slower_than_fast_disk(lab_hosts: LabHosts) -> None:
    (host,) = lab_hosts(1)
    install_fio(host)
    host.slow_disk("/var/lib/slow", iops=300)
    host.fast_disk("/var/lib/fast")
    mounts = host.exec("findmnt -no FSTYPE /var/lib/slow; findmnt -no FSTYPE /var/lib/fast")
    assert mounts.stdout.split() == ["ext4", "tmpfs"]

    slow = fio_p99_ms(host, "/var/lib/slow")
    fast = fio_p99_ms(host, "/var/lib/fast")
    print(f"fio fdatasync p99: slow={slow:.2f} ms fast={fast:.4f} ms")
    assert slow > 10.0, f"slow disk p99 {slow:.2f} ms is not slow (etcd wants < 10 ms)"
    assert fast < 10.0
    assert slow > 20 * fast

    # The slow disk is a disk: it survives a power cut and is mounted again at boot.
    host.exec("echo kept > /var/lib/slow/f && sync", check=True)
    host.power_cut()
    host.reboot()
    assert host.exec("cat /var/lib/slow/f", check=True).stdout.strip() == "kept"
    assert host.exec("findmnt -no FSTYPE /var/lib/slow").stdout.strip() == "ext4"


def test_destroy_removes_everything(lab: Lab, lab_ssh: LabSsh) -> None:
    host = lab.create_host(f"doomed{lab.index}")
    host.slow_disk("/var/lib/etcd", iops=1000, size_mib=64)
    host.fast_disk("/mnt/fast")
    disk = lab.host(host.name).disks[0]
    assert disk.loop and disk.backing
    major, minor = hostdisk.dev_numbers(disk.loop)
    cg = hostcgroup.host_cgroups(lab.index, host.name, None)
    assert cg.pids(), "a running host has processes in its cgroups"
    hostdir, netns, veth = host.dir, host.netns, net.veth_name(lab.index, host._rec.index)

    lab.destroy_host(host.name)

    assert host.name not in [h.name for h in lab.hosts()]
    assert not hostdir.exists()
    assert not net.netns_exists(netns)
    assert not net.link_exists(veth)
    assert all(not d.exists() for d in cg.dirs)
    losetup = subprocess.run(["losetup", "-n", "-O", "BACK-FILE"], capture_output=True, text=True)
    assert disk.backing not in losetup.stdout
    rules = Path("/sys/fs/cgroup/blkio/blkio.throttle.write_iops_device")
    if rules.exists():
        assert f"{major}:{minor} 1000" not in rules.read_text()
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(hostdir) not in mounts
    assert host.address not in lab.known_hosts_path.read_text()
    assert lab_ssh(host, "true", timeout=2).returncode == 255
    lab.destroy_host(host.name)  # idempotent
