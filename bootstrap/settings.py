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
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    Tag,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from bootstrap import pins

API_VERSION = "drboot.dev/v1"

Loc = tuple[str | int, ...]


class CrossFieldError(ValueError):
    """A check across fields failed; ``problems`` are (location, text) pairs.

    Locations are relative to the model that raised it. The loader joins them
    to the model's own location and points at the YAML node of each one.
    """

    def __init__(self, problems: Sequence[tuple[Loc, str]]) -> None:
        self.problems: tuple[tuple[Loc, str], ...] = tuple(problems)
        super().__init__("; ".join(f"{'.'.join(map(str, loc))}: {text}" for loc, text in problems))


def _raise_if(problems: list[tuple[Loc, str]]) -> None:
    if problems:
        raise CrossFieldError(problems)


class _Model(BaseModel):
    """Base of every site model: strict about keys, frozen, defaults validated too."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        validate_default=True,
    )


# --------------------------------------------------------------------------- durations

_DURATION_RE = re.compile(r"(?:(\d{1,6})d)?(?:(\d{1,6})h)?(?:(\d{1,6})m)?(?:(\d{1,9})s)?")
_MAX_DURATION = timedelta(days=3650)
_DURATION_HELP = "expected a duration like 30m, 1h30m, 90s, 30d or a number of seconds"


def parse_duration(value: Any) -> timedelta:
    """Turn ``"1h30m"``/``"90s"``/``"30d"``/``90`` into a positive ``timedelta``.

    Raises ``PydanticCustomError('duration', ...)`` for anything else (it never
    echoes the value).
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.isdigit() and len(text) <= 12:
            seconds = float(int(text))
        else:
            match = _DURATION_RE.fullmatch(text)
            if not text or match is None:
                raise PydanticCustomError("duration", _DURATION_HELP)
            d, h, m, s = (int(g) if g else 0 for g in match.groups())
            seconds = float(((d * 24 + h) * 60 + m) * 60 + s)
    else:
        raise PydanticCustomError("duration", _DURATION_HELP)
    if seconds <= 0:
        raise PydanticCustomError("duration", "expected a duration greater than zero")
    if seconds > _MAX_DURATION.total_seconds():
        raise PydanticCustomError("duration", "expected a duration of at most 3650d")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The short form of a duration: ``timedelta(seconds=5400)`` -> ``"1h30m"``."""
    total = int(value.total_seconds())
    if total <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^(\d+d)?(\d+h)?(\d+m)?(\d+s)?$|^\d+$"},
                {"type": "integer", "exclusiveMinimum": 0},
            ],
            "examples": ["90s", "5m", "1h30m", "30d", 600],
        }
    ),
]


# --------------------------------------------------------------------------- strings with a shape


def _shaped(pattern: str, kind: str, message: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if compiled.fullmatch(value) is None:
            raise PydanticCustomError(kind, message)
        return value

    return AfterValidator(check)


def _schema_pattern(pattern: str) -> Callable[[dict[str, Any]], None]:
    def extra(schema: dict[str, Any]) -> None:
        schema["pattern"] = f"^(?:{pattern})$"

    return extra


_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
SiteName = Annotated[
    str,
    _shaped(_DNS_LABEL, "site_name", "expected a DNS label: lowercase letters, digits and '-'"),
    Field(json_schema_extra=_schema_pattern(_DNS_LABEL)),
]
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)([A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*\.?"
)


def _check_address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        labels = value.rstrip(".").split(".")
        if _HOSTNAME.fullmatch(value) is None or labels[-1].isdigit():
            raise PydanticCustomError("address", "expected an IP address or a DNS name") from None
    return value


Address = Annotated[str, AfterValidator(_check_address)]
_FINGERPRINT = r"SHA256:[A-Za-z0-9+/]{43}"
Fingerprint = Annotated[
    str,
    _shaped(
        _FINGERPRINT,
        "fingerprint",
        "expected an SSH host key fingerprint like SHA256: followed by 43 base64 characters "
        "(ssh-keyscan HOST | ssh-keygen -lf -)",
    ),
    Field(json_schema_extra=_schema_pattern(_FINGERPRINT)),
]
_K3S_VERSION = r"v\d+\.\d+\.\d+\+k3s\d+"
K3sVersion = Annotated[
    str,
    _shaped(_K3S_VERSION, "k3s_version", "expected a k3s version like v1.30.4+k3s1"),
    Field(json_schema_extra=_schema_pattern(_K3S_VERSION)),
]
_SEMVER = r"v?\d+\.\d+\.\d+"
Version = Annotated[
    str,
    _shaped(_SEMVER, "version", "expected a version like v1.2.3"),
    Field(json_schema_extra=_schema_pattern(_SEMVER)),
]
_SHA256 = r"[0-9a-fA-F]{64}"
Sha256 = Annotated[
    str,
    _shaped(_SHA256, "sha256", "expected a SHA-256 digest: 64 hexadecimal characters"),
    Field(json_schema_extra=_schema_pattern(_SHA256)),
]
_AGE_RECIPIENT = r"age1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}"
AgeRecipient = Annotated[
    str,
    _shaped(
        _AGE_RECIPIENT,
        "age_recipient",
        "expected an age X25519 recipient: age1 followed by 58 bech32 characters",
    ),
    Field(json_schema_extra=_schema_pattern(_AGE_RECIPIENT)),
]
_ENV_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
EnvName = Annotated[
    str,
    _shaped(_ENV_NAME, "env_name", "expected an environment variable name like DRBOOT_TOKEN"),
    Field(json_schema_extra=_schema_pattern(_ENV_NAME)),
]
_FIO_SIZE = r"\d{1,9}[kKmMgG]?"
FioSize = Annotated[
    str,
    _shaped(_FIO_SIZE, "fio_size", "expected a size like 22m, 512k or 1g"),
    Field(json_schema_extra=_schema_pattern(_FIO_SIZE)),
]
NonEmpty = Annotated[str, Field(min_length=1)]


# --------------------------------------------------------------------------- paths


def _refuse_empty_path(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise PydanticCustomError("path_empty", "expected a path, got an empty string")
    return value


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Expand ``~`` and anchor a relative path at the site file's directory."""
    # os.path.expanduser leaves an unknown ~user alone (pathlib raises RuntimeError).
    path = Path(os.path.expanduser(value))
    context = info.context if isinstance(info.context, dict) else {}
    base = context.get("base_dir")
    if not path.is_absolute() and isinstance(base, Path | str):
        path = Path(os.path.normpath(Path(base) / path))
    return path


SitePath = Annotated[Path, BeforeValidator(_refuse_empty_path), AfterValidator(_resolve_path)]


# --------------------------------------------------------------------------- secret references

EscrowItem = Literal["k3s_token", "deploy_key", "known_hosts"]


class SecretRef(_Model):
    """Where a secret can be read at run time: an environment variable or a file."""

    env: EnvName | None = Field(
        default=None, description="Name of an environment variable holding it."
    )
    file: SitePath | None = Field(
        default=None, description="File holding it (0600, read at run time)."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise PydanticCustomError(
                "secret_ref", "expected exactly one of {env: VAR} or {file: PATH}"
            )
        return self


class EscrowRef(_Model):
    """A secret kept in the escrow bundle (restored before it is needed)."""

    escrow: EscrowItem = Field(description="Name of the item in the escrow bundle.")


def _refuse_inline(suggest: str) -> BeforeValidator:
    def check(value: Any) -> Any:
        if value is None or isinstance(value, dict | SecretRef | EscrowRef):
            return value
        raise PydanticCustomError(
            "inline_secret", "inline secret not allowed: use {suggest}", {"suggest": suggest}
        )

    return BeforeValidator(check)


def _ref_kind(value: Any) -> str | None:
    if isinstance(value, EscrowRef) or (isinstance(value, dict) and "escrow" in value):
        return "escrow-ref"
    if isinstance(value, SecretRef | dict):
        return "secret-ref"
    return None


_AnyRef = Annotated[EscrowRef, Tag("escrow-ref")] | Annotated[SecretRef, Tag("secret-ref")]
SecretOnly = Annotated[SecretRef, _refuse_inline("{env: VAR} or {file: PATH}")]
K3sTokenRef = Annotated[
    _AnyRef,
    Discriminator(_ref_kind),
    _refuse_inline("{env: VAR}, {file: PATH} or {escrow: k3s_token}"),
]
DeployKeyRef = Annotated[
    _AnyRef,
    Discriminator(_ref_kind),
    _refuse_inline("{env: VAR}, {file: PATH} or {escrow: deploy_key}"),
]
KnownHostsRef = Annotated[
    _AnyRef,
    Discriminator(_ref_kind),
    _refuse_inline("{env: VAR}, {file: PATH} or {escrow: known_hosts}"),
]


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


class Host(_Model):
    """One machine of a static provider, reached over SSH."""

    name: SiteName = Field(description="Node name (also the k3s node name).")
    address: Address = Field(description="IP address or DNS name to SSH to.")
    role: Literal["server", "agent"] = Field(default="server", description="k3s server or agent.")
    ssh_port: int = Field(default=22, ge=1, le=65535, description="SSH port.")
    host_key_fingerprint: Fingerprint | None = Field(
        default=None, description="Pinned SSH host key (SHA256:...); None = use known_hosts / TOFU."
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Kubernetes node labels (k3s --node-label)."
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
        _raise_if(problems)
        return self


class StaticProvider(_Model):
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
        _raise_if(problems)
        return self

    def server_count(self) -> int:
        """How many k3s servers this provider yields."""
        return sum(1 for h in self.hosts if h.role == "server")


class LabProvider(_Model):
    """Throw-away lab hosts in network namespaces on this machine (10.200.N.0/24)."""

    type: Literal["lab"] = Field(description="Local lab hosts (systemd-nspawn, root).")
    servers: int = Field(
        default=1, ge=1, le=7, description="k3s servers: 1, or an odd number >= 3."
    )
    agents: int = Field(default=0, ge=0, le=8, description="k3s agents.")
    subnet_index: int | None = Field(
        default=None, ge=0, le=255, description="N of 10.200.N.0/24; None = pick a free one."
    )
    state_dir: SitePath | None = Field(
        default=None, description="Where lab hosts and their state live; None = the lab default."
    )
    disk: Literal["fast", "slow"] = Field(
        default="fast", description="'slow' throttles the etcd disk to demonstrate the disk gate."
    )
    slow_disk_iops: int = Field(
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
        _raise_if(problems)
        return self

    def server_count(self) -> int:
        """How many k3s servers this provider yields."""
        return self.servers


class HcloudProvider(_Model):
    """Hetzner Cloud servers created for the restore (declared; implemented later)."""

    type: Literal["hcloud"] = Field(description="Hetzner Cloud.")
    token: SecretOnly = Field(description="Hetzner API token: {env: VAR} or {file: PATH}.")
    location: NonEmpty = Field(description="Hetzner location, e.g. hel1.")
    server_type: NonEmpty = Field(description="Hetzner server type, e.g. cx22.")
    image: NonEmpty = Field(default="debian-12", description="OS image name.")
    servers: int = Field(
        default=1, ge=1, le=7, description="k3s servers: 1, or an odd number >= 3."
    )
    agents: int = Field(default=0, ge=0, le=50, description="k3s agents.")
    ssh_key_name: NonEmpty = Field(description="Name of the SSH key registered in the project.")

    def server_count(self) -> int:
        """How many k3s servers this provider yields."""
        return self.servers


class OpenstackProvider(_Model):
    """OpenStack servers created for the restore (declared; implemented later)."""

    type: Literal["openstack"] = Field(description="OpenStack.")
    cloud: NonEmpty = Field(description="Entry name in clouds.yaml.")
    flavor: NonEmpty = Field(description="Server flavor.")
    image: NonEmpty = Field(description="Image name.")
    network: NonEmpty = Field(description="Network to attach servers to.")
    servers: int = Field(
        default=1, ge=1, le=7, description="k3s servers: 1, or an odd number >= 3."
    )
    agents: int = Field(default=0, ge=0, le=50, description="k3s agents.")

    def server_count(self) -> int:
        """How many k3s servers this provider yields."""
        return self.servers


Provider = Annotated[
    StaticProvider | LabProvider | HcloudProvider | OpenstackProvider,
    Field(discriminator="type"),
]


# --------------------------------------------------------------------------- ssh, kubernetes, disk


class Ssh(_Model):
    """How drboot reaches hosts."""

    user: NonEmpty = Field(default="root", description="Remote user.")
    private_key_file: SitePath = Field(
        default=Path("~/.ssh/id_ed25519"), description="Private key used to log in."
    )
    known_hosts_file: SitePath | None = Field(
        default=None, description="known_hosts to verify host keys; None = ~/.ssh/known_hosts."
    )
    trust_on_first_use: bool = Field(
        default=False, description="Accept and record an unknown host key (never a changed one)."
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


class Kubernetes(_Model):
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
        _raise_if(problems)
        return self


class DiskGate(_Model):
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
    block_size: int = Field(default=2300, ge=512, le=1 << 20, description="fio --bs in bytes.")
    runtime_limit: Duration = Field(
        default=timedelta(minutes=2), description="Give up fio after this."
    )


# --------------------------------------------------------------------------- escrow


class AgeEscrow(_Model):
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


class ShamirEscrow(_Model):
    """Recovery secrets split into Shamir shares held by different people."""

    backend: Literal["shamir"] = Field(description="Shamir secret sharing.")
    bundle: SitePath = Field(description="The encrypted escrow bundle.")
    shares: tuple[SitePath, ...] = Field(
        default=(), description="Share files available for this run."
    )
    threshold: int = Field(ge=2, le=255, description="Shares needed to open the bundle.")
    total: int = Field(ge=2, le=255, description="Shares that were made.")

    @model_validator(mode="after")
    def _counts(self) -> ShamirEscrow:
        problems: list[tuple[Loc, str]] = []
        if self.threshold > self.total:
            problems.append((("threshold",), "expected threshold <= total"))
        if len(self.shares) > self.total:
            problems.append((("shares",), "more share files than total"))
        _raise_if(problems)
        return self


Escrow = Annotated[AgeEscrow | ShamirEscrow, Field(discriminator="backend")]


class SealedSecrets(_Model):
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


class ArgocdReconciler(_Model):
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


class FluxReconciler(_Model):
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
        path = Path(os.path.expanduser(value))
        context = info.context if isinstance(info.context, dict) else {}
        base = context.get("base_dir")
        if not path.is_absolute() and isinstance(base, Path | str):
            path = Path(os.path.normpath(Path(base) / path))
        return str(path)
    return value


def _check_repo_path(value: str) -> str:
    parts = Path(value).parts
    if value.startswith("/") or ".." in parts or not value:
        raise PydanticCustomError(
            "repo_path", "expected a path inside the repository (relative, no '..')"
        )
    return value


class Repo(_Model):
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

    @model_validator(mode="before")
    @classmethod
    def _ssh_defaults(cls, data: Any) -> Any:
        url = data.get("url") if isinstance(data, dict) else None
        if isinstance(url, str) and repo_url_kind(url) == "ssh":
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


class SyncWait(_Model):
    """When the restore counts as done: every app Synced+Healthy for a while."""

    timeout: Duration = Field(default=timedelta(minutes=30), description="Give up after this.")
    poll_interval: Duration = Field(
        default=timedelta(seconds=5), description="Poll sync state this often."
    )
    require_all: bool = Field(default=True, description="Every app must be Synced+Healthy.")
    ignore_apps: tuple[NonEmpty, ...] = Field(default=(), description="Apps not waited for.")
    stable_for: Duration = Field(
        default=timedelta(seconds=30), description="How long all apps must stay Synced+Healthy."
    )


class Rto(_Model):
    """The recovery time objective the report is measured against."""

    objective: Duration = Field(default=timedelta(hours=1), description="Recovery time objective.")


class Report(_Model):
    """Where and how the drill/restore report is written."""

    directory: SitePath | None = Field(
        default=None, description="Report directory; None = run folder."
    )
    formats: tuple[Literal["json", "markdown", "junit"], ...] = Field(
        default=("json", "markdown"), description="Report formats to write."
    )


class Site(_Model):
    """A site: everything needed to rebuild one cluster from nothing."""

    apiVersion: Literal["drboot.dev/v1"] = Field(description="Site file format version.")
    kind: Literal["Site"] = Field(default="Site", description="Always Site.")
    name: SiteName = Field(description="Site name; keys the lock and the journal.")
    description: str = Field(default="", description="Free text for humans.")
    provider: Provider = Field(description="Where the hosts come from.")
    kubernetes: Kubernetes = Field(
        default_factory=lambda: Kubernetes(), description="The k3s cluster."
    )
    disk_gate: DiskGate = Field(default_factory=lambda: DiskGate(), description="etcd disk check.")
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
    ssh: Ssh = Field(default_factory=lambda: Ssh(), description="SSH settings.")
    report: Report = Field(default_factory=lambda: Report(), description="Report output.")

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
        _raise_if(problems)
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
