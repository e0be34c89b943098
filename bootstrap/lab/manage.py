"""Lab housekeeping behind `drboot lab …` and `drboot demo`: seed, status, tear down."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bootstrap.errors import ConfigError
from bootstrap.fsutil import write_atomic
from bootstrap.settings import Site

if TYPE_CHECKING:
    from bootstrap.providers.lab import LabHosts

DEMO_SITE = Path(__file__).with_name("demo-site.yaml")


def _lab_provider(site: Site, state_root: Path) -> LabHosts:
    if site.provider.type != "lab":
        raise ConfigError(
            f"site {site.name} does not use provider: lab",
            hint="lab commands work on lab sites only (see inventory/lab.yaml)",
        )
    from bootstrap.providers.lab import LabHosts

    return LabHosts(site, state_root)


def seed_site(site: Site, state_root: Path) -> dict[str, Any]:
    """Make the escrow and config repo a lab site file points at (idempotent).

    ``repo.path`` chooses the repo: ``apps/overlays/lab`` the small guestbook repo most lab
    tests restore, ``clusters/lab/argocd`` or ``clusters/lab/flux`` (matching
    ``reconciler.type``) the demo's payment platform, an app-of-apps of six apps.
    ``repo.url`` chooses how it is served: ``file://<state_dir>/config-repo``, or
    ``git@10.200.<subnet_index>.249:platform-config.git``, the lab's forge (a lab host with
    sshd and a git-shell account, ``bootstrap.lab.forge``), booted here and pushed to."""
    from bootstrap.lab import forge
    from bootstrap.lab.platform_repo import root_path
    from bootstrap.lab.seed import OVERLAY, Layout, seed

    prov = _lab_provider(site, state_root)
    root = prov.state_dir
    platform = root_path(str(site.reconciler.type))
    layout: Layout = "platform" if site.repo.path == platform else "guestbook"
    over_ssh = site.repo.kind() == "ssh"
    index = prov.cfg.subnet_index
    if over_ssh and index is None:
        raise ConfigError(
            f"repo.url {site.repo.url} is served by the lab's forge, whose address follows "
            "from provider.subnet_index, which this site does not set",
            hint="set provider.subnet_index (a free N of 10.200.N.0/24) and repo.url: "
            f"{forge.forge_url(200)} with that N",
        )
    url = forge.forge_url(index) if over_ssh and index is not None else (
        f"file://{root / 'config-repo'}")  # fmt: skip
    expect = {
        "escrow.bundle": (Path(site.escrow.bundle), root / "escrow" / "kit.age"),
        "escrow.identity_files[0]": (
            Path(site.escrow.identity_files[0])
            if site.escrow.backend == "age" and site.escrow.identity_files
            else None,
            root / "escrow" / "identity.txt",
        ),
        "repo.url": (site.repo.url, url),
        "repo.path": (site.repo.path, platform if layout == "platform" else OVERLAY),
    }
    wrong = [
        f"{k} should be {want}" for k, (have, want) in expect.items() if str(have) != str(want)
    ]
    if wrong:
        raise ConfigError(
            "this lab site does not point at the seeded material: " + "; ".join(wrong),
            hint=f"compare with inventory/lab.yaml (or repo.path: {platform} for the demo's "
            "payment platform)",
        )
    keys = forge.forge_keys(root, forge.forge_address(index)) if over_ssh and index else None
    made = seed(root, site.name, layout=layout, repo_url=site.repo.url,
                known_hosts=keys.known_hosts() if keys else None)  # fmt: skip
    info: dict[str, Any] = {
        "site": site.name,
        "state_dir": str(root),
        "repo": site.repo.url,
        "layout": layout,
        "bundle": str(made.bundle),
        "fingerprint": made.fingerprint,
    }
    if keys is not None:
        from bootstrap.escrow import age_file

        kit = age_file.read_kit(made.bundle, identity_files=[made.identity])
        assert kit.deploy_key and kit.known_hosts
        lab = prov.lab(create=True)
        assert lab is not None
        forge.ensure_forge(lab, keys, forge.public_of(kit.deploy_key))
        forge.push(made.repo, site.repo.url, kit.deploy_key, kit.known_hosts)
        info["forge"] = {"host": forge.FORGE_HOST, "address": keys.address,
                         "known_hosts": kit.known_hosts.strip()}  # fmt: skip
    return info


def status(site: Site, state_root: Path) -> dict[str, Any]:
    from bootstrap.lab.hosts import Lab
    from bootstrap.lab.standins.process import StandinProcess

    prov = _lab_provider(site, state_root)
    hosts = []
    if (prov.lab_dir / "lab.json").exists():
        lab = Lab.attach(prov.lab_dir)
        for h in lab.hosts():
            hosts.append(
                {
                    "name": h.name,
                    "address": h.address,
                    "running": h.is_running(),
                    "host_key_fingerprint": h.host_key_fingerprint,
                }
            )
    return {
        "site": site.name,
        "state_dir": str(prov.state_dir),
        "hosts": hosts,
        "standins_pid": StandinProcess(prov.state_dir).pid(),
    }


def down(site: Site, state_root: Path) -> list[str]:
    prov = _lab_provider(site, state_root)
    names: list[str] = prov.destroy(lambda m: None)
    return names


RECONCILER_LINES = {
    "argocd": ("reconciler:\n  type: argocd\n", "  path: clusters/lab/argocd"),
    "flux": ("reconciler:\n  type: flux\n", "  path: clusters/lab/flux"),
}


def demo_site_text(reconciler: str = "argocd") -> str:
    """The embedded default site with ``reconciler`` (argocd, the default, or flux: the root
    follows that reconciler's app-of-apps path)."""
    text = DEMO_SITE.read_text()
    want_type, want_path = RECONCILER_LINES[reconciler]
    have_type, have_path = RECONCILER_LINES["argocd"]
    if have_type not in text or have_path not in text:
        raise ConfigError(f"{DEMO_SITE} lacks its reconciler lines", hint="reinstall drboot")
    return text.replace(have_type, want_type).replace(have_path, want_path)


def demo_site_file(reconciler: str = "argocd") -> Path:
    """Write the embedded default site (``demo_site_text``) where `drboot demo` keeps its
    lab; return its path."""
    path = Path("/var/lib/drboot-lab/demo/site.yaml")
    write_atomic(path, demo_site_text(reconciler), mode=0o644)
    return path
