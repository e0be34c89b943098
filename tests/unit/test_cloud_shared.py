"""The provider-neutral cloud pieces: labels and ownership, the capped retry, user data."""

from __future__ import annotations

import email.utils

import pytest
import yaml

from bootstrap.errors import ConfigError
from bootstrap.hostkeys import PublicKey
from bootstrap.providers.cloud.labels import (
    RUN_LABEL,
    SITE_LABEL,
    Ownership,
    wanted_names,
)
from bootstrap.providers.cloud.retry import (
    CloudCallError,
    CloudFault,
    CloudRetryPolicy,
    call,
    delay_from_headers,
)
from bootstrap.providers.cloud.userdata import build_user_data, generate_host_key

RUN = "oslo-20261130T014000-ab12"


# --------------------------------------------------------------------------- labels


def test_a_restore_owns_every_server_of_its_site_a_drill_only_its_runs() -> None:
    restore, drill = Ownership("oslo"), Ownership("oslo", RUN)
    prod = {SITE_LABEL: "oslo", "drboot.dev/role": "server", RUN_LABEL: "oslo-older-run"}
    mine = {SITE_LABEL: "oslo", "drboot.dev/role": "server", RUN_LABEL: RUN}
    decoy = {SITE_LABEL: "bergen", "drboot.dev/role": "server", RUN_LABEL: RUN}
    assert restore.owns(prod) and restore.owns(mine) and not restore.owns(decoy)
    assert drill.owns(mine) and not drill.owns(prod) and not drill.owns(decoy)
    assert not restore.owns({}) and not drill.owns({})
    assert restore.selector() == "drboot.dev/site=oslo"
    assert drill.selector() == f"drboot.dev/site=oslo,drboot.dev/run={RUN}"


def test_labels_and_names_carry_the_run_of_a_drill() -> None:
    drill = Ownership("oslo", RUN)
    assert drill.labels("server") == {
        SITE_LABEL: "oslo",
        "drboot.dev/role": "server",
        RUN_LABEL: RUN,
    }
    assert Ownership("oslo").labels("agent", creating_run=RUN)[RUN_LABEL] == RUN
    assert wanted_names(drill, 3, 1) == {
        "oslo-20261130t014000-ab12-server-1": "server",
        "oslo-20261130t014000-ab12-server-2": "server",
        "oslo-20261130t014000-ab12-server-3": "server",
        "oslo-20261130t014000-ab12-agent-1": "agent",
    }
    assert list(wanted_names(Ownership("oslo"), 1, 0)) == ["oslo-server-1"]


def test_a_name_too_long_for_a_label_or_hostname_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="label value"):
        Ownership("x" * 64)
    with pytest.raises(ConfigError, match="longer than 63"):
        Ownership("s" * 40, "s" * 40 + "-20261130T014000-ab12").server_name("server", 1)


# --------------------------------------------------------------------------- retry


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"RateLimit-Reset": "1700000012"}, 12.0),  # Hetzner: Unix timestamp
        ({"ratelimit-reset": "3"}, 3.0),  # IETF draft: delta seconds
        ({"RateLimit-Reset": "1699999990"}, 0.0),  # already past
        ({"Retry-After": email.utils.formatdate(1_700_000_020, usegmt=True)}, 20.0),
        ({"Retry-After": "5", "RateLimit-Reset": "1700000099"}, 5.0),
        ({}, None),
        ({"RateLimit-Reset": "soon"}, None),
    ],
)
def test_delay_from_headers(headers: dict[str, str], expected: float | None) -> None:
    assert delay_from_headers(headers, now=1_700_000_000.0) == expected


class _Flaky:
    def __init__(self, faults: list[CloudFault]) -> None:
        self.faults = list(faults)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.faults:
            raise RuntimeError(self.faults.pop(0))
        return "ok"


def _translate(exc: BaseException) -> CloudFault | None:
    arg = exc.args[0] if exc.args else None
    return arg if isinstance(arg, CloudFault) else None


def test_retries_honour_the_reset_header_and_stop_at_the_cap() -> None:
    limited = CloudFault(429, "rate_limit_exceeded", "slow down", retry_after=4.0)
    slept: list[float] = []
    reported: list[tuple[int, float]] = []
    fn = _Flaky([limited, CloudFault(503, "unavailable", "x"), limited])
    out = call(
        fn,
        what="GET /servers",
        translate=_translate,
        sleep=slept.append,
        on_retry=lambda n, f, d: reported.append((n, d)),
    )
    assert out == "ok" and fn.calls == 4
    assert slept[0] >= 4.0 and slept[2] >= 4.0  # never earlier than the API asked
    assert slept[1] == 2.0  # no header: exponential backoff (1, 2, 4, ...)
    assert [n for n, _ in reported] == [1, 2, 3]

    policy = CloudRetryPolicy(attempts=3, max_delay=10.0)
    endless = _Flaky([CloudFault(429, "rate_limit_exceeded", "x", retry_after=3600)] * 10)
    slept.clear()
    with pytest.raises(CloudCallError, match="after 3 attempts") as err:
        call(endless, what="GET /servers", translate=_translate, policy=policy, sleep=slept.append)
    assert endless.calls == 3 and slept == [10.0, 10.0]  # capped, though the header said 1 h
    assert err.value.fault.code == "rate_limit_exceeded"


def test_the_waiting_budget_ends_retries_before_the_attempt_cap() -> None:
    fn = _Flaky([CloudFault(502, None, "bad gateway")] * 10)
    slept: list[float] = []
    policy = CloudRetryPolicy(attempts=10, base_delay=5.0, max_delay=5.0, budget=12.0)
    with pytest.raises(CloudCallError):
        call(fn, what="x", translate=_translate, policy=policy, sleep=slept.append)
    assert fn.calls == 4 and sum(slept) == 15.0  # stops once 12 s of waiting are spent


@pytest.mark.parametrize(
    "fault",
    [
        CloudFault(403, "resource_limit_exceeded", "quota"),
        CloudFault(401, "unauthorized", "token"),
        CloudFault(404, "not_found", "no such image"),
        CloudFault(422, "invalid_input", "bad"),
    ],
)
def test_quota_auth_and_input_faults_are_not_retried(fault: CloudFault) -> None:
    fn = _Flaky([fault])
    with pytest.raises(CloudCallError) as err:
        call(fn, what="POST /servers", translate=_translate, sleep=lambda _: None)
    assert fn.calls == 1 and err.value.fault == fault


@pytest.mark.parametrize(
    "fault",
    [
        CloudFault(423, "locked", "busy"),
        CloudFault(409, "conflict", "changed"),
        CloudFault(500, "service_error", "oops"),
        CloudFault(None, "network", "connection refused"),
    ],
)
def test_locked_conflict_5xx_and_network_faults_are_retried(fault: CloudFault) -> None:
    fn = _Flaky([fault])
    assert call(fn, what="x", translate=_translate, sleep=lambda _: None) == "ok"
    assert fn.calls == 2


def test_a_non_api_exception_passes_through_untouched() -> None:
    def boom() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        call(boom, what="x", translate=_translate, sleep=lambda _: None)


# --------------------------------------------------------------------------- user data


def test_user_data_hands_over_exactly_the_pinned_host_key_and_the_operator_key() -> None:
    key = generate_host_key("root@oslo-server-1")
    assert "PRIVATE" not in repr(key)
    PublicKey.parse(key.public_openssh)  # a valid OpenSSH public key
    text = build_user_data(
        hostname="oslo-server-1", host_key=key, authorized_keys=["ssh-ed25519 AAAA op"]
    )
    assert text.startswith("#cloud-config\n")
    data = yaml.safe_load(text)
    assert data["ssh_keys"] == {
        "ed25519_private": key.private_openssh,
        "ed25519_public": key.public_openssh,
    }
    assert data["ssh_genkeytypes"] == [] and data["ssh_deletekeys"] is True
    assert data["ssh_authorized_keys"] == ["ssh-ed25519 AAAA op"]
    assert data["disable_root"] is False and data["hostname"] == "oslo-server-1"

    other = yaml.safe_load(
        build_user_data(hostname="h", host_key=key, authorized_keys=["k"], user="ops")
    )
    assert other["users"][0]["name"] == "ops" and other["users"][0]["ssh_authorized_keys"] == ["k"]
    assert other["disable_root"] is True
