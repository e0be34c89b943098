"""The OpenStack provider: servers bought from a cloud's Nova, found again by their metadata.

Why it exists: after a disaster there are no hosts to list in a ``static`` site; this provider
creates them (Nordic and European OpenStack clouds) and finds them again on resume.

What makes it safe to run twice:

* **Observe before create.** Every server drboot creates carries the metadata
  ``drboot.dev/site``, ``drboot.dev/role`` and, for a drill, ``drboot.dev/run``
  (``bootstrap.providers.cloud.labels``). ``create`` lists the servers first and only ever
  POSTs a name that has no server of ours yet, so a resumed or re-run restore (even one
  killed between "create requested" and ACTIVE) waits for the server it already has instead
  of buying a second one.
* **Host keys pinned before boot.** drboot makes each server's ed25519 host key, saves the
  public half in the run state and hands the key pair to the server through cloud-init user
  data (``bootstrap.providers.cloud.userdata``); the first SSH connection verifies it.
* **Checks before anything is bought.** Credentials (a Keystone token), flavor, image and
  network are checked in preflight (``countries()``), the instance quota (Nova's limits)
  before the first resource exists; a failure there is a ``PreflightError`` (exit 3) with
  nothing half-created.
* **Found or created.** The key pair (the public half of ``ssh.private_key_file``), the
  private network and the security group (22 and 6443 from ``operator_cidrs``, everything
  from the private network) are looked up by name and created only when missing.
* **Destroy touches only what is ours.** Only servers whose metadata names this site (and, in
  a drill, this run) are deleted; another site's or an unlabelled server is never touched.

The cloud is reached through ``bootstrap.adapters.openstack`` (the only importer of
openstacksdk), which retries 429/413/5xx under a cap honouring ``Retry-After``.
"""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bootstrap import secretrefs
from bootstrap.errors import PermanentError, PreflightError, WaitTimeout
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
from bootstrap.providers.cloud.userdata import build_user_data, generate_host_key
from bootstrap.settings import OpenStackProvider, Site

if TYPE_CHECKING:
    from bootstrap.adapters.openstack import OpenStackAPI, ServerRecord


class OpenStackHosts:
    kind = "openstack"
    creates_hosts = True
    manages_ssh_key = False  # the key pair is the public half of the site's ssh key

    def __init__(
        self,
        site: Site,
        state_root: Path | None = None,
        drill_run: str | None = None,
        *,
        api: OpenStackAPI | None = None,
        poll_interval: float = 2.0,
    ) -> None:
        assert isinstance(site.provider, OpenStackProvider)
        self.site = site
        self.cfg: OpenStackProvider = site.provider
        self.owner = Ownership(site.name, drill_run)
        self.run_id = drill_run
        self.roles: dict[str, Role] = wanted_names(self.owner, self.cfg.servers, self.cfg.agents)
        # the pinned public host keys; without a state folder (a dry look) nothing is pinned
        self.pins = PinnedHostKeys(state_root, self.kind, site.name) if state_root else None
        self._api = api
        self._checked: tuple[str, str, str] | None = None
        self.poll_interval = poll_interval

    # ------------------------------------------------------------------ names
    def wanted(self) -> list[str]:
        """Server names, servers first (``<site>-server-1`` …; a drill's carry its run)."""
        return list(self.roles)

    def countries(self) -> dict[str, str | None]:
        """The country the site states for the region (OpenStack does not say).

        Called in preflight, before anything is created: it also runs the read-only checks
        (credentials, flavor, image, network), so a bad one stops the run there (exit 3)."""
        self.checked()
        return {name: self.cfg.country for name in self.wanted()}

    def _resource_name(self, given: str | None) -> str:
        return given or f"drboot-{self.site.name}"

    # ------------------------------------------------------------------ the cloud
    def api(self) -> OpenStackAPI:
        if self._api is None:
            from bootstrap.adapters.openstack import Credentials, OpenStackAPI

            cfg = self.cfg
            if cfg.auth is not None:
                creds = Credentials(
                    region=cfg.region, auth_url=cfg.auth.auth_url, username=cfg.auth.username,
                    password=secretrefs.resolve(cfg.auth.password, field="provider.auth.password"),
                    project_name=cfg.auth.project_name,
                    user_domain_name=cfg.auth.user_domain_name,
                    project_domain_name=cfg.auth.project_domain_name,
                )  # fmt: skip
            else:
                creds = Credentials(
                    region=cfg.region, cloud=cfg.cloud, clouds_file=cfg.clouds_file
                )
            self._api = OpenStackAPI(creds)
        return self._api

    def _mine(self) -> dict[str, ServerRecord]:
        """This site's (a drill: this run's) wanted servers by name."""
        return {
            s.name: s
            for s in self.api().servers()
            if self.owner.owns(s.metadata) and s.name in self.roles
        }

    def _info(self, server: ServerRecord) -> HostInfo:
        address = next(iter(server.addresses.get(self.cfg.network, [])), None)
        if address is None:
            address = next((a for addrs in server.addresses.values() for a in addrs), "")
        return HostInfo(
            name=server.name,
            address=address,
            role=self.roles[server.name],
            host_public_key=self.pins.get(server.name) if self.pins else None,
            provider_id=f"openstack:{self.cfg.region}/{server.id}",
            country=self.cfg.country,
        )

    def observe(self) -> list[HostInfo]:
        mine = self._mine()
        return [
            self._info(mine[n])
            for n in self.wanted()
            if n in mine and mine[n].status == "ACTIVE" and mine[n].addresses
        ]

    def describe(self, names: list[str]) -> str:
        """The plan's line: N x flavor (its size, as Nova states it) in the region."""
        size = self.api().flavor_size(self.cfg.flavor)
        shape = f" ({size})" if size else ""
        return (f"{len(names)} x {self.cfg.flavor}{shape} in {self.cfg.region}, image "
                f"{self.cfg.image}; OpenStack states no price")  # fmt: skip

    def labelled(self) -> list[LabelledServer]:
        """Every server of the project with a drboot site label, any site (the janitor's)."""
        return [
            LabelledServer(
                name=s.name,
                site=s.metadata[SITE_LABEL],
                run=s.metadata.get(RUN_LABEL),
                status=s.status,
                created=s.created or datetime.now(UTC),
                provider_id=f"openstack:{self.cfg.region}/{s.id}",
            )
            for s in self.api().servers()
            if s.metadata.get(SITE_LABEL)
        ]

    # ------------------------------------------------------------------ create
    def checked(self) -> tuple[str, str, str]:
        """The read-only checks, once per process: (flavor, image, network) ids.

        Raises ``PreflightError`` (nothing created) for refused credentials or a flavor,
        image or network the region does not have."""
        if self._checked is not None:
            return self._checked
        api, cfg = self.api(), self.cfg
        api.authenticate()
        flavor = api.flavor_id(cfg.flavor)
        if flavor is None:
            raise PreflightError(
                f"openstack: flavor {cfg.flavor!r} does not exist in region {cfg.region}",
                target="openstack",
                hint="set provider.flavor to a flavor `openstack flavor list` shows",
            )
        image = api.image_id(cfg.image)
        if image is None:
            raise PreflightError(
                f"openstack: image {cfg.image!r} does not exist in region {cfg.region}",
                target="openstack",
                hint="set provider.image to an image `openstack image list` shows",
            )
        network = api.network_id(cfg.network)
        if network is None:
            raise PreflightError(
                f"openstack: network {cfg.network!r} does not exist in region {cfg.region}",
                target="openstack",
                hint="set provider.network to the network drboot reaches servers on "
                "(`openstack network list`)",
            )
        self._checked = (flavor, image, network)
        return self._checked

    def preflight(self, count: int) -> tuple[str, str, str]:
        """Everything checkable before a server is bought: ``checked()``, and whether the
        instance quota (Nova's limits) leaves room for ``count`` more servers."""
        ids = self.checked()
        headroom = self.api().instance_headroom()
        if headroom is not None and headroom < count:
            raise PreflightError(
                f"openstack: the instance quota leaves room for {headroom} more server(s), "
                f"the site needs {count}",
                target="openstack",
                hint="raise the project's instance quota or delete unused servers; nothing "
                "was created",
            )
        return ids

    def _public_key(self) -> str:
        key_file = Path(self.site.ssh.private_key_file)
        pub = key_file.with_name(key_file.name + ".pub")
        if pub.is_file():
            return pub.read_text().strip()
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives import serialization

        try:
            private = serialization.load_ssh_private_key(key_file.read_bytes(), password=None)
            blob = private.public_key().public_bytes(
                serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
            )
        except (OSError, ValueError, TypeError, UnsupportedAlgorithm):
            raise PreflightError(
                f"openstack: cannot read the public half of ssh.private_key_file ({key_file})",
                target="openstack",
                hint=f"put the public key in {pub}",
            ) from None
        return blob.decode()

    def _keypair(self, progress: Progress) -> str:
        api, name = self.api(), self._resource_name(self.cfg.keypair)
        public = self._public_key()
        have = api.keypair_public_key(name)
        if have is None:
            progress(f"importing key pair {name}")
            api.create_keypair(name, public)
        elif have.split()[:2] != public.split()[:2]:
            raise PreflightError(
                f"openstack: key pair {name!r} holds another public key than "
                "ssh.private_key_file's",
                target="openstack",
                hint="set provider.keypair to a free name, or point ssh.private_key_file at "
                "the key that pair was made from",
            )
        return name

    def _private_network(self, progress: Progress) -> str:
        api, name = self.api(), self._resource_name(self.cfg.private_network)
        net = api.network_id(name)
        if net is None:
            progress(f"creating private network {name} ({self.cfg.private_cidr})")
            return api.create_network(name, self.cfg.private_cidr)
        if not api.has_subnet(net):
            progress(f"creating subnet {self.cfg.private_cidr} in {name}")
            api.create_subnet(net, name, self.cfg.private_cidr)
        return net

    def wanted_rules(self) -> set[tuple[str | None, int | None, int | None, str]]:
        rules: set[tuple[str | None, int | None, int | None, str]] = {
            ("tcp", port, port, cidr) for cidr in self.cfg.operator_cidrs for port in (22, 6443)
        }
        rules.add((None, None, None, self.cfg.private_cidr))
        return rules

    def _security_group(self, progress: Progress) -> str:
        api, name = self.api(), self._resource_name(self.cfg.security_group)
        sg = api.security_group_id(name)
        if sg is None:
            progress(f"creating security group {name}")
            sg = api.create_security_group(name, f"drboot site {self.site.name}")
        have = api.ingress_rules(sg)
        for proto, low, _high, prefix in sorted(self.wanted_rules() - have, key=str):
            progress(f"security group {name}: allowing {proto or 'all'}/{low or 'any'} "
                     f"from {prefix}")  # fmt: skip
            api.add_ingress_rule(sg, proto, low, prefix)
        return name

    def create(self, names: list[str], progress: Progress) -> list[HostInfo]:
        mine = self._mine()
        broken = [s for n, s in mine.items() if n in names and s.status == "ERROR"]
        if broken:
            raise self._failed(broken[0])
        to_buy = [n for n in names if n not in mine]
        flavor, image, network = self.preflight(len(to_buy))
        keypair = self._keypair(progress)
        private = self._private_network(progress)
        group = self._security_group(progress)
        ids = {n: mine[n].id for n in names if n in mine}
        public = self._public_key()
        for name in names:
            if name in ids:
                progress(f"server {name} exists ({mine[name].status}): waiting for it instead "
                         "of creating another")  # fmt: skip
                continue
            progress(f"creating server {name} ({self.cfg.flavor}, {self.cfg.image}) in "
                     f"{self.cfg.region}")  # fmt: skip
            ids[name] = self.api().create_server(
                name=name, flavor_id=flavor, image_id=image, keypair=keypair,
                network_ids=[network, private], security_group=group,
                metadata=self.owner.labels(self.roles[name]),
                user_data_b64=self._user_data(name, public),
            )  # fmt: skip
        return [self._wait_active(name, ids[name], progress) for name in names]

    def _user_data(self, name: str, operator_key: str) -> str:
        """cloud-init user data with a fresh host key whose public half is pinned first
        (saved before the server is asked for: a run killed right after still knows it)."""
        key = generate_host_key(comment=name)
        if self.pins is not None:
            self.pins.save(name, key.public_openssh)
        text = build_user_data(hostname=name, host_key=key, authorized_keys=[operator_key],
                               user=self.site.ssh.user)  # fmt: skip
        return base64.b64encode(text.encode()).decode()

    def _wait_active(self, name: str, server_id: str, progress: Progress) -> HostInfo:
        deadline = time.monotonic() + self.cfg.build_timeout.total_seconds()
        while True:
            server = self.api().server(server_id)
            if server is None:
                raise PermanentError(
                    f"openstack: server {name} ({server_id}) disappeared while building",
                    target=name,
                    hint="`drboot resume RUN_ID` creates it again",
                )
            if server.status == "ACTIVE" and server.addresses:
                progress(f"server {name} is ACTIVE")
                return self._info(server)
            if server.status == "ERROR":
                raise self._failed(server)
            if time.monotonic() > deadline:
                raise WaitTimeout(
                    f"openstack: server {name} ({server_id}) is still {server.status} after "
                    f"{self.cfg.build_timeout.total_seconds():.0f} s (provider.build_timeout)",
                    target=name,
                    hint="the server is kept: `drboot resume RUN_ID` waits for it again; "
                    "or delete it (`openstack server delete ID`) and resume",
                )
            time.sleep(self.poll_interval)

    def _failed(self, server: ServerRecord) -> PermanentError:
        return PermanentError(
            f"openstack: server {server.name} ({server.id}) went to ERROR: "
            f"{server.fault or 'no fault given'}",
            target=server.name,
            hint="the server is kept for inspection; delete it (`openstack server delete "
            f"{server.id}`, or `drboot drill` teardown), then `drboot resume RUN_ID`",
        )

    # ------------------------------------------------------------------ destroy
    def destroy(self, progress: Progress) -> list[str]:
        api = self.api()
        ours = [s for s in api.servers() if self.owner.owns(s.metadata)]
        scope = f"run {self.run_id}" if self.run_id else f"site {self.site.name}"
        if not ours:
            progress(f"no openstack servers of {scope}")
            return []
        for server in ours:
            progress(f"deleting server {server.name} ({server.id})")
            api.delete_server(server.id)
        left = {s.id for s in ours}
        deadline = time.monotonic() + self.cfg.build_timeout.total_seconds()
        while left:
            left &= {s.id for s in api.servers()}
            if not left:
                break
            if time.monotonic() > deadline:
                raise WaitTimeout(
                    f"openstack: {len(left)} server(s) of {scope} still exist after delete",
                    target="openstack",
                    hint="run the teardown again; check `openstack server list`",
                )
            time.sleep(self.poll_interval)
        if self.pins is not None:
            for server in ours:
                self.pins.forget(server.name)
        return [s.name for s in ours]

    def ssh_key_file(self) -> Path | None:
        return None

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
