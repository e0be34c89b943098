"""The lab's git forge: the config repo over SSH from a lab host, like GitHub or GitLab.

Why it exists: every real user gives drboot a ``git@host:org/repo.git`` URL, a deploy key and
the forge's known_hosts, and a wrong key or a changed host key must fail the way it does on a
real forge. So the demo's repo is not a ``file://`` path: a lab host named ``forge`` runs
sshd with a ``git`` account whose shell is ``git-shell`` (only git's own commands), the deploy
key in its ``authorized_keys``, and the bare repo ``platform-config.git``.

Design:

* the forge is a host of the site's own lab at a fixed host index (``FORGE_INDEX``), so its
  address follows from ``provider.subnet_index`` and the site file can name it before it
  exists: ``git@10.200.<N>.249:platform-config.git``. It is not one of the provider's k3s
  hosts (``LabHosts`` counts only ``server-*``/``agent-*``), and goes with ``lab down``;
* its SSH host key is made once and kept in ``<state_dir>/forge/`` (outside the lab), so the
  escrowed known_hosts stays right when the forge is re-created after a drill's teardown;
* the seed pushes the config repo to it over SSH with the deploy key and strict host key
  checking, as a developer pushes to a real forge. Both URL forms work: the scp-like
  ``git@host:platform-config.git`` (relative to git's home) and Flux's
  ``ssh://git@host/platform-config.git`` (an absolute path, linked to the same repo).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bootstrap.adapters.git import ssh_command
from bootstrap.errors import ConfigError, PermanentError
from bootstrap.fsutil import private_dir, write_atomic
from bootstrap.lab import net

if TYPE_CHECKING:
    from bootstrap.lab.hosts import Lab

FORGE_HOST = "forge"
FORGE_INDEX = net.MAX_HOSTS - 1  # the last host index: 10.200.N.249
REPO_NAME = "platform-config.git"
GIT_HOME = "/srv/git"
HOST_KEY = "ssh_host_ed25519_key"


def forge_address(subnet_index: int) -> str:
    return net.host_address(subnet_index, FORGE_INDEX)


def forge_url(subnet_index: int) -> str:
    """The scp-like URL of the demo repo on the forge of lab 10.200.<subnet_index>.0/24."""
    return f"git@{forge_address(subnet_index)}:{REPO_NAME}"


def keygen(path: Path, comment: str) -> None:
    """An ed25519 key pair at ``path`` (0600) and ``path``.pub, made once."""
    if path.exists() and Path(f"{path}.pub").exists():
        return
    private_dir(path.parent)
    for p in (path, Path(f"{path}.pub")):
        p.unlink(missing_ok=True)
    net.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            what=f"ssh key {path.name}")  # fmt: skip
    os.chmod(path, 0o600)


@dataclass(frozen=True)
class ForgeKeys:
    """The forge's identity and the deploy key, as the escrow needs them (no files kept for
    the deploy key's private half: it lives in the recovery kit)."""

    address: str
    host_key_dir: Path

    def known_hosts(self) -> str:
        """The known_hosts line a user would get from ``ssh-keyscan`` (and check)."""
        kind, blob = Path(f"{self.host_key_dir / HOST_KEY}.pub").read_text().split()[:2]
        return f"{self.address} {kind} {blob}\n"


def forge_keys(state_dir: Path, address: str) -> ForgeKeys:
    """The forge's host key (made once, kept under ``state_dir/forge``)."""
    d = state_dir / "forge"
    keygen(d / HOST_KEY, f"root@{FORGE_HOST}")
    return ForgeKeys(address, d)


def new_deploy_key() -> tuple[str, str]:
    """(private key in OpenSSH PEM form, public key line) of a new ed25519 deploy key."""
    with tempfile.TemporaryDirectory(prefix="drboot-deploy-key-") as tmp:
        path = Path(tmp) / "deploy_key"
        keygen(path, "drboot-demo-deploy-key")
        return path.read_text(), Path(f"{path}.pub").read_text().strip()


def public_of(private_key: str) -> str:
    """The public line of an OpenSSH private key (``ssh-keygen -y``)."""
    with private_key_file(private_key) as path:
        return net.run(["ssh-keygen", "-y", "-f", str(path)], what="deploy key").stdout.strip()


@contextmanager
def private_key_file(text: str) -> Iterator[Path]:
    """``text`` in a 0600 file that is gone afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="drboot-forge-"))
    try:
        yield write_atomic(tmp / "key", text.rstrip("\n") + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_SETUP = f"""set -e
export DEBIAN_FRONTEND=noninteractive
if ! command -v git-shell >/dev/null; then
  apt-get -q update >/dev/null
  apt-get -q install -y --no-install-recommends git >/dev/null
fi
grep -qx /usr/bin/git-shell /etc/shells || echo /usr/bin/git-shell >>/etc/shells
id git >/dev/null 2>&1 || useradd --system --home-dir {GIT_HOME} --create-home \\
  --shell /usr/bin/git-shell git
install -d -o git -g git -m 700 {GIT_HOME}/.ssh
if [ ! -d {GIT_HOME}/{REPO_NAME} ]; then
  git init -q --bare --initial-branch=main {GIT_HOME}/{REPO_NAME}
  chown -R git:git {GIT_HOME}/{REPO_NAME}
fi
ln -sfn {GIT_HOME}/{REPO_NAME} /{REPO_NAME}
# the link is root's, the repo git's: tell git that path is the repo it owns
git config --system --get-all safe.directory | grep -qx /{REPO_NAME} \\
  || git config --system --add safe.directory /{REPO_NAME}
cat >{GIT_HOME}/.ssh/authorized_keys
chown git:git {GIT_HOME}/.ssh/authorized_keys
chmod 600 {GIT_HOME}/.ssh/authorized_keys
"""


def ensure_forge(lab: Lab, keys: ForgeKeys, deploy_public: str) -> str:
    """Boot the forge host in ``lab`` with the kept host key, git-shell account and bare
    repo; authorise ``deploy_public`` (only). Returns its address."""
    if net.host_address(lab.index, FORGE_INDEX) != keys.address:
        raise ConfigError(
            f"the forge of lab {lab.name} is at {net.host_address(lab.index, FORGE_INDEX)}, "
            f"not {keys.address}",
            hint="repo.url must name the forge of the site's provider.subnet_index",
        )
    upper_ssh = lab.state_dir / "hosts" / FORGE_HOST / "upper" / "etc" / "ssh"
    if not (lab.state_dir / "hosts" / FORGE_HOST / "host.json").exists():
        # the kept host key, in place before first boot (the lab keeps a host key it finds)
        upper_ssh.mkdir(parents=True, exist_ok=True)
        os.chmod(upper_ssh, 0o755)
        for name, mode in ((HOST_KEY, 0o600), (f"{HOST_KEY}.pub", 0o644)):
            shutil.copyfile(keys.host_key_dir / name, upper_ssh / name)
            os.chmod(upper_ssh / name, mode)
    host = lab.create_host(FORGE_HOST, index=FORGE_INDEX)
    line = "no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-pty " + deploy_public
    res = host.exec(_SETUP, input=line + "\n", timeout=600)
    if res.returncode != 0:
        raise PermanentError(
            f"the lab forge could not be set up: {res.stderr.strip()[-400:]}",
            target=FORGE_HOST,
            hint="is apt-cacher-ng running on :3142 (it serves the forge's git package)?",
        )
    return host.address


def push(repo: Path, url: str, deploy_key: str, known_hosts: str) -> None:
    """Push ``repo``'s main to the forge over SSH with the deploy key, checking the host key."""
    with private_key_file(deploy_key) as key, private_key_file(known_hosts) as known:
        env = dict(os.environ, GIT_TERMINAL_PROMPT="0",
                   GIT_SSH_COMMAND=ssh_command(str(key), str(known)))  # fmt: skip
        proc = subprocess.run(
            ["git", "push", "--force", "--quiet", url, "HEAD:refs/heads/main"],
            cwd=repo, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    if proc.returncode != 0:
        raise PermanentError(
            f"push to the lab forge failed: {proc.stderr.strip()[-400:]}",
            target=url,
            hint="`drboot lab status SITE` (is the forge running?)",
        )
