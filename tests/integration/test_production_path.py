"""The production path on the real API server: what every non-lab restore does.

The lab's cluster plug-in reads the Sealed Secrets certificate on loopback and skips the node
wait; these tests prove the default path the lab never takes: the certificate through the API
server's service proxy (to a controller named by ``sealed_secrets.controller_name``), and the
wait for every node to be Ready.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bootstrap import sealing
from bootstrap.adapters.kube import KubeClient
from bootstrap.engine.context import StepContext
from bootstrap.errors import TransientError, WaitTimeout
from bootstrap.escrow.kit import RecoveryKit, SealingKey
from bootstrap.events import Event, EventBus
from bootstrap.kubeapi import KubeAPI
from bootstrap.outputs import SealingKeyVerified
from bootstrap.providers.base import HostInfo
from bootstrap.providers.plugin import ProductionCluster, plugin_for
from bootstrap.siteload import load_site_text
from bootstrap.steps import keys
from bootstrap.steps.kubernetes import wait_nodes_ready
from tests.stepkit import step_context

if TYPE_CHECKING:
    from tests.integration.conftest_apiserver import ApiServer

pytestmark = [pytest.mark.integration, pytest.mark.apiserver]

SITE = """\
apiVersion: drboot.dev/v1
name: prodpath
provider:
  type: static
  hosts: [{{name: s1, address: 10.200.254.250}}]
escrow: {{backend: age, bundle: kit.age, identity_files: [id.txt]}}
repo: {{url: https://git.example.invalid/platform.git}}
sealed_secrets: {{namespace: {ns}, controller_name: {name}}}
"""


def _context(
    tmp_path: Path, ns: str, name: str, kit: RecoveryKit, kube: KubeAPI, events: list[Event]
) -> StepContext:
    site = load_site_text(SITE.format(ns=ns, name=name), "site.yaml", base_dir=tmp_path)
    bus = EventBus()
    bus.subscribe(events.append)
    run_dir = tmp_path / "state" / "runs" / "r1"
    return step_context(site, run_dir, "verify-sealing-key", bus=bus, kit=kit, kube=kube)


def _serve_controller(kube: KubeClient, ns: str, name: str, ip: str, port: int) -> None:
    """A controller Pod/Service/Endpoints named ``name``, its endpoint at ``ip:port``.

    There is no kubelet: the Pod's IP is written into its status, as a kubelet would."""
    kube.wait_for("v1", "ServiceAccount", "default", lambda o: o is not None, ns)
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"containers": [{"name": "c", "image": "sealed-secrets-controller"}]},
        }
    )
    kube.patch(
        "v1",
        "Pod",
        name,
        {"status": {"podIP": ip, "podIPs": [{"ip": ip}]}},
        ns,
        subresource="status",
    )
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"ports": [{"name": "http", "port": keys.CERT_PORT, "targetPort": port}]},
        }
    )
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": name, "namespace": ns},
            "subsets": [
                {
                    "addresses": [
                        {"ip": ip, "targetRef": {"kind": "Pod", "name": name, "namespace": ns}}
                    ],
                    "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
                }
            ],
        }
    )


def test_verify_sealing_key_reads_the_certificate_through_the_service_proxy(
    tmp_path: Path,
    apiserver: ApiServer,
    namespace: str,
    netns_http_server: tuple[str, int, bytes, Path],
) -> None:
    ip, port, _, served = netns_http_server
    private, cert = sealing.generate_key(2048)
    other_private, other_cert = sealing.generate_key(2048)
    escrowed = SealingKey.from_pem("sealed-secrets-keyabc", sealing.private_key_pem(private), cert)
    kit = RecoveryKit(site="prodpath", sealing_keys=[escrowed], k3s_token="t")
    name = "sealed-secrets-prod"  # not the chart's default: controller_name is what is asked
    _serve_controller(apiserver.client, namespace, name, ip, port)
    served.write_bytes(cert)
    events: list[Event] = []
    ctx = _context(tmp_path, namespace, name, kit, apiserver.client, events)
    assert isinstance(plugin_for(ctx.site, tmp_path), ProductionCluster)

    deadline = time.monotonic() + 20
    while True:  # the proxy may say "no endpoints available" for a moment (transient)
        try:
            keys.verify_sealing_key(ctx)
            break
        except TransientError:
            assert time.monotonic() < deadline
            time.sleep(0.5)
    out = SealingKeyVerified.from_json(ctx.outputs)
    assert out == SealingKeyVerified(serving_fingerprint=escrowed.fingerprint, source="production")
    assert not any("LAB STAND-IN" in e.message for e in events)

    # A controller serving a key the escrow lacks is refused, naming both fingerprints.
    served.write_bytes(other_cert)
    with pytest.raises(TransientError) as err:
        keys.verify_sealing_key(ctx)
    assert sealing.fingerprint(other_private.public_key()) in err.value.message
    assert escrowed.fingerprint in err.value.message
    assert err.value.target == f"{namespace}/{name}"


def _node(name: str, ready: bool) -> dict[str, object]:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "type": "Ready",
        "status": "True" if ready else "False",
        "reason": "drboot-test",
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }


def test_the_restore_waits_for_every_node_to_be_ready(apiserver: ApiServer) -> None:
    kube = apiserver.client
    hosts = [HostInfo(f"prod-node-{i}", f"10.200.254.{240 + i}", "server") for i in range(3)]
    want = ProductionCluster().nodes_to_wait_for(hosts)
    assert want == 3
    names = [h.name for h in hosts]
    try:
        for n in names:
            kube.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}})
        for n in names[:2]:
            kube.patch(
                "v1", "Node", n, {"status": {"conditions": [_node(n, True)]}}, subresource="status"
            )
        kube.patch(
            "v1",
            "Node",
            names[2],
            {"status": {"conditions": [_node(names[2], False)]}},
            subresource="status",
        )
        with pytest.raises(WaitTimeout, match="3 node\\(s\\) Ready"):
            wait_nodes_ready(kube, want, timeout=2)
        kube.patch(
            "v1",
            "Node",
            names[2],
            {"status": {"conditions": [_node(names[2], True)]}},
            subresource="status",
        )
        wait_nodes_ready(kube, want, timeout=20)
    finally:
        for n in names:
            kube.delete("v1", "Node", n)
