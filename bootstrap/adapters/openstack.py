"""The one importer of ``openstacksdk``: typed calls in, drboot's errors out.

Why it exists: the OpenStack provider decides what to find, create and destroy; this adapter
only talks. Every call goes through ``OpenStackAPI._call``, which

* retries what is worth retrying (429 and Nova's 413 "overLimit", 5xx, a busy 409, a refused
  connection) through the shared capped retry (``bootstrap.providers.cloud.retry``): at most
  ``attempts`` tries, each wait honours ``Retry-After`` but never exceeds ``max_delay``, and
  all waits together stay under ``budget``; one call at a time, never a parallel retry storm;
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import openstack
from keystoneauth1 import exceptions as ksexc
from openstack import exceptions as osexc
from openstack.config import OpenStackConfig
from openstack.connection import Connection

from bootstrap.errors import PermanentError, PreflightError, TransientError
from bootstrap.providers.cloud import retry

T = TypeVar("T")


class OpenStackError(PermanentError):
    """An OpenStack call failed for a reason retrying does not fix."""


class OpenStackQuotaError(OpenStackError):
    """Nova or Neutron refused: quota exceeded."""


class OpenStackAuthError(PreflightError):
    """Keystone refused the credentials (nothing was created)."""


@dataclass(frozen=True)
class ServerRecord:
    id: str
    name: str
    status: str
    metadata: dict[str, str]
    addresses: dict[str, list[str]]  # network name -> IPv4 addresses
    fault: str | None = None
    created: datetime | None = None  # timezone-aware


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
    """When the cloud asked to be asked again (``Retry-After``/``RateLimit-Reset``)."""
    return None if response is None else retry.delay_from_headers(dict(response.headers))


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
        cap: retry.CloudRetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.creds = creds
        self.cap = cap or retry.CloudRetryPolicy()
        self.sleep = sleep
        self.requests_retried = 0
        self.waits: list[float] = []  # every wait the retries asked for
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
        try:
            return retry.call(
                lambda: fn(self._connection()),
                what=f"openstack {what}",
                translate=self._fault,
                policy=self.cap,
                on_retry=self._note_retry,
                sleep=self.sleep,
            )
        except retry.CloudCallError as err:
            raise self._error(what, err) from None

    def _note_retry(self, attempt: int, fault: retry.CloudFault, delay: float) -> None:
        self.requests_retried += 1
        self.waits.append(delay)

    def _fault(self, exc: BaseException) -> retry.CloudFault | None:
        """The SDK's exception in provider-neutral terms (the SDK wraps keystoneauth's
        errors: the cause is looked at too). The message is the cloud's own words."""
        cause = exc.__cause__ or exc.__context__
        for err in (exc, cause):
            if isinstance(err, ksexc.ConnectFailure | ksexc.ConnectTimeout):
                return retry.CloudFault(None, "network", "cannot connect")
            if isinstance(err, ksexc.Unauthorized):
                return retry.CloudFault(401, "unauthorized", "Keystone refused the token "
                                        "request")  # fmt: skip
        if isinstance(exc, osexc.HttpException):
            status = int(exc.status_code or 0)
            message = _cloud_message(exc)
            after = _retry_after(exc.response)
            code: str | None = None
            if status == 413 and (after is not None or "overlimit" in message.lower()):
                code = "rate_limit_exceeded"  # Nova's older rate limit answer
            if status == 403 or (status == 413 and code is None):
                code = "quota_exceeded" if "quota" in message.lower() else "forbidden"
            if status == 409 and "already exists" not in message:
                code = "conflict"  # busy (a task state): worth asking again
            return retry.CloudFault(status, code, message, after)
        if isinstance(exc, ksexc.HttpError):
            return retry.CloudFault(int(exc.http_status or 0), None, "HTTP error from Keystone",
                                    _retry_after(exc.response))  # fmt: skip
        if isinstance(exc, osexc.SDKException | ksexc.ClientException):
            return retry.CloudFault(0, "sdk", f"{type(exc).__name__} (the cloud's answer "
                                    "could not be used)")  # fmt: skip
        return None

    def _error(self, what: str, err: retry.CloudCallError) -> Exception:
        fault = err.fault
        if fault.retryable:
            why = "cannot connect" if fault.status is None else f"HTTP {fault.status}"
            return TransientError(
                f"openstack {what}: still {why} after {err.attempts} tries and "
                f"{sum(self.waits):.0f} s of waiting (the retry cap)",
                target="openstack",
                retry_after=self.cap.max_delay,
                hint="the cloud is rate-limiting or unavailable: wait, then "
                "`drboot resume RUN_ID`",
            )
        if fault.status == 401:
            return self._refused(what, f"HTTP 401: {fault.message}")
        if fault.code == "quota_exceeded":
            return OpenStackQuotaError(
                f"openstack {what}: quota exceeded ({fault.message})",
                target="openstack",
                hint="raise the project's quota (or delete unused servers), then "
                "`drboot resume RUN_ID`: what exists is found, not created twice",
            )
        if fault.code == "sdk":
            return OpenStackError(
                f"openstack {what}: {fault.message}",
                target="openstack",
                hint="check provider.region and the cloud's service catalog, then resume",
            )
        return OpenStackError(
            f"openstack {what}: HTTP {fault.status}: {fault.message}",
            target="openstack",
            hint="fix what the cloud names, then `drboot resume RUN_ID`",
        )

    def _refused(self, what: str, why: str) -> OpenStackAuthError:
        return OpenStackAuthError(
            f"openstack {what}: the cloud refused the credentials ({why})",
            target="openstack",
            hint="check the clouds.yaml cloud or provider.auth (user, project, password "
            "reference); nothing was created",
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

    def flavor_size(self, name: str) -> str | None:
        """"2 vCPU, 4096 MiB RAM, 40 GB disk" of flavor ``name`` (None: no such flavor)."""
        f = self._call(
            f"find flavor {name!r}", lambda c: c.compute.find_flavor(name, ignore_missing=True)
        )
        if f is None:
            return None
        return f"{f.vcpus} vCPU, {f.ram} MiB RAM, {f.disk} GB disk"

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
        """(protocol, port min, port max, remote prefix) of each ingress rule with a prefix."""
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
                security_group_id=sg_id, direction="ingress",
                ethertype="IPv6" if ":" in prefix else "IPv4",
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
        created=_created(server.created_at),
    )


def _created(value: object) -> datetime | None:
    """Nova's ``created`` (ISO 8601, ``Z``) as an aware datetime; None if it says nothing."""
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
