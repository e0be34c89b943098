"""Resolve and check out git revisions for the Argo CD and Flux stand-ins (LAB SIMULATION).

Why it exists: both GitOps stand-ins poll a repository the way repo-server and
source-controller do: ask the remote which commit a ref points at (``git ls-remote``, cheap),
and only fetch a tree when that commit is new. Checkouts go through ``bootstrap.adapters.git``
(the GitPython boundary); ``ls-remote`` is a plain ``git`` subprocess. Checkouts are cached
per (url, commit) under one directory for the life of the process.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from bootstrap.adapters import git as gitadapter
from bootstrap.errors import PermanentError, TransientError

_SHA = re.compile(r"^[0-9a-f]{40}$")


def normalise_url(url: str, repo_root: Path | None = None) -> str:
    """A URL git understands: file:// and absolute paths as is, relative paths under root."""
    if "://" in url or url.startswith("/") or re.match(r"^[\w.-]+@[\w.-]+:", url):
        return url
    return str((repo_root or Path.cwd()) / url)


def ls_remote(url: str, ref: str, timeout: float = 30.0) -> str:
    """The commit ``ref`` (HEAD, branch, tag or full sha) points at in the remote ``url``."""
    if _SHA.match(ref):
        return ref
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
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

    def checkout(self, url: str, sha: str) -> Path:
        """The work tree of ``url`` at ``sha`` (cloned on first use)."""
        key = hashlib.sha256(url.encode()).hexdigest()[:16]
        dest = self.root / key / sha
        with self._lock:
            if dest.is_dir():
                return dest
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".clone-", dir=dest.parent))
            try:
                gitadapter.clone(url, sha, tmp / "tree")
                os.replace(tmp / "tree", dest)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            return dest

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
