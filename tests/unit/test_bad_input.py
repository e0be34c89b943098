"""Plausible bad input, as a table: each row is a command line an operator could type, the exit
code the README documents for it, and words the message must hold. None may end in exit 70
(an internal error) or a traceback.

The escrow rows run against a real age bundle and config repo (``bootstrap.lab.seed``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from bootstrap.cli import Deps, cli
from bootstrap.escrow import age_file, shamir
from bootstrap.lab.seed import OVERLAY, Seed, seed

SITE = """\
apiVersion: drboot.dev/v1
name: badinput
provider:
  type: static
  hosts:
    - name: h1
      address: 127.0.0.1
ssh:
  private_key_file: {ssh_key}
repo:
  url: file://{repo}
  path: {path}
escrow:
{escrow}
"""


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seed:
    return seed(tmp_path_factory.mktemp("lab"), "badinput", key_bits=2048)


@dataclass(frozen=True)
class World:
    """What a row builds its command line from."""

    tmp: Path
    seed: Seed

    def site(self, *, bundle: str | None = None, escrow: str | None = None) -> str:
        key = self.tmp / "id_ed25519"
        key.write_text("not used: no host is contacted\n")
        key.chmod(0o600)
        path = self.tmp / "site.yaml"
        path.write_text(
            SITE.format(
                ssh_key=key,
                repo=self.seed.repo,
                path=OVERLAY,
                escrow=escrow
                or "  backend: age\n"
                f'  bundle: "{bundle if bundle is not None else self.seed.bundle}"\n'
                f"  identity_files: [{self.seed.identity}]",
            )
        )
        return str(path)

    def file(self, name: str, data: bytes = b"x\n") -> str:
        path = self.tmp / name
        path.write_bytes(data)
        return str(path)

    def dir(self, name: str) -> str:
        path = self.tmp / name
        path.mkdir()
        return str(path)

    def identity(self, where: str) -> str:
        return self.site(escrow=f"  backend: age\n  bundle: {self.seed.bundle}\n"
                                f"  identity_files: [{where}]")  # fmt: skip

    def passphrase(self, where: str) -> str:
        return self.site(escrow=f"  backend: age\n  bundle: {self.seed.bundle}\n"
                                f"  passphrase: {{file: {where}}}")  # fmt: skip

    def shamir(self, broken: str) -> str:
        """A real 2-of-3 split of the seed's kit; the second share path is ``broken``."""
        kit = age_file.read_kit(self.seed.bundle, identity_files=[self.seed.identity])
        shares = [self.tmp / f"s{i}.share" for i in (1, 2, 3)]
        shamir.write_kit(self.tmp / "kit.shamir", kit, shares, threshold=2)
        return self.site(
            escrow=f"  backend: shamir\n  bundle: {self.tmp / 'kit.shamir'}\n"
            f"  shares: [{shares[0]}, {broken}]\n  threshold: 2\n  total: 3"
        )


BINARY = bytes(range(256)) * 4
Row = tuple[str, Callable[[World], list[str]], int, str]

ROWS: list[Row] = [
    (
        "identity file is a directory",
        lambda w: ["escrow", "verify", w.identity(w.dir("idd"))],
        3,
        "is a directory",
    ),
    (
        "identity file is binary",
        lambda w: ["escrow", "verify", w.identity(w.file("idb", BINARY))],
        3,
        "is not a text file",
    ),
    (
        "share file is a directory",
        lambda w: ["escrow", "verify", w.shamir(w.dir("shared"))],
        3,
        "is a directory",
    ),
    (
        "share file is binary",
        lambda w: ["escrow", "verify", w.shamir(w.file("shb", BINARY))],
        3,
        "is not a text file",
    ),
    (
        "bundle path runs through a file",
        lambda w: ["escrow", "verify", w.site(bundle=w.file("plain") + "/kit.age")],
        3,
        "Not a directory",
    ),
    (
        "bundle path too long",
        lambda w: ["escrow", "verify", w.site(bundle="b" * 5000)],
        3,
        "File name too long",
    ),
    (
        "bundle path holds a NUL",
        lambda w: ["escrow", "verify", w.site(bundle="kit\\0.age")],
        3,
        "NUL",
    ),
    (
        "escrow verify: passphrase file missing",
        lambda w: [
            "escrow",
            "verify",
            w.passphrase(f"{w.tmp}/no-such-passphrase"),
        ],
        3,
        "no-such-passphrase is not readable",
    ),
    (
        "escrow status: passphrase file missing",
        lambda w: [
            "escrow",
            "status",
            w.passphrase(f"{w.tmp}/no-such-passphrase"),
        ],
        3,
        "no-such-passphrase is not readable",
    ),
    (
        "escrow backup: --k3s-token-file missing",
        lambda w: [
            "escrow",
            "backup",
            w.site(),
            "--kubeconfig",
            w.file("kc", b"apiVersion: v1\n"),
            "--k3s-token-file",
            str(w.tmp / "no-token"),
        ],
        2,
        "does not exist",
    ),
    (
        "escrow backup: --k3s-token-file binary",
        lambda w: [
            "escrow",
            "backup",
            w.site(),
            "--kubeconfig",
            w.file("kc", b"apiVersion: v1\n"),
            "--k3s-token-file",
            w.file("tok", BINARY),
        ],
        2,
        "--k3s-token-file",
    ),
    (
        "escrow backup: kubeconfig missing",
        lambda w: ["escrow", "backup", w.site(), "--kubeconfig", str(w.tmp / "no-kc")],
        2,
        "does not exist",
    ),
    (
        "escrow backup: kubeconfig is not a kubeconfig",
        lambda w: ["escrow", "backup", w.site(), "--kubeconfig", w.file("kc", b"hello: 1\n")],
        2,
        "not a usable kubeconfig",
    ),
    (
        "escrow status: kubeconfig is broken YAML",
        lambda w: [
            "escrow",
            "status",
            w.site(),
            "--kubeconfig",
            w.file("kc", b"{{{ not: yaml ::\n  - ["),
        ],
        2,
        "is not valid YAML at line 1",
    ),
    (
        "init into a path under a file",
        lambda w: ["init", w.file("plain") + "/site.yaml"],
        2,
        "a part of the path is a file",
    ),
    (
        "--state-dir is a file",
        lambda w: ["--state-dir", w.file("statefile"), "status"],
        2,
        "is not a directory",
    ),
    (
        "--state-dir runs through a file",
        lambda w: ["--state-dir", w.file("statefile") + "/state", "status"],
        2,
        "Not a directory",
    ),
    (
        "validate /dev/zero",
        lambda w: ["validate", "/dev/zero"],
        2,
        "larger than",
    ),
    (
        "validate a binary file",
        lambda w: ["validate", w.file("bin.yaml", BINARY)],
        2,
        "not UTF-8",
    ),
]


@pytest.mark.parametrize(("args", "code", "words"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_input_gets_its_exit_code_and_a_clear_message(
    tmp_path: Path, seeded: Seed, args: Callable[[World], list[str]], code: int, words: str
) -> None:
    argv = args(World(tmp_path, seeded))
    if argv[0] != "--state-dir":
        argv = ["--state-dir", str(tmp_path / "state"), *argv]
    res = CliRunner().invoke(cli, argv, obj=Deps())
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert res.exit_code == code, res.output
    assert words in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "state" / "crashes").exists()


def test_an_existing_world_writable_state_dir_is_refused_and_left_as_it_was(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    res = CliRunner().invoke(cli, ["--state-dir", str(shared), "status"], obj=Deps())
    assert res.exit_code == 2, res.output
    assert "writable by group or others (mode 1777)" in res.output
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert list(shared.iterdir()) == []


def test_an_existing_private_state_dir_keeps_its_mode(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    mine.chmod(0o750)
    res = CliRunner().invoke(cli, ["--state-dir", str(mine), "status"], obj=Deps())
    assert res.exit_code == 0, res.output
    assert stat.S_IMODE(mine.stat().st_mode) == 0o750


def test_a_state_dir_drboot_creates_is_0700_whatever_the_umask(tmp_path: Path) -> None:
    new = tmp_path / "a" / "new-state"
    old = os.umask(0o000)
    try:
        res = CliRunner().invoke(cli, ["--state-dir", str(new), "status"], obj=Deps())
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    assert stat.S_IMODE(new.stat().st_mode) == 0o700
