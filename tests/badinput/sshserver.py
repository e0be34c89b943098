"""A real SSH server on loopback, for the rows that need one: a git server that refuses a deploy
key, and a host whose host key is not the one drboot was told to expect.

No sshd is installed on the test machine, so this is paramiko's server side speaking the real
SSH protocol to the real clients drboot uses (OpenSSH's ``ssh`` under git, paramiko for hosts).
It is a small stand-in for a git hosting server, said to be one: it accepts only the public keys
it is given, and on ``git-upload-pack '<path>'`` runs the real ``git-upload-pack`` on a local
repository, so a clone with an accepted key really works (the control row). It records what
each client did: the keys offered, whether one was accepted, the commands run.
"""

from __future__ import annotations

import contextlib
import shlex
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


@dataclass(frozen=True)
class KeyPair:
    """An Ed25519 key: the OpenSSH private key file and its public line."""

    private: Path
    public: str  # "ssh-ed25519 AAAA..."

    @classmethod
    def generate(cls, path: Path) -> KeyPair:
        key = Ed25519PrivateKey.generate()
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.OpenSSH,
                                           serialization.NoEncryption()))  # fmt: skip
        path.chmod(0o600)
        pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                            serialization.PublicFormat.OpenSSH)  # fmt: skip
        return cls(path, pub.decode())

    @property
    def fingerprint(self) -> str:
        from bootstrap.hostkeys import PublicKey

        return PublicKey.parse(self.public).fingerprint


@dataclass
class Seen:
    """What clients did on the server."""

    offered: list[str] = field(default_factory=list)  # public key fingerprints offered
    accepted: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if not self.offered and not self.commands:
            return "no login attempted, no command run"
        return (f"{len(self.offered)} key(s) offered, {len(self.accepted)} accepted, "
                f"{len(self.commands)} command(s) run")  # fmt: skip


class _Iface(paramiko.ServerInterface):
    def __init__(self, server: SSHServer) -> None:
        self.server = server
        self.exec_done = threading.Event()

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        fp = key.fingerprint
        self.server.seen.offered.append(fp)
        if f"{key.get_name()} {key.get_base64()}" in self.server.allowed:
            self.server.seen.accepted.append(fp)
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        cmd = command.decode()
        self.server.seen.commands.append(cmd)
        argv = shlex.split(cmd)
        if len(argv) != 2 or argv[0] != "git-upload-pack":
            return False
        repo = self.server.repos.get(argv[1].lstrip("/"))
        if repo is None:
            return False
        threading.Thread(target=_upload_pack, args=(channel, repo), daemon=True).start()
        return True


def _upload_pack(channel: paramiko.Channel, repo: Path) -> None:
    """Run the real git-upload-pack with the channel as its stdin/stdout."""
    proc = subprocess.Popen(["git-upload-pack", str(repo)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None

    def pump_in() -> None:
        assert proc.stdin is not None
        while data := channel.recv(65536):
            try:
                proc.stdin.write(data)
                proc.stdin.flush()
            except BrokenPipeError:
                break
        proc.stdin.close()

    threading.Thread(target=pump_in, daemon=True).start()
    while data := proc.stdout.read1(65536):
        channel.sendall(data)
    channel.send_exit_status(proc.wait())
    channel.close()


class SSHServer:
    """Listens on 127.0.0.1 (an ephemeral port) until closed; one thread per connection."""

    def __init__(self, host_key: KeyPair, *, allowed: tuple[str, ...] = (),
                 repos: dict[str, Path] | None = None) -> None:  # fmt: skip
        self.host_key = paramiko.Ed25519Key.from_private_key_file(str(host_key.private))
        self.allowed = {" ".join(a.split()[:2]) for a in allowed}
        self.repos = repos or {}
        self.seen = Seen()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self.port = int(self._sock.getsockname()[1])
        self._transports: list[paramiko.Transport] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        t = paramiko.Transport(conn)
        t.add_server_key(self.host_key)
        self._transports.append(t)
        try:
            t.start_server(server=_Iface(self))
        except (paramiko.SSHException, EOFError, OSError):
            t.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._sock.close()
        for t in self._transports:
            t.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SSHServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
