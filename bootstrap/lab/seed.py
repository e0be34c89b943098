"""Demo material for the lab: what the lost site would have left behind.

A drill needs a config repo (git) with apps and SealedSecrets, and an escrow
holding the keys those were sealed with. On a real site these come from the
platform team's repo and from `drboot escrow backup`; for the lab and the
tests, ``seed`` makes them: a fresh sealing key, an age identity, an encrypted
recovery kit, and a git repository whose SealedSecrets are sealed to that key.

Two repo layouts: ``guestbook`` (``write_repo``: N small apps rendered straight into one
overlay, what most lab tests restore) and ``platform`` (``bootstrap.lab.platform_repo``: the
demo's payment platform, an app-of-apps of six Applications or Flux Kustomizations).
"""

from __future__ import annotations

import base64
import secrets
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml

from bootstrap import sealing
from bootstrap.escrow import age_file
from bootstrap.escrow.kit import RecoveryKit, SealingKey
from bootstrap.fsutil import private_dir, write_atomic
from bootstrap.lab import platform_repo
from bootstrap.lab.forge import new_deploy_key

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

APP_NAMESPACE = "guestbook"
OVERLAY = "apps/overlays/lab"


@dataclass(frozen=True)
class Seed:
    root: Path
    repo: Path
    bundle: Path
    identity: Path
    fingerprint: str

    @property
    def repo_url(self) -> str:
        return f"file://{self.repo}"


Layout = Literal["guestbook", "platform"]


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        [
            "git",
            "-c",
            "user.name=drboot lab",
            "-c",
            "user.email=lab@drboot.invalid",
            "-c",
            "init.defaultBranch=main",
            *args,
        ],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    )


def _dump(path: Path, docs: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def write_repo(
    repo: Path,
    key: RSAPrivateKey,
    *,
    apps: int = 1,
    extra_sealed: list[dict[str, object]] | None = None,
) -> None:
    """A kustomize config repo: ``apps`` guestbook-like apps, each needing a sealed Secret."""
    repo.mkdir(parents=True, exist_ok=True)
    resources = []
    for i in range(apps):
        name = f"guestbook-{i}" if apps > 1 else "guestbook"
        base = repo / "apps" / "base" / name
        password = secrets.token_urlsafe(18)
        secret: dict[str, object] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{name}-db", "namespace": APP_NAMESPACE},
            "type": "Opaque",
            "data": {"password": base64.b64encode(password.encode()).decode()},
        }
        sealed = sealing.seal_secret(key.public_key(), secret)
        _dump(base / "sealedsecret.yaml", [sealed])
        _dump(
            base / "deployment.yaml",
            [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": name, "namespace": APP_NAMESPACE},
                    "spec": {
                        "replicas": 1,
                        "selector": {"matchLabels": {"app": name}},
                        "template": {
                            "metadata": {"labels": {"app": name}},
                            "spec": {
                                "containers": [
                                    {
                                        "name": "web",
                                        "image": "registry.invalid/guestbook:1",
                                        "env": [
                                            {
                                                "name": "DB_PASSWORD",
                                                "valueFrom": {
                                                    "secretKeyRef": {
                                                        "name": f"{name}-db",
                                                        "key": "password",
                                                    }
                                                },
                                            }
                                        ],
                                    }
                                ]
                            },
                        },
                    },
                }
            ],
        )
        _dump(
            base / "service.yaml",
            [
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": name, "namespace": APP_NAMESPACE},
                    "spec": {"selector": {"app": name}, "ports": [{"port": 80, "protocol": "TCP"}]},
                }
            ],
        )
        _dump(
            base / "kustomization.yaml",
            [
                {
                    "apiVersion": "kustomize.config.k8s.io/v1beta1",
                    "kind": "Kustomization",
                    "resources": ["deployment.yaml", "service.yaml", "sealedsecret.yaml"],
                }
            ],
        )
        resources.append(f"../../base/{name}")
    ns_dir = repo / "apps" / "base" / "namespace"
    _dump(
        ns_dir / "namespace.yaml",
        [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": APP_NAMESPACE}}],
    )
    _dump(
        ns_dir / "kustomization.yaml",
        [
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": ["namespace.yaml"],
            }
        ],
    )
    overlay = repo / OVERLAY
    _dump(
        overlay / "kustomization.yaml",
        [
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [
                    "../../base/namespace",
                    *resources,
                    *(["extra.yaml"] if extra_sealed else []),
                ],
            }
        ],
    )
    if extra_sealed:
        _dump(overlay / "extra.yaml", extra_sealed)
    _commit(repo, "config repo for the drboot lab")


def _commit(repo: Path, message: str) -> None:
    if not (repo / ".git").exists():
        _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message, "--allow-empty")


PLATFORM_MARK = Path(platform_repo.ROOT_ARGOCD)


def write_platform_repo(repo: Path, key: RSAPrivateKey, repo_url: str) -> None:
    """The demo's payment platform (``bootstrap.lab.platform_repo``), committed."""
    repo.mkdir(parents=True, exist_ok=True)
    platform_repo.write(repo, key, repo_url)
    _commit(repo, "platform-config: the payment platform (drboot demo)")


def _has_layout(repo: Path, layout: Layout) -> bool:
    platform = (repo / PLATFORM_MARK).is_dir()
    return (repo / ".git").exists() and platform == (layout == "platform")


def seed(
    root: Path,
    site: str,
    *,
    apps: int = 1,
    key_bits: int = 4096,
    layout: Layout = "guestbook",
    repo_url: str | None = None,
    known_hosts: str | None = None,
) -> Seed:
    """Create (or reuse) the lab's escrow and config repo under ``root``. Idempotent.

    ``repo_url`` is the URL the platform layout's child Applications follow (the one the
    site gives drboot; default: the repo's file:// URL). A repo of the other layout, or one
    whose children follow another URL, is rewritten (with the escrowed key). With
    ``known_hosts`` (the lab forge's line) the kit also holds a deploy key and that
    known_hosts, as `drboot escrow backup --deploy-key --known-hosts` would put them."""
    from bootstrap.adapters.age import generate_identity

    private_dir(root)
    identity = root / "escrow" / "identity.txt"
    bundle = root / "escrow" / "kit.age"
    repo = root / "config-repo"
    url = repo_url or f"file://{repo}"
    if bundle.exists() and identity.exists():
        kit = age_file.read_kit(bundle, identity_files=[identity])
        if known_hosts is not None and (kit.known_hosts != known_hosts or not kit.deploy_key):
            kit = _add_forge_material(kit, bundle, identity, known_hosts)
        made = Seed(root, repo, bundle, identity, kit.fingerprints()[0])
        if _has_layout(repo, layout) and (layout == "guestbook" or _follows(repo, url)):
            return made
        key = kit.sealing_keys[0].private_key()
        if (repo / ".git").exists():  # the other layout (or URL): replaced, in a new commit
            _git(repo, "rm", "-rq", "--ignore-unmatch", ".")
        if layout == "platform":
            write_platform_repo(repo, key, url)
        else:
            write_repo(repo, key, apps=apps)
        return made
    private_dir(root / "escrow")
    secret_identity, recipient = generate_identity()
    write_atomic(identity, secret_identity + "\n")
    key, cert = sealing.generate_key(key_bits)
    skey = SealingKey.from_pem("sealed-secrets-key-lab", sealing.private_key_pem(key), cert)
    kit = RecoveryKit(site=site, sealing_keys=[skey], k3s_token=secrets.token_hex(32))
    if known_hosts is not None:
        kit = replace(kit, deploy_key=new_deploy_key()[0], known_hosts=known_hosts)
    age_file.write_kit(bundle, kit, recipients=[recipient])
    if layout == "platform":
        write_platform_repo(repo, key, url)
    else:
        write_repo(repo, key, apps=apps)
    return Seed(root, repo, bundle, identity, skey.fingerprint)


def _add_forge_material(
    kit: RecoveryKit, bundle: Path, identity: Path, known: str
) -> RecoveryKit:
    """Give an older lab kit a deploy key (kept if it has one) and the forge's known_hosts."""
    from bootstrap.adapters.age import recipient_of

    kit = replace(kit, deploy_key=kit.deploy_key or new_deploy_key()[0], known_hosts=known)
    age_file.write_kit(bundle, kit, recipients=[recipient_of(identity.read_text())])
    return kit


def _follows(repo: Path, url: str) -> bool:
    """Whether the platform repo's child Applications follow ``url``."""
    first = repo / PLATFORM_MARK / f"{platform_repo.APPS[0].name}.yaml"
    try:
        doc = yaml.safe_load(first.read_text())
    except (OSError, yaml.YAMLError):
        return False
    return bool(doc and doc.get("spec", {}).get("source", {}).get("repoURL") == url)
