"""The site file as typed, frozen, documented models (pydantic v2).

A site file says everything a restore needs: where the hosts come from, how
k3s is installed, where the escrowed recovery secrets live, which GitOps
reconciler to install and which repository it follows. It is validated once,
at the edge (``bootstrap.siteload``), into these models; everything below the
CLI receives a ``Site`` and never looks at YAML again.

Conventions:

* Every model forbids unknown keys and is frozen; sequences are tuples so a
  ``Site`` cannot be changed after validation.
* Durations are stored as ``datetime.timedelta`` (always > 0); in YAML they
  are written ``"90s"``, ``"5m"``, ``"1h30m"``, ``"30d"`` or an integer number
  of seconds, and they serialise back to that short form.
* Paths have ``~`` expanded; a relative path is made absolute against the
  directory of the site file when the loader passes ``{"base_dir": ...}`` as
  validation context (``bootstrap.siteload`` always does).
* Secrets never appear inline: a field that needs one takes a reference,
  ``{env: VAR}``, ``{file: PATH}`` or ``{escrow: ITEM}``. A plain value there is
  refused with an ``inline_secret`` error that does not echo the value.
* Checks that span fields raise ``CrossFieldError`` carrying the location(s)
  of the offending fields, so the loader can point at the right YAML line.

This module holds the site's sections; the value types they are built from
(durations, shaped strings, paths, secret references, the base model and
``CrossFieldError``) live in ``bootstrap.sitetypes``.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictInt, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from bootstrap import pins
from bootstrap.sitetypes.country import CountryCode
from bootstrap.sitetypes.durations import Duration
from bootstrap.sitetypes.model import CrossFieldError, Loc, SiteModel, raise_if
from bootstrap.sitetypes.paths import SitePath, resolve_path
from bootstrap.sitetypes.secretrefs import (
    DeployKeyRef,
    EscrowRef,
    K3sTokenRef,
    KnownHostsRef,
    SecretOnly,
    SecretRef,
)
from bootstrap.sitetypes.shaped import (
    Address,
    AgeRecipient,
    Fingerprint,
    FioSize,
    K3sVersion,
    NonEmpty,
    Sha256,
    SiteName,
    Version,
)

API_VERSION = "drboot.dev/v1"


# --------------------------------------------------------------------------- providers


def _pinned(version: str, pinned: str, what: str) -> None:
    """Refuse a version other than the pinned manifest drboot ships (``bootstrap.pins``)."""
    if version.lstrip("v") != pinned.lstrip("v"):
        raise CrossFieldError(
            [
                (
                    ("version",),
                    f"this drboot installs {what} {pinned} (its pinned, tested manifest); "
                    f"use version {pinned}, or the drboot release that ships {version}",
                )
            ]
        )


_LABEL_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
)
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")


class Host(SiteModel):
    """One machine of a static provider, reached over SSH."""

    name: SiteName = Field(description="Node name (also the k3s node name).")
    address: Address = Field(description="IP address or DNS name to SSH to.")
    role: Literal["server", "agent"] = Field(default="server", description="k3s server or agent.")
    ssh_port: StrictInt = Field(default=22, ge=1, le=65535, description="SSH port.")
    host_key_fingerprint: Fingerprint | None = Field(
        default=None, description="Pinned SSH host key (SHA256:...); None = use known_hosts / TOFU."
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Kubernetes node labels (k3s --node-label)."
    )
    country: CountryCode | None = Field(
        default=None,
        description="Where the machine is (ISO 3166-1 alpha-2, e.g. NO); checked against "
        "sovereignty.allowed_countries.",
    )

    @model_validator(mode="after")
    def _check_labels(self) -> Host:
        problems: list[tuple[Loc, str]] = []
        for key, value in self.labels.items():
            if len(key) > 317 or _LABEL_KEY.fullmatch(key) is None:
                problems.append((("labels", key), "expected a label key like tier or "
                                 "example.com/zone (letters, digits, '-', '_', '.')"))  # fmt: skip
            if _LABEL_VALUE.fullmatch(str(value)) is None:
                problems.append((("labels", key), "expected a label value of at most 63 "
                                 "letters, digits, '-', '_' or '.'"))  # fmt: skip
        raise_if(problems)
        return self


class StaticProvider(SiteModel):
    """Hosts that already exist: drboot only takes them over SSH."""

    type: Literal["static"] = Field(description="Hosts listed here, reached over SSH.")
    hosts: tuple[Host, ...] = Field(min_length=1, description="The machines, servers first.")

    @model_validator(mode="after")
    def _check_hosts(self) -> StaticProvider:
        problems: list[tuple[Loc, str]] = []
        seen: dict[str, int] = {}
        for index, host in enumerate(self.hosts):
            if host.name in seen:
                problems.append(
                    (
                        ("hosts", index, "name"),
                        f"duplicate host name (also hosts[{seen[host.name]}])",
                    )
                )
            seen.setdefault(host.name, index)
        if not any(h.role == "server" for h in self.hosts):
            problems.append((("hosts",), "expected at least one host with role: server"))
        raise_if(problems)
        return self

    def server_count(self) -> int:
        """How many k3s servers this provider yields."""
        return sum(1 for h in self.hosts if h.role == "server")


class LabProvider(SiteModel):
    """Throw-away lab hosts in network namespaces on this machine (10.200.N.0/24)."""

    type: Literal["lab"] = Field(description="Local lab hosts (systemd-nspawn, root).")
    servers: StrictInt = Field(
        default=1, ge=1, le=7, description="k3s servers: 1, or an odd number >= 3."
    )
    agents: StrictInt = Field(default=0, ge=0, le=8, description="k3s agents.")
    subnet_index: StrictInt | None = Field(
        default=None, ge=1, le=254, description="N of 10.200.N.0/24; None = pick a free one."
    )
    state_dir: SitePath | None = Field(
        default=None, description="Where lab hosts and their state live; None = the lab default."
    )
    disk: Literal["fast", "slow", "host"] = Field(
        default="fast",
        description="The etcd disk: 'fast' a tmpfs, 'slow' throttled (shows the disk gate), "
        "'host' the lab host's own disk (this machine's).",
    )
    slow_disk_iops: StrictInt = Field(
        default=300, ge=1, description="IOPS limit of the 'slow' disk (300: p99 ~80 ms here)."
    )

    @model_validator(mode="after")
    def _odd_servers(self) -> LabProvider:
        problems: list[tuple[Loc, str]] = []
        if self.servers != 1 and self.servers % 2 == 0:
            problems.append((("servers",), "expected 1 or an odd number >= 3"))
        if self.agents:
            problems.append(
                (("agents",), "the lab's k3s stand-in has no agent mode (no kubelet): use 0")
            )
        raise_if(problems)
        return self

    def server_count(self) -> int:
        """How many k3s servers this provider yields."""
        return self.servers


def _check_cidr(value: str) -> str:
    import ipaddress

    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise PydanticCustomError(
            "cidr", "expected a network in CIDR form, like 10.0.0.0/16 or 203.0.113.7/32"
        ) from None
    return str(net)


Cidr = Annotated[str, AfterValidator(_check_cidr)]


def _check_endpoint(value: str) -> str:
    from urllib.parse import urlsplit

    url = urlsplit(value)
    loopback = url.scheme == "http" and url.hostname in ("127.0.0.1", "::1", "localhost")
    if not (url.scheme == "https" and url.hostname) and not loopback:
        raise PydanticCustomError(
            "endpoint",
            "expected an https:// URL (or http:// on loopback, for a local API double)",
        )
    return value.rstrip("/")


class HcloudNetwork(SiteModel):
    """The private network between the servers (found or created by name, labelled)."""

    ip_range: Cidr = Field(default="10.0.0.0/16", description="The network's IPv4 range.")
    subnet: Cidr = Field(
        default="10.0.1.0/24", description="The cloud subnet the servers get addresses in."
    )

    @model_validator(mode="after")
    def _inside(self) -> HcloudNetwork:
        import ipaddress

        outer, inner = ipaddress.ip_network(self.ip_range), ipaddress.ip_network(self.subnet)
        if inner.version != outer.version or not inner.subnet_of(outer):  # type: ignore[arg-type]
            raise CrossFieldError([(("subnet",), f"expected a subnet of {self.ip_range}")])
        return self


class HcloudFirewall(SiteModel):
    """The firewall drboot puts in front of the servers (found or created by name, labelled)."""

    operator_cidrs: tuple[Cidr, ...] = Field(
        min_length=1,
        description="Where the operator (drboot) connects from: SSH (22) and the Kubernetes "
        "API (6443) are open to these networks only, e.g. ['203.0.113.7/32'].",
    )


class HcloudProvider(SiteModel):
    """Servers bought from Hetzner Cloud (found by labels before anything is bought)."""

    type: Literal["hcloud"] = Field(description="Hetzner Cloud.")
    token: SecretOnly = Field(
        default=SecretRef(env="HCLOUD_TOKEN"),
        description="API token of the project: {env: VAR} or {file: PATH}.",
    )
    location: NonEmpty = Field(description="Location to create in, e.g. hel1 or fsn1.")
    server_type: NonEmpty = Field(default="cx22", description="Server type, e.g. cx22.")
    image: NonEmpty = Field(default="debian-12", description="System image name.")
    ssh_key_name: NonEmpty = Field(
        default="drboot",
        description="Name under which the operator's public key (ssh.private_key_file) is "
        "registered in the project; an already registered identical key is reused.",
    )
    servers: StrictInt = Field(
        default=1, ge=1, le=7, description="k3s servers: 1, or an odd number >= 3."
    )
    agents: StrictInt = Field(default=0, ge=0, le=20, description="k3s agents.")
    network: HcloudNetwork | None = Field(
        default=None, description="A private network for the servers; None = public only."
    )
    firewall: HcloudFirewall | None = Field(
        default=None, description="A firewall for the servers; None = no cloud firewall."
    )
    create_timeout: Duration = Field(
        default=timedelta(minutes=10),
        description="How long a new server may take to reach 'running'.",
    )
    endpoint: Annotated[str, AfterValidator(_check_endpoint)] | None = Field(
        default=None,
        description="API endpoint; None = https://api.hetzner.cloud/v1 (set for a test double).",
    )

    @model_validator(mode="after")
    def _odd_servers(self) -> HcloudProvider:
        if self.servers != 1 and self.servers % 2 == 0:
            raise CrossFieldError([(("servers",), "expected 1 or an odd number >= 3")])
        return self

    def server_count(self) -> int:
        """How many k3s servers this provider yields."""
        return self.servers


class OpenStackAuth(SiteModel):
    """Keystone v3 password credentials in the site file (the password as a reference)."""

    auth_url: Annotated[str, AfterValidator(_check_endpoint)] = Field(
        description="Keystone v3 URL, e.g. https://keystone.example.org:5000/v3 (https; "
        "http only on loopback, for a local API double)."
    )
    username: NonEmpty = Field(description="OpenStack user name.")
    password: SecretOnly = Field(description="The user's password: {env: VAR} or {file: PATH}.")
    project_name: NonEmpty = Field(description="Project (tenant) the servers are billed to.")
    user_domain_name: NonEmpty = Field(default="Default", description="Domain of the user.")
    project_domain_name: NonEmpty = Field(default="Default", description="Domain of the project.")


class OpenStackProvider(SiteModel):
    """Servers bought from an OpenStack cloud (Nova, Glance, Neutron) through openstacksdk."""

    type: Literal["openstack"] = Field(description="An OpenStack cloud.")
    cloud: NonEmpty | None = Field(
        default=None,
        description="Cloud name in clouds.yaml (its credentials stay there); or give auth.",
    )
    clouds_file: SitePath | None = Field(
        default=None,
        description="The clouds.yaml holding `cloud`; None = openstacksdk's search path "
        "(./clouds.yaml, ~/.config/openstack/, /etc/openstack/).",
    )
    auth: OpenStackAuth | None = Field(
        default=None, description="Credentials given here instead of a clouds.yaml cloud."
    )
    region: NonEmpty = Field(description="Region the servers are created in.")
    country: CountryCode | None = Field(
        default=None,
        description="Where the region is (ISO 3166-1 alpha-2; OpenStack does not say): "
        "checked against sovereignty.allowed_countries.",
    )
    flavor: NonEmpty = Field(description="Flavor name or id of every server.")
    image: NonEmpty = Field(description="Image name or id (a Debian 12 cloud image).")
    keypair: NonEmpty | None = Field(
        default=None,
        description="Nova key pair the servers get; found or imported from the public half of "
        "ssh.private_key_file. None = drboot-<site>.",
    )
    network: NonEmpty = Field(
        description="Existing network drboot reaches the servers on (a provider/public one)."
    )
    private_network: NonEmpty | None = Field(
        default=None,
        description="Network between the servers, found or created with private_cidr; "
        "None = drboot-<site>.",
    )
    private_cidr: Cidr = Field(
        default="10.77.0.0/24", description="Subnet of the private network (if drboot makes it)."
    )
    security_group: NonEmpty | None = Field(
        default=None,
        description="Security group found or created: 22 and 6443 from operator_cidrs, "
        "everything from private_cidr. None = drboot-<site>.",
    )
    operator_cidrs: tuple[Cidr, ...] = Field(
        min_length=1, description="Where the operator connects from (SSH 22, Kubernetes 6443)."
    )
    servers: StrictInt = Field(
        default=1, ge=1, le=7, description="k3s servers: 1, or an odd number >= 3."
    )
    agents: StrictInt = Field(default=0, ge=0, le=20, description="k3s agents.")
    build_timeout: Duration = Field(
        default=timedelta(minutes=10), description="How long a server may stay in BUILD."
    )

    @model_validator(mode="after")
    def _credentials(self) -> OpenStackProvider:
        problems: list[tuple[Loc, str]] = []
        if (self.cloud is None) == (self.auth is None):
            problems.append(((), "expected exactly one of cloud (a clouds.yaml name) or auth"))
        if self.clouds_file is not None and self.cloud is None:
            problems.append((("clouds_file",), "clouds_file needs cloud: the name to use in it"))
        if self.servers != 1 and self.servers % 2 == 0:
            problems.append((("servers",), "expected 1 or an odd number >= 3"))
        raise_if(problems)
        return self

    def server_count(self) -> int:
        """How many k3s servers this provider yields."""
        return self.servers


Provider = Annotated[
    StaticProvider | LabProvider | HcloudProvider | OpenStackProvider,
    Field(discriminator="type"),
]


# --------------------------------------------------------------------------- ssh, kubernetes, disk


class Ssh(SiteModel):
    """How drboot reaches hosts."""

    user: NonEmpty = Field(default="root", description="Remote user.")
    private_key_file: SitePath = Field(
        default=Path("~/.ssh/id_ed25519"), description="Private key used to log in."
    )
    known_hosts_file: SitePath | None = Field(
        default=None, description="known_hosts to verify host keys; None = ~/.ssh/known_hosts."
    )
    trust_on_first_use: bool = Field(
        default=False,
        description="Accept and record an unknown host key (never a changed one); audited, like "
        "--trust-on-first-use.",
    )
    connect_timeout: Duration = Field(
        default=timedelta(seconds=10), description="TCP+SSH handshake."
    )
    command_timeout: Duration = Field(
        default=timedelta(minutes=10), description="One remote command."
    )
    keepalive_interval: Duration = Field(default=timedelta(seconds=5), description="SSH keepalive.")
    sudo: bool | None = Field(default=None, description="Use sudo; None = when user is not root.")

    def use_sudo(self) -> bool:
        """Whether remote commands go through sudo."""
        return self.sudo if self.sudo is not None else self.user != "root"


class Kubernetes(SiteModel):
    """The k3s cluster to install."""

    version: K3sVersion = Field(
        default="v1.30.4+k3s1", description="k3s release, e.g. v1.30.4+k3s1."
    )
    topology: Literal["single", "ha"] = Field(
        default="single", description="single server, or HA embedded etcd (>= 3 servers, odd)."
    )
    install: Literal["download", "airgap"] = Field(
        default="download", description="Fetch k3s from download_url/GitHub, or use airgap_dir."
    )
    airgap_dir: SitePath | None = Field(
        default=None,
        description="k3s binary + images tarball; required for airgap (except provider lab).",
    )
    download_url: str | None = Field(
        default=None,
        description="Where to fetch the k3s binary (https:// or file://); None = GitHub.",
    )
    sha256: Sha256 | None = Field(
        default=None, description="SHA-256 of the binary at download_url."
    )
    tls_sans: tuple[Address, ...] = Field(
        default=(), description="Extra names/IPs in the API cert."
    )
    token: K3sTokenRef = Field(
        default=EscrowRef(escrow="k3s_token"), description="Cluster join token (a reference)."
    )
    api_ready_timeout: Duration = Field(
        default=timedelta(minutes=5), description="Wait for the API."
    )
    data_dir: SitePath = Field(
        default=Path("/var/lib/rancher/k3s"),
        description="k3s --data-dir on every node (etcd writes below it, in server/db).",
    )

    @model_validator(mode="after")
    def _download(self) -> Kubernetes:
        problems: list[tuple[Loc, str]] = []
        url = self.download_url
        if url is not None and not url.startswith(("https://", "file://")):
            problems.append((("download_url",), "expected an https:// or file:// URL"))
        if self.install == "download" and url is not None and self.sha256 is None:
            problems.append((("sha256",), "required when download_url is set"))
        raise_if(problems)
        return self


class SustainedDiskCheck(SiteModel):
    """etcd's write pattern kept up for a while: catches disks that pass a burst only."""

    seconds: int = Field(
        ge=5, le=3600, description="How long fio keeps up the write+fdatasync load (time_based)."
    )


class DiskGate(SiteModel):
    """Refuse a disk too slow for etcd (fio fdatasync p99), before installing k3s."""

    enabled: bool = Field(default=True, description="Run the fio check on every server.")
    directory: SitePath | None = Field(
        default=None,
        description="Directory fio writes to; None = <kubernetes.data_dir>/server/db, where "
        "etcd writes.",
    )
    p99_fdatasync_ms: float = Field(
        default=10.0, gt=0, le=10000, description="Refuse when p99 fdatasync latency exceeds this."
    )
    size: FioSize = Field(default="22m", description="fio --size: how much the job writes.")
    block_size: StrictInt = Field(
        default=2300, ge=512, le=1 << 20, description="fio --bs in bytes."
    )
    runtime_limit: Duration = Field(
        default=timedelta(minutes=2), description="Give up fio after this."
    )
    sustained: SustainedDiskCheck | None = Field(
        default=None,
        description="Also run the write load for `seconds` after the burst and judge its p99 "
        "(p50/p99/max and throughput are reported); None = burst only.",
    )


class CpuGate(SiteModel):
    """Refuse a host whose CPU is stolen or throttled (steal, probe throughput), before k3s."""

    enabled: bool = Field(default=True, description="Run the CPU probe on every server.")
    max_steal_percent: float = Field(
        default=5.0, ge=0, le=100, description="Refuse when /proc/stat steal exceeds this (%)."
    )
    min_throughput_ratio: float = Field(
        default=0.7,
        gt=0,
        le=1,
        description="Refuse when the probe gets less than this share of the CPU time the core "
        "count promises (one core, and every core).",
    )
    window: Duration = Field(
        default=timedelta(seconds=3),
        description="How long the probe runs on one core, then again on every core.",
    )


# --------------------------------------------------------------------------- escrow


class AgeEscrow(SiteModel):
    """Recovery secrets in one age-encrypted bundle."""

    backend: Literal["age"] = Field(description="age-encrypted bundle.")
    bundle: SitePath = Field(description="The encrypted escrow bundle.")
    identity_files: tuple[SitePath, ...] = Field(
        default=(), description="age identity files that can decrypt the bundle."
    )
    passphrase: SecretOnly | None = Field(
        default=None, description="Passphrase of a scrypt bundle: {env: VAR} or {file: PATH}."
    )
    recipients: tuple[AgeRecipient, ...] = Field(
        default=(), description="Recipients `drboot escrow backup` encrypts to (age1...)."
    )

    @model_validator(mode="after")
    def _one_way_in(self) -> AgeEscrow:
        if bool(self.identity_files) == (self.passphrase is not None):
            raise CrossFieldError([((), "expected exactly one of identity_files or passphrase")])
        return self


class ShamirEscrow(SiteModel):
    """Recovery secrets split into Shamir shares held by different people."""

    backend: Literal["shamir"] = Field(description="Shamir secret sharing.")
    bundle: SitePath = Field(description="The encrypted escrow bundle.")
    shares: tuple[SitePath, ...] = Field(
        default=(), description="Share files available for this run."
    )
    threshold: StrictInt = Field(ge=2, le=255, description="Shares needed to open the bundle.")
    total: StrictInt = Field(ge=2, le=255, description="Shares that were made.")

    @model_validator(mode="after")
    def _counts(self) -> ShamirEscrow:
        problems: list[tuple[Loc, str]] = []
        if self.threshold > self.total:
            problems.append((("threshold",), "expected threshold <= total"))
        if len(self.shares) > self.total:
            problems.append((("shares",), "more share files than total"))
        raise_if(problems)
        return self


Escrow = Annotated[AgeEscrow | ShamirEscrow, Field(discriminator="backend")]


class SealedSecrets(SiteModel):
    """The Sealed Secrets controller whose keys are restored from escrow."""

    namespace: SiteName = Field(default="kube-system", description="Controller namespace.")
    controller_name: SiteName = Field(
        default="sealed-secrets-controller", description="Controller Deployment/Service name."
    )
    version: Version = Field(
        default=pins.SEALED_SECRETS_VERSION,
        description="Controller version: the one this drboot ships (pinned manifest).",
    )
    key_renewal_period: Duration = Field(
        default=timedelta(days=30), description="Key renewal period."
    )
    verify_in_preflight: bool = Field(
        default=True, description="Check the escrowed key can unseal a secret of the repo first."
    )

    @model_validator(mode="after")
    def _shipped_version(self) -> SealedSecrets:
        _pinned(self.version, pins.SEALED_SECRETS_VERSION, "Sealed Secrets")
        return self


# --------------------------------------------------------------------------- reconciler, repo


class ArgocdReconciler(SiteModel):
    """Argo CD, pointed at the repository."""

    type: Literal["argocd"] = Field(description="Argo CD.")
    version: Version = Field(
        default=pins.ARGOCD_VERSION,
        description="Argo CD version: the one this drboot ships (pinned manifest).",
    )
    namespace: SiteName = Field(default="argocd", description="Namespace to install into.")
    app_of_apps: str | None = Field(
        default=None, description="Path of the app-of-apps in the repo; None = repo.path."
    )
    project: SiteName = Field(default="default", description="Argo CD project of the root app.")

    @model_validator(mode="after")
    def _shipped_version(self) -> ArgocdReconciler:
        _pinned(self.version, pins.ARGOCD_VERSION, "Argo CD")
        return self


class FluxReconciler(SiteModel):
    """Flux, pointed at the repository."""

    type: Literal["flux"] = Field(description="Flux.")
    version: Version = Field(
        default=pins.FLUX_VERSION,
        description="Flux version: the one this drboot ships (pinned manifest).",
    )
    namespace: SiteName = Field(default="flux-system", description="Namespace to install into.")
    interval: Duration = Field(default=timedelta(minutes=1), description="Reconcile interval.")

    @model_validator(mode="after")
    def _shipped_version(self) -> FluxReconciler:
        _pinned(self.version, pins.FLUX_VERSION, "Flux")
        return self


Reconciler = Annotated[ArgocdReconciler | FluxReconciler, Field(discriminator="type")]

_SCP_LIKE = re.compile(r"[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^/].*|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:/.+")
RepoKind = Literal["ssh", "https", "file"]


def repo_url_kind(url: str) -> RepoKind | None:
    """Classify a repository URL; None when it is not one drboot accepts."""
    if url.startswith("ssh://") or _SCP_LIKE.fullmatch(url):
        return "ssh"
    if url.startswith("https://"):
        return "https"
    if url.startswith("file://") or "://" not in url:
        return "file"
    return None


def _check_repo_url(value: str, info: ValidationInfo) -> str:
    kind = repo_url_kind(value)
    if not value.strip() or kind is None:
        raise PydanticCustomError(
            "repo_url",
            "expected git@host:org/repo.git, ssh://..., https://..., file://... or a path",
        )
    if kind == "file" and not value.startswith("file://"):
        return str(resolve_path(value, info))
    return value


def _check_repo_path(value: str) -> str:
    parts = Path(value).parts
    if value.startswith("/") or ".." in parts or not value:
        raise PydanticCustomError(
            "repo_path", "expected a path inside the repository (relative, no '..')"
        )
    return value


class Repo(SiteModel):
    """The GitOps repository the reconciler follows."""

    url: Annotated[str, AfterValidator(_check_repo_url)] = Field(
        description="git@host:org/repo.git, ssh://, https://, file:// or a local path."
    )
    revision: NonEmpty = Field(default="main", description="Branch, tag or commit.")
    path: Annotated[str, AfterValidator(_check_repo_path)] = Field(
        default=".", description="Directory in the repository the reconciler applies."
    )
    deploy_key: DeployKeyRef | None = Field(
        default=None, description="SSH deploy key; defaults to {escrow: deploy_key} for ssh URLs."
    )
    known_hosts: KnownHostsRef | None = Field(
        default=None,
        description="known_hosts for the git host; defaults to {escrow: known_hosts} (ssh).",
    )
    country: CountryCode | None = Field(
        default=None,
        description="Where the git host keeps the repo (ISO 3166-1 alpha-2); reported, and "
        "checked against sovereignty.allowed_countries.",
    )
    pin: Literal["branch", "commit"] = Field(
        default="branch",
        description="What the reconciler follows: the branch, or the commit preflight verified.",
    )

    @model_validator(mode="before")
    @classmethod
    def _ssh_defaults(cls, data: Any) -> Any:
        url = data.get("url") if isinstance(data, dict) else None
        if isinstance(url, str) and repo_url_kind(url) == "ssh":
            if "known_hosts" in data and data["known_hosts"] is None:
                # null would switch host pinning off for the git host without a word
                raise CrossFieldError(
                    [
                        (
                            ("known_hosts",),
                            "an ssh repo needs known_hosts: leave the key out to use the "
                            "escrowed one ({escrow: known_hosts}), or give {file: PATH}",
                        )
                    ]
                )
            data = dict(data)
            data.setdefault("deploy_key", {"escrow": "deploy_key"})
            data.setdefault("known_hosts", {"escrow": "known_hosts"})
        return data

    def kind(self) -> RepoKind:
        """ssh, https or file."""
        kind = repo_url_kind(self.url)
        assert kind is not None  # validated
        return kind


# --------------------------------------------------------------------------- the rest


class SyncWait(SiteModel):
    """When the restore counts as done: every app Synced+Healthy for a while."""

    timeout: Duration = Field(default=timedelta(minutes=30), description="Give up after this.")
    poll_interval: Duration = Field(
        default=timedelta(seconds=5),
        description="Re-judge the apps at least this often (a watched change wakes it at once).",
    )
    require_all: bool = Field(default=True, description="Every app must be Synced+Healthy.")
    ignore_apps: tuple[NonEmpty, ...] = Field(default=(), description="Apps not waited for.")
    stable_for: Duration = Field(
        default=timedelta(seconds=30), description="How long all apps must stay Synced+Healthy."
    )
    sync_manual_apps: bool = Field(
        default=False,
        description="Start one sync (as `argocd app sync` does) of each app without automated "
        "sync, at the verified commit; otherwise such apps are only named.",
    )


class Sovereignty(SiteModel):
    """Where the restored data may land: refuse hosts outside these countries, in preflight."""

    allowed_countries: tuple[CountryCode, ...] = Field(
        default=(),
        description="ISO 3166-1 alpha-2 codes (quote 'NO'); empty = no restriction. A host or "
        "repo in another country, or of unknown country, is refused before anything is created.",
    )


class Rto(SiteModel):
    """The recovery time objective the report is measured against."""

    objective: Duration = Field(default=timedelta(hours=1), description="Recovery time objective.")


class Report(SiteModel):
    """Where and how the drill/restore report is written."""

    directory: SitePath | None = Field(
        default=None, description="Report directory; None = run folder."
    )
    formats: tuple[Literal["json", "markdown", "junit", "html"], ...] = Field(
        default=("json", "markdown", "junit", "html"), description="Report formats to write."
    )


class Metrics(SiteModel):
    """Prometheus metrics of every drill and restore (node-exporter textfile collector)."""

    textfile: SitePath | None = Field(
        default=None,
        description="The .prom file rewritten at the end of every run; None = no metrics.",
    )


class Webhook(SiteModel):
    """A webhook told the outcome, RTO and failed step at the end of every drill and restore."""

    url: SecretOnly = Field(description="The webhook URL, as a secret reference.")
    format: Literal["json", "slack"] = Field(
        default="json", description="json (drboot's body) or slack (an incoming-webhook text)."
    )
    timeout: Duration = Field(
        default=timedelta(seconds=10), description="Give up on the webhook after this."
    )


class Notify(SiteModel):
    """Who is told when a run ends (a failing notification never fails the run)."""

    webhook: Webhook | None = Field(default=None, description="A webhook; None = none.")


class Site(SiteModel):
    """A site: everything needed to rebuild one cluster from nothing."""

    apiVersion: Literal["drboot.dev/v1"] = Field(description="Site file format version.")
    kind: Literal["Site"] = Field(default="Site", description="Always Site.")
    name: SiteName = Field(description="Site name; keys the lock and the journal.")
    description: str = Field(default="", description="Free text for humans.")
    extends: str | None = Field(
        default=None,
        description="A base site file this one is laid over (path relative to this file): "
        "mappings merged, lists and values replaced; resolved when the file is loaded.",
    )
    provider: Provider = Field(description="Where the hosts come from.")
    kubernetes: Kubernetes = Field(
        default_factory=lambda: Kubernetes(), description="The k3s cluster."
    )
    disk_gate: DiskGate = Field(default_factory=lambda: DiskGate(), description="etcd disk check.")
    cpu_gate: CpuGate = Field(default_factory=lambda: CpuGate(), description="CPU steal check.")
    escrow: Escrow = Field(description="Where the recovery secrets are escrowed.")
    sealed_secrets: SealedSecrets = Field(
        default_factory=lambda: SealedSecrets(), description="Sealed Secrets controller."
    )
    reconciler: Reconciler = Field(
        default_factory=lambda: ArgocdReconciler(type="argocd"),
        description="GitOps reconciler to install.",
    )
    repo: Repo = Field(description="The GitOps repository.")
    sync_wait: SyncWait = Field(default_factory=lambda: SyncWait(), description="Waiting for apps.")
    rto: Rto = Field(default_factory=lambda: Rto(), description="Recovery time objective.")
    sovereignty: Sovereignty = Field(
        default_factory=lambda: Sovereignty(), description="Countries the data may land in."
    )
    ssh: Ssh = Field(default_factory=lambda: Ssh(), description="SSH settings.")
    report: Report = Field(default_factory=lambda: Report(), description="Report output.")
    metrics: Metrics = Field(
        default_factory=lambda: Metrics(), description="Prometheus textfile metrics."
    )
    notify: Notify = Field(default_factory=lambda: Notify(), description="End-of-run webhook.")

    @model_validator(mode="after")
    def _cross_checks(self) -> Site:
        problems: list[tuple[Loc, str]] = []
        servers = self.provider.server_count()
        k8s = self.kubernetes
        if k8s.topology == "ha" and (servers < 3 or servers % 2 == 0):
            problems.append(
                (
                    ("kubernetes", "topology"),
                    f"topology ha needs an odd number >= 3 of servers, the provider has {servers}",
                )
            )
        if k8s.topology == "single" and servers != 1:
            problems.append(
                (
                    ("kubernetes", "topology"),
                    f"topology single needs exactly 1 server, the provider has {servers} "
                    "(set topology: ha)",
                )
            )
        if (
            k8s.install == "airgap"
            and k8s.airgap_dir is None
            and not isinstance(self.provider, LabProvider)
        ):
            problems.append((("kubernetes", "airgap_dir"), "required when install is airgap"))
        if self.reconciler.type == "flux" and self.repo.kind() == "file":
            problems.append(
                (
                    ("repo", "url"),
                    "flux's GitRepository accepts only ssh:// or https:// URLs, not a local "
                    "path or file:// (use argocd, or serve the repo over https/ssh)",
                )
            )
        raise_if(problems)
        return self

    def digest(self) -> str:
        """SHA-256 of the canonical JSON form; identical sites have identical digests."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def server_count(self) -> int:
        """How many k3s servers the provider yields."""
        return self.provider.server_count()

    def etcd_dir(self) -> Path:
        """Where etcd writes on a server: what the disk gate measures."""
        if self.disk_gate.directory is not None:
            return self.disk_gate.directory
        return self.kubernetes.data_dir / "server" / "db"
