"""The lab's network plumbing: a blackholed /16, one bridge per lab, a netns per host.

Why a module of its own: the network rule is the one thing the lab must never
get wrong. Every lab lives in 10.200.0.0/16, which is blackholed *before* any
bridge exists, so a mistake in a host's routing can only drop packets, never
send them off this machine. Each lab takes one free /24 (10.200.N.0/24, bridge
``drbN`` at .1) so several labs and CI runs coexist; host i gets a network
namespace with a veth ``eth0`` at 10.200.N.(10+i) and no default route: it
reaches the bridge address (apt-cacher-ng) and its siblings, nothing else.

Only ``ip`` is driven here (subprocess); nothing imports a vendor library.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from bootstrap.errors import PermanentError, PreflightError

LAB_SUPERNET = ipaddress.IPv4Network("10.200.0.0/16")
HOST_OFFSET = 10  # host i lives at .(10+i); .1 is the bridge
MAX_HOSTS = 240
NETNS_DIR = Path("/run/netns")
ALLOC_LOCK = Path("/run/drboot-lab.lock")


def run(args: Sequence[str], *, what: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a lab command; a failure becomes a PermanentError naming what was attempted."""
    try:
        proc = subprocess.run(list(args), capture_output=True, text=True, check=False, timeout=120)
    except FileNotFoundError as exc:
        raise PreflightError(
            f"{what}: {args[0]} is not installed",
            target="lab",
            hint="run bootstrap/lab/scripts/setup-lab.sh as root",
        ) from exc
    if check and proc.returncode != 0:
        raise PermanentError(
            f"{what} failed: `{' '.join(args)}` exited {proc.returncode}: "
            f"{proc.stderr.strip()[-400:]}",
            target="lab",
            hint="see the command's message above; `drboot lab down` removes a half-made lab",
        )
    return proc


def ensure_blackhole() -> None:
    """Drop all 10.200.0.0/16 traffic unless a more specific lab route exists."""
    run(["ip", "route", "replace", "blackhole", str(LAB_SUPERNET)], what="blackhole route")


def blackhole_present() -> bool:
    """True if the 10.200.0.0/16 blackhole route is installed in the main table."""
    out = run(["ip", "-j", "route", "show", "type", "blackhole"], what="list routes").stdout
    return any(r.get("dst") == str(LAB_SUPERNET) for r in json.loads(out or "[]"))


def bridge_name(index: int) -> str:
    return f"drb{index}"


def subnet(index: int) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(f"10.200.{index}.0/24")


def gateway(index: int) -> str:
    return f"10.200.{index}.1"


def host_address(index: int, host_index: int) -> str:
    if not 0 <= host_index < MAX_HOSTS:
        raise PermanentError(f"host index {host_index} outside 0..{MAX_HOSTS - 1}", target="lab")
    return f"10.200.{index}.{HOST_OFFSET + host_index}"


def netns_name(index: int, host: str) -> str:
    return f"drb{index}-{host}"


def veth_name(index: int, host_index: int) -> str:
    return f"drb{index}v{host_index}"  # <= 10 chars, under IFNAMSIZ


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


@contextmanager
def allocation_lock() -> Iterator[None]:
    """Serialise subnet choice between processes (several labs may start at once)."""
    ALLOC_LOCK.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(ALLOC_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def used_indexes() -> set[int]:
    """/24s of 10.200/16 already taken by an address, a drbN bridge or a drbN-* netns."""
    used: set[int] = set()
    out = run(["ip", "-j", "-4", "addr", "show"], what="list addresses").stdout
    for link in json.loads(out or "[]"):
        for addr in link.get("addr_info", []):
            ip = ipaddress.IPv4Address(addr["local"])
            if ip in LAB_SUPERNET:
                used.add(int(str(ip).split(".")[2]))
    for path in Path("/sys/class/net").iterdir():
        name = path.name
        if name.startswith("drb") and name[3:].isdigit():
            used.add(int(name[3:]))
    if NETNS_DIR.is_dir():
        for path in NETNS_DIR.iterdir():
            head = path.name.split("-", 1)[0]
            if head.startswith("drb") and head[3:].isdigit():
                used.add(int(head[3:]))
    return used


def pick_free_index(exclude: set[int] | None = None, wanted: int | None = None) -> int:
    """The lowest free lab /24 (1..254), or ``wanted`` if free. Call under ``allocation_lock``."""
    taken = used_indexes() | (exclude or set())
    if wanted is not None:
        if wanted in taken:
            raise PreflightError(
                f"10.200.{wanted}.0/24 (provider.subnet_index {wanted}) is used by another lab",
                target="lab",
                hint="choose another provider.subnet_index, or leave it out to pick a free one",
            )
        return wanted
    for index in range(1, 255):
        if index not in taken:
            return index
    raise PreflightError(
        "no free /24 left in 10.200.0.0/16 for a new lab",
        target="lab",
        hint="destroy old labs (`drboot lab down STATE_DIR`)",
    )


def ensure_bridge(index: int) -> None:
    """Create and address the lab bridge if missing. The blackhole goes in first."""
    ensure_blackhole()
    br = bridge_name(index)
    if not link_exists(br):
        run(["ip", "link", "add", br, "type", "bridge"], what=f"create bridge {br}")
    addr = f"{gateway(index)}/24"
    current = run(["ip", "-j", "-4", "addr", "show", "dev", br], what=f"read {br}").stdout
    have = {
        f"{a['local']}/{a['prefixlen']}"
        for link in json.loads(current or "[]")
        for a in link.get("addr_info", [])
    }
    if addr not in have:
        run(["ip", "addr", "replace", addr, "dev", br], what=f"address bridge {br}")
    run(["ip", "link", "set", br, "up"], what=f"bring up bridge {br}")


def delete_bridge(index: int) -> None:
    br = bridge_name(index)
    if link_exists(br):
        run(["ip", "link", "del", br], what=f"delete bridge {br}")


def ensure_host_net(index: int, host: str, host_index: int) -> None:
    """Netns + veth for one host; eth0 addressed inside, no default route."""
    ns = netns_name(index, host)
    veth = veth_name(index, host_index)
    if not netns_exists(ns):
        run(["ip", "netns", "add", ns], what=f"create netns {ns}")
    if not link_exists(veth):
        run(
            ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns],
            what=f"create veth {veth}",
        )
    run(["ip", "link", "set", veth, "master", bridge_name(index), "up"], what=f"attach {veth}")
    run(
        ["ip", "-n", ns, "addr", "replace", f"{host_address(index, host_index)}/24", "dev", "eth0"],
        what=f"address eth0 in {ns}",
    )
    run(["ip", "-n", ns, "link", "set", "lo", "up"], what=f"lo up in {ns}")
    run(["ip", "-n", ns, "link", "set", "eth0", "up"], what=f"eth0 up in {ns}")


def delete_host_net(index: int, host: str, host_index: int) -> None:
    veth = veth_name(index, host_index)
    if link_exists(veth):
        run(["ip", "link", "del", veth], what=f"delete veth {veth}")
    ns = netns_name(index, host)
    if netns_exists(ns):
        run(["ip", "netns", "del", ns], what=f"delete netns {ns}")


def set_link(index: int, host_index: int, *, up: bool) -> None:
    """Pull or plug the host's cable (the bridge side of its veth)."""
    veth = veth_name(index, host_index)
    run(["ip", "link", "set", veth, "up" if up else "down"], what=f"set {veth} {up=}")
