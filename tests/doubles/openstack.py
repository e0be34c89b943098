"""OpenStackDouble: a local HTTP double of the OpenStack APIs drboot uses (loopback only).

Why it exists: no cloud is reachable from the test bed, and a mock at drboot's own boundary
would not show that the real client library (``openstacksdk``, pinned) works against the real
wire shapes. This double serves those shapes, as the published API references describe them,
on 127.0.0.1:

* Keystone v3: ``GET /`` and ``/v3`` (version discovery), ``POST /v3/auth/tokens`` (password
  or application credential) answering ``X-Subject-Token`` and a service catalog;
* Nova (``/compute/v2.1``): ``servers`` (+ ``detail``, ``metadata``), ``os-keypairs``,
  ``flavors`` (+ ``detail``), ``limits``; a server goes BUILD → ACTIVE, or ERROR with ``fault``;
* Glance (``/image/v2``): ``images``;
* Neutron (``/network/v2.0``): ``networks``, ``subnets``, ``ports``, ``security-groups``,
  ``security-group-rules``.

It is a double, not a simulation of a cloud: it keeps only what the calls above need, and it
misbehaves on demand (``Faults``): 429/413 bursts with ``Retry-After``, 5xx, a server stuck in
BUILD, one that goes to ERROR with a fault, the instance quota (Nova's 403 "Quota exceeded for
instances"), and seeded decoy servers (another site's, an unlabelled one).

What boots behind a server is a ``tests.doubles.servers.ServerBackend``: ``PaperServers``
(the default) gives each server a TEST-NET address and no machine; ``LabServers`` boots a real
lab host with the user data as its cloud-init NoCloud seed. The backend knows a server by a
small number (``Server.num``: lab host names are short), the API by its UUID.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.doubles.servers import PaperServers, ServerBackend

Json = dict[str, Any]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Faults:
    """Misbehaviour on demand; every counter counts down as it fires."""

    rate_limited: int = 0  # the next N requests answer 429 (or ``rate_limit_status``)
    rate_limit_status: int = 429  # 429, or Nova's older 413 "overLimit"
    retry_after: int = 1  # seconds, in the Retry-After header
    server_errors: int = 0  # the next N requests answer 503
    stuck_in_build: set[str] = field(default_factory=set)  # names that stay BUILD ("*": all)
    boot_errors: dict[str, str] = field(default_factory=dict)  # name -> fault message (ERROR)
    max_instances: int = 20  # Nova's instances quota
    # what GET /limits reports as maxTotalInstances (None: the quota itself); a lower real
    # quota than reported is how another user taking instances half-way looks
    reported_max_instances: int | None = None


@dataclass
class Server:
    id: str
    num: int  # the backend's number for it
    name: str
    metadata: dict[str, str]
    flavor_id: str
    image_id: str
    key_name: str | None
    network: str | None
    security_groups: list[str]
    user_data: bytes | None
    status: str = "BUILD"
    address: str | None = None
    fault: Json | None = None
    created: str = field(default_factory=_now)

    def view(self, network_names: dict[str, str]) -> Json:
        net = network_names.get(self.network or "", "private")
        addresses = (
            {net: [{"addr": self.address, "version": 4, "OS-EXT-IPS:type": "fixed"}]}
            if self.address and self.status == "ACTIVE"
            else {}
        )
        out: Json = {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "metadata": dict(self.metadata),
            "flavor": {"id": self.flavor_id},
            "image": {"id": self.image_id},
            "key_name": self.key_name,
            "addresses": addresses,
            "security_groups": [{"name": s} for s in self.security_groups],
            "created": self.created,
            "updated": _now(),
            "tenant_id": DoubleCloud.PROJECT_ID,
            "user_id": DoubleCloud.USER_ID,
            "OS-EXT-STS:vm_state": {"BUILD": "building", "ACTIVE": "active"}.get(
                self.status, "error"
            ),
            "progress": 100 if self.status == "ACTIVE" else 0,
            "links": [],
        }
        if self.fault is not None:
            out["fault"] = self.fault
        return out


class _HttpError(Exception):
    def __init__(self, status: int, body: Json, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def _not_found(kind: str, ident: str) -> _HttpError:
    return _HttpError(404, {"itemNotFound": {"code": 404, "message": f"{kind} {ident} could "
                                                                   "not be found."}})  # fmt: skip


class DoubleCloud:
    """The state behind the double: what exists, who may log in, what misbehaves."""

    PROJECT_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    USER_ID = "9a8b7c6d5e4f30211203f4e5d6c7b8a9"

    def __init__(
        self,
        *,
        username: str = "drboot",
        password: str = "double-password",
        project: str = "drboot",
        region: str = "RegionOne",
        user_domain: str = "Default",
        project_domain: str = "Default",
        app_credential: tuple[str, str] | None = None,
        backend: ServerBackend | None = None,
    ) -> None:
        self.username, self.password, self.project, self.region = (
            username, password, project, region)  # fmt: skip
        self.user_domain, self.project_domain = user_domain, project_domain
        self.app_credential = app_credential
        self.backend: ServerBackend = backend or PaperServers()
        self._nums = iter(range(1, 1 << 30))
        self.faults = Faults()
        self.tokens: set[str] = set()
        self.lock = threading.RLock()
        self.servers: dict[str, Server] = {}
        self.keypairs: dict[str, Json] = {}
        self.flavors: dict[str, Json] = {}
        self.images: dict[str, Json] = {}
        self.networks: dict[str, Json] = {}
        self.subnets: dict[str, Json] = {}
        self.ports: dict[str, Json] = {}
        self.security_groups: dict[str, Json] = {}
        self.rules: dict[str, Json] = {}
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status) in order
        self.boots: list[threading.Thread] = []
        self.add_flavor("m1.small", vcpus=1, ram=2048, disk=20)
        self.add_flavor("m1.large", vcpus=4, ram=8192, disk=80)
        self.add_image("debian-12")
        self.add_network("public", external=True)
        self._default_security_group()

    # ------------------------------------------------------------------ seeding
    def add_flavor(self, name: str, *, vcpus: int, ram: int, disk: int) -> Json:
        fid = str(len(self.flavors) + 1)
        flavor = {"id": fid, "name": name, "vcpus": vcpus, "ram": ram, "disk": disk,
                  "OS-FLV-EXT-DATA:ephemeral": 0, "swap": 0, "rxtx_factor": 1.0,
                  "os-flavor-access:is_public": True, "OS-FLV-DISABLED:disabled": False,
                  "description": None, "extra_specs": {}, "links": []}  # fmt: skip
        self.flavors[fid] = flavor
        return flavor

    def add_image(self, name: str) -> Json:
        iid = str(uuid.uuid4())
        self.images[iid] = {"id": iid, "name": name, "status": "active", "visibility": "public",
                            "disk_format": "qcow2", "container_format": "bare",
                            "min_disk": 0, "min_ram": 0, "protected": False, "tags": [],
                            "size": 1 << 30, "created_at": _now(), "updated_at": _now(),
                            "self": f"/v2/images/{iid}", "file": f"/v2/images/{iid}/file",
                            "schema": "/v2/schemas/image", "owner": self.PROJECT_ID}  # fmt: skip
        return self.images[iid]

    def add_network(self, name: str, *, external: bool = False) -> Json:
        net = self._server_less_create("networks", {"name": name})
        net["router:external"] = external
        net["shared"] = external
        self.networks[net["id"]] = net
        return net

    def _server_less_create(self, kind: str, spec: Json) -> Json:
        return _neutron_item(self, kind, spec)

    def add_server(self, name: str, metadata: dict[str, str], *, status: str = "ACTIVE",
                   created: datetime | None = None) -> Server:  # fmt: skip
        """A server that exists before the test (a decoy: another site's, or unlabelled)."""
        srv = Server(
            id=str(uuid.uuid4()), num=next(self._nums), name=name, metadata=dict(metadata),
            flavor_id=next(iter(self.flavors)), image_id=next(iter(self.images)),
            key_name=None, network=None, security_groups=["default"], user_data=None,
            status=status, address="192.0.2.250",
        )  # fmt: skip
        if created is not None:
            srv.created = created.strftime("%Y-%m-%dT%H:%M:%SZ")
        with self.lock:
            self.servers[srv.id] = srv
        return srv

    def _default_security_group(self) -> None:
        sg = self._new_sg("default", "Default security group")
        self.security_groups[sg["id"]] = sg

    def _new_sg(self, name: str, description: str) -> Json:
        return {"id": str(uuid.uuid4()), "name": name, "description": description,
                "tenant_id": self.PROJECT_ID, "project_id": self.PROJECT_ID,
                "security_group_rules": [], "stateful": True, "tags": [],
                "created_at": _now(), "updated_at": _now(), "revision_number": 0}  # fmt: skip

    # ------------------------------------------------------------------ what tests read
    def servers_named(self, prefix: str = "") -> list[Server]:
        with self.lock:
            return [s for s in self.servers.values() if s.name.startswith(prefix)]

    def labelled(self, site: str) -> list[Server]:
        with self.lock:
            return [s for s in self.servers.values() if s.metadata.get("drboot.dev/site") == site]

    def count(self, method: str, path_part: str, status: int | None = None) -> int:
        return sum(
            1
            for m, p, s in list(self.requests)
            if m == method and path_part in p and (status is None or s == status)
        )

    def wait_for_boots(self, timeout: float = 120) -> None:
        for t in list(self.boots):
            t.join(timeout)

    # ------------------------------------------------------------------ server lifecycle
    def create_server(self, body: Json) -> Server:
        spec = body.get("server")
        if not isinstance(spec, dict) or not spec.get("name"):
            raise _HttpError(400, {"badRequest": {"code": 400,
                                                  "message": "Invalid input: 'name'"}})  # fmt: skip
        flavor_ref = str(spec.get("flavorRef", ""))
        image_ref = str(spec.get("imageRef", ""))
        if flavor_ref not in self.flavors:
            raise _HttpError(400, {"badRequest": {"code": 400, "message":
                                                  f"Flavor {flavor_ref} could not be found."}})
        if image_ref not in self.images:
            raise _HttpError(400, {"badRequest": {"code": 400, "message":
                                                  "Can not find requested image"}})
        key_name = spec.get("key_name")
        if key_name is not None and key_name not in self.keypairs:
            raise _HttpError(400, {"badRequest": {"code": 400, "message":
                                                  "Invalid key_name provided."}})
        networks = spec.get("networks") or []
        net_id = networks[0].get("uuid") if networks and isinstance(networks, list) else None
        if net_id is not None and net_id not in self.networks:
            raise _HttpError(400, {"badRequest": {"code": 400, "message":
                                                  f"Network {net_id} could not be found."}})
        groups = [g.get("name", "") for g in spec.get("security_groups") or [{"name": "default"}]]
        known = {sg["name"] for sg in self.security_groups.values()} | set(self.security_groups)
        for g in groups:
            if g not in known:
                raise _HttpError(400, {"badRequest": {"code": 400, "message":
                                                      f"Security group {g} not found for "
                                                      "project"}})  # fmt: skip
        raw = spec.get("user_data")
        user_data = base64.b64decode(raw) if raw else None
        with self.lock:
            used = len(self.servers)
            if used + 1 > self.faults.max_instances:
                raise _HttpError(403, {"forbidden": {"code": 403, "message":
                    f"Quota exceeded for instances: Requested 1, but already used {used} of "
                    f"{self.faults.max_instances} instances"}})  # fmt: skip
            srv = Server(
                id=str(uuid.uuid4()), num=next(self._nums), name=spec["name"],
                metadata={str(k): str(v) for k, v in (spec.get("metadata") or {}).items()},
                flavor_id=flavor_ref, image_id=image_ref, key_name=key_name, network=net_id,
                security_groups=groups, user_data=user_data,
            )  # fmt: skip
            self.servers[srv.id] = srv
        if not ({srv.name, "*"} & self.faults.stuck_in_build):
            t = threading.Thread(target=self._boot, args=(srv,), name=f"boot-{srv.name}",
                                 daemon=True)  # fmt: skip
            self.boots.append(t)
            t.start()
        return srv

    def finish_build(self, name: str) -> None:
        """Let a server held in BUILD (``faults.stuck_in_build``) boot now."""
        self.faults.stuck_in_build -= {name, "*"}
        with self.lock:
            held = [s for s in self.servers.values() if s.name == name and s.status == "BUILD"]
        for srv in held:
            t = threading.Thread(target=self._boot, args=(srv,), name=f"boot-{name}",
                                 daemon=True)  # fmt: skip
            self.boots.append(t)
            t.start()

    def _boot(self, srv: Server) -> None:
        message = self.faults.boot_errors.get(srv.name)
        if message is None:
            try:
                text = srv.user_data.decode() if srv.user_data is not None else None
                address = self.backend.boot(srv.num, srv.name, text)
            except Exception as exc:  # the backend failing is what ERROR reports
                message = f"{type(exc).__name__}: {exc}"
            else:
                with self.lock:
                    alive = srv.id in self.servers
                    if alive:
                        srv.address = address
                        srv.status = "ACTIVE"
                        self._port_for(srv)
                if not alive:  # deleted while it booted: its host goes too
                    self.backend.destroy(srv.num)
                return
        with self.lock:
            srv.status = "ERROR"
            srv.fault = {"code": 500, "created": _now(), "message": message,
                         "details": "Traceback (most recent call last): ..."}  # fmt: skip

    def _port_for(self, srv: Server) -> None:
        pid = str(uuid.uuid4())
        self.ports[pid] = {"id": pid, "name": "", "network_id": srv.network or "",
                           "device_id": srv.id, "device_owner": "compute:nova",
                           "status": "ACTIVE", "admin_state_up": True,
                           "fixed_ips": [{"ip_address": srv.address, "subnet_id": ""}],
                           "mac_address": "fa:16:3e:00:00:01", "tenant_id": self.PROJECT_ID,
                           "project_id": self.PROJECT_ID, "security_groups": [],
                           "tags": []}  # fmt: skip

    def delete_server(self, sid: str) -> None:
        with self.lock:
            srv = self.servers.pop(sid, None)
            if srv is None:
                raise _not_found("Instance", sid)
            for pid in [p for p, port in self.ports.items() if port["device_id"] == sid]:
                del self.ports[pid]
        self.backend.destroy(srv.num)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return None  # quiet: the request log is ``cloud.requests``

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        cloud = self.server.cloud
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        status, body, headers = 500, None, {}
        try:
            body_in = json.loads(raw) if raw else {}
            status, body, headers = self.server.route(method, url.path, parse_qs(url.query),
                                                      body_in, self.headers)  # fmt: skip
        except _HttpError as err:
            status, body, headers = err.status, err.body, err.headers
        except json.JSONDecodeError:
            status, body = 400, {"badRequest": {"code": 400, "message": "Malformed JSON"}}
        cloud.requests.append((method, url.path, status))
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


Route = tuple[int, Json | None, dict[str, str]]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, cloud: DoubleCloud) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.cloud = cloud

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client that went away (a SIGKILLed drboot's keep-alive connection)
        super().handle_error(request, client_address)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    # --------------------------------------------------------------- routing
    def route(self, method: str, path: str, query: dict[str, list[str]], body: Json,
              headers: Any) -> Route:  # fmt: skip
        path = path.rstrip("/") or "/"
        if path in ("/", "/v3") and method == "GET":
            return 200 if path == "/v3" else 300, self._identity_versions(path), {}
        if path == "/v3/auth/tokens" and method == "POST":
            return self._token(body)
        cloud = self.cloud
        discovery = method == "GET" and path in ("/compute/v2.1", "/image", "/network")
        if not discovery and headers.get("X-Auth-Token") not in cloud.tokens:
            raise _HttpError(401, {"error": {"code": 401, "title": "Unauthorized",
                                             "message": "The request you have made requires "
                                             "authentication."}})  # fmt: skip
        with cloud.lock:
            faults = cloud.faults
            if faults.rate_limited > 0:
                faults.rate_limited -= 1
                key = "overLimit" if faults.rate_limit_status == 413 else "rateLimit"
                raise _HttpError(faults.rate_limit_status, {key: {
                    "code": faults.rate_limit_status, "message": "This request was "
                    "rate-limited.", "retryAfter": str(faults.retry_after)}},
                    {"Retry-After": str(faults.retry_after)})  # fmt: skip
            if faults.server_errors > 0:
                faults.server_errors -= 1
                raise _HttpError(503, {"computeFault": {"code": 503, "message":
                                                        "Service Unavailable"}})  # fmt: skip
        for prefix, handler in (("/compute/v2.1", self._nova), ("/image", self._glance),
                                ("/network", self._neutron)):  # fmt: skip
            if path == prefix or path.startswith(prefix + "/"):
                return handler(method, path[len(prefix):].strip("/"), query, body)
        raise _HttpError(404, {"error": {"code": 404, "message": f"no route {path}"}})

    def _identity_versions(self, path: str) -> Json:
        v3 = {"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
              "links": [{"rel": "self", "href": f"{self.base}/v3/"}],
              "media-types": [{"base": "application/json",
                               "type": "application/vnd.openstack.identity-v3+json"}]}  # fmt: skip
        return {"version": v3} if path == "/v3" else {"versions": {"values": [v3]}}

    def _token(self, body: Json) -> Route:
        cloud = self.cloud
        ident = (body.get("auth") or {}).get("identity") or {}
        ok = False
        if "password" in (ident.get("methods") or []):
            user = (ident.get("password") or {}).get("user") or {}
            scope = ((body.get("auth") or {}).get("scope") or {}).get("project") or {}
            ok = (
                user.get("name") == cloud.username
                and user.get("password") == cloud.password
                and (user.get("domain") or {}).get("name") == cloud.user_domain
                and scope.get("name") == cloud.project
                and (scope.get("domain") or {}).get("name") == cloud.project_domain
            )
        elif "application_credential" in (ident.get("methods") or []) and cloud.app_credential:
            cred = ident.get("application_credential") or {}
            ok = (cred.get("id"), cred.get("secret")) == cloud.app_credential
        if not ok:
            raise _HttpError(401, {"error": {"code": 401, "title": "Unauthorized",
                                             "message": "The request you have made requires "
                                             "authentication."}})  # fmt: skip
        token = uuid.uuid4().hex
        cloud.tokens.add(token)

        def svc(kind: str, name: str, url: str) -> Json:
            return {"type": kind, "name": name, "id": uuid.uuid4().hex, "endpoints": [
                {"id": uuid.uuid4().hex, "interface": iface, "region": cloud.region,
                 "region_id": cloud.region, "url": url}
                for iface in ("public", "internal")]}  # fmt: skip

        expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
        domain = {"id": "default", "name": "Default"}
        out = {"token": {
            "methods": ident.get("methods"), "expires_at": expires, "issued_at": _now(),
            "user": {"id": cloud.USER_ID, "name": cloud.username, "domain": domain,
                     "password_expires_at": None},
            "project": {"id": cloud.PROJECT_ID, "name": cloud.project, "domain": domain},
            "roles": [{"id": "r1", "name": "member"}], "is_domain": False,
            "catalog": [
                svc("identity", "keystone", f"{self.base}/v3"),
                svc("compute", "nova", f"{self.base}/compute/v2.1"),
                svc("image", "glance", f"{self.base}/image"),
                svc("network", "neutron", f"{self.base}/network"),
            ]}}  # fmt: skip
        return 201, out, {"X-Subject-Token": token}

    # --------------------------------------------------------------- nova
    def _nova(self, method: str, rest: str, query: dict[str, list[str]], body: Json) -> Route:
        cloud = self.cloud
        parts = rest.split("/") if rest else []
        if not parts:
            return 200, {"version": {"id": "v2.1", "status": "CURRENT", "version": "2.79",
                                     "min_version": "2.1", "updated": "2013-07-23T11:33:21Z",
                                     "links": [{"rel": "self",
                                                "href": f"{self.base}/compute/v2.1/"}]}}, {}
        head = parts[0]
        nets = {n["id"]: n["name"] for n in cloud.networks.values()}
        if head == "servers":
            if len(parts) == 1 and method == "POST":
                srv = cloud.create_server(body)
                return 202, {"server": {"id": srv.id, "links": [], "adminPass": "x",
                                        "OS-DCF:diskConfig": "MANUAL",
                                        "security_groups": [{"name": g} for g in
                                                            srv.security_groups]}}, {}
            if len(parts) == 1 or parts[1] == "detail":
                with cloud.lock:
                    found = [s for s in cloud.servers.values()
                             if "name" not in query or re.search(query["name"][0], s.name)]
                    return 200, {"servers": [s.view(nets) for s in found]}, {}
            if len(parts) == 2 and method == "DELETE":
                cloud.delete_server(parts[1])  # the backend's host goes outside the lock
                return 204, None, {}
            with cloud.lock:
                srv_ = cloud.servers.get(parts[1])
                if srv_ is None:
                    raise _not_found("Instance", parts[1])
                if len(parts) == 2 and method == "GET":
                    return 200, {"server": srv_.view(nets)}, {}
                if parts[2] == "metadata" and method == "GET":
                    return 200, {"metadata": dict(srv_.metadata)}, {}
                if parts[2] == "metadata" and method == "POST":
                    srv_.metadata.update(body.get("metadata") or {})
                    return 200, {"metadata": dict(srv_.metadata)}, {}
        if head == "flavors":
            if len(parts) == 1 or parts[1] == "detail":
                return 200, {"flavors": list(cloud.flavors.values())}, {}
            flavor = cloud.flavors.get(parts[1])
            if flavor is None:
                raise _not_found("Flavor", parts[1])
            if len(parts) == 3 and parts[2] == "os-extra_specs":
                return 200, {"extra_specs": {}}, {}
            return 200, {"flavor": flavor}, {}
        if head == "os-keypairs":
            if len(parts) == 1 and method == "GET":
                return 200, {"keypairs": [{"keypair": k} for k in cloud.keypairs.values()]}, {}
            if len(parts) == 1 and method == "POST":
                spec = body.get("keypair") or {}
                name = spec.get("name")
                if name in cloud.keypairs:
                    raise _HttpError(409, {"conflictingRequest": {"code": 409, "message":
                                           f"Key pair '{name}' already exists."}})  # fmt: skip
                kp = {"name": name, "public_key": spec.get("public_key"), "type": "ssh",
                      "fingerprint": "00:11", "user_id": cloud.USER_ID}  # fmt: skip
                cloud.keypairs[str(name)] = kp
                return 200, {"keypair": kp}, {}
            kp_ = cloud.keypairs.get(parts[1])
            if kp_ is None:
                raise _not_found("Keypair", parts[1])
            if method == "DELETE":
                del cloud.keypairs[parts[1]]
                return 202, None, {}
            return 200, {"keypair": kp_}, {}
        if head == "limits":
            return 200, {"limits": {"rate": [], "absolute": {
                "maxTotalInstances": cloud.faults.max_instances
                if cloud.faults.reported_max_instances is None
                else cloud.faults.reported_max_instances,
                "totalInstancesUsed": len(cloud.servers),
                "maxTotalCores": 100, "totalCoresUsed": 0, "maxTotalRAMSize": 512000,
                "totalRAMUsed": 0, "maxTotalKeypairs": 100, "maxServerMeta": 128,
                "maxPersonality": 5, "maxPersonalitySize": 10240, "maxImageMeta": 128,
                "maxServerGroups": 10, "maxServerGroupMembers": 10,
                "totalServerGroupsUsed": 0, "totalFloatingIpsUsed": 0,
                "totalSecurityGroupsUsed": 0}}}, {}  # fmt: skip
        raise _HttpError(404, {"itemNotFound": {"code": 404, "message": f"no route {rest}"}})

    # --------------------------------------------------------------- glance
    def _glance(self, method: str, rest: str, query: dict[str, list[str]], body: Json) -> Route:
        cloud = self.cloud
        if not rest:
            v2 = {"id": "v2.16", "status": "CURRENT",
                  "links": [{"rel": "self", "href": f"{self.base}/image/v2/"}]}  # fmt: skip
            return 200, {"versions": [v2]}, {}
        parts = rest.split("/")
        if parts[:2] == ["v2", "images"]:
            if len(parts) == 2:
                found = [i for i in cloud.images.values()
                         if "name" not in query or i["name"] == query["name"][0]]  # fmt: skip
                return 200, {"images": found, "schema": "/v2/schemas/images",
                             "first": "/v2/images"}, {}  # fmt: skip
            image = cloud.images.get(parts[2])
            if image is None:
                raise _HttpError(404, {"message": "404 Not Found", "code": "404 Not Found",
                                       "title": "Not Found"})  # fmt: skip
            return 200, image, {}
        raise _HttpError(404, {"message": f"no route {rest}"})

    # --------------------------------------------------------------- neutron
    _NEUTRON = {"networks": ("network", "networks"), "subnets": ("subnet", "subnets"),
                "ports": ("port", "ports"),
                "security-groups": ("security_group", "security_groups"),
                "security-group-rules": ("security_group_rule",
                                         "security_group_rules")}  # fmt: skip

    def _neutron(self, method: str, rest: str, query: dict[str, list[str]], body: Json) -> Route:
        cloud = self.cloud
        if not rest:
            v2 = {"id": "v2.0", "status": "CURRENT",
                  "links": [{"rel": "self", "href": f"{self.base}/network/v2.0/"}]}  # fmt: skip
            return 200, {"versions": [v2]}, {}
        parts = rest.split("/")
        if parts[0] != "v2.0" or len(parts) < 2 or parts[1] not in self._NEUTRON:
            raise _HttpError(404, {"NeutronError": {"type": "HTTPNotFound", "message":
                                                    f"no route {rest}", "detail": ""}})
        one, many = self._NEUTRON[parts[1]]
        store: dict[str, Json] = {
            "networks": cloud.networks, "subnets": cloud.subnets, "ports": cloud.ports,
            "security-groups": cloud.security_groups, "security-group-rules": cloud.rules,
        }[parts[1]]  # fmt: skip
        with cloud.lock:
            if len(parts) == 2 and method == "GET":
                found = [
                    item for item in store.values()
                    if all(str(item.get(k)) == v[0] for k, v in query.items()
                           if k not in ("fields", "limit", "marker", "sort_key", "sort_dir"))
                ]  # fmt: skip
                return 200, {many: found}, {}
            if len(parts) == 2 and method == "POST":
                item = _neutron_item(cloud, parts[1], body.get(one) or {})
                store[item["id"]] = item
                return 201, {one: item}, {}
            item_ = store.get(parts[2])
            if item_ is None:
                raise _HttpError(404, {"NeutronError": {"type": "NotFound", "message":
                                 f"{one} {parts[2]} could not be found", "detail": ""}})
            if method == "DELETE":
                del store[parts[2]]
                if parts[1] == "security-group-rules":
                    for sg in cloud.security_groups.values():
                        sg["security_group_rules"] = [
                            r for r in sg["security_group_rules"] if r["id"] != parts[2]]
                return 204, None, {}
            return 200, {one: item_}, {}

def _neutron_item(cloud: DoubleCloud, kind: str, spec: Json) -> Json:
    """A new Neutron object of ``kind`` (networks, subnets …) as Neutron answers it."""
    base = {"id": str(uuid.uuid4()), "tenant_id": cloud.PROJECT_ID,
            "project_id": cloud.PROJECT_ID, "tags": [], "created_at": _now(),
            "updated_at": _now(), "revision_number": 0, "description": ""}  # fmt: skip
    if kind == "networks":
        return base | {"name": spec.get("name", ""), "status": "ACTIVE", "subnets": [],
                       "admin_state_up": True, "shared": False, "mtu": 1450,
                       "router:external": False, "port_security_enabled": True}
    if kind == "subnets":
        net = cloud.networks.get(str(spec.get("network_id")))
        if net is None:
            raise _HttpError(404, {"NeutronError": {"type": "NetworkNotFound",
                             "message": "Network could not be found.", "detail": ""}})
        item = base | {"name": spec.get("name", ""), "network_id": net["id"],
                       "cidr": spec.get("cidr"), "ip_version": spec.get("ip_version", 4),
                       "enable_dhcp": True, "gateway_ip": None, "dns_nameservers": [],
                       "allocation_pools": [], "host_routes": []}  # fmt: skip
        net["subnets"].append(item["id"])
        return item
    if kind == "security-groups":
        return cloud._new_sg(str(spec.get("name", "")), str(spec.get("description", "")))
    if kind == "security-group-rules":
        sg = cloud.security_groups.get(str(spec.get("security_group_id")))
        if sg is None:
            raise _HttpError(404, {"NeutronError": {"type": "SecurityGroupNotFound",
                             "message": "Security group could not be found.",
                             "detail": ""}})  # fmt: skip
        fields = ("direction", "ethertype", "protocol", "port_range_min", "port_range_max",
                  "remote_ip_prefix", "remote_group_id")  # fmt: skip
        rule = base | {k: spec.get(k) for k in fields} | {"security_group_id": sg["id"]}
        rule["ethertype"] = rule["ethertype"] or "IPv4"
        for other in sg["security_group_rules"]:
            if all(other.get(k) == rule.get(k) for k in fields):
                raise _HttpError(409, {"NeutronError": {"type": "SecurityGroupRuleExists",
                                 "message": f"Security group rule already exists. Rule id "
                                 f"is {other['id']}.", "detail": ""}})  # fmt: skip
        sg["security_group_rules"].append(rule)
        return rule
    raise _HttpError(400, {"NeutronError": {"type": "BadRequest", "message": kind}})




class OpenStackDouble:
    """The double as a running HTTP server on 127.0.0.1 (a context manager)."""

    def __init__(self, cloud: DoubleCloud | None = None) -> None:
        self.cloud = cloud or DoubleCloud()
        self._server = _Server(self.cloud)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="openstack-double", daemon=True
        )

    @property
    def auth_url(self) -> str:
        return f"{self._server.base}/v3"

    def start(self) -> OpenStackDouble:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def __enter__(self) -> OpenStackDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def clouds_yaml(self, cloud: str = "double", *, password: str | None = None) -> str:
        """A clouds.yaml naming this double (``password`` defaults to the right one)."""
        c = self.cloud
        return json.dumps({"clouds": {cloud: {
            "auth": {"auth_url": self.auth_url, "username": c.username,
                     "password": c.password if password is None else password,
                     "project_name": c.project, "user_domain_name": c.user_domain,
                     "project_domain_name": c.project_domain},
            "region_name": c.region, "identity_api_version": 3}}})  # fmt: skip


