"""First-use trust of SSH host keys: the flag and the site file both switch it on, and the audit
log says which did, before any key is trusted and for each key trusted."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from bootstrap.audit import AuditLog
from bootstrap.hostkeys import HostKeyExpectation
from bootstrap.providers.base import HostInfo
from bootstrap.render.recorders import AuditRecorder
from bootstrap.steps import hosts
from bootstrap.steps.resources import RunResources
from tests.stepkit import GivenResources
from tests.unit.test_field_effects_more import Handshake, _host_key, from_site, make_site


@pytest.mark.parametrize(
    ("site_says", "flag", "enabled_by"),
    [
        (True, False, "site file ssh.trust_on_first_use"),
        (False, True, "--trust-on-first-use"),
        (True, True, "--trust-on-first-use, site file ssh.trust_on_first_use"),
        (False, False, None),
    ],
)
def test_first_use_trust_is_audited_with_what_enabled_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    site_says: bool,
    flag: bool,
    enabled_by: str | None,
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.ssh/known_hosts to match
    presented = _host_key()
    s = make_site(
        tmp_path,
        provider="{type: static, hosts: [{name: s1, address: 10.200.254.250}]}",
        ssh="{trust_on_first_use: true}" if site_says else "{}",
    )
    ctx = from_site(tmp_path, s, "connect")
    ctx._scope.options = dataclasses.replace(ctx._scope.options, trust_on_first_use=flag)
    log = AuditLog(tmp_path / "audit.jsonl")
    ctx._scope.bus.subscribe(AuditRecorder(log))

    class Resources(GivenResources):
        def new_ssh(self, h: HostInfo, expected: HostKeyExpectation, step: str) -> Any:
            return Handshake(h, expected, presented)

    ctx._scope.shared[RunResources] = Resources(ctx._scope)
    if enabled_by is None:
        with pytest.raises(Exception, match="host key"):
            hosts.connect(ctx)
        assert not log.path.exists() or "first use" not in log.path.read_text()
        return
    hosts.connect(ctx)
    records = [json.loads(line)["data"] for line in log.path.read_text().splitlines()]
    enabled, trusted = records
    assert enabled["message"] == "trust on first use enabled for SSH host keys"
    assert enabled["enabled_by"] == enabled_by
    assert trusted["message"] == "trusted SSH host key on first use"
    assert (trusted["target"], trusted["fingerprint"]) == ("s1", presented.fingerprint)
    assert trusted["enabled_by"] == enabled_by
    assert log.verify() == []
