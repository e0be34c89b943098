"""The bad-input table: each case is a command line an operator could type (or a site file, an
escrow, a repo or a host they could point drboot at), the exit code the README documents for it
and words its message must hold. None may end in exit 70 (an internal error) or a traceback.

The rows run the real ``drboot`` command (click's ``CliRunner``) against real things: a lab seed
(a git config repo holding a SealedSecret, an age bundle), Shamir splits of its kit, real git,
and, for the SSH rows, a real SSH server on loopback (``tests/badinput/sshserver.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tests.badinput.world import BINARY, World, closed_port


@dataclass(frozen=True)
class Case:
    name: str
    group: str
    argv: Callable[[World], list[str]]
    code: int  # the documented exit code
    words: str  # the message must hold these words
    stops_at: str | None = None  # restore rows: the step that fails; no later step runs
    serves: bool = False  # the control row: the SSH server may accept a login


PATHS = "files, paths and the state directory"
ESCROW = "escrow matrix"
GIT = "config repo"
HOSTKEY = "SSH host key"


def _verify(site: Callable[[World], str]) -> Callable[[World], list[str]]:
    return lambda w: ["escrow", "verify", site(w)]


def _restore(site: Callable[[World], str]) -> Callable[[World], list[str]]:
    return lambda w: ["restore", site(w)]


def _kc(w: World, data: bytes = b"apiVersion: v1\n") -> str:
    return w.file("kc", data)


# ------------------------------------------------------------------ files, paths, state dir

CASES: list[Case] = [
    Case("identity file is a directory", PATHS,
         lambda w: ["escrow", "verify", w.identity(w.dir("idd"))], 3, "is a directory"),
    Case("identity file is binary", PATHS,
         lambda w: ["escrow", "verify", w.identity(w.file("idb", BINARY))], 3,
         "is not a text file"),
    Case("share file is a directory", PATHS,
         lambda w: ["escrow", "verify", w.shamir([w.lab.split_a[1][0], w.dir("shared")])], 3,
         "is a directory"),
    Case("share file is binary", PATHS,
         lambda w: ["escrow", "verify", w.shamir([w.lab.split_a[1][0], w.file("shb", BINARY)])],
         3, "is not a text file"),
    Case("bundle path runs through a file", PATHS,
         lambda w: ["escrow", "verify", w.site(bundle=w.file("plain") + "/kit.age")], 3,
         "Not a directory"),
    Case("bundle path too long", PATHS,
         lambda w: ["escrow", "verify", w.site(bundle="b" * 5000)], 3, "File name too long"),
    Case("bundle path holds a NUL", PATHS,
         lambda w: ["escrow", "verify", w.site(bundle="kit\\0.age")], 3, "NUL"),
    Case("escrow verify: passphrase file missing", PATHS,
         lambda w: ["escrow", "verify", w.passphrase(w.tmp / "no-such-passphrase")], 3,
         "no-such-passphrase is not readable"),
    Case("escrow status: passphrase file missing", PATHS,
         lambda w: ["escrow", "status", w.passphrase(w.tmp / "no-such-passphrase")], 3,
         "no-such-passphrase is not readable"),
    Case("escrow backup: --k3s-token-file missing", PATHS,
         lambda w: ["escrow", "backup", w.site(), "--kubeconfig", _kc(w),
                    "--k3s-token-file", str(w.tmp / "no-token")], 2, "does not exist"),
    Case("escrow backup: --k3s-token-file binary", PATHS,
         lambda w: ["escrow", "backup", w.site(), "--kubeconfig", _kc(w),
                    "--k3s-token-file", w.file("tok", BINARY)], 2, "--k3s-token-file"),
    Case("escrow backup: kubeconfig missing", PATHS,
         lambda w: ["escrow", "backup", w.site(), "--kubeconfig", str(w.tmp / "no-kc")], 2,
         "does not exist"),
    Case("escrow backup: kubeconfig is not a kubeconfig", PATHS,
         lambda w: ["escrow", "backup", w.site(), "--kubeconfig", _kc(w, b"hello: 1\n")], 2,
         "not a usable kubeconfig"),
    Case("escrow status: kubeconfig is broken YAML", PATHS,
         lambda w: ["escrow", "status", w.site(), "--kubeconfig",
                    _kc(w, b"{{{ not: yaml ::\n  - [")], 2, "is not valid YAML at line 1"),
    Case("init into a path under a file", PATHS,
         lambda w: ["init", w.file("plain") + "/site.yaml"], 2, "a part of the path is a file"),
    Case("--state-dir is a file", PATHS,
         lambda w: ["--state-dir", w.file("statefile"), "status"], 2, "is not a directory"),
    Case("--state-dir runs through a file", PATHS,
         lambda w: ["--state-dir", w.file("statefile") + "/state", "status"], 2,
         "Not a directory"),
    Case("validate /dev/zero", PATHS, lambda w: ["validate", "/dev/zero"], 2, "larger than"),
    Case("validate a binary file", PATHS,
         lambda w: ["validate", w.file("bin.yaml", BINARY)], 2, "not UTF-8"),
]  # fmt: skip

# ------------------------------------------------------------------ the escrow matrix
# Each escrow fault, through `escrow verify` and through a restore (its preflight-escrow step
# refuses before any host is touched).

_ESCROW_FAULTS: list[tuple[str, Callable[[World], str], str]] = [
    ("wrong passphrase",
     lambda w: w.passphrase(w.lab.wrong_passphrase, w.lab.passphrase_bundle),
     "passphrase rejected"),
    ("wrong age identity",
     lambda w: w.identity(w.lab.wrong_identity),
     "none of the identities"),
    ("truncated kit",
     lambda w: w.site(bundle=str(w.damaged("kit.age", "truncated"))),
     "truncated"),
    ("byte-flipped kit",
     lambda w: w.site(bundle=str(w.damaged("kit.age", "flipped"))),
     "corrupted"),
    ("too few Shamir shares (1 of 2 needed)",
     lambda w: w.shamir([w.lab.split_a[1][0], w.tmp / "custodian-2-absent.share"]),
     "1 distinct valid share(s) for"),
    ("Shamir shares from two different splits",
     lambda w: w.shamir([w.lab.split_a[1][0], w.lab.split_b[1][1]]),
     "belongs to split"),
]  # fmt: skip

for _what, _site, _words in _ESCROW_FAULTS:
    CASES.append(Case(f"escrow verify: {_what}", ESCROW, _verify(_site), 3, _words))
for _what, _site, _words in _ESCROW_FAULTS:
    CASES.append(Case(f"restore: {_what}", ESCROW, _restore(_site), 3, _words,
                      stops_at="preflight-escrow"))  # fmt: skip

# ------------------------------------------------------------------ the config repo


def _ssh_git(w: World, *, accepted: bool = True, right_host_key: bool = True) -> str:
    """A site whose repo is ``ssh://git@127.0.0.1:PORT/config.git`` on a loopback SSH git
    server that accepts only the lab's deploy key."""
    lab = w.lab
    srv = w.server(lab.git_host_key, allowed=(lab.deploy_key.public,))
    key = lab.deploy_key if accepted else lab.other_deploy_key
    known = lab.git_host_key if right_host_key else lab.other_host_key
    return w.site(url=f"ssh://git@127.0.0.1:{srv.port}/config.git",
                  repo_extra=w.ssh_repo(srv.port, key=key, known=known))  # fmt: skip


def _unreachable(w: World) -> str:
    port = closed_port()
    extra = w.ssh_repo(port, key=w.lab.deploy_key, known=w.lab.git_host_key)
    return w.site(url=f"ssh://git@127.0.0.1:{port}/config.git", repo_extra=extra)


CASES += [
    Case("escrow verify: unknown revision", GIT,
         _verify(lambda w: w.site(revision="no-such-branch")), 3,
         "revision 'no-such-branch' does not exist in the repo"),
    Case("restore: unknown revision", GIT,
         _restore(lambda w: w.site(revision="no-such-branch")), 3,
         "revision 'no-such-branch' does not exist in the repo", stops_at="preflight-escrow"),
    Case("escrow verify: repo path that does not exist", GIT,
         _verify(lambda w: w.site(url=f"file://{w.tmp}/no-such-repo")), 3,
         "is not a git repository"),
    Case("escrow verify: unreachable repo (nothing listens on the port)", GIT,
         _verify(_unreachable), 3, "git server unreachable"),
    Case("restore: unreachable repo (nothing listens on the port)", GIT,
         _restore(_unreachable), 3, "git server unreachable", stops_at="preflight-escrow"),
    Case("escrow verify: deploy key accepted (control: the SSH git server works)", GIT,
         _verify(_ssh_git), 0, "1/1 SealedSecrets open", serves=True),
    Case("escrow verify: deploy key without access", GIT,
         _verify(lambda w: _ssh_git(w, accepted=False)), 3,
         "git server refused the credentials"),
    Case("restore: deploy key without access", GIT,
         _restore(lambda w: _ssh_git(w, accepted=False)), 3,
         "git server refused the credentials", stops_at="preflight-escrow"),
    Case("escrow verify: git server host key changed", GIT,
         _verify(lambda w: _ssh_git(w, right_host_key=False)), 3,
         "host key is not in known_hosts (or changed)"),
    Case("restore: git server host key changed", GIT,
         _restore(lambda w: _ssh_git(w, right_host_key=False)), 3,
         "host key is not in known_hosts (or changed)", stops_at="preflight-escrow"),
]  # fmt: skip

# ------------------------------------------------------------------ the hosts' SSH host keys


def _pinned_other(w: World) -> list[str]:
    srv = w.server(w.lab.host_key, allowed=(w.lab.ssh_login.public,))
    pin = f", host_key_fingerprint: '{w.lab.other_host_key.fingerprint}'"
    return ["restore", w.site(ssh_port=srv.port, pin=pin)]


def _known_other_tofu(w: World) -> list[str]:
    srv = w.server(w.lab.host_key, allowed=(w.lab.ssh_login.public,))
    kh = w.tmp / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{srv.port} {w.lab.other_host_key.public}\n")
    return ["restore", "--trust-on-first-use",
            w.site(ssh_port=srv.port, ssh_extra=f"\n  known_hosts_file: {kh}")]  # fmt: skip


CASES += [
    Case("restore: host key differs from the pinned fingerprint", HOSTKEY, _pinned_other, 4,
         "differs from the pinned key", stops_at="connect"),
    Case("restore --trust-on-first-use: host key differs from known_hosts", HOSTKEY,
         _known_other_tofu, 4, "differs from the known_hosts key", stops_at="connect"),
]  # fmt: skip

assert len({c.name for c in CASES}) == len(CASES), "case names must be unique"
