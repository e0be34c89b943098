"""HcloudDouble: a local HTTP DOUBLE of the Hetzner Cloud API v1 (loopback only).

Built from Hetzner's published API reference (docs.hetzner.cloud) and the shapes the official
``hcloud`` Python library parses, so that library talks to it unchanged:
``hcloud.Client(token=..., api_endpoint=double.endpoint)``. It is NOT Hetzner: it keeps its
state in memory and its servers come from a ``ServerBackend`` (records only, or real lab hosts
booted with the user data as their cloud-init NoCloud seed; see ``tests.doubles.servers``).

What it serves: ``/servers`` (list with ``label_selector``/``name``/``status``, create,
get, delete, ``/servers/{id}/actions/poweron``), ``/ssh_keys``, ``/networks``,
``/firewalls``, ``/server_types`` (with prices per location), ``/locations`` (with country
and network zone), ``/images``, ``/actions/{id}`` (``running`` -> ``success``/``error``).
Lists are paginated (``meta.pagination``, ``page``/``per_page``), errors are
``{"error": {"code", "message", "details"}}`` with Hetzner's status codes, and every answer
carries ``RateLimit-Limit``/``RateLimit-Remaining``/``RateLimit-Reset``.

It misbehaves on demand (``faults``): a burst of 429 ``rate_limit_exceeded`` answers with a
reset header, 5xx answers, servers stuck in ``initializing``, a server limit that makes a
create fail with ``resource_limit_exceeded`` half-way through a multi-server create, a decoy
server of another site and an unlabelled one. It counts every request it answers.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.doubles.servers import PaperServers, ServerBackend

TOKEN = "double-token-not-a-secret"
RATE_LIMIT = 3600


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


LOCATIONS = [
    {
        "id": 1,
        "name": "fsn1",
        "description": "Falkenstein DC Park 1",
        "country": "DE",
        "city": "Falkenstein",
        "latitude": 50.47612,
        "longitude": 12.370071,
        "network_zone": "eu-central",
    },
    {
        "id": 2,
        "name": "nbg1",
        "description": "Nuremberg DC Park 1",
        "country": "DE",
        "city": "Nuremberg",
        "latitude": 49.452102,
        "longitude": 11.076665,
        "network_zone": "eu-central",
    },
    {
        "id": 3,
        "name": "hel1",
        "description": "Helsinki DC Park 1",
        "country": "FI",
        "city": "Helsinki",
        "latitude": 60.169855,
        "longitude": 24.938379,
        "network_zone": "eu-central",
    },
    {
        "id": 4,
        "name": "ash",
        "description": "Ashburn, VA",
        "country": "US",
        "city": "Ashburn, VA",
        "latitude": 39.045821,
        "longitude": -77.487073,
        "network_zone": "us-east",
    },
]


def _prices(hourly: str, monthly: str, where: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "location": loc,
            "price_hourly": {"net": hourly, "gross": f"{float(hourly) * 1.19:.10f}"},
            "price_monthly": {"net": monthly, "gross": f"{float(monthly) * 1.19:.10f}"},
            "included_traffic": 21990232555520,
            "price_per_tb_traffic": {"net": "1.0000000000", "gross": "1.1900000000"},
        }
        for loc in where
    ]


SERVER_TYPES = [
    {
        "id": 22,
        "name": "cx22",
        "description": "CX22",
        "cores": 2,
        "memory": 4.0,
        "disk": 40,
        "deprecated": False,
        "deprecation": None,
        "prices": _prices("0.0060000000", "3.7900000000", ["fsn1", "nbg1", "hel1"]),
        "storage_type": "local",
        "cpu_type": "shared",
        "architecture": "x86",
    },
    {
        "id": 45,
        "name": "cpx31",
        "description": "CPX 31",
        "cores": 4,
        "memory": 8.0,
        "disk": 160,
        "deprecated": False,
        "deprecation": None,
        "prices": _prices("0.0215000000", "13.1000000000", ["fsn1", "nbg1", "hel1", "ash"]),
        "storage_type": "local",
        "cpu_type": "shared",
        "architecture": "x86",
    },
    {
        "id": 93,
        "name": "cax11",
        "description": "CAX11",
        "cores": 2,
        "memory": 4.0,
        "disk": 40,
        "deprecated": False,
        "deprecation": None,
        "prices": _prices("0.0053000000", "3.2900000000", ["fsn1", "nbg1", "hel1"]),
        "storage_type": "local",
        "cpu_type": "shared",
        "architecture": "arm",
    },
]

IMAGES = [
    {
        "id": 114690387,
        "type": "system",
        "status": "available",
        "name": "debian-12",
        "description": "Debian 12",
        "image_size": None,
        "disk_size": 5,
        "created": "2023-06-13T06:00:02+00:00",
        "created_from": None,
        "bound_to": None,
        "os_flavor": "debian",
        "os_version": "12",
        "rapid_deploy": True,
        "protection": {"delete": False},
        "deprecated": None,
        "deleted": None,
        "labels": {},
        "architecture": "x86",
    },
    {
        "id": 114690389,
        "type": "system",
        "status": "available",
        "name": "debian-12",
        "description": "Debian 12",
        "image_size": None,
        "disk_size": 5,
        "created": "2023-06-13T06:00:02+00:00",
        "created_from": None,
        "bound_to": None,
        "os_flavor": "debian",
        "os_version": "12",
        "rapid_deploy": True,
        "protection": {"delete": False},
        "deprecated": None,
        "deleted": None,
        "labels": {},
        "architecture": "arm",
    },
]


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details = details
        self.headers = headers or {}


@dataclass
class Faults:
    """What the double does wrong, set by a test. Counters go down as they fire."""

    rate_limited: int = 0  # answer the next N requests with 429
    rate_limit_reset_in: float = 2.0  # RateLimit-Reset = now + this during a burst
    server_errors: int = 0  # answer the next N requests with this status
    server_error_status: int = 503
    max_servers: int | None = None  # more servers than this: resource_limit_exceeded
    stuck_names: set[str] = field(default_factory=set)  # servers (name contains) never start
    boot_delay: float = 0.0  # seconds a server stays initializing before it boots
    only: Callable[[str, str], bool] | None = None  # limit 429/5xx to (method, path)


@dataclass
class Request:
    method: str
    path: str
    status: int
    at: float


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client killed mid-request (the SIGKILL tests): not the double's error
        super().handle_error(request, client_address)


class HcloudDouble:
    """The double; ``start()`` it, point ``hcloud.Client`` at ``endpoint``, ``stop()`` it."""

    def __init__(self, backend: ServerBackend | None = None, token: str = TOKEN) -> None:
        self.backend: ServerBackend = backend or PaperServers()
        self.token = token
        self.faults = Faults()
        self.requests: list[Request] = []
        self.servers: dict[int, dict[str, Any]] = {}
        self.user_data: dict[int, str | None] = {}  # by server id, kept after deletion
        self.ssh_keys: dict[int, dict[str, Any]] = {}
        self.networks: dict[int, dict[str, Any]] = {}
        self.firewalls: dict[int, dict[str, Any]] = {}
        self.actions: dict[int, dict[str, Any]] = {}
        self.max_servers_seen = 0  # most drboot-labelled servers at once (any site)
        self.max_per_site: dict[str, int] = {}  # most servers of one site at once
        self.servers_created = 0
        self.server_created = threading.Event()  # set by every create (a test waits on it)
        self._ids = iter(range(1000, 10**9))
        self._lock = threading.RLock()
        self._threads: list[threading.Thread] = []
        self._httpd: _Server | None = None
        self._remaining = RATE_LIMIT

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> HcloudDouble:
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _serve(self, method: str) -> None:
                double._handle(self, method)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PUT(self) -> None:
                self._serve("PUT")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        thread.start()
        return self

    @property
    def endpoint(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def wait_idle(self, timeout: float = 300.0) -> None:
        """Wait for every boot/delete the double started in the background."""
        for t in list(self._threads):
            t.join(timeout)

    # ------------------------------------------------------------------ test helpers
    def add_server(
        self,
        name: str,
        labels: dict[str, str],
        status: str = "running",
        created: datetime | None = None,
    ) -> int:
        """A server made outside this run (a decoy of another site, an unlabelled one, a
        drill forgotten ``created`` ago)."""
        with self._lock:
            sid = next(self._ids)
            self.servers[sid] = self._server_record(sid, name, "cx22", "fsn1", labels, [], [])
            self.servers[sid]["status"] = status
            if created is not None:
                self.servers[sid]["created"] = created.strftime("%Y-%m-%dT%H:%M:%S+00:00")
            self.servers[sid]["public_net"]["ipv4"] = self._ipv4(sid, f"198.51.100.{sid % 250}")
            return sid

    def count(self, method: str | None = None, path_re: str | None = None) -> int:
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method)
            and (path_re is None or re.fullmatch(path_re, r.path))
        )

    def labelled(self, key: str = "drboot.dev/site") -> list[dict[str, Any]]:
        with self._lock:
            return [s for s in self.servers.values() if key in s["labels"]]

    # ------------------------------------------------------------------ HTTP
    def _handle(self, req: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(req.path)
        path = url.path
        query = {k: v for k, v in parse_qs(url.query).items()}
        length = int(req.headers.get("Content-Length") or 0)
        raw = req.rfile.read(length) if length else b""
        status, body, headers = 200, {}, {}
        try:
            if req.headers.get("Authorization") != f"Bearer {self.token}":
                raise ApiError(401, "unauthorized", "unable to authenticate")
            self._misbehave(method, path)
            data = json.loads(raw) if raw else {}
            status, body = self._route(method, path, query, data)
        except ApiError as err:
            status = err.status
            body = {"error": {"code": err.code, "message": err.message, "details": err.details}}
            headers.update(err.headers)
        except (ValueError, KeyError, TypeError) as err:
            status = 400
            body = {"error": {"code": "invalid_input", "message": str(err), "details": None}}
        with self._lock:
            self.requests.append(Request(method, path, status, time.time()))
            self._remaining = max(0, self._remaining - 1)
            headers.setdefault("RateLimit-Limit", str(RATE_LIMIT))
            headers.setdefault("RateLimit-Remaining", str(self._remaining))
            headers.setdefault(
                "RateLimit-Reset", str(int(time.time()) + RATE_LIMIT - self._remaining)
            )
        payload = json.dumps(body).encode() if status != 204 else b""
        req.send_response(status)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(payload)))
        req.send_header("X-Correlation-Id", f"double-{len(self.requests)}")
        for k, v in headers.items():
            req.send_header(k, v)
        req.end_headers()
        req.wfile.write(payload)

    def _misbehave(self, method: str, path: str) -> None:
        f = self.faults
        if f.only is not None and not f.only(method, path):
            return
        with self._lock:
            if f.rate_limited > 0:
                f.rate_limited -= 1
                reset = time.time() + f.rate_limit_reset_in
                self._remaining = 0
                raise ApiError(
                    429,
                    "rate_limit_exceeded",
                    "limit of 3600 requests per hour reached",
                    headers={
                        "RateLimit-Remaining": "0",
                        "RateLimit-Reset": str(int(reset) + (1 if reset % 1 else 0)),
                    },
                )
            if f.server_errors > 0:
                f.server_errors -= 1
                code = {500: "server_error", 502: "bad_gateway", 503: "unavailable"}
                status = f.server_error_status
                raise ApiError(status, code.get(status, "server_error"), "try again later")

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], data: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        parts = path.strip("/").split("/")
        if parts[:1] != ["v1"] or len(parts) < 2:
            raise ApiError(404, "not_found", f"no route {path}")
        kind, rest = parts[1], parts[2:]
        if kind in ("locations", "server_types", "images") and method == "GET":
            return 200, self._static(kind, rest, query)
        if kind == "actions" and method == "GET" and len(rest) == 1:
            return 200, {"action": self._action(int(rest[0]))}
        handlers: dict[str, Callable[..., tuple[int, dict[str, Any]]]] = {
            "servers": self._servers,
            "ssh_keys": self._ssh_keys,
            "networks": self._networks,
            "firewalls": self._firewalls,
        }
        if kind not in handlers:
            raise ApiError(404, "not_found", f"no route {path}")
        return handlers[kind](method, rest, query, data)

    # ------------------------------------------------------------------ lists
    @staticmethod
    def _selected(labels: dict[str, str], selector: str | None) -> bool:
        if not selector:
            return True
        for term in selector.split(","):
            term = term.strip()
            if "!=" in term:
                k, v = term.split("!=", 1)
                if labels.get(k) == v:
                    return False
            elif "=" in term:
                k, v = term.split("=", 1)
                if labels.get(k.rstrip("=")) != v.lstrip("="):
                    return False
            elif term.startswith("!"):
                if term[1:] in labels:
                    return False
            elif term not in labels:
                return False
        return True

    @staticmethod
    def _page(key: str, items: list[dict[str, Any]], query: dict[str, list[str]]) -> dict[str, Any]:
        page = int(query.get("page", ["1"])[0])
        per_page = min(50, int(query.get("per_page", ["25"])[0]))
        total = len(items)
        last = max(1, -(-total // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        return {
            key: chunk,
            "meta": {
                "pagination": {
                    "page": page,
                    "per_page": per_page,
                    "previous_page": page - 1 if page > 1 else None,
                    "next_page": page + 1 if page < last else None,
                    "last_page": last,
                    "total_entries": total,
                }
            },
        }

    def _filter(
        self, items: list[dict[str, Any]], query: dict[str, list[str]]
    ) -> list[dict[str, Any]]:
        out = items
        if "name" in query:
            out = [i for i in out if i.get("name") == query["name"][0]]
        if "label_selector" in query:
            out = [
                i for i in out if self._selected(i.get("labels", {}), query["label_selector"][0])
            ]
        if "status" in query:
            out = [i for i in out if i.get("status") in query["status"]]
        if "architecture" in query:
            out = [i for i in out if i.get("architecture") in query["architecture"]]
        if "fingerprint" in query:
            out = [i for i in out if i.get("fingerprint") == query["fingerprint"][0]]
        return out

    def _static(self, kind: str, rest: list[str], query: dict[str, list[str]]) -> dict[str, Any]:
        table = {"locations": LOCATIONS, "server_types": SERVER_TYPES, "images": IMAGES}[kind]
        one = {"locations": "location", "server_types": "server_type", "images": "image"}[kind]
        if rest:
            for item in table:
                if str(item["id"]) == rest[0]:
                    return {one: item}
            raise ApiError(404, "not_found", f"{one} with ID '{rest[0]}' not found")
        return self._page(kind, self._filter(list(table), query), query)

    # ------------------------------------------------------------------ actions
    def _new_action(self, command: str, resources: list[tuple[int, str]]) -> dict[str, Any]:
        aid = next(self._ids)
        action = {
            "id": aid,
            "command": command,
            "status": "running",
            "progress": 0,
            "started": _now_iso(),
            "finished": None,
            "resources": [{"id": i, "type": t} for i, t in resources],
            "error": None,
        }
        self.actions[aid] = action
        return action

    def _finish(self, action: dict[str, Any], error: tuple[str, str] | None = None) -> None:
        with self._lock:
            action["progress"] = 100
            action["finished"] = _now_iso()
            if error:
                action["status"] = "error"
                action["error"] = {"code": error[0], "message": error[1]}
            else:
                action["status"] = "success"

    def _action(self, aid: int) -> dict[str, Any]:
        with self._lock:
            if aid not in self.actions:
                raise ApiError(404, "not_found", f"action with ID '{aid}' not found")
            return dict(self.actions[aid])

    def _background(self, fn: Callable[[], None]) -> None:
        t = threading.Thread(target=fn, daemon=True)
        self._threads.append(t)
        t.start()

    # ------------------------------------------------------------------ servers
    @staticmethod
    def _ipv4(sid: int, ip: str) -> dict[str, Any]:
        return {"id": sid + 500000, "ip": ip, "blocked": False, "dns_ptr": f"static.{ip}.example"}

    def _server_record(
        self,
        sid: int,
        name: str,
        type_name: str,
        location: str,
        labels: dict[str, str],
        networks: list[int],
        firewalls: list[int],
    ) -> dict[str, Any]:
        stype = next(t for t in SERVER_TYPES if t["name"] == type_name)
        loc = next(loc for loc in LOCATIONS if loc["name"] == location)
        image = next(i for i in IMAGES if i["architecture"] == stype["architecture"])
        private = []
        for n, nid in enumerate(networks):
            net = self.networks[nid]
            base = net["subnets"][0]["ip_range"].split("/")[0].rsplit(".", 1)[0]
            ip = f"{base}.{len(net['servers']) + 2 + n}"
            net["servers"].append(sid)
            private.append(
                {"network": nid, "ip": ip, "alias_ips": [], "mac_address": "86:00:00:00:00:01"}
            )
        for fid in firewalls:
            self.firewalls[fid]["applied_to"].append({"type": "server", "server": {"id": sid}})
        return {
            "id": sid,
            "name": name,
            "status": "initializing",
            "created": _now_iso(),
            "public_net": {
                "ipv4": None,
                "ipv6": None,
                "floating_ips": [],
                "firewalls": [{"id": f, "status": "applied"} for f in firewalls],
            },
            "private_net": private,
            "server_type": stype,
            "datacenter": {
                "id": loc["id"],
                "name": f"{location}-dc14",
                "description": f"{loc['city']} 1 virtual DC 14",
                "location": loc,
            },
            "location": loc,
            "image": image,
            "iso": None,
            "rescue_enabled": False,
            "locked": False,
            "backup_window": None,
            "outgoing_traffic": 0,
            "ingoing_traffic": 0,
            "included_traffic": 21990232555520,
            "protection": {"delete": False, "rebuild": False},
            "labels": dict(labels),
            "volumes": [],
            "load_balancers": [],
            "primary_disk_size": stype["disk"],
            "placement_group": None,
        }

    def _servers(
        self, method: str, rest: list[str], query: dict[str, list[str]], data: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if method == "GET" and not rest:
                items = sorted(self.servers.values(), key=lambda s: s["id"])
                return 200, self._page("servers", self._filter(items, query), query)
            if method == "POST" and not rest:
                return 201, self._create_server(data)
            sid = int(rest[0]) if rest else -1
            if sid not in self.servers:
                raise ApiError(404, "not_found", f"server with ID '{sid}' not found")
            server = self.servers[sid]
            if method == "GET" and len(rest) == 1:
                return 200, {"server": server}
            if method == "DELETE" and len(rest) == 1:
                action = self._new_action("delete_server", [(sid, "server")])
                server["status"] = "deleting"
                self._background(lambda: self._delete_server(sid, action))
                return 200, {"action": action}
            if method == "POST" and rest[1:] == ["actions", "poweron"]:
                action = self._new_action("start_server", [(sid, "server")])
                if server["status"] == "off":
                    server["status"] = "running"
                self._finish(action)
                return 201, {"action": action}
        raise ApiError(404, "not_found", f"no route servers/{'/'.join(rest)}")

    def _create_server(self, data: dict[str, Any]) -> dict[str, Any]:
        name = data["name"]
        if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", name):
            fields = {"fields": [{"name": "name", "messages": ["must be a hostname"]}]}
            raise ApiError(400, "invalid_input", "invalid input in field 'name'", fields)
        if any(s["name"] == name for s in self.servers.values()):
            raise ApiError(409, "uniqueness_error", "server name is already used",
                           {"fields": [{"name": "name"}]})  # fmt: skip
        stype = data["server_type"]
        if not any(t["name"] == stype or str(t["id"]) == str(stype) for t in SERVER_TYPES):
            raise ApiError(400, "invalid_input", f"server type {stype} not found")
        location = data.get("location", "fsn1")
        if not any(loc["name"] == location for loc in LOCATIONS):
            raise ApiError(400, "invalid_input", f"location {location} not found")
        image = data["image"]
        if not any(i["name"] == image or str(i["id"]) == str(image) for i in IMAGES):
            raise ApiError(400, "invalid_input", f"image {image} not found")
        for key in data.get("ssh_keys", []):
            if not any(
                k["name"] == key or str(k["id"]) == str(key) for k in self.ssh_keys.values()
            ):
                raise ApiError(400, "invalid_input", f"ssh key {key} not found")
        networks = [int(n) for n in data.get("networks", [])]
        firewalls = [int(f["firewall"]) for f in data.get("firewalls", [])]
        for nid in networks:
            if nid not in self.networks:
                raise ApiError(400, "invalid_input", f"network {nid} not found")
        for fid in firewalls:
            if fid not in self.firewalls:
                raise ApiError(400, "invalid_input", f"firewall {fid} not found")
        limit = self.faults.max_servers
        if limit is not None and len(self.servers) >= limit:
            raise ApiError(403, "resource_limit_exceeded", "server limit exceeded")
        user_data = data.get("user_data")
        if user_data is not None and len(user_data.encode()) > 32 * 1024:
            raise ApiError(400, "invalid_input", "user_data is limited to 32 KiB")
        type_name = next(
            t["name"] for t in SERVER_TYPES if t["name"] == stype or str(t["id"]) == str(stype)
        )
        sid = next(self._ids)
        server = self._server_record(
            sid, name, type_name, location, data.get("labels") or {}, networks, firewalls
        )
        self.servers[sid] = server
        self.user_data[sid] = user_data
        self.servers_created += 1
        self.server_created.set()
        self.max_servers_seen = max(self.max_servers_seen, len(self.labelled()))
        site = server["labels"].get("drboot.dev/site")
        if site is not None:
            now = sum(s["labels"].get("drboot.dev/site") == site for s in self.servers.values())
            self.max_per_site[site] = max(self.max_per_site.get(site, 0), now)
        action = self._new_action("create_server", [(sid, "server")])
        stuck = any(part in name for part in self.faults.stuck_names)
        if not stuck:
            self._background(lambda: self._boot(sid, name, user_data, action))
        return {
            "server": server,
            "action": action,
            "next_actions": [],
            "root_password": None,
        }

    def _boot(self, sid: int, name: str, user_data: str | None, action: dict[str, Any]) -> None:
        if self.faults.boot_delay:
            time.sleep(self.faults.boot_delay)  # the double's own pace, not a test's wait
        with self._lock:
            if sid not in self.servers:
                return
            self.servers[sid]["status"] = "starting"
        try:
            address = self.backend.boot(sid, name, user_data)
        except Exception as exc:  # the backend failed: the action errors, as the API's would
            self._finish(action, ("server_error", f"boot failed: {type(exc).__name__}"))
            return
        with self._lock:
            if sid in self.servers:
                self.servers[sid]["public_net"]["ipv4"] = self._ipv4(sid, address)
                self.servers[sid]["status"] = "running"
        self._finish(action)

    def _delete_server(self, sid: int, action: dict[str, Any]) -> None:
        self.backend.destroy(sid)
        with self._lock:
            server = self.servers.pop(sid, None)  # its user data stays readable for tests
            if server:
                for p in server["private_net"]:
                    net = self.networks.get(p["network"])
                    if net and sid in net["servers"]:
                        net["servers"].remove(sid)
                for f in self.firewalls.values():
                    f["applied_to"] = [a for a in f["applied_to"] if a["server"]["id"] != sid]
        self._finish(action)

    # ------------------------------------------------------------- ssh keys, networks, firewalls
    def _collection(
        self,
        store: dict[int, dict[str, Any]],
        key: str,
        one: str,
        method: str,
        rest: list[str],
        query: dict[str, list[str]],
        make: Callable[[int, dict[str, Any]], dict[str, Any]],
        in_use: Callable[[int], bool] = lambda _: False,
    ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if method == "GET" and not rest:
                items = sorted(store.values(), key=lambda s: s["id"])
                return 200, self._page(key, self._filter(items, query), query)
            if method == "POST" and not rest:
                return 201, {one: make(next(self._ids), query)}
            rid = int(rest[0])
            if rid not in store:
                raise ApiError(404, "not_found", f"{one} with ID '{rid}' not found")
            if method == "GET":
                return 200, {one: store[rid]}
            if method == "DELETE":
                if in_use(rid):
                    raise ApiError(409, "conflict", f"{one} is still in use")
                del store[rid]
                return 204, {}
        raise ApiError(404, "not_found", f"no route {key}/{'/'.join(rest)}")

    def _ssh_keys(
        self, method: str, rest: list[str], query: dict[str, list[str]], data: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        def make(rid: int, _: dict[str, Any]) -> dict[str, Any]:
            import base64
            import hashlib

            blob = base64.b64decode(data["public_key"].split()[1])
            digest = hashlib.md5(blob).hexdigest()
            fingerprint = ":".join(digest[i : i + 2] for i in range(0, 32, 2))
            for k in self.ssh_keys.values():
                if k["name"] == data["name"] or k["fingerprint"] == fingerprint:
                    raise ApiError(409, "uniqueness_error", "SSH key with the same fingerprint "
                                   "or name already exists")  # fmt: skip
            key = {
                "id": rid,
                "name": data["name"],
                "fingerprint": fingerprint,
                "public_key": data["public_key"],
                "labels": data.get("labels") or {},
                "created": _now_iso(),
            }
            self.ssh_keys[rid] = key
            return key

        return self._collection(self.ssh_keys, "ssh_keys", "ssh_key", method, rest, query, make)

    def _networks(
        self, method: str, rest: list[str], query: dict[str, list[str]], data: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        def make(rid: int, _: dict[str, Any]) -> dict[str, Any]:
            if any(n["name"] == data["name"] for n in self.networks.values()):
                raise ApiError(409, "uniqueness_error", "network name is already used")
            net = {
                "id": rid,
                "name": data["name"],
                "ip_range": data["ip_range"],
                "subnets": [
                    {
                        "type": s["type"],
                        "ip_range": s["ip_range"],
                        "network_zone": s["network_zone"],
                        "gateway": s["ip_range"].rsplit(".", 2)[0] + ".0.1",
                        "vswitch_id": None,
                    }
                    for s in data.get("subnets", [])
                ],
                "routes": [],
                "servers": [],
                "load_balancers": [],
                "protection": {"delete": False},
                "labels": data.get("labels") or {},
                "created": _now_iso(),
                "expose_routes_to_vswitch": False,
            }
            self.networks[rid] = net
            return net

        return self._collection(
            self.networks, "networks", "network", method, rest, query, make,
            in_use=lambda rid: bool(self.networks[rid]["servers"]),
        )  # fmt: skip

    def _firewalls(
        self, method: str, rest: list[str], query: dict[str, list[str]], data: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        def make(rid: int, _: dict[str, Any]) -> dict[str, Any]:
            if any(f["name"] == data["name"] for f in self.firewalls.values()):
                raise ApiError(409, "uniqueness_error", "firewall name is already used")
            fw = {
                "id": rid,
                "name": data["name"],
                "labels": data.get("labels") or {},
                "rules": [
                    {
                        "direction": r["direction"],
                        "protocol": r["protocol"],
                        "port": r.get("port"),
                        "source_ips": r.get("source_ips") or [],
                        "destination_ips": r.get("destination_ips") or [],
                        "description": r.get("description"),
                    }
                    for r in data.get("rules") or []
                ],
                "applied_to": [],
                "created": _now_iso(),
            }
            self.firewalls[rid] = fw
            return fw

        status, body = self._collection(
            self.firewalls, "firewalls", "firewall", method, rest, query, make,
            in_use=lambda rid: bool(self.firewalls[rid]["applied_to"]),
        )  # fmt: skip
        if method == "POST" and not rest:
            body["actions"] = []
        return status, body


def server_count_by_status(double: HcloudDouble) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in double.servers.values():
        out[s["status"]] = out.get(s["status"], 0) + 1
    return out


__all__ = ["TOKEN", "HTTPStatus", "HcloudDouble", "server_count_by_status"]
