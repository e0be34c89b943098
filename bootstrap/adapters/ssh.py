"""The SSH adapter: the only module that imports paramiko.

A restore drives hosts it has just created over links that may drop at any moment, so this
adapter is strict and quick to notice trouble: key-based login only (no passwords, no agent
unless asked), host keys verified through ``bootstrap.hostkeys`` (provider key, pinned
fingerprint, known_hosts, first use only on request), TCP keepalives plus SSH keepalives and
a TCP user timeout so a cut link fails a running command within seconds, and every paramiko
or socket error translated into ``TransientError`` / ``PermanentError`` / ``HostKeyMismatch``
that names ``user@host`` and what to do next. Key bytes never appear in errors or logs.
"""

from __future__ import annotations

import posixpath
import secrets
import select
import shlex
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from bootstrap.errors import BootstrapError, HostKeyMismatch, PermanentError, TransientError
from bootstrap.hostkeys import (
    HostKeyExpectation,
    PublicKey,
    TrustedKey,
    acceptable_key_types,
    decide,
)

if TYPE_CHECKING:
    import paramiko

DEFAULT_CONNECT_TIMEOUT = 15.0
DEFAULT_COMMAND_TIMEOUT = 300.0
KEEPALIVE_INTERVAL = 2  # seconds between SSH keepalive requests and TCP probes
KEEPALIVE_COUNT = 3  # unanswered TCP probes before the kernel drops the link
USER_TIMEOUT_MS = 8000  # unacknowledged data older than this kills the connection

_HOST_KEY_ALGORITHMS = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
    "ssh-rsa",
)


@dataclass(frozen=True)
class Result:
    """Outcome of one remote command."""

    rc: int
    stdout: str
    stderr: str


def _tail(text: str, n: int = 600) -> str:
    text = text.strip()
    return text if len(text) <= n else "..." + text[-n:]


def _make_policy(client: SSHClient) -> Any:
    import paramiko

    class _DecidePolicy(paramiko.MissingHostKeyPolicy):
        """Consults ``bootstrap.hostkeys.decide`` for every key (no key store is loaded)."""

        def missing_host_key(
            self, _client: paramiko.SSHClient, _hostname: str, key: paramiko.PKey
        ) -> None:
            seen = PublicKey(key.get_name(), key.asbytes())
            client._trusted = decide(client.host, client.port, seen, client.expected)

    return _DecidePolicy()


def _keepalive_socket(
    host: str, port: int, timeout: float, interval: int = KEEPALIVE_INTERVAL
) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for opt, val in (
        ("TCP_KEEPIDLE", interval),
        ("TCP_KEEPINTVL", interval),
        ("TCP_KEEPCNT", KEEPALIVE_COUNT),
        ("TCP_USER_TIMEOUT", max(USER_TIMEOUT_MS, interval * (KEEPALIVE_COUNT + 1) * 1000)),
    ):
        if hasattr(socket, opt):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), val)
    return sock


class SSHClient:
    """One verified, key-authenticated SSH session to a host.

    ``expected`` says which host key to trust; after connecting, ``trusted_key`` tells which
    key was accepted and why (``trusted_key.record`` is True for a first-use key the caller
    must record in the journal and the audit log).
    """

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        key_file: Path,
        *,
        expected: HostKeyExpectation,
        sudo: bool = True,
        allow_agent: bool = False,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
        keepalive_interval: float = KEEPALIVE_INTERVAL,
        step: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.user = user
        self.key_file = Path(key_file)
        self.expected = expected
        self.sudo = sudo and user != "root"
        self.allow_agent = allow_agent
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout  # a command given no timeout of its own
        self.keepalive_interval = max(1, round(keepalive_interval))  # SSH and TCP keepalives
        self.step = step
        self._client: paramiko.SSHClient | None = None
        self._trusted: TrustedKey | None = None

    def __repr__(self) -> str:
        return f"SSHClient({self.target}, key_file={str(self.key_file)!r})"

    @property
    def target(self) -> str:
        port = "" if self.port == 22 else f":{self.port}"
        return f"{self.user}@{self.host}{port}"

    @property
    def trusted_key(self) -> TrustedKey:
        if self._trusted is None:
            raise RuntimeError("not connected")
        return self._trusted

    # -- connection ---------------------------------------------------------------------

    def _transient(self, what: str, hint: str) -> TransientError:
        return TransientError(what, step=self.step, target=self.target, hint=hint)

    def _load_key(self) -> paramiko.PKey:
        import paramiko

        try:
            return paramiko.PKey.from_path(self.key_file)
        except FileNotFoundError:
            msg = f"SSH key file {self.key_file} does not exist"
        except PermissionError:
            msg = f"SSH key file {self.key_file} is not readable"
        except paramiko.PasswordRequiredException:
            msg = f"SSH key file {self.key_file} is passphrase-protected"
        except (paramiko.SSHException, ValueError, OSError) as exc:
            msg = f"SSH key file {self.key_file} cannot be loaded ({type(exc).__name__})"
        raise PermanentError(
            msg,
            step=self.step,
            target=self.target,
            hint="point the site file's ssh.private_key_file at an unencrypted private key (0600)",
        )

    def connect(self) -> Self:
        """Open the session (idempotent). Raises TransientError, PermanentError, HostKeyMismatch."""
        if self._client is not None:
            return self
        import paramiko

        pkey = self._load_key()
        types = acceptable_key_types(self.host, self.port, self.expected)
        disabled: dict[str, list[str]] = {}
        if types is not None:
            disabled["keys"] = [a for a in _HOST_KEY_ALGORITHMS if a not in types]
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(_make_policy(self))
        try:
            sock = _keepalive_socket(
                self.host, self.port, self.connect_timeout, self.keepalive_interval
            )
            client.connect(
                self.host,
                port=self.port,
                username=self.user,
                pkey=pkey,
                look_for_keys=False,
                allow_agent=self.allow_agent,
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
                channel_timeout=self.connect_timeout,
                sock=sock,
                disabled_algorithms=disabled or None,
            )
        except BootstrapError as exc:
            client.close()
            raise exc.located(step=self.step, target=self.target) from None
        except paramiko.AuthenticationException:
            client.close()
            raise PermanentError(
                f"SSH login refused for {self.target} with key {self.key_file}",
                step=self.step,
                target=self.target,
                hint=f"check that the public key of {self.key_file} is in "
                f"~{self.user}/.ssh/authorized_keys on {self.host}",
            ) from None
        except ConnectionRefusedError:
            client.close()
            raise self._transient(
                f"connection refused by {self.host}:{self.port}",
                "the host may still be booting (sshd not up); the step is retried",
            ) from None
        except TimeoutError:
            client.close()
            raise self._transient(
                f"timed out connecting to {self.host}:{self.port} after {self.connect_timeout:g}s",
                "check the host is running and reachable (firewall, route); the step is retried",
            ) from None
        except (EOFError, ConnectionError, paramiko.SSHException, OSError) as exc:
            client.close()
            raise self._transient(
                f"SSH connection to {self.host}:{self.port} failed during setup: "
                f"{type(exc).__name__}: {exc}",
                "the host may be booting or sshd restarting; the step is retried",
            ) from None
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(self.keepalive_interval)
        self._client = client
        return self

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> Self:
        return self.connect()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- commands -----------------------------------------------------------------------

    def _wrap(self, cmd: str) -> str:
        return f"sudo -n -- sh -c {shlex.quote(cmd)}" if self.sudo else cmd

    def _lost(self, what: str) -> TransientError:
        self.close()
        return self._transient(
            f"SSH connection to {self.host} lost while {what}",
            "the link or the host went down; the step is retried when it is back",
        )

    def _exec(
        self, cmd: str, timeout: float, stdin: bytes | None, label: str
    ) -> tuple[int, bytes, bytes]:
        import paramiko

        client = self.connect()._client
        assert client is not None
        transport = client.get_transport()
        if transport is None or not transport.is_active():
            raise self._lost(f"starting {label}")
        try:
            chan = transport.open_session(timeout=self.connect_timeout)
            chan.exec_command(self._wrap(cmd))
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
        except (paramiko.SSHException, EOFError, OSError):
            raise self._lost(f"starting {label}") from None
        out: list[bytes] = []
        err: list[bytes] = []
        deadline = time.monotonic() + timeout
        try:
            while True:
                while chan.recv_ready():
                    out.append(chan.recv(65536))
                while chan.recv_stderr_ready():
                    err.append(chan.recv_stderr(65536))
                if (
                    chan.exit_status_ready()
                    and not chan.recv_ready()
                    and not (chan.recv_stderr_ready())
                ):
                    break
                if not transport.is_active():
                    raise self._lost(f"running {label}")
                if time.monotonic() > deadline:
                    chan.close()
                    raise self._transient(
                        f"{label} did not finish within {timeout:g}s",
                        "the command is still running on the host; check it there, or raise "
                        "the step timeout",
                    )
                select.select([chan], [], [], 0.2)
            rc = chan.recv_exit_status()
        except (paramiko.SSHException, EOFError, OSError):
            raise self._lost(f"running {label}") from None
        finally:
            chan.close()
        if rc == -1:  # the server closed the channel without an exit status
            raise self._lost(f"running {label}")
        return rc, b"".join(out), b"".join(err)

    def run(
        self,
        cmd: str,
        timeout: float | None = None,
        check: bool = True,
        *,
        stdin: bytes | None = None,
        label: str | None = None,
    ) -> Result:
        """Run a shell command (through ``sudo -n`` unless logged in as root).

        Pass secrets via ``stdin``, never in ``cmd``: ``cmd`` (or ``label``) appears in errors.
        ``check`` raises ``PermanentError`` on a non-zero exit status.
        """
        label = label or f"`{cmd if len(cmd) <= 120 else cmd[:117] + '...'}`"
        rc, out, err = self._exec(
            cmd, self.command_timeout if timeout is None else timeout, stdin, label
        )
        res = Result(rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))
        if check and rc != 0:
            hint = "fix the cause on the host (the output is quoted above), then resume"
            if self.sudo and "sudo:" in res.stderr and "password" in res.stderr:
                hint = f"give {self.user} passwordless sudo (NOPASSWD) on {self.host}"
            raise PermanentError(
                f"{label} exited with status {rc}: "
                f"{_tail(res.stderr) or _tail(res.stdout) or '(no output)'}",
                step=self.step,
                target=self.target,
                hint=hint,
            )
        return res

    # -- files ----------------------------------------------------------------------------

    def put_bytes(self, data: bytes, remote: str, mode: int = 0o600) -> None:
        """Write ``data`` to ``remote`` atomically (tmp, chmod, fsync, rename) with ``mode``.

        The content travels over stdin, so it may be a secret.
        """
        tmp = posixpath.join(
            posixpath.dirname(remote) or ".",
            f".{posixpath.basename(remote)}.drboot-{secrets.token_hex(4)}",
        )
        script = (
            f"umask 077 && cat > {shlex.quote(tmp)} && chmod {mode:o} {shlex.quote(tmp)} && "
            f"sync {shlex.quote(tmp)} && mv -f {shlex.quote(tmp)} {shlex.quote(remote)} || "
            f"{{ rc=$?; rm -f {shlex.quote(tmp)}; exit $rc; }}"
        )
        self.run(script, stdin=data, label=f"writing {remote}")

    def put(self, local: Path, remote: str, mode: int = 0o644) -> None:
        """Copy a local file to ``remote`` atomically with ``mode``."""
        try:
            data = Path(local).read_bytes()
        except OSError as exc:
            raise PermanentError(
                f"cannot read local file {local}: {exc.strerror}",
                step=self.step,
                target=self.target,
            ) from None
        self.put_bytes(data, remote, mode)

    def get(self, remote: str, timeout: float = 60.0) -> bytes:
        """Read a remote file (through sudo when needed)."""
        label = f"reading {remote}"
        rc, out, err = self._exec(f"cat -- {shlex.quote(remote)}", timeout, None, label)
        if rc != 0:
            raise PermanentError(
                f"{label} failed: {_tail(err.decode('utf-8', 'replace'))}",
                step=self.step,
                target=self.target,
                hint="check the path exists on the host (is the service installed?)",
            )
        return out


def scan_host_key(host: str, port: int = 22, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> PublicKey:
    """Fetch the key a server presents, without trusting it (for tests and ``drboot hosts``)."""
    import paramiko

    try:
        sock = _keepalive_socket(host, port, timeout)
        transport = paramiko.Transport(sock)
        try:
            transport.start_client(timeout=timeout)
            key = transport.get_remote_server_key()
        finally:
            transport.close()
    except (OSError, EOFError, paramiko.SSHException) as exc:
        raise TransientError(
            f"cannot read the SSH host key of {host}:{port}: {type(exc).__name__}: {exc}",
            target=f"{host}:{port}",
            hint="check the host is up and sshd listens",
        ) from None
    return PublicKey(key.get_name(), key.asbytes())


__all__ = [
    "HostKeyExpectation",
    "HostKeyMismatch",
    "Result",
    "SSHClient",
    "TrustedKey",
    "scan_host_key",
]
