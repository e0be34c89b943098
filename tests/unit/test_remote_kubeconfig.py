"""A broken kubeconfig fetched from the first server is a step failure naming the host (exit 4,
resumable), never an internal error; one that loads but is not usable is one too."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from bootstrap.adapters.kube import BadKubeconfig, KubeClient
from bootstrap.errors import ExitCode, PermanentError
from bootstrap.steps import kubernetes
from tests.unit.test_field_effects import LocalShell, context, site


@dataclass
class RemoteFile(LocalShell):
    """Stands in for the first server: ``get`` answers with ``content``."""

    content: bytes = b""

    def get(self, remote: str) -> bytes:
        return self.content


BROKEN = {
    "empty": b"",
    "not yaml": b"{{{ not: yaml ::\n  - [",
    "binary": bytes(range(256)),
    "a list": b"- 1\n- 2\n",
    "no clusters": b"apiVersion: v1\nusers: []\n",
    "clusters not a list": b"clusters: 5\n",
    "cluster not a mapping": b"clusters: [{cluster: text}]\n",
    "clusters a mapping": b"clusters: {a: {cluster: {}}}\n",
    "deeply nested": b"clusters: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "a python tag": b"clusters: !!python/object:os.system {}\n",
}


@pytest.mark.parametrize("content", list(BROKEN.values()), ids=list(BROKEN))
def test_a_broken_remote_kubeconfig_is_a_step_failure_naming_the_host(
    tmp_path: Path, content: bytes
) -> None:
    ctx = context(tmp_path, site(tmp_path), "fetch-kubeconfig", RemoteFile([], content))
    with pytest.raises(PermanentError) as info:
        kubernetes.write_kubeconfig(ctx)
    assert info.value.exit_code == ExitCode.STEP_FAILED
    assert "is not a kubeconfig" in info.value.message and info.value.target == "s1"


def test_a_kubeconfig_that_loads_but_is_not_usable_is_a_bad_kubeconfig(tmp_path: Path) -> None:
    ctx = context(
        tmp_path,
        site(tmp_path),
        "fetch-kubeconfig",
        RemoteFile([], b"clusters: [{name: c, cluster: {}}]\ncontexts: 7\nusers: [1]\n"),
    )
    path = kubernetes.write_kubeconfig(ctx)
    with pytest.raises(BadKubeconfig) as info:
        KubeClient.from_kubeconfig(path)
    assert info.value.exit_code == ExitCode.STEP_FAILED
