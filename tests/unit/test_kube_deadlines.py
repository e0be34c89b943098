"""Every request the Kubernetes client makes has a deadline, discovery included.

The reliability suite cut the server's link inside restore-sealing-keys and the run hung: the
library's API discovery reads with no timeout, so the blocked read outlived the cut, the step's
retries and the step's own timeout. Here: the deadline each kind of request gets, and a real
client against a real socket that accepts and never answers (a dead link, as the client sees
it) failing within its bound as a TransientError instead of hanging.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from bootstrap.adapters import kube
from bootstrap.errors import TransientError


class Recorder:
    def __init__(self) -> None:
        self.seen: list[Any] = []

    def request(self, method: str, url: str, **kw: Any) -> None:
        self.seen.append(kw.get("_request_timeout"))


def _url(path: str, **query: Any) -> str:
    api = client.ApiClient(client.Configuration())
    return str(api.param_serialize("GET", path, query_params=list(query.items()))[1])


@pytest.mark.parametrize(
    ("url", "given", "expected"),
    [
        (_url("/apis"), None, kube.DEFAULT_TIMEOUT),  # discovery: the library passes none
        (_url("/api/v1/namespaces/x"), (1.0, 2.0), (1.0, 2.0)),  # a caller's own is kept
        (_url("/api/v1/secrets", watch=True, timeoutSeconds=45), None, (5.0, 75.0)),
        (_url("/api/v1/secrets", watch=True), None, None),  # an endless watch: caller's choice
        (_url("/api/v1/secrets", watch=False), None, kube.DEFAULT_TIMEOUT),
    ],
)
def test_the_deadline_each_request_gets(url: str, given: Any, expected: Any) -> None:
    rec = Recorder()
    kube.bound_requests(rec)
    rec.request("GET", url, _request_timeout=given)
    assert rec.seen == [expected]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never sends a byte."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield int(srv.getsockname()[1])
    finally:
        stop.set()
        t.join(5)
        for c in held:
            c.close()
        srv.close()


def test_discovery_against_a_dead_link_fails_within_its_bound(
    tmp_path: Path, silent_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kube, "DEFAULT_TIMEOUT", (1.0, 1.0))
    kc = tmp_path / "kubeconfig"
    kc.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{silent_server}",
                                               "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))  # fmt: skip
    started = time.monotonic()
    with pytest.raises(TransientError):
        kube.KubeClient.from_kubeconfig(kc)
    assert time.monotonic() - started < 30, "bounded by the (patched) 1 s deadline, not hung"
