"""``drboot wait SITE --kubeconfig K``: a thin command over ``bootstrap.runs.wait_apps``.

The engine function is replaced by a recorder (our own boundary): the test asserts what the
command passed it, what it printed in text and JSON, and the exit codes (0 ready, 5 gave up).
The wait itself is tested in test_wait_meaning.py and on the real API server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bootstrap import runs
from bootstrap.cli import cli
from bootstrap.errors import WaitTimeout
from bootstrap.settings import Site
from tests.conftest import REPO

SITE = REPO / "inventory" / "lab.yaml"
RESULT = {"apps": {"root": {}, "web": {}}, "commit": "a" * 40, "commit_verified": True,
          "stable_for": 30.0, "seconds": 12.5, "strays": ["argocd/handmade"]}  # fmt: skip


def test_wait_passes_the_site_and_kubeconfig_and_prints_the_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, Path]] = []

    def fake(site: Site, kubeconfig: Path, progress: Any) -> dict[str, Any]:
        seen.append((site.name, kubeconfig))
        progress("1/2 apps Synced+Healthy", ready=1, total=2)
        return RESULT

    monkeypatch.setattr(runs, "wait_apps", fake)
    kc = tmp_path / "kubeconfig"
    kc.write_text("{}")
    res = CliRunner().invoke(cli, ["wait", str(SITE), "--kubeconfig", str(kc)], obj=None)
    assert res.exit_code == 0, res.output
    assert seen == [("lab", kc)]
    assert "1/2 apps Synced+Healthy" in res.output
    assert f"2 app(s) Synced+Healthy at {'a' * 12} (verified)" in res.output
    assert "strays): argocd/handmade" in res.output
    res = CliRunner().invoke(cli, ["-o", "json", "wait", str(SITE), "--kubeconfig", str(kc)])
    lines = [json.loads(x) for x in res.output.splitlines()]
    assert lines[0] == {"progress": "1/2 apps Synced+Healthy", "ready": 1, "total": 2}
    assert lines[-1] == RESULT


def test_wait_that_gives_up_exits_5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(site: Site, kubeconfig: Path, progress: Any) -> dict[str, Any]:
        raise WaitTimeout("gave up after 60s (sync_wait.timeout): expected from Git at "
                          "aaaaaaaaaaaa, never created: ledger")  # fmt: skip

    monkeypatch.setattr(runs, "wait_apps", fake)
    kc = tmp_path / "kubeconfig"
    kc.write_text("{}")
    res = CliRunner().invoke(cli, ["wait", str(SITE), "--kubeconfig", str(kc)])
    assert res.exit_code == 5
    assert "never created: ledger" in res.output


def test_a_kubeconfig_that_does_not_load_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real adapter reads the kubeconfig; one it cannot load is exit 2, like escrow status."""
    from bootstrap.adapters.kube import KubeClient

    def opens(site: Site, kubeconfig: Path, progress: Any) -> dict[str, Any]:
        KubeClient.from_kubeconfig(kubeconfig)
        raise AssertionError("a broken kubeconfig must not load")

    monkeypatch.setattr(runs, "wait_apps", opens)
    kc = tmp_path / "kubeconfig"
    kc.write_text("clusters: [:\n")
    res = CliRunner().invoke(cli, ["wait", str(SITE), "--kubeconfig", str(kc)], obj=None)
    assert res.exit_code == 2, res.output
    assert "kubeconfig" in res.output
