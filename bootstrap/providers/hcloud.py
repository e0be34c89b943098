"""Hetzner Cloud: servers bought through the API, found by their drboot labels first.

Why: a team whose data centre is gone has no hosts to list; this provider makes them. It is
the only module that imports the ``hcloud`` library. Every call goes through one capped,
polite retry (``providers.cloud.retry``: rate limits with their reset header, 5xx, locked,
conflict) and every vendor error becomes a located drboot error naming the call and the
fix, without the token.

Order of a create, each part found before it is made (a re-run or resumed restore never buys
a second server):

1. read-only checks: token, location (its country), server type (available and priced in
   the location), image for the type's architecture. They also run in preflight, through
   ``countries()``, before anything is created; quota is not exposed by the API, so a quota
   error can only come from the create itself (then: a clear error, exit 4, ``resume``).
2. the operator's SSH key (by fingerprint, else by name, else registered), the private
   network, the firewall (labelled with the owner);
3. per server: an existing one with this name and the owner's labels is used (powered on if
   off, waited for if still starting); otherwise a host key is made, pinned and handed to
   the server through cloud-init user data, and the server is bought with the labels.

A drill owns only the servers labelled with its run; ``destroy`` deletes exactly those (and
the drill's own network/firewall/key), never a server without the owner's labels.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TypeVar

import requests
from cryptography.hazmat.primitives import serialization
from hcloud import APIException, Client
from hcloud.firewalls import BoundFirewall, FirewallRule
from hcloud.images import BoundImage
from hcloud.locations import BoundLocation
from hcloud.networks import BoundNetwork, NetworkSubnet
from hcloud.server_types import BoundServerType
from hcloud.servers import BoundServer
from hcloud.ssh_keys import BoundSSHKey

from bootstrap import secretrefs
from bootstrap.errors import BootstrapError, PermanentError, PreflightError
from bootstrap.providers.base import HostInfo, Progress
from bootstrap.providers.cloud.hostkeys import PinnedHostKeys
from bootstrap.providers.cloud.labels import (
    RUN_LABEL,
    SITE_LABEL,
    LabelledServer,
    Ownership,
    Role,
    wanted_names,
)
from bootstrap.providers.cloud.retry import (
    CloudCallError,
    CloudFault,
    CloudRetryPolicy,
    call,
    delay_from_headers,
)
from bootstrap.providers.cloud.userdata import build_user_data, generate_host_key
from bootstrap.settings import HcloudProvider, Site

T = TypeVar("T")
DEFAULT_ENDPOINT = "https://api.hetzner.cloud/v1"
POLL = 1.0  # seconds between looks at a server that is starting or being deleted
_GONE = ("deleting",)


@dataclass(frozen=True)
class Offer:
    """What would be bought, read from the API before anything is: the plan's line."""

    location: str
    city: str
    country: str
    network_zone: str
    server_type: str
    architecture: str
    image_id: int
    price_hourly_gross: str | None  # EUR incl. VAT, as the API gives it


class HcloudHosts:
    kind = "hcloud"
    creates_hosts = True
    manages_ssh_key = False  # the operator's key is the site's ssh.private_key_file

    def __init__(
        self, site: Site, state_root: Path | None = None, drill_run: str | None = None
    ) -> None:
        assert isinstance(site.provider, HcloudProvider)
        self.site = site
        self.cfg: HcloudProvider = site.provider
        self.owner = Ownership(site.name, drill_run)
        self.roles: dict[str, Role] = wanted_names(self.owner, self.cfg.servers, self.cfg.agents)
        root = state_root if state_root is not None else Path("~/.local/state/drboot").expanduser()
        self.pins = PinnedHostKeys(root, self.kind, site.name)
        self.policy = CloudRetryPolicy()
        self.requests = 0  # API requests this provider made (retries included)
        self._client: Client | None = None
        self._headers: dict[str, str] = {}  # of the last answer (rate-limit headers)
        self._status: int | None = None  # of the last answer
        self._offer: Offer | None = None
        self._log: Progress = lambda _msg: None

    # ------------------------------------------------------------------ the API edge
    def client(self) -> Client:
        if self._client is None:
            token = secretrefs.resolve(self.cfg.token, field="provider.token")
            client = Client(
                token=token,
                api_endpoint=self.cfg.endpoint or DEFAULT_ENDPOINT,
                application_name="drboot",
                timeout=(10, 60),
            )
            # One retry loop, ours: capped and honouring the reset headers. The library's own
            # (uncapped by time, blind to the headers) would multiply our cap; its response
            # headers are kept for ``_translate``. Pinned library version: hcloud 2.27.0.
            base = client._client
            base._retry_max_retries = 0
            base._session.hooks["response"].append(self._remember)
            self._client = client
        return self._client

    def _remember(self, response: requests.Response, *args: object, **kwargs: object) -> None:
        self.requests += 1
        self._headers = dict(response.headers)
        self._status = response.status_code

    def _translate(self, exc: BaseException) -> CloudFault | None:
        if isinstance(exc, APIException):
            code = exc.code if isinstance(exc.code, str) else None
            status = exc.code if isinstance(exc.code, int) else self._status
            return CloudFault(
                status=status,
                code=code,
                message=str(exc.message),
                retry_after=delay_from_headers(self._headers),
            )
        if isinstance(exc, requests.ConnectionError | requests.Timeout):
            return CloudFault(None, "network", type(exc).__name__)
        return None

    def _api(self, what: str, fn: Callable[[], T]) -> T:
        def retried(attempt: int, fault: CloudFault, delay: float) -> None:
            self._log(
                f"Hetzner Cloud {what}: {fault.code or fault.status} (attempt {attempt}), "
                f"asking again in {delay:.1f} s"
            )

        try:
            return call(
                fn, what=what, translate=self._translate, policy=self.policy, on_retry=retried
            )
        except CloudCallError as err:
            raise self._error(err) from None

    def _error(self, err: CloudCallError) -> BootstrapError:
        code = err.fault.code or ""
        where = f"Hetzner Cloud API {err.what}"
        if code == "unauthorized" or err.fault.status == 401:
            return PreflightError(
                f"{where}: the token was refused (unauthorized)",
                target=self.kind,
                hint="check provider.token (a read/write API token of the project)",
            )
        if code == "resource_limit_exceeded":
            return PermanentError(
                f"{where}: the project's limit is reached ({err.fault.message})",
                target=self.kind,
                hint="ask Hetzner to raise the limit (console: Limits), then "
                f"`drboot resume {self._run}`; servers already made are used again, not bought "
                f"twice{self._give_up}",
            )
        if code == "rate_limit_exceeded" or err.fault.retryable:
            return PermanentError(
                f"{where}: {err}; gave up within the retry cap "
                f"({self.policy.attempts} attempts, {self.policy.budget:.0f} s)",
                target=self.kind,
                hint=f"wait a few minutes, then `drboot resume {self._run}`{self._give_up}",
            )
        return PermanentError(f"{where}: {err}", target=self.kind)

    @property
    def _run(self) -> str:
        return self.owner.run_id or "RUN_ID"

    @property
    def _give_up(self) -> str:
        """For a drill: how to give up and stop paying (its servers are throw-away)."""
        if self.owner.run_id is None:
            return ""
        return f"; or give up: `drboot teardown {self.owner.run_id}` destroys what it made"

    # ------------------------------------------------------------------ read-only checks
    def offer(self) -> Offer:
        """Check token, location, type and image (read-only); what would be bought."""
        if self._offer is not None:
            return self._offer
        c = self.client()
        cfg = self.cfg
        location = self._api(
            f"GET /locations?name={cfg.location}", lambda: c.locations.get_by_name(cfg.location)
        )
        if location is None:
            names = [loc.name for loc in self._api("GET /locations", c.locations.get_all)]
            raise PreflightError(
                f"Hetzner Cloud has no location {cfg.location!r}",
                target=self.kind,
                hint=f"set provider.location to one of {', '.join(str(n) for n in names)}",
            )
        stype = self._api(
            f"GET /server_types?name={cfg.server_type}",
            lambda: c.server_types.get_by_name(cfg.server_type),
        )
        if stype is None:
            raise PreflightError(
                f"Hetzner Cloud has no server type {cfg.server_type!r}",
                target=self.kind,
                hint="set provider.server_type to one `hcloud server-type list` shows",
            )
        price = _price_in(stype, cfg.location)
        if price is None:
            raise PreflightError(
                f"server type {cfg.server_type} is not offered in {cfg.location}",
                target=self.kind,
                hint="choose another provider.server_type or provider.location",
            )
        arch = str(stype.architecture or "x86")
        image = self._api(
            f"GET /images?name={cfg.image}",
            lambda: c.images.get_by_name_and_architecture(cfg.image, arch),
        )
        if image is None:
            raise PreflightError(
                f"Hetzner Cloud has no image {cfg.image!r} for {arch} ({cfg.server_type})",
                target=self.kind,
                hint="set provider.image to a system image name, e.g. debian-12",
            )
        self._offer = _offer_of(location, stype, image, price)
        return self._offer

    def wanted(self) -> list[str]:
        return list(self.roles)

    def countries(self) -> dict[str, str | None]:
        """The location's country; reading it checks token, location, type and image."""
        country = self.offer().country
        return {name: country for name in self.wanted()}

    def describe(self, names: list[str]) -> str:
        """The plan's line: N x type in location, with the hourly price the API states."""
        o = self.offer()
        each = f" at EUR {float(o.price_hourly_gross):.4f}/h each" if o.price_hourly_gross else ""
        return (
            f"{len(names)} x {o.server_type} ({o.architecture}) in {o.location} "
            f"({o.city}, {o.country}){each}, image {self.cfg.image}"
        )

    # ------------------------------------------------------------------ find
    def _owned(self) -> list[BoundServer]:
        """Every server carrying the owner's labels (checked again here, not only by query)."""
        c = self.client()
        found = self._api(
            f"GET /servers?label_selector={self.owner.selector()}",
            lambda: c.servers.get_all(label_selector=self.owner.selector()),
        )
        return [s for s in found if self.owner.owns(s.labels or {})]

    def _info(self, server: BoundServer) -> HostInfo:
        ipv4 = server.public_net.ipv4 if server.public_net else None
        offer = self._offer
        return HostInfo(
            name=str(server.name),
            address=str(ipv4.ip) if ipv4 else "",
            role=self.roles.get(str(server.name), "agent"),
            ssh_user=None,
            host_public_key=self.pins.get(str(server.name)),
            provider_id=f"hcloud:{server.id}",
            country=offer.country if offer else None,
        )

    def observe(self) -> list[HostInfo]:
        """The wanted servers that are running with an address (read-only)."""
        ready = {
            str(s.name): s
            for s in self._owned()
            if s.name in self.roles and s.status == "running" and s.public_net
            and s.public_net.ipv4
        }  # fmt: skip
        return [self._info(ready[n]) for n in self.wanted() if n in ready]

    def labelled(self) -> list[LabelledServer]:
        """Every server in the project with a drboot site label (any site): the janitor's."""
        c = self.client()
        found = self._api(
            f"GET /servers?label_selector={SITE_LABEL}",
            lambda: c.servers.get_all(label_selector=SITE_LABEL),
        )
        return [
            LabelledServer(
                name=str(s.name),
                site=str((s.labels or {}).get(SITE_LABEL)),
                run=(s.labels or {}).get(RUN_LABEL),
                status=str(s.status),
                created=_aware(s.created),
                provider_id=f"hcloud:{s.id}",
            )
            for s in found
        ]

    # ------------------------------------------------------------------ create
    def create(self, names: list[str], progress: Progress) -> list[HostInfo]:
        self._log = progress
        offer = self.offer()  # checks before anything is bought
        existing = {str(s.name): s for s in self._owned() if s.status not in _GONE}
        ssh_key = self._ssh_key(progress)
        network = self._network(offer, progress)
        firewall = self._firewall(progress)
        pending: list[BoundServer] = []
        for name in names:
            server = existing.get(name)
            if server is not None:
                progress(f"server {name} exists ({server.status}): using it, not buying another")
            else:
                server = self._buy(name, offer, ssh_key, network, firewall, progress)
            pending.append(server)
        return [self._info(self._running(s, progress)) for s in pending]

    def _operator_public_key(self) -> str:
        path = Path(self.site.ssh.private_key_file)
        pub = Path(f"{path}.pub")
        if pub.exists():
            return " ".join(pub.read_text().split()[:2])
        try:
            key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise PreflightError(
                f"cannot read the operator's SSH key {path} ({type(exc).__name__})",
                target=self.kind,
                hint="set ssh.private_key_file to an unencrypted key, or put its .pub beside it",
            ) from None
        return (
            key.public_key()
            .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
            .decode()
        )

    def _resource_name(self) -> str:
        """Name of the site's (or the drill's) SSH key, network and firewall."""
        if self.owner.run_id is None:
            return f"drboot-{self.site.name}"
        return "drboot-" + self.owner.server_name("server", 0).removesuffix("-server-0")

    def _ssh_key(self, progress: Progress) -> BoundSSHKey:
        c = self.client()
        public = self._operator_public_key()
        fingerprint = _md5_fingerprint(public)
        found = self._api(
            "GET /ssh_keys?fingerprint", lambda: c.ssh_keys.get_by_fingerprint(fingerprint)
        )
        if found is not None:
            return found
        name = self.cfg.ssh_key_name
        same_name = self._api(f"GET /ssh_keys?name={name}", lambda: c.ssh_keys.get_by_name(name))
        if same_name is not None:
            raise PermanentError(
                f"the project has another SSH key named {name!r}",
                target=self.kind,
                hint="set provider.ssh_key_name to a free name, or delete the old key",
            )
        progress(f"registering the operator's SSH key as {name!r}")
        labels = {SITE_LABEL: self.site.name}
        return self._api(
            "POST /ssh_keys",
            lambda: c.ssh_keys.create(name=name, public_key=public, labels=labels),
        )

    def _network(self, offer: Offer, progress: Progress) -> BoundNetwork | None:
        wanted = self.cfg.network
        if wanted is None:
            return None
        c = self.client()
        name = self._resource_name()
        found = self._api(f"GET /networks?name={name}", lambda: c.networks.get_by_name(name))
        if found is not None:
            if not self.owner.owns(found.labels or {}):
                raise PermanentError(
                    f"a network named {name!r} exists without this site's labels",
                    target=self.kind,
                    hint="rename or delete that network; drboot will not take it over",
                )
            return found
        progress(f"creating private network {name} ({wanted.ip_range}, subnet {wanted.subnet})")
        subnet = NetworkSubnet(
            type="cloud", ip_range=wanted.subnet, network_zone=offer.network_zone
        )
        return self._api(
            "POST /networks",
            lambda: c.networks.create(
                name=name,
                ip_range=wanted.ip_range,
                subnets=[subnet],
                labels=self.owner.labels("server") | {},
            ),
        )

    def _firewall(self, progress: Progress) -> BoundFirewall | None:
        wanted = self.cfg.firewall
        if wanted is None:
            return None
        c = self.client()
        name = self._resource_name()
        found = self._api(f"GET /firewalls?name={name}", lambda: c.firewalls.get_by_name(name))
        if found is not None:
            if not self.owner.owns(found.labels or {}):
                raise PermanentError(
                    f"a firewall named {name!r} exists without this site's labels",
                    target=self.kind,
                    hint="rename or delete that firewall; drboot will not take it over",
                )
            return found
        sources = list(wanted.operator_cidrs)
        rules = [
            FirewallRule(
                direction="in", protocol="tcp", port=port, source_ips=sources, description=what
            )
            for port, what in (("22", "SSH from the operator"), ("6443", "Kubernetes API"))
        ]
        if self.cfg.network is not None:  # (Hetzner does not filter the private network itself)
            rules += [
                FirewallRule(
                    direction="in",
                    protocol=proto,
                    port="1-65535",
                    source_ips=[self.cfg.network.ip_range],
                    description="everything inside the private network",
                )
                for proto in ("tcp", "udp")
            ]
        progress(f"creating firewall {name} (22, 6443 from {', '.join(sources)})")
        created = self._api(
            "POST /firewalls",
            lambda: c.firewalls.create(
                name=name,
                rules=rules,
                labels=self.owner.labels("server"),  # type: ignore[arg-type]
            ),
        )
        return created.firewall

    def _buy(
        self,
        name: str,
        offer: Offer,
        ssh_key: BoundSSHKey,
        network: BoundNetwork | None,
        firewall: BoundFirewall | None,
        progress: Progress,
    ) -> BoundServer:
        c = self.client()
        user = self.site.ssh.user
        host_key = generate_host_key(f"root@{name}")
        user_data = build_user_data(
            hostname=name,
            host_key=host_key,
            authorized_keys=[self._operator_public_key()],
            user=user,
        )
        # pinned before the server exists: a resumed run finds it here
        self.pins.save(name, host_key.public_openssh)
        role = self.roles[name]
        labels = self.owner.labels(role)
        progress(
            f"creating server {name} ({offer.server_type} in {offer.location}, "
            f"host key {host_key.public_openssh.split()[1][:16]}... pinned)"
        )
        from hcloud.images import Image
        from hcloud.locations import Location
        from hcloud.server_types import ServerType

        response = self._api(
            "POST /servers",
            lambda: c.servers.create(
                name=name,
                server_type=ServerType(name=offer.server_type),
                image=Image(id=offer.image_id),
                location=Location(name=offer.location),
                ssh_keys=[ssh_key],
                networks=[network] if network is not None else None,
                firewalls=[firewall] if firewall is not None else None,
                user_data=user_data,
                labels=labels,
            ),
        )
        return response.server  # the private host key lived only in this request

    def _running(self, server: BoundServer, progress: Progress) -> BoundServer:
        """Wait until ``server`` runs with an address (power it on if it is off)."""
        c = self.client()
        deadline = time.monotonic() + self.cfg.create_timeout.total_seconds()
        said = ""
        while True:
            if server.status == "off":
                progress(f"server {server.name} is off: powering it on")
                self._api(f"POST /servers/{server.id}/actions/poweron", server.power_on)
            ipv4 = server.public_net.ipv4 if server.public_net else None
            if server.status == "running" and ipv4 is not None:
                progress(f"server {server.name} running at {ipv4.ip}")
                return server
            if server.status != said:
                progress(f"server {server.name} is {server.status}")
                said = str(server.status)
            if time.monotonic() > deadline:
                raise PermanentError(
                    f"server {server.name} still {server.status} after "
                    f"{self.cfg.create_timeout.total_seconds():.0f} s (provider.create_timeout)",
                    target=str(server.name),
                    hint="look at it in the Hetzner console; delete it or wait, then "
                    f"`drboot resume {self._run}` (it is used again, not bought twice)"
                    f"{self._give_up}",
                )
            time.sleep(POLL)
            sid = server.id
            assert sid is not None
            server = self._api(f"GET /servers/{sid}", partial(c.servers.get_by_id, sid))

    # ------------------------------------------------------------------ destroy
    def destroy(self, progress: Progress) -> list[str]:
        """Delete every server with the owner's labels; a drill also its network/firewall/key."""
        self._log = progress
        c = self.client()
        servers = [s for s in self._owned() if s.status not in _GONE]
        actions = []
        for s in servers:
            progress(f"deleting server {s.name} (hcloud:{s.id})")
            actions.append((s, self._api(f"DELETE /servers/{s.id}", s.delete)))
        deadline = time.monotonic() + self.cfg.create_timeout.total_seconds()
        for s, action in actions:
            aid = action.id
            assert aid is not None
            while action.status == "running" and time.monotonic() < deadline:
                time.sleep(POLL)
                action = self._api(f"GET /actions/{aid}", partial(c.actions.get_by_id, aid))
            if action.status != "success":
                raise PermanentError(
                    f"deleting server {s.name} did not finish ({action.status})",
                    target=str(s.name),
                    hint="check the Hetzner console, then `drboot teardown RUN_ID`",
                )
            self.pins.forget(str(s.name))
        if self.owner.run_id is not None:
            self._destroy_drill_resources(progress)
        return [str(s.name) for s in servers]

    def _destroy_drill_resources(self, progress: Progress) -> None:
        c = self.client()
        name = self._resource_name()
        fw = self._api(f"GET /firewalls?name={name}", lambda: c.firewalls.get_by_name(name))
        if fw is not None and self.owner.owns(fw.labels or {}):
            progress(f"deleting firewall {name}")
            self._api(f"DELETE /firewalls/{fw.id}", fw.delete)
        net = self._api(f"GET /networks?name={name}", lambda: c.networks.get_by_name(name))
        if net is not None and self.owner.owns(net.labels or {}):
            progress(f"deleting network {name}")
            self._api(f"DELETE /networks/{net.id}", net.delete)

    def ssh_key_file(self) -> Path | None:
        return None

    def close(self) -> None:
        if self._client is not None:
            self._client._client._session.close()
            self._client = None


def _price_in(stype: BoundServerType, location: str) -> str | None:
    for price in stype.prices or []:
        if price.get("location") == location:
            hourly = price.get("price_hourly") or {}
            return str(hourly.get("gross") or hourly.get("net") or "")
    return None


def _offer_of(
    location: BoundLocation, stype: BoundServerType, image: BoundImage, price: str
) -> Offer:
    return Offer(
        location=str(location.name),
        city=str(location.city),
        country=str(location.country),
        network_zone=str(location.network_zone),
        server_type=str(stype.name),
        architecture=str(stype.architecture),
        image_id=int(image.id or 0),
        price_hourly_gross=price or None,
    )


def _md5_fingerprint(public_openssh: str) -> str:
    """Hetzner's SSH key fingerprint: MD5 of the key blob, colon-separated."""
    import base64
    import hashlib

    blob = base64.b64decode(public_openssh.split()[1])
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, 32, 2))


def _aware(value: datetime | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
