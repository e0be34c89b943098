"""The lab's controller stand-ins as one background process beside a lab cluster.

Why it exists: the stand-ins (Sealed Secrets, Argo CD, Flux) must keep running between drboot
processes for as long as the lab cluster exists, like the real controllers would; a run that
opens its cluster client starts them if they are not running, teardown stops them. The
process holds a copy of the lab cluster's kubeconfig (0600) in the lab's state folder for as
long as it runs; ``stop`` removes it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from bootstrap.errors import PermanentError
from bootstrap.fsutil import write_atomic

PIDFILE = "standins.pid"
CERT_PORT = "standins.cert-port"
KUBECONFIG = "standins.kubeconfig"
LOG = "standins.log"
READY = "standins.ready"
START_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class StandinProcess:
    """The stand-ins process of the lab whose state lives in ``state_dir``."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    @property
    def log(self) -> Path:
        return self.state_dir / LOG

    def pid(self) -> int | None:
        """The live process's pid, or None."""
        try:
            pid = int((self.state_dir / PIDFILE).read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def start(self, kubeconfig: Path) -> bool:
        """Start the stand-ins against the cluster ``kubeconfig`` points at; False if running.

        Returns once the process says its controller threads run (it writes the ready file),
        or raises naming the log.
        """
        if self.pid() is not None:
            return False
        ready = self.state_dir / READY
        ready.unlink(missing_ok=True)
        kc = write_atomic(self.state_dir / KUBECONFIG, kubeconfig.read_bytes())
        port = _free_port()
        write_atomic(self.state_dir / CERT_PORT, str(port), mode=0o644)
        with self.log.open("ab") as fh:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bootstrap.lab.standins",
                    "--kubeconfig",
                    str(kc),
                    "--repo-root",
                    str(self.state_dir),
                    "--cert-port",
                    str(port),
                    "--ready-file",
                    str(ready),
                ],
                stdout=fh,
                stderr=fh,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=str(Path(__file__).resolve().parents[3]),
            )
        write_atomic(self.state_dir / PIDFILE, str(proc.pid), mode=0o644)
        deadline = time.monotonic() + START_TIMEOUT
        while not ready.exists():
            if proc.poll() is not None:
                raise PermanentError(
                    f"lab stand-ins exited at once (code {proc.returncode})",
                    target="lab",
                    hint=f"read {self.log}",
                )
            if time.monotonic() > deadline:
                raise PermanentError(
                    f"lab stand-ins did not answer within {START_TIMEOUT:.0f}s",
                    target="lab",
                    hint=f"read {self.log}",
                )
            time.sleep(0.1)
        return True

    def cert(self) -> bytes | None:
        """The Sealed Secrets stand-in's certificate from loopback, or None if it does not
        answer (yet)."""
        try:
            port = int((self.state_dir / CERT_PORT).read_text())
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/cert.pem", timeout=5) as r:
                body: bytes = r.read()
                return body
        except (OSError, ValueError, urllib.error.URLError):
            return None

    def stop(self) -> bool:
        """Stop the process (if running) and drop its copy of the cluster credentials."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except OSError:
                    break
                time.sleep(0.1)
        for name in (PIDFILE, KUBECONFIG, READY):
            (self.state_dir / name).unlink(missing_ok=True)
        return pid is not None
