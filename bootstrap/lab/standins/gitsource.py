"""Resolve and check out git revisions for the Argo CD and Flux stand-ins (LAB SIMULATION).

Why it exists: both GitOps stand-ins poll a repository the way repo-server and
source-controller do: ask the remote which commit a ref points at (``git ls-remote``, cheap),
and only fetch a tree when that commit is new. Checkouts go through ``bootstrap.adapters.git``
(the GitPython boundary); ``ls-remote`` is a plain ``git`` subprocess. Checkouts are cached
per (url, commit) under one directory for the life of the process.

Over SSH both use the credentials the real controller would read from the cluster
(``Credentials``: the deploy key and known_hosts of the repository Secret / the GitRepository's
``secretRef``), with strict host key checking: a host missing from known_hosts, or a changed
host key, fails ("Host key verification failed"), as it does for Argo CD and Flux.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bootstrap.adapters import git as gitadapter
from bootstrap.errors import PermanentError, TransientError
from bootstrap.fsutil import write_atomic

_SHA = re.compile(r"^[0-9a-f]{40}$")


def normalise_url(url: str, repo_root: Path | None = None) -> str:
    """A URL git understands: file:// and absolute paths as is, relative paths under root."""
    if "://" in url or url.startswith("/") or re.match(r"^[\w.-]+@[\w.-]+:", url):
        return url
    return str((repo_root or Path.cwd()) / url)


@dataclass(frozen=True, repr=False)
class Credentials:
    """What the controller read from the cluster for one repo (never logged)."""

    ssh_private_key: str | None = None
    known_hosts: str | None = None

    def __repr__(self) -> str:
        return f"Credentials(key={'yes' if self.ssh_private_key else 'no'})"


NONE = Credentials()


def _is_ssh(url: str) -> bool:
    return url.startswith("ssh://") or bool(re.match(r"^[\w.-]+@[\w.-]+:", url))


@contextmanager
def credential_files(creds: Credentials, url: str) -> Iterator[tuple[str | None, str | None]]:
    """(key file, known_hosts file), 0600, gone afterwards. Over SSH the known_hosts file
    always exists (empty when the controller has none), so host checking stays strict."""
    if not _is_ssh(url):
        yield None, None
        return
    tmp = Path(tempfile.mkdtemp(prefix="drboot-standin-ssh-"))
    try:
        key = None
        if creds.ssh_private_key:
            key = str(write_atomic(tmp / "key", creds.ssh_private_key.rstrip("\n") + "\n"))
        known = str(write_atomic(tmp / "known_hosts", creds.known_hosts or ""))
        yield key, known
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ls_remote(url: str, ref: str, timeout: float = 30.0, creds: Credentials = NONE) -> str:
    """The commit ``ref`` (HEAD, branch, tag or full sha) points at in the remote ``url``."""
    if _SHA.match(ref):
        return ref
    with credential_files(creds, url) as (key, known):
        return _ls_remote(url, ref, timeout, gitadapter.ssh_command(key, known))


def _ls_remote(url: str, ref: str, timeout: float, ssh: str) -> str:
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_SSH_COMMAND=ssh)
    try:
        proc = subprocess.run(
            ["git", "ls-remote", "--", url, ref],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
        )
    except subprocess.TimeoutExpired:
        raise TransientError(f"git ls-remote timed out after {timeout:.0f}s", target=url) from None
    if proc.returncode != 0:
        raise gitadapter.classify_git_error(proc.stderr, url, ref)
    refs: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        sha, _, name = line.partition("\t")
        refs[name] = sha
    candidates = (
        ["HEAD"]
        if ref == "HEAD"
        else [f"refs/heads/{ref}", f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}", ref]
    )
    for name in candidates:
        if name in refs:
            return refs[name]
    raise PermanentError(
        f"revision {ref!r} does not exist in the repo",
        target=url,
        hint="check the branch/tag name in the Application or GitRepository",
    )


class CheckoutCache:
    """Trees of (url, commit) checked out once each, under ``root``."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root or tempfile.mkdtemp(prefix="drboot-standin-git-"))
        self._lock = threading.Lock()

    def checkout(self, url: str, sha: str, creds: Credentials = NONE) -> Path:
        """The work tree of ``url`` at ``sha`` (cloned on first use)."""
        key = hashlib.sha256(url.encode()).hexdigest()[:16]
        dest = self.root / key / sha
        with self._lock:
            if dest.is_dir():
                return dest
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".clone-", dir=dest.parent))
            try:
                with credential_files(creds, url) as (key_file, known):
                    gitadapter.clone(url, sha, tmp / "tree", key_file, known)
                os.replace(tmp / "tree", dest)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            return dest

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
