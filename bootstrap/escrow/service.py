"""Escrow operations over a site: open the kit, verify the repo against it, back up, status.

Shared by the `drboot escrow …` commands and the restore steps. Secret material
stays in memory or in 0600 temporary files that are removed at once; what comes
back to callers are counts, names and fingerprints.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootstrap import secretrefs
from bootstrap.errors import ConfigError, EscrowError, PreflightError, StepError
from bootstrap.escrow.backend import EscrowBackend, make_backend
from bootstrap.escrow.kit import RecoveryKit, SealingKey
from bootstrap.escrow.scan import VerifyCache, VerifyReport, scan_repo, verify
from bootstrap.fsutil import write_atomic
from bootstrap.kubeapi import KubeAPI
from bootstrap.settings import Site
from bootstrap.sitetypes.secretrefs import SecretRef

KEY_LABEL = "sealedsecrets.bitnami.com/sealed-secrets-key"
LEGACY_KEY_NAME = "sealed-secrets-key"


def backend_for(site: Site) -> EscrowBackend:
    """The escrow backend a site describes."""
    esc = site.escrow
    if esc.backend == "age":
        prompt = None
        if esc.passphrase is not None:
            ref: SecretRef = esc.passphrase

            def prompt() -> str:
                return secretrefs.resolve(ref, field="escrow.passphrase")

        return make_backend(
            "age",
            esc.bundle,
            recipients=list(esc.recipients),
            identity_files=list(esc.identity_files),
            prompt=prompt,
        )
    return make_backend("shamir", esc.bundle, share_paths=list(esc.shares), threshold=esc.threshold)


def open_kit(site: Site) -> RecoveryKit:
    """Decrypt the site's recovery kit (an ``EscrowError`` leaf names what is wrong)."""
    kit = backend_for(site).read()
    if kit.site != site.name:
        raise EscrowError(
            f"the escrow bundle holds the recovery kit of site {kit.site!r}, not {site.name!r}",
            hint="check escrow.bundle in the site file",
        )
    return kit


@contextlib.contextmanager
def private_files(
    deploy_key: str | None, known_hosts: str | None
) -> Iterator[tuple[str | None, str | None]]:
    """A deploy key and known_hosts as 0600 files that vanish afterwards (None: no file)."""
    with tempfile.TemporaryDirectory(prefix="drboot-git-") as tmp:
        key = known = None
        if deploy_key:
            key = str(write_atomic(Path(tmp) / "deploy_key", deploy_key.rstrip("\n") + "\n"))
        if known_hosts:
            known = str(write_atomic(Path(tmp) / "known_hosts", known_hosts.rstrip("\n") + "\n"))
        yield key, known


@dataclass
class RepoCheck:
    """What preflight learnt about the config repo (no secrets)."""

    url: str
    revision: str
    commit: str
    path: str
    report: VerifyReport
    warnings: list[str] = field(default_factory=list)
    renderer: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "revision": self.revision,
            "commit": self.commit,
            "path": self.path,
            "renderer": self.renderer,
            "sealed_secrets": self.report.total,
            "decrypted": self.report.ok,
            "failures": [f.__dict__ for f in self.report.failures],
            "secrets": self.report.results,
            "key_usage": self.report.key_usage,
            "rsa_operations": self.report.rsa_operations,
            "cache_hits": self.report.cache_hits,
            "seconds": round(self.report.seconds, 3),
            "warnings": self.warnings,
        }


def check_repo(
    site: Site,
    kit: RecoveryKit,
    *,
    cache_file: Path | None = None,
    revision: str | None = None,
) -> RepoCheck:
    """Clone the repo at the site's revision (or ``revision``: a commit the branch moved on
    to), render the path, decrypt every SealedSecret.

    Raises ``PreflightError`` when the site's revision cannot be cloned (git's reason kept),
    and listing every SealedSecret that does not open; its
    ``details`` carry the whole structured result. With ``cache_file`` (incremental
    mode) values that opened in an earlier run cost no RSA operation; the file is
    rewritten with this run's entries only (it holds no plaintext, see ``VerifyCache``).
    """
    from bootstrap.adapters import git

    repo = site.repo if revision is None else site.repo.model_copy(update={"revision": revision})
    deploy_key = secretrefs.resolve(repo.deploy_key, lambda: kit, field="repo.deploy_key")
    known_hosts = secretrefs.resolve(repo.known_hosts, lambda: kit, field="repo.known_hosts")
    with (
        tempfile.TemporaryDirectory(prefix="drboot-repo-") as tmp,
        private_files(deploy_key, known_hosts) as (key, known),
    ):
        dest = Path(tmp) / "repo"
        try:
            commit = git.clone(repo.url, repo.revision, dest, ssh_key_file=key,
                               known_hosts_file=known)  # fmt: skip
        except StepError as exc:
            if revision is not None:
                raise  # a commit the branch moved on to: the waiting step's policy decides
            # The site's revision is a precondition (preflight, `escrow verify`, `wait`):
            # an unknown revision, a refused key or host key, an unreachable server is a
            # refusal before anything was created (exit 3), not a failed step to resume.
            raise PreflightError(
                f"cannot clone the config repo: {exc.message}", target=repo.url, hint=exc.hint
            ) from None
        if not (dest / repo.path).is_dir():
            raise PreflightError(
                f"path {repo.path!r} does not exist in {repo.url} at {repo.revision} "
                f"({commit[:12]})",
                target=repo.url,
                hint="check repo.path and repo.revision in the site file",
            )
        scan = scan_repo(dest, repo.path)
        cache = VerifyCache.load(cache_file) if cache_file is not None else None
        report = verify(kit, scan.found, cache=cache)
    result = RepoCheck(
        repo.url, repo.revision, commit, repo.path, report, list(scan.warnings), scan.renderer
    )
    if cache is not None and cache_file is not None:
        try:
            cache.save(cache_file)
        except OSError as exc:  # only a cache: the verdict stands, the next run is cold
            result.warnings.append(
                f"verify cache {cache_file} not written ({exc.strerror or type(exc).__name__})"
            )
    if report.opened_with_compromised:
        result.warnings.append(
            f"{len(report.opened_with_compromised)} SealedSecret(s) open only with a key "
            "labelled compromised: re-seal them"
        )
    if not report.passed:
        lines = [
            f"{f.namespace}/{f.name} ({f.source}): {f.reason}: {f.detail}" for f in report.failures
        ]
        err = PreflightError(
            f"{len(report.failures)} of {report.total} SealedSecret(s) in {repo.url}@"
            f"{commit[:12]}:{repo.path} cannot be decrypted with the escrowed keys:\n    "
            + "\n    ".join(lines),
            target=repo.url,
            hint="back up the current controller keys (`drboot escrow backup`), or re-seal "
            "these secrets, then run again",
        )
        err.details = result.to_dict()
        raise err
    return result


# ---------------------------------------------------------------- backup and status


def cluster_keys(kube: KubeAPI, namespace: str) -> list[SealingKey]:
    """Every Sealed Secrets key Secret in the cluster (labelled, and the legacy one)."""
    keys: dict[str, SealingKey] = {}
    for secret in kube.list("v1", "Secret", namespace=namespace, label_selector=KEY_LABEL):
        k = SealingKey.from_secret(secret)
        keys[k.fingerprint] = k
    legacy = kube.get("v1", "Secret", LEGACY_KEY_NAME, namespace=namespace)
    if legacy is not None:
        k = SealingKey.from_secret(legacy)
        keys.setdefault(k.fingerprint, k)
    return sorted(keys.values(), key=lambda k: k.not_before)


@dataclass
class BackupResult:
    keys: list[dict[str, str]]
    added: list[str]
    kept: list[str]
    path: str
    lacks: list[str] = field(default_factory=list)


def backup(
    site: Site,
    kube: KubeAPI,
    *,
    k3s_token: str | None,
    deploy_key: str | None,
    known_hosts: str | None,
) -> BackupResult:
    """Export the cluster's keys into the escrow; keys already escrowed are kept (union).

    Values not given (token, deploy key, known_hosts) are carried over from the
    existing kit when it opens; a new kit without a k3s token is refused (``import_keys``
    builds a kit of keys alone). A Shamir backup
    writes one share per file in ``escrow.shares``: all ``escrow.total`` of them, or none (a
    site listing only the shares at hand would silently make a smaller split).
    """
    _shamir_needs_all_shares(site)
    backend = backend_for(site)
    old: RecoveryKit | None = None
    if Path(site.escrow.bundle).exists():
        old = open_kit(site)
    found = cluster_keys(kube, site.sealed_secrets.namespace)
    if not found:
        raise EscrowError(
            f"no Sealed Secrets key Secrets in namespace {site.sealed_secrets.namespace} "
            f"(label {KEY_LABEL})",
            target=kube.target if hasattr(kube, "target") else None,
            hint="check --kubeconfig and sealed_secrets.namespace",
        )
    merged: dict[str, SealingKey] = {k.fingerprint: k for k in (old.sealing_keys if old else [])}
    added = [k.fingerprint for k in found if k.fingerprint not in merged]
    for k in found:
        merged[k.fingerprint] = k  # the cluster's label (active/compromised) wins
    if not (k3s_token or (old and old.k3s_token)):
        # with a live cluster at hand the token is one file away; `escrow import` is the
        # way to build a kit of keys alone
        raise EscrowError(
            "the recovery kit needs the k3s cluster token and there is no earlier kit to keep "
            "it from",
            hint="pass --k3s-token-file (on a k3s server: /var/lib/rancher/k3s/server/token)",
        )
    return _write(
        site,
        backend,
        old,
        sorted(merged.values(), key=lambda k: k.not_before),
        added,
        k3s_token=k3s_token,
        deploy_key=deploy_key,
        known_hosts=known_hosts,
    )


def _write(
    site: Site,
    backend: EscrowBackend,
    old: RecoveryKit | None,
    keys: list[SealingKey],
    added: list[str],
    *,
    k3s_token: str | None,
    deploy_key: str | None,
    known_hosts: str | None,
) -> BackupResult:
    """Write the merged kit; values not given are carried over from the old kit."""
    kit = RecoveryKit(
        site=site.name,
        sealing_keys=keys,
        k3s_token=k3s_token or (old.k3s_token if old else None),
        deploy_key=deploy_key or (old.deploy_key if old else None),
        known_hosts=known_hosts or (old.known_hosts if old else None),
    )
    try:
        backend.write(kit)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot write the escrow ({backend.describe()}): "
            + (exc.strerror or str(exc) if isinstance(exc, OSError) else "a path holds a NUL byte"),
            hint="escrow.bundle and escrow.shares must be writable paths",
        ) from None
    return BackupResult(
        keys=[
            {"fingerprint": k.fingerprint, "not_before": k.not_before.isoformat(), "label": k.label}
            for k in kit.sealing_keys
        ],
        added=added,
        kept=[k.fingerprint for k in keys if k.fingerprint not in added],
        path=str(site.escrow.bundle),
        lacks=kit.lacks(),
    )


def _shamir_needs_all_shares(site: Site) -> None:
    esc = site.escrow
    if esc.backend == "shamir" and len(esc.shares) != esc.total:
        raise ConfigError(
            f"escrow.shares lists {len(esc.shares)} share file(s) but escrow.total is "
            f"{esc.total}: writing the kit writes one share per custodian",
            hint="list one share file per custodian in escrow.shares (escrow.total of them), "
            "then run again",
        )


def import_keys(
    site: Site,
    key_files: list[Path],
    *,
    k3s_token: str | None,
    deploy_key: str | None,
    known_hosts: str | None,
) -> BackupResult:
    """Build or extend the kit offline, from key backups (main.key, PEM) and secret files.

    Keys already escrowed are kept; the same key twice is one key; a different key
    under an escrowed key's name is an error. A kit of sealing keys without a k3s
    token is valid: verify works with it, and a restore says in preflight what it lacks.
    """
    from bootstrap.escrow import keyfiles

    _shamir_needs_all_shares(site)
    if not key_files and not (k3s_token or deploy_key or known_hosts):
        raise ConfigError(
            "nothing to import",
            hint="pass main.key / PEM files, or --k3s-token-file / --deploy-key-file / "
            "--known-hosts-file",
        )
    imported = keyfiles.read_key_files(key_files)
    backend = backend_for(site)
    old = open_kit(site) if Path(site.escrow.bundle).exists() else None
    keys, added = keyfiles.merge(old.sealing_keys if old else [], imported)
    if not keys:
        raise ConfigError(
            "a recovery kit needs at least one sealing key and none is escrowed yet",
            hint="pass main.key (the documented Sealed Secrets key backup) or PEM key + cert",
        )
    return _write(
        site,
        backend,
        old,
        keys,
        added,
        k3s_token=k3s_token,
        deploy_key=deploy_key,
        known_hosts=known_hosts,
    )


def export_main_key(site: Site) -> tuple[str, list[str]]:
    """The escrowed keys in the documented ``main.key`` format, and their fingerprints."""
    from bootstrap.escrow import keyfiles

    kit = open_kit(site)
    return (
        keyfiles.to_main_key(kit.sealing_keys, site.sealed_secrets.namespace),
        kit.fingerprints(),
    )


@dataclass
class EscrowStatus:
    created_at: str
    age_days: float
    keys: list[dict[str, str]]
    warnings: list[str]
    cluster_keys_missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.warnings


def status(site: Site, kube: KubeAPI | None = None, now: dt.datetime | None = None) -> EscrowStatus:
    """Is the escrow fresh enough? Older than the renewal period, or than a cluster key: warn."""
    kit = open_kit(site)
    now = now or dt.datetime.now(dt.UTC)
    period = site.sealed_secrets.key_renewal_period
    age = now - kit.created_at
    warnings: list[str] = []
    if age > period:
        warnings.append(
            f"escrow is {age.days} days old, older than the key renewal period "
            f"({period.days} days): the controller has probably made a key the escrow lacks; "
            "run `drboot escrow backup`"
        )
    missing: list[str] = []
    if kube is not None:
        escrowed = set(kit.fingerprints())
        for k in cluster_keys(kube, site.sealed_secrets.namespace):
            if k.fingerprint not in escrowed:
                missing.append(k.fingerprint)
        if missing:
            warnings.append(
                f"{len(missing)} key(s) in the cluster are not in the escrow "
                f"({', '.join(missing)}): secrets sealed with them would be lost; "
                "run `drboot escrow backup`"
            )
    return EscrowStatus(
        created_at=kit.created_at.isoformat(),
        age_days=round(age.total_seconds() / 86400, 2),
        keys=[
            {"fingerprint": k.fingerprint, "not_before": k.not_before.isoformat(), "label": k.label}
            for k in kit.sealing_keys
        ],
        warnings=warnings,
        cluster_keys_missing=missing,
    )
