"""The one importer of ``openstacksdk``: typed calls in, drboot's errors out.

Why it exists: the OpenStack provider decides what to find, create and destroy; this adapter
only talks. Every call goes through ``OpenStackAPI._call``, which

* retries what is worth retrying (429 and Nova's 413 "overLimit", 502/503/504, a refused
  connection) with a cap: at most ``RetryCap.attempts`` tries, each wait honours the
  ``Retry-After`` header but never exceeds ``RetryCap.max_wait``, and all waits together stay
  under ``RetryCap.budget``; one call at a time, never a parallel retry storm;
* turns everything else into ``OpenStackError`` naming the provider, the call and the fix
  (credentials refused, quota exceeded, a bad request), with the cloud's own message and never
  a credential: the message is read from the response body, not from the exception, whose
  text could carry the request.

The records returned (``ServerRecord`` …) are plain frozen dataclasses: nothing of the SDK
leaves this module.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import openstack
from keystoneauth1 import exceptions as ksexc
from openstack import exceptions as osexc
from openstack.config import OpenStackConfig
from openstack.connection import Connection

from bootstrap.errors import PermanentError, PreflightError, TransientError

T = TypeVar("T")
_RETRY_STATUS = frozenset({413, 429, 502, 503, 504})


class OpenStackError(PermanentError):
    """An OpenStack call failed for a reason retrying does not fix."""


class OpenStackQuotaError(OpenStackError):
    """Nova or Neutron refused: quota exceeded."""


class OpenStackAuthError(PreflightError):
    """Keystone refused the credentials (nothing was created)."""


@dataclass(frozen=True)
class RetryCap:
    """How hard one call is retried (429/413/5xx/connection refused)."""

    attempts: int = 6
    max_wait: float = 30.0  # a longer Retry-After is cut to this
    budget: float = 120.0  # all waits of one call together
    first_backoff: float = 1.0  # without Retry-After: 1, 2, 4 … seconds, up to max_wait


@dataclass(frozen=True)
class ServerRecord:
    id: str
    name: str
    status: str
    metadata: dict[str, str]
    addresses: dict[str, list[str]]  # network name -> IPv4 addresses
    fault: str | None = None


@dataclass(frozen=True)
class Credentials:
    """Where the SDK gets the credentials: a clouds.yaml cloud, or a password given here."""

    region: str
    cloud: str | None = None
    clouds_file: Path | None = None
    auth_url: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    project_name: str | None = None
    user_domain_name: str = "Default"
    project_domain_name: str = "Default"


def _retry_after(response: Any) -> float | None:
    if response is None:
        return None
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _cloud_message(exc: osexc.HttpException) -> str:
    """The cloud's own words (the response body's message), never the request."""
    response = exc.response
    if response is not None:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            for value in body.values():
                if isinstance(value, dict) and isinstance(value.get("message"), str):
                    return str(value["message"])
            if isinstance(body.get("message"), str):
                return str(body["message"])
    return f"HTTP {exc.status_code}"


class OpenStackAPI:
    """A logged-in session on one cloud and region, with capped, polite retries."""

    def __init__(
        self,
        creds: Credentials,
        *,
        cap: RetryCap | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.creds = creds
        self.cap = cap or RetryCap()
        self.sleep = sleep
        self.requests_retried = 0
        self._conn: Connection | None = None

    # ------------------------------------------------------------------ session
    def _connection(self) -> Connection:
        if self._conn is None:
            c = self.creds
            if c.cloud is not None:
                files = [str(c.clouds_file)] if c.clouds_file is not None else None
                try:
                    config = OpenStackConfig(config_files=files, load_envvars=False)
                    region = config.get_one(cloud=c.cloud, region_name=c.region)
                except osexc.ConfigException as exc:
                    where = c.clouds_file or "openstacksdk's clouds.yaml search path"
                    raise OpenStackAuthError(
                        f"openstack: cloud {c.cloud!r} is not in {where} ({exc})",
                        target="openstack",
                        hint="check provider.cloud and provider.clouds_file",
                    ) from None
                self._conn = Connection(config=region, app_name="drboot")
            else:
                self._conn = openstack.connect(
                    auth_url=c.auth_url, username=c.username, password=c.password,
                    project_name=c.project_name, user_domain_name=c.user_domain_name,
                    project_domain_name=c.project_domain_name, region_name=c.region,
                    load_yaml_config=False, load_envvars=False, app_name="drboot",
                )  # fmt: skip
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _call(self, what: str, fn: Callable[[Connection], T]) -> T:
        """``fn`` with the connection, retried under the cap; ``what`` names the call."""
        waited, reason, attempt = 0.0, "", 0
        for attempt in range(1, self.cap.attempts + 1):
            try:
                return fn(self._connection())
            except (osexc.SDKException, ksexc.ClientException) as exc:
                hinted, reason = self._retryable(what, exc)
            backoff = self.cap.first_backoff * 2 ** (attempt - 1)
            wait = min(hinted if hinted is not None else backoff, self.cap.max_wait)
            if attempt == self.cap.attempts or waited + wait > self.cap.budget:
                break
            self.requests_retried += 1
            self.sleep(wait)
            waited += wait
        raise TransientError(
            f"openstack {what}: still {reason} after {attempt} tries and {waited:.0f} s of "
            "waiting (the retry cap)",
            target="openstack",
            retry_after=self.cap.max_wait,
            hint="the cloud is rate-limiting or unavailable: wait, then `drboot resume RUN_ID`",
        )

    def _retryable(self, what: str, exc: Exception) -> tuple[float | None, str]:
        """(Retry-After, reason) of an answer worth retrying; raises drboot's error for
        any other. The SDK wraps keystoneauth's errors: the cause is looked at too."""
        cause = exc.__cause__ or exc.__context__
        for err in (exc, cause):
            if isinstance(err, ksexc.ConnectFailure | ksexc.ConnectTimeout):
                return None, "cannot connect"
            if isinstance(err, ksexc.Unauthorized):
                raise self._refused(what, "HTTP 401") from None
        if isinstance(exc, osexc.HttpException):
            status = exc.status_code or 0
            if status not in _RETRY_STATUS:
                raise self._translate(what, status, exc) from None
            return _retry_after(exc.response), f"HTTP {status}"
        if isinstance(exc, ksexc.HttpError):
            status = int(exc.http_status or 0)
            if status in _RETRY_STATUS:
                return _retry_after(exc.response), f"HTTP {status}"
            raise OpenStackError(
                f"openstack {what}: HTTP {status} from Keystone",
                target="openstack",
                hint="check provider.auth / the clouds.yaml cloud, then resume",
            ) from None
        raise OpenStackError(
            f"openstack {what}: {type(exc).__name__} (the cloud's answer could not be used)",
            target="openstack",
            hint="check provider.region and the cloud's service catalog, then resume",
        ) from None

    def _refused(self, what: str, why: str) -> OpenStackAuthError:
        return OpenStackAuthError(
            f"openstack {what}: the cloud refused the credentials ({why})",
            target="openstack",
            hint="check the clouds.yaml cloud or provider.auth (user, project, password "
            "reference); nothing was created",
        )

    def _translate(self, what: str, status: int, exc: osexc.HttpException) -> Exception:
        message = _cloud_message(exc)
        if status == 401:
            return self._refused(what, f"HTTP 401: {message}")
        if status in (403, 413) and "quota" in message.lower():
            return OpenStackQuotaError(
                f"openstack {what}: quota exceeded ({message})",
                target="openstack",
                hint="raise the project's quota (or delete unused servers), then "
                "`drboot resume RUN_ID`: what exists is found, not created twice",
            )
        return OpenStackError(
            f"openstack {what}: HTTP {status}: {message}",
            target="openstack",
            hint="fix what the cloud names, then `drboot resume RUN_ID`",
        )

    # ------------------------------------------------------------------ calls
    def authenticate(self) -> None:
        """Get a token (raises ``OpenStackAuthError`` when Keystone refuses)."""
        self._call("authenticate (POST /v3/auth/tokens)", lambda c: c.authorize())

    def flavor_id(self, name: str) -> str | None:
        flavor = self._call(
            f"find flavor {name!r}", lambda c: c.compute.find_flavor(name, ignore_missing=True)
        )
        return None if flavor is None else str(flavor.id)

    def image_id(self, name: str) -> str | None:
        image = self._call(
            f"find image {name!r}", lambda c: c.image.find_image(name, ignore_missing=True)
        )
        return None if image is None else str(image.id)

    def instance_headroom(self) -> int | None:
        """How many more servers the instance quota allows (None: unlimited / not served)."""
        limits = self._call("read limits (GET /limits)", lambda c: c.compute.get_limits())
        absolute = getattr(limits, "absolute", None)
        most = getattr(absolute, "instances", None)
        used = getattr(absolute, "instances_used", None)
        if most is None or used is None or int(most) < 0:
            return None
        return int(most) - int(used)

    def network_id(self, name: str) -> str | None:
        net = self._call(
            f"find network {name!r}", lambda c: c.network.find_network(name, ignore_missing=True)
        )
        return None if net is None else str(net.id)

    def create_network(self, name: str, cidr: str) -> str:
        net = self._call(f"create network {name!r}", lambda c: c.network.create_network(name=name))
        net_id = str(net.id)
        self._call(
            f"create subnet {cidr} in {name!r}",
            lambda c: c.network.create_subnet(
                network_id=net_id, cidr=cidr, ip_version=4, name=name
            ),
        )
        return net_id

    def has_subnet(self, network_id: str) -> bool:
        subnets = self._call(
            "list subnets", lambda c: list(c.network.subnets(network_id=network_id))
        )
        return bool(subnets)

    def create_subnet(self, network_id: str, name: str, cidr: str) -> None:
        self._call(
            f"create subnet {cidr} in {name!r}",
            lambda c: c.network.create_subnet(
                network_id=network_id, cidr=cidr, ip_version=4, name=name
            ),
        )

    def security_group_id(self, name: str) -> str | None:
        sg = self._call(
            f"find security group {name!r}",
            lambda c: c.network.find_security_group(name, ignore_missing=True),
        )
        return None if sg is None else str(sg.id)

    def create_security_group(self, name: str, description: str) -> str:
        sg = self._call(
            f"create security group {name!r}",
            lambda c: c.network.create_security_group(name=name, description=description),
        )
        return str(sg.id)

    def ingress_rules(self, sg_id: str) -> set[tuple[str | None, int | None, int | None, str]]:
        """(protocol, port min, port max, remote prefix) of each IPv4 ingress rule."""
        rules = self._call(
            "list security group rules",
            lambda c: list(c.network.security_group_rules(security_group_id=sg_id)),
        )
        return {
            (r.protocol, r.port_range_min, r.port_range_max, str(r.remote_ip_prefix))
            for r in rules
            if r.direction == "ingress" and r.remote_ip_prefix
        }

    def add_ingress_rule(self, sg_id: str, protocol: str | None, port: int | None,
                         prefix: str) -> None:  # fmt: skip
        self._call(
            f"create security group rule {protocol or 'any'}/{port or 'all'} from {prefix}",
            lambda c: c.network.create_security_group_rule(
                security_group_id=sg_id, direction="ingress", ethertype="IPv4",
                protocol=protocol, port_range_min=port, port_range_max=port,
                remote_ip_prefix=prefix,
            ),
        )  # fmt: skip

    def keypair_public_key(self, name: str) -> str | None:
        kp = self._call(
            f"find key pair {name!r}",
            lambda c: c.compute.find_keypair(name, ignore_missing=True),
        )
        return None if kp is None else str(kp.public_key)

    def create_keypair(self, name: str, public_key: str) -> None:
        self._call(
            f"import key pair {name!r}",
            lambda c: c.compute.create_keypair(name=name, public_key=public_key),
        )

    def servers(self) -> list[ServerRecord]:
        found = self._call(
            "list servers (GET /servers/detail)", lambda c: list(c.compute.servers(details=True))
        )
        return [_record(s) for s in found]

    def server(self, server_id: str) -> ServerRecord | None:
        found = self._call(
            f"read server {server_id}",
            lambda c: c.compute.find_server(server_id, ignore_missing=True),
        )
        if found is None:
            return None
        full = self._call(f"read server {server_id}", lambda c: c.compute.get_server(found.id))
        return _record(full)

    def create_server(self, *, name: str, flavor_id: str, image_id: str, keypair: str,
                      network_ids: list[str], security_group: str, metadata: dict[str, str],
                      user_data_b64: str | None) -> str:  # fmt: skip
        srv = self._call(
            f"create server {name!r} (POST /servers)",
            lambda c: c.compute.create_server(
                name=name, flavor_id=flavor_id, image_id=image_id, key_name=keypair,
                networks=[{"uuid": n} for n in network_ids],
                security_groups=[{"name": security_group}], metadata=metadata,
                user_data=user_data_b64,
            ),
        )  # fmt: skip
        return str(srv.id)

    def delete_server(self, server_id: str) -> None:
        self._call(
            f"delete server {server_id}",
            lambda c: c.compute.delete_server(server_id, ignore_missing=True),
        )


def _record(server: Any) -> ServerRecord:
    addresses: dict[str, list[str]] = {}
    for net, entries in (server.addresses or {}).items():
        addresses[str(net)] = [str(e["addr"]) for e in entries if e.get("version", 4) == 4]
    fault = server.fault if isinstance(server.fault, dict) else None
    return ServerRecord(
        id=str(server.id),
        name=str(server.name),
        status=str(server.status or ""),
        metadata={str(k): str(v) for k, v in (server.metadata or {}).items()},
        addresses=addresses,
        fault=None if fault is None else str(fault.get("message") or fault),
    )
