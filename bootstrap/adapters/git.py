"""The only module that imports GitPython: clone the config repo at a revision.

The restore and ``escrow verify`` need the GitOps repo on disk to find its
SealedSecrets. Git failures arrive as ``GitCommandError`` with stderr text; they
are translated here into ``PermanentError`` (auth refused, unknown revision) or
``TransientError`` (unreachable) with a hint. Key material is passed by file path
only, never on a command line or in a message.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from bootstrap.errors import BootstrapError, PermanentError, TransientError

_AUTH_MARKERS = (
    "permission denied",
    "authentication failed",
    "could not read username",
    "host key verification failed",
    "access denied",
    "repository not found",
)
_UNREACHABLE_MARKERS = (
    "could not resolve host",
    "connection refused",
    "connection timed out",
    "no route to host",
    "network is unreachable",
    "could not read from remote repository",
    "unable to access",
    "connection closed",
)
_NOT_A_REPO_MARKERS = ("does not appear to be a git repository", "not a git repository")


def ssh_command(ssh_key_file: str | None, known_hosts_file: str | None) -> str:
    """The GIT_SSH_COMMAND for a deploy key; strict host checking when known_hosts is given."""
    parts = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15"]
    if ssh_key_file:
        parts += ["-i", ssh_key_file, "-o", "IdentitiesOnly=yes"]
    if known_hosts_file:
        parts += [
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={known_hosts_file}",
        ]
    return " ".join(shlex.quote(p) for p in parts)


def classify_git_error(stderr: str, url: str, revision: str | None = None) -> BootstrapError:
    """Map git's stderr to an actionable error (pure; table-tested)."""
    low = stderr.lower()
    target = url
    if "host key verification failed" in low:
        return PermanentError(
            "git server host key is not in known_hosts (or changed)",
            target=target,
            hint="check the known_hosts in the recovery kit against the git server",
        )
    if any(m in low for m in _AUTH_MARKERS):
        return PermanentError(
            "git server refused the credentials",
            target=target,
            hint="check that the deploy key in the recovery kit is still registered on the repo",
        )
    if revision is not None and (
        "did not match any" in low
        or "unknown revision" in low
        or "needed a single revision" in low
        or "couldn't find remote ref" in low
        or "not a valid object" in low
    ):
        return PermanentError(
            f"revision {revision!r} does not exist in the repo",
            target=target,
            hint="check the revision (branch, tag or commit) in the site file",
        )
    if any(m in low for m in _NOT_A_REPO_MARKERS):
        return PermanentError(
            "URL is not a git repository",
            target=target,
            hint="check the repo URL in the site file",
        )
    if any(m in low for m in _UNREACHABLE_MARKERS):
        return TransientError(
            "git server unreachable",
            target=target,
            retry_after=10.0,
            hint="check the network path to the git server, then retry",
        )
    first = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
    return PermanentError(f"git failed: {first}", target=target)


def clone(
    url: str,
    revision: str,
    dest: str | os.PathLike[str],
    ssh_key_file: str | None = None,
    known_hosts_file: str | None = None,
) -> str:
    """Clone ``url`` into ``dest`` and check out ``revision`` detached; returns the commit sha.

    ``revision`` may be a branch, a tag or a commit. ``dest`` must not exist or be empty.
    """
    import git

    env = {
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_SSH_COMMAND": ssh_command(ssh_key_file, known_hosts_file),
    }
    dest_path = Path(dest)
    try:
        repo = git.Repo.clone_from(url, dest_path, env=env, no_checkout=True)
    except git.GitCommandError as exc:
        raise classify_git_error(str(exc.stderr or ""), url) from None
    sha = None
    for candidate in (f"origin/{revision}", revision):
        try:
            sha = repo.git.rev_parse("--verify", "--quiet", f"{candidate}^{{commit}}")
            break
        except git.GitCommandError:
            continue
    if not sha:
        raise classify_git_error(f"unknown revision {revision}", url, revision)
    try:
        repo.git.checkout("--detach", "--quiet", sha)
    except git.GitCommandError as exc:
        raise classify_git_error(str(exc.stderr or ""), url, revision) from None
    return str(sha).strip()
