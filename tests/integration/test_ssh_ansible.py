"""SSH adapter, Ansible adapter and playbooks against real lab hosts.

Real sshd in systemd-nspawn Debian hosts (bootstrap.lab.hosts), real openssh/Ansible, real fio,
and the lab's k3s stand-in (a real etcd + kube-apiserver, installed by k3s.yml through the
air-gap path). Nothing is faked; the only stand-in is the k3s binary, which says so.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from bootstrap.adapters.ansible import (
    InventoryHost,
    PlayEvent,
    PlayResult,
    build_inventory,
    run_playbook,
)
from bootstrap.adapters.ssh import SSHClient
from bootstrap.diskgate import enforce, judge_file
from bootstrap.errors import HostKeyMismatch, PermanentError, PreflightError, TransientError
from bootstrap.hostkeys import HostKeyExpectation, PublicKey, TrustedKey, parse_known_hosts
from bootstrap.lab.hosts import Lab, LabHost
from bootstrap.lab.k3s_standin import build_bundle
from bootstrap.lab.k3s_standin.k3s import VERSION as STANDIN_VERSION
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.lab]

TOKEN_FILE = "/etc/rancher/k3s/cluster-token"


def client(lab: Lab, host: LabHost, expected: HostKeyExpectation | None = None) -> SSHClient:
    exp = expected or HostKeyExpectation(provider_key=PublicKey.parse(host.host_public_key))
    return SSHClient(host.address, host.ssh_port, host.ssh_user, lab.ssh_key_path, expected=exp)


def verified_keys(lab: Lab, hosts: list[LabHost]) -> list[TrustedKey]:
    keys = []
    for h in hosts:
        with client(lab, h) as c:
            keys.append(c.trusted_key)
    return keys


@pytest.fixture(scope="module")
def airgap_bundle(kube_bin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("airgap") / "k3s-standin", kube_bin_dir)


# -- SSH ----------------------------------------------------------------------------------------


def test_ssh_runs_commands_and_copies_files_with_provider_key(lab: Lab, lab_hosts: Any) -> None:
    (host,) = lab_hosts(1)
    with client(lab, host) as c:
        assert c.trusted_key.source.value == "provider"
        assert c.trusted_key.record is False
        res = c.run("hostname; echo to-stderr >&2")
        assert res.rc == 0 and res.stdout.strip() == host.name and "to-stderr" in res.stderr
        data = secrets.token_bytes(4096)
        c.put_bytes(data, "/root/blob", 0o600)
        assert c.get("/root/blob") == data
        assert c.run("stat -c %a /root/blob").stdout.strip() == "600"
        assert c.run("cat", stdin=b"through stdin").stdout == "through stdin"
        with pytest.raises(PermanentError, match="exited with status 7"):
            c.run("echo boom >&2; exit 7")
        assert c.run("exit 3", check=False).rc == 3


def test_wrong_expected_key_and_regenerated_host_key_are_refused(
    lab: Lab, lab_hosts: Any, tmp_path: Path
) -> None:
    (host,) = lab_hosts(1)
    original = PublicKey.parse(host.host_public_key)
    # 1. expecting another key (pinned fingerprint of a key the host does not have)
    other_fp = "SHA256:" + base64.b64encode(hashlib.sha256(b"other").digest()).decode().rstrip("=")
    with pytest.raises(HostKeyMismatch) as ei:
        client(lab, host, HostKeyExpectation(pinned_fingerprint=other_fp)).connect()
    text = ei.value.format()
    assert host.address in text and other_fp in text and original.fingerprint in text
    # 2. the host's key is regenerated (rebuilt or impersonated): the recorded key is refused
    host.exec(
        "rm -f /etc/ssh/ssh_host_ed25519_key* && "
        "ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key && "
        "systemctl restart ssh",
        check=True,
    )
    new = PublicKey.parse(host.exec("cat /etc/ssh/ssh_host_ed25519_key.pub", check=True).stdout)
    assert new != original
    with pytest.raises(HostKeyMismatch) as ei:
        client(lab, host).connect()  # still expects the provider-reported (old) key
    text = ei.value.format()
    assert original.fingerprint in text and new.fingerprint in text
    assert ei.value.hint and "verify the new key" in ei.value.hint
    # ...and first-use trust does not override a known key either
    kh = HostKeyExpectation(
        known_hosts=tuple(parse_known_hosts(f"{host.address} {original.openssh()}")),
        trust_on_first_use=True,
    )
    with pytest.raises(HostKeyMismatch):
        client(lab, host, kh).connect()


def test_link_cut_fails_a_running_command_within_seconds(lab: Lab, lab_hosts: Any) -> None:
    (host,) = lab_hosts(1)
    c = client(lab, host).connect()
    marker = "/run/drb-link-cut.pid"
    cut_at: list[float] = []
    cutter_errors: list[BaseException] = []

    def cut_once_running() -> None:
        # Seen from inside the host (no SSH): the remote command has started, then the cable
        # is pulled, so the cut lands while the command runs.
        try:
            wait_until(lambda: host.exec(["test", "-s", marker]).returncode == 0, timeout=30,
                       what="the remote command to start")
            host.net_down()
            cut_at.append(time.monotonic())
        except BaseException as e:  # reported by the test thread below
            cutter_errors.append(e)

    try:
        assert c.run("echo up").stdout.strip() == "up"
        cutter = threading.Thread(target=cut_once_running, daemon=True)
        cutter.start()
        with pytest.raises(TransientError) as ei:
            c.run(f"echo $$ > {marker} && exec sleep 120", timeout=300)
        noticed = time.monotonic()
        cutter.join()
        assert not cutter_errors, cutter_errors
        assert "lost" in ei.value.message
        elapsed = noticed - cut_at[0]
        assert elapsed < 15, f"link cut noticed only {elapsed:.1f}s after it"
    finally:
        host.net_up()
        c.close()
    # The host is fine once the cable is back: a new session works within seconds (the
    # neighbour entry may answer "no route to host" briefly, which the engine retries too).
    deadline = time.monotonic() + 20
    while True:
        try:
            with client(lab, host) as c2:
                assert c2.run("echo back").stdout.strip() == "back"
            break
        except TransientError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def test_connect_refused_and_bad_key_are_translated(
    lab: Lab, lab_hosts: Any, tmp_path: Path
) -> None:
    (host,) = lab_hosts(1)
    exp = HostKeyExpectation(provider_key=PublicKey.parse(host.host_public_key))
    with pytest.raises(TransientError, match="refused"):
        SSHClient(host.address, 2200, "root", lab.ssh_key_path, expected=exp).connect()
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    with pytest.raises(PermanentError) as ei:
        SSHClient(host.address, 22, "root", stranger, expected=exp).connect()
    assert f"root@{host.address}" in ei.value.message and str(stranger) in ei.value.message
    assert "PRIVATE KEY" not in ei.value.format()


# -- Ansible + playbooks ------------------------------------------------------------------------


def kube_readyz(kubeconfig_yaml: bytes, address: str, tmp: Path) -> tuple[int, str]:
    """GET /readyz with the fetched kubeconfig, its server URL rewritten to the host address."""
    kc = yaml.safe_load(kubeconfig_yaml)
    cluster = kc["clusters"][0]["cluster"]
    user = kc["users"][0]["user"]
    assert cluster["server"].endswith(":6443")
    server = f"https://{address}:6443"
    ca = tmp / "ca.crt"
    ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    ctx = ssl.create_default_context(cafile=str(ca))
    if "client-certificate-data" in user:
        crt, key = tmp / "client.crt", tmp / "client.key"
        crt.write_bytes(base64.b64decode(user["client-certificate-data"]))
        key.write_bytes(base64.b64decode(user["client-key-data"]))
        key.chmod(0o600)
        ctx.load_cert_chain(str(crt), str(key))
    req = urllib.request.Request(f"{server}/readyz")
    if "token" in user:
        req.add_header("Authorization", f"Bearer {user['token']}")
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        return resp.status, resp.read().decode()


def k3s_vars(bundle: Path) -> dict[str, Any]:
    return {
        "k3s_install_source": "airgap",
        "k3s_airgap_dir": str(bundle),
        "k3s_version": STANDIN_VERSION,
        "k3s_tls_sans": ["api.lab.invalid"],
    }


def play(
    name: str,
    hosts: list[LabHost],
    lab: Lab,
    keys: list[TrustedKey],
    pdd: Path,
    extravars: dict[str, Any] | None = None,
    secret_vars: dict[str, Any] | None = None,
    events: list[PlayEvent] | None = None,
) -> PlayResult:
    inv = build_inventory(
        [InventoryHost(h.name, h.address, h.ssh_port, h.ssh_user, "server") for h in hosts]
    )
    return run_playbook(
        name,
        inv,
        extravars or {},
        pdd,
        on_event=(events.append if events is not None else None),
        ssh_key_file=lab.ssh_key_path,
        host_keys=keys,
        secret_vars=secret_vars,
        timeout=900,
    )


def test_prepare_host_and_single_server_k3s_idempotent(
    lab: Lab, lab_hosts: Any, airgap_bundle: Path, tmp_path: Path
) -> None:
    (host,) = lab_hosts(1)
    keys = verified_keys(lab, [host])
    pdd = tmp_path / "run"
    token = secrets.token_hex(24)

    events: list[PlayEvent] = []
    prep = play("prepare-host.yml", [host], lab, keys, pdd, events=events)
    assert prep.ok and prep.changed[host.name] >= 1
    assert any(e.kind == "task_start" and e.task == "Install missing packages" for e in events)
    assert any(e.kind == "ok" and e.host == host.name for e in events)
    with client(lab, host) as c:
        assert (
            c.run("dpkg-query -W -f='${db:Status-Status}' nftables curl").stdout.count("installed")
            == 2
        )

    first = play("k3s.yml", [host], lab, keys, pdd, k3s_vars(airgap_bundle), {"k3s_token": token})
    assert first.ok and first.changed[host.name] >= 1

    with client(lab, host) as c:
        assert c.run("systemctl is-active k3s.service").stdout.strip() == "active"
        unit = c.get("/etc/systemd/system/k3s.service").decode()
        assert "ExecStart=/usr/local/bin/k3s server" in unit and "--cluster-init" not in unit
        assert "--tls-san api.lab.invalid" in unit
        token_stat = c.run(f"stat -c '%a %U' {TOKEN_FILE}").stdout.strip()
        token_sum = c.run(f"sha256sum {TOKEN_FILE}").stdout
        assert token_stat == "600 root"
        assert c.get(TOKEN_FILE).decode().strip() == token
        kubeconfig = c.get("/etc/rancher/k3s/k3s.yaml")
    status, body = kube_readyz(kubeconfig, host.address, tmp_path)
    assert status == 200 and body.strip() == "ok"

    # a re-run changes nothing and leaves the token file as it was
    again = play("k3s.yml", [host], lab, keys, pdd, k3s_vars(airgap_bundle), {"k3s_token": token})
    assert again.changed == {host.name: 0}
    prep_again = play("prepare-host.yml", [host], lab, keys, pdd)
    assert prep_again.changed == {host.name: 0}
    with client(lab, host) as c:
        assert c.run(f"sha256sum {TOKEN_FILE}").stdout == token_sum
        assert c.run("systemctl is-active k3s.service").stdout.strip() == "active"

    # the token never reached Ansible's artifacts, the inventory or the run folder
    for f in pdd.rglob("*"):
        if f.is_file():
            assert token.encode() not in f.read_bytes(), f"token leaked into {f}"

    # a different token is refused, not rotated
    with pytest.raises(PermanentError) as ei:
        play("k3s.yml", [host], lab, keys, pdd, k3s_vars(airgap_bundle),
             {"k3s_token": secrets.token_hex(24)})  # fmt: skip
    assert "Refuse to rotate the cluster token" in ei.value.message
    assert host.name in ei.value.message
    with client(lab, host) as c:
        assert c.run(f"sha256sum {TOKEN_FILE}").stdout == token_sum

    # teardown removes it all, and is itself idempotent
    down = play("teardown.yml", [host], lab, keys, pdd)
    assert down.ok and down.changed[host.name] >= 1
    with client(lab, host) as c:
        left = c.run(
            "ls /etc/systemd/system/k3s.service /usr/local/bin/k3s /var/lib/rancher/k3s "
            "/etc/rancher/k3s 2>/dev/null; systemctl is-active k3s.service",
            check=False,
        ).stdout.split()
        assert left == ["inactive"]
    assert play("teardown.yml", [host], lab, keys, pdd).changed == {host.name: 0}


def test_unreachable_host_is_transient(lab: Lab, lab_hosts: Any, tmp_path: Path) -> None:
    (host,) = lab_hosts(1)
    keys = verified_keys(lab, [host])
    host.net_down()
    try:
        with pytest.raises(TransientError) as ei:
            play("teardown.yml", [host], lab, keys, tmp_path / "run")
        assert host.name in ei.value.message and "unreachable" in ei.value.message
    finally:
        host.net_up()


def test_ansible_refuses_hosts_without_verified_key(
    lab: Lab, lab_hosts: Any, tmp_path: Path
) -> None:
    (host,) = lab_hosts(1)
    with pytest.raises(PermanentError, match="no verified SSH host key"):
        play("teardown.yml", [host], lab, [], tmp_path / "run")


def test_disk_gate_fast_passes_slow_fails(lab: Lab, lab_hosts: Any, tmp_path: Path) -> None:
    fast, slow = lab_hosts(2)
    etcd_dir = "/var/lib/rancher/k3s/server/db"
    fast.fast_disk(etcd_dir)
    slow.slow_disk(etcd_dir, iops=300)
    keys = verified_keys(lab, [fast, slow])
    results = tmp_path / "fio"
    res = play("disk-gate.yml", [fast, slow], lab, keys, tmp_path / "run",
               {"disk_gate_results_dir": str(results)})  # fmt: skip
    assert res.ok
    v_fast = judge_file(results / f"{fast.name}.json", host=fast.name)
    v_slow = judge_file(results / f"{slow.name}.json", host=slow.name)
    assert v_fast.ok and enforce(v_fast) is False
    assert not v_slow.ok, v_slow.summary()
    print(f"disk gate: fast {v_fast.summary()}; slow {v_slow.summary()}")
    with pytest.raises(PreflightError) as ei:
        enforce(v_slow)
    text = ei.value.format()
    assert slow.name in text and f"{v_slow.p99_ms:.2f} ms" in text and "10 ms threshold" in text
    assert ei.value.hint and "--accept-slow-disk" in ei.value.hint
    # the fio data file was cleaned up
    with client(lab, slow) as c:
        assert "etcd-gate" not in c.run(f"ls -A {etcd_dir}").stdout
        assert c.run("ls /var/tmp/drboot-disk-gate.json", check=False).rc != 0
    assert json.loads((results / f"{fast.name}.json").read_text())["jobs"][0]["jobname"] == (
        "etcd-gate"
    )


def test_k3s_ha_three_servers(
    lab: Lab, lab_hosts: Any, airgap_bundle: Path, tmp_path: Path
) -> None:
    hosts = lab_hosts(3)
    keys = verified_keys(lab, hosts)
    pdd = tmp_path / "run"
    token = secrets.token_hex(24)
    res = play("k3s.yml", hosts, lab, keys, pdd, k3s_vars(airgap_bundle), {"k3s_token": token})
    assert res.ok and all(res.changed[h.name] >= 1 for h in hosts)
    first = hosts[0]
    for i, h in enumerate(hosts):
        with client(lab, h) as c:
            unit = c.get("/etc/systemd/system/k3s.service").decode()
            if i == 0:
                assert "--cluster-init" in unit and "--server " not in unit
            else:
                assert f"--server https://{first.address}:6443" in unit
            kubeconfig = c.get("/etc/rancher/k3s/k3s.yaml")
        status, body = kube_readyz(kubeconfig, h.address, tmp_path)
        assert status == 200 and body.strip() == "ok"
    again = play("k3s.yml", hosts, lab, keys, pdd, k3s_vars(airgap_bundle), {"k3s_token": token})
    assert again.changed == {h.name: 0 for h in hosts}


def test_non_root_user_goes_through_sudo_n(lab: Lab, lab_hosts: Any) -> None:
    (host,) = lab_hosts(1)
    pub = Path(f"{lab.ssh_key_path}.pub").read_text()
    host.exec(
        "useradd -m -s /bin/sh ops && install -d -m 700 -o ops -g ops /home/ops/.ssh && "
        f"printf '%s\\n' '{pub.strip()}' > /home/ops/.ssh/authorized_keys && "
        "chown ops:ops /home/ops/.ssh/authorized_keys && "
        "echo 'ops ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/ops && chmod 440 /etc/sudoers.d/ops",
        check=True,
    )
    exp = HostKeyExpectation(provider_key=PublicKey.parse(host.host_public_key))
    with SSHClient(host.address, 22, "ops", lab.ssh_key_path, expected=exp, sudo=True) as c:
        assert c.run("id -u").stdout.strip() == "0"
        c.put_bytes(b"root-owned", "/etc/drboot-test", 0o600)
        assert c.run("stat -c '%a %U' /etc/drboot-test").stdout.strip() == "600 root"
        assert c.get("/etc/drboot-test") == b"root-owned"
    with SSHClient(host.address, 22, "ops", lab.ssh_key_path, expected=exp, sudo=False) as c:
        assert c.run("id -un").stdout.strip() == "ops"
    host.exec("rm /etc/sudoers.d/ops", check=True)
    with (
        SSHClient(host.address, 22, "ops", lab.ssh_key_path, expected=exp, sudo=True) as c,
        pytest.raises(PermanentError) as ei,
    ):
        c.run("true")
    assert ei.value.hint and "NOPASSWD" in ei.value.hint


def _tcp_connects(address: str, port: int, timeout: float = 3.0) -> bool:
    import socket

    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def test_firewall_allows_only_cluster_ports(lab: Lab, lab_hosts: Any, tmp_path: Path) -> None:
    """The nftables filter, applied in a lab host given CAP_NET_ADMIN (its own netns)."""
    (host,) = lab_hosts(1, extra_nspawn_args=["--capability=CAP_NET_ADMIN"])
    keys = verified_keys(lab, [host])
    pdd = tmp_path / "run"
    fw = {"prepare_host_firewall_in_container": True}
    assert play("prepare-host.yml", [host], lab, keys, pdd, fw).ok
    for port in (6443, 10250, 2379):
        host.exec(f"systemd-run --unit drb-listen-{port} python3 -m http.server {port}", check=True)
    wait_until(
        lambda: all(f":{port} " in host.exec("ss -ltn").stdout for port in (6443, 10250, 2379)),
        timeout=15, what="the three listeners",
    )  # fmt: skip
    # this test runner is the lab gateway: not a cluster node
    assert _tcp_connects(host.address, 6443), "API port must be open"
    assert _tcp_connects(host.address, 22), "ssh must be open"
    assert not _tcp_connects(host.address, 10250), "kubelet port open to a non-node"
    assert not _tcp_connects(host.address, 2379), "etcd port open to a non-server"
    # from the node itself (loopback) everything still works
    assert (
        host.exec(
            "python3 -c \"import socket; socket.create_connection(('127.0.0.1', 10250))\""
        ).returncode
        == 0
    )
    assert play("prepare-host.yml", [host], lab, keys, pdd, fw).changed == {host.name: 0}
