"""What the bad-input rows are built from: a real lab seed (config repo, age bundle, identity),
the escrow variants made from its kit (a passphrase bundle, two Shamir splits), SSH keys, and
loopback SSH servers. ``Lab`` is made once per module; each row gets its own ``World`` (a fresh
directory and state directory) on top of it.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass, field
from pathlib import Path

from bootstrap.escrow import age_file, shamir
from bootstrap.escrow.kit import RecoveryKit
from bootstrap.lab.seed import OVERLAY, Seed, seed
from tests.badinput.sshserver import KeyPair, SSHServer
from tests.leaks import Form, pem_forms, seed_forms, text_forms

PASSPHRASE = "badinput-Passphrase-3f9d-right-one"
WRONG_PASSPHRASE = "badinput-Passphrase-3f9d-wrong-one"
BINARY = bytes(range(256)) * 4

SITE = """\
apiVersion: drboot.dev/v1
name: badinput
provider:
  type: static
  hosts:
    - {{name: h1, address: 127.0.0.1, ssh_port: {ssh_port}{pin}}}
ssh:
  private_key_file: {ssh_key}{ssh_extra}
repo:
  url: {url}
  path: {path}
  revision: {revision}{repo_extra}
escrow:
{escrow}
"""


@dataclass(frozen=True)
class Lab:
    """Made once: everything a row may point at. Nothing here may change during a row."""

    root: Path
    seed: Seed
    kit: RecoveryKit
    passphrase_bundle: Path  # the seed's kit, age-encrypted to PASSPHRASE
    right_passphrase: Path
    wrong_passphrase: Path
    wrong_identity: Path
    split_a: tuple[Path, list[Path]]  # a 2-of-3 Shamir split: bundle, shares
    split_b: tuple[Path, list[Path]]  # another split of the same kit
    deploy_key: KeyPair  # the key the git server accepts
    other_deploy_key: KeyPair  # a key it does not
    git_host_key: KeyPair
    host_key: KeyPair  # what the SSH host presents
    other_host_key: KeyPair  # what drboot was told to expect instead
    ssh_login: KeyPair

    @classmethod
    def make(cls, root: Path) -> Lab:
        from bootstrap.adapters.age import generate_identity

        s = seed(root / "seed", "badinput", key_bits=2048)
        kit = age_file.read_kit(s.bundle, identity_files=[s.identity])
        keys = root / "keys"
        keys.mkdir()
        passphrase_bundle = root / "kit-passphrase.age"
        age_file.write_kit(passphrase_bundle, kit, passphrase=PASSPHRASE)
        right, wrong, ident = keys / "passphrase", keys / "wrong-passphrase", keys / "wrong-id.txt"
        right.write_text(PASSPHRASE + "\n")
        wrong.write_text(WRONG_PASSPHRASE + "\n")
        ident.write_text(generate_identity()[0] + "\n")
        for p in (right, wrong, ident):
            p.chmod(0o600)
        splits = []
        for name in ("a", "b"):
            d = root / f"split-{name}"
            d.mkdir()
            shares = [d / f"custodian-{i}.share" for i in (1, 2, 3)]
            shamir.write_kit(d / "kit.shamir", kit, shares, threshold=2)
            splits.append((d / "kit.shamir", shares))
        return cls(
            root=root, seed=s, kit=kit, passphrase_bundle=passphrase_bundle,
            right_passphrase=right, wrong_passphrase=wrong, wrong_identity=ident,
            split_a=splits[0], split_b=splits[1],
            deploy_key=KeyPair.generate(keys / "deploy"),
            other_deploy_key=KeyPair.generate(keys / "deploy-other"),
            git_host_key=KeyPair.generate(keys / "git-host"),
            host_key=KeyPair.generate(keys / "host"),
            other_host_key=KeyPair.generate(keys / "host-other"),
            ssh_login=KeyPair.generate(keys / "login"),
        )  # fmt: skip

    def secret_forms(self) -> list[Form]:
        """Every form of every secret a row could leak: the kit's keys, token and the age
        identity, both passphrases, the wrong identity, the deploy and SSH keys, the shares."""
        forms = [Form("kit", f"seed form {i}", f) for i, f in enumerate(seed_forms(self.seed))]
        forms += text_forms("passphrase", PASSPHRASE) + text_forms("wrong passphrase",
                                                                   WRONG_PASSPHRASE)  # fmt: skip
        forms += text_forms("wrong identity", self.wrong_identity.read_text())
        for name in ("deploy_key", "other_deploy_key", "ssh_login"):
            pair: KeyPair = getattr(self, name)
            forms += pem_forms(name, pair.private.read_bytes())
        for split in (self.split_a, self.split_b):
            for share in split[1]:
                # drboot-share-I-of-N:THRESHOLD:SPLIT:VALUE:CHECKSUM; VALUE is the secret
                value = bytes.fromhex(share.read_text().strip().split(":")[3])
                forms += text_forms(f"share {share.parent.name}/{share.name}", value)
        return forms


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class World:
    """One row's directory, on top of the shared lab."""

    tmp: Path
    lab: Lab
    servers: list[SSHServer] = field(default_factory=list)
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def state(self) -> Path:
        return self.tmp / "state"

    def close(self) -> None:
        self._stack.close()

    def server(self, host_key: KeyPair, *, allowed: tuple[str, ...] = ()) -> SSHServer:
        repos = {"config.git": self.lab.seed.repo}
        srv = self._stack.enter_context(SSHServer(host_key, allowed=allowed, repos=repos))
        self.servers.append(srv)
        return srv

    # ---------------------------------------------------------------- the site file

    def site(
        self,
        *,
        bundle: str | None = None,
        escrow: str | None = None,
        url: str | None = None,
        revision: str = "main",
        repo_extra: str = "",
        ssh_port: int | None = None,
        pin: str = "",
        ssh_extra: str = "",
    ) -> str:
        key = self.tmp / "id_ed25519"
        if not key.exists():
            key.write_text(self.lab.ssh_login.private.read_text())
            key.chmod(0o600)
        path = self.tmp / "site.yaml"
        path.write_text(
            SITE.format(
                ssh_port=ssh_port or closed_port(),
                pin=pin,
                ssh_key=key,
                ssh_extra=ssh_extra,
                url=url or self.lab.seed.repo_url,
                path=OVERLAY,
                revision=revision,
                repo_extra=repo_extra,
                escrow=escrow
                or "  backend: age\n"
                f'  bundle: "{bundle if bundle is not None else self.lab.seed.bundle}"\n'
                f"  identity_files: [{self.lab.seed.identity}]",
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

    def identity(self, where: str | Path, bundle: Path | None = None) -> str:
        return self.site(escrow=f"  backend: age\n  bundle: {bundle or self.lab.seed.bundle}\n"
                                f"  identity_files: [{where}]")  # fmt: skip

    def passphrase(self, where: str | Path, bundle: Path | None = None) -> str:
        return self.site(escrow=f"  backend: age\n  bundle: {bundle or self.lab.seed.bundle}\n"
                                f"  passphrase: {{file: {where}}}")  # fmt: skip

    def shamir(self, shares: list[str | Path], bundle: Path | None = None) -> str:
        """A site on the lab's 2-of-3 split A (or ``bundle``) holding ``shares``."""
        return self.site(
            escrow=f"  backend: shamir\n  bundle: {bundle or self.lab.split_a[0]}\n"
            f"  shares: [{', '.join(map(str, shares))}]\n  threshold: 2\n  total: 3"
        )

    def damaged(self, name: str, how: str) -> Path:
        """A copy of the seed's age bundle, ``truncated`` (half of it) or ``flipped`` (one
        character of the armoured payload changed for another valid base64 character)."""
        data = self.lab.seed.bundle.read_bytes()
        if how == "truncated":
            data = data[: len(data) // 2]
        else:
            lines = data.split(b"\n")
            mid = len(lines) // 2
            line = bytearray(lines[mid])
            line[10] = ord("A") if line[10] != ord("A") else ord("B")
            lines[mid] = bytes(line)
            data = b"\n".join(lines)
        path = self.tmp / name
        path.write_bytes(data)
        return path

    def ssh_repo(self, srv_port: int, *, key: KeyPair, known: KeyPair) -> str:
        """repo fields for ``ssh://git@127.0.0.1:PORT/config.git`` with ``key`` as the deploy
        key and ``known`` as the git server's key in its known_hosts."""
        kh = self.tmp / "git_known_hosts"
        kh.write_text(f"[127.0.0.1]:{srv_port} {known.public}\n")
        return f"\n  deploy_key: {{file: {key.private}}}\n  known_hosts: {{file: {kh}}}"
