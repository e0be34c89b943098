"""Secret references: one reader for {env}, {file}, {escrow}, one trailing-newline rule, errors
that never echo a value, and a typed walk that finds every reference in a site."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootstrap import secretrefs
from bootstrap.errors import PreflightError
from bootstrap.escrow.kit import RecoveryKit
from bootstrap.siteload import load_site_text
from bootstrap.sitetypes.secretrefs import EscrowRef, SecretRef

SECRET = "s3cret-value-never-shown"
VAR = "DRBOOT_TEST_SECRETREF"


def kit() -> RecoveryKit:
    return RecoveryKit(site="s", sealing_keys=[], k3s_token="token-from-kit\n",
                       deploy_key="KEY\r\n", known_hosts=None)  # fmt: skip


@pytest.mark.parametrize(
    ("env", "value"),
    [
        (SECRET, SECRET),
        (SECRET + "\n", SECRET),
        (SECRET + "\r\n", SECRET),
        ("line one\nline two\n", "line one\nline two"),  # inner newlines are the value's own
    ],
)
def test_env_values_lose_trailing_line_breaks(
    env: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VAR, env)
    assert secretrefs.resolve(SecretRef(env=VAR)) == value
    assert secretrefs.problem(SecretRef(env=VAR)) is None


@pytest.mark.parametrize(
    ("content", "value"),
    [
        (SECRET.encode(), SECRET),
        (SECRET.encode() + b"\n", SECRET),
        (SECRET.encode() + b"\r\n", SECRET),
        (b"-----BEGIN KEY-----\nabc\n-----END KEY-----\n\n",
         "-----BEGIN KEY-----\nabc\n-----END KEY-----"),
        (b"  padded  \n", "  padded  "),  # only line breaks go, never spaces
    ],
)  # fmt: skip
def test_file_values_lose_trailing_line_breaks(content: bytes, value: str, tmp_path: Path) -> None:
    f = tmp_path / "secret"
    f.write_bytes(content)
    assert secretrefs.resolve(SecretRef(file=f)) == value


def _unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> SecretRef:
    monkeypatch.delenv(VAR, raising=False)
    return SecretRef(env=VAR)


def _empty_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> SecretRef:
    monkeypatch.setenv(VAR, "\n")
    return SecretRef(env=VAR)


def _missing_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> SecretRef:
    return SecretRef(file=tmp_path / "absent")


def _empty_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> SecretRef:
    (tmp_path / "empty").write_text("\r\n")
    return SecretRef(file=tmp_path / "empty")


def _binary_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> SecretRef:
    (tmp_path / "bin").write_bytes(b"\xff\xfe" + SECRET.encode())
    return SecretRef(file=tmp_path / "bin")


def _directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> SecretRef:
    return SecretRef(file=tmp_path)


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (_unset, f"environment variable {VAR} is not set"),
        (_empty_env, f"environment variable {VAR} is empty"),
        (_missing_file, "absent is not readable (No such file or directory)"),
        (_empty_file, "empty is empty"),
        (_binary_file, "bin is not UTF-8 text"),
        (_directory, "is not readable (Is a directory)"),
    ],
)
def test_unresolved_references_name_field_and_cause_never_the_value(
    make: object, why: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert callable(make)
    ref = make(monkeypatch, tmp_path)
    problem = secretrefs.problem(ref)
    assert problem is not None and why in problem
    with pytest.raises(secretrefs.UnresolvedReference) as exc:
        secretrefs.resolve(ref, field="repo.deploy_key")
    err = exc.value
    assert isinstance(err, PreflightError)
    assert err.message.startswith("repo.deploy_key: ") and why in err.message
    assert err.target == "repo.deploy_key" and err.hint
    assert SECRET not in err.format()


@pytest.mark.parametrize(
    ("item", "value"),
    [
        ("k3s_token", "token-from-kit"),
        ("deploy_key", "KEY"),  # the kit's CRLF goes too: one rule, whatever the source
        ("known_hosts", None),  # not in the kit: None, the consumer decides
    ],
)
def test_escrow_items_come_from_the_kit(item: str, value: str | None) -> None:
    opened: list[bool] = []

    def opener() -> RecoveryKit:
        opened.append(True)
        return kit()

    ref = EscrowRef.model_validate({"escrow": item})
    assert secretrefs.resolve(ref, opener, field=f"x.{item}") == value
    assert opened == [True]
    assert secretrefs.problem(ref) is None  # checked when the kit opens, not before


def test_the_kit_is_opened_only_for_escrow_references(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VAR, SECRET)

    def never() -> RecoveryKit:
        raise AssertionError("the kit was opened for an env reference")

    assert secretrefs.resolve(SecretRef(env=VAR), never) == SECRET
    assert secretrefs.resolve(None, never) is None


def test_escrow_reference_without_a_kit_is_refused() -> None:
    with pytest.raises(
        secretrefs.UnresolvedReference, match=r"escrow\.passphrase: .*no recovery kit"
    ):
        secretrefs.resolve(EscrowRef(escrow="k3s_token"), None, field="escrow.passphrase")


SITE = """\
apiVersion: drboot.dev/v1
kind: Site
name: refs
provider: {{type: static, hosts: [{{name: h, address: 127.0.0.1}}]}}
kubernetes: {{token: {{env: K3S_TOKEN}}}}
escrow: {{backend: age, bundle: kit.age, passphrase: {{file: pass.txt}}}}
repo: {{url: "{url}"{extra}}}
"""


@pytest.mark.parametrize(
    ("url", "extra", "found"),
    [
        ("git@git.example:org/r.git", "", {
            "kubernetes.token": SecretRef(env="K3S_TOKEN"),
            "escrow.passphrase": SecretRef(file=Path("/base/pass.txt")),
            "repo.deploy_key": EscrowRef(escrow="deploy_key"),  # ssh defaults
            "repo.known_hosts": EscrowRef(escrow="known_hosts"),
        }),
        ("https://git.example/r.git", ", known_hosts: {file: kh}", {
            "kubernetes.token": SecretRef(env="K3S_TOKEN"),
            "escrow.passphrase": SecretRef(file=Path("/base/pass.txt")),
            "repo.known_hosts": SecretRef(file=Path("/base/kh")),
        }),
    ],
)  # fmt: skip
def test_references_walks_the_typed_site(url: str, extra: str, found: dict[str, object]) -> None:
    site = load_site_text(SITE.format(url=url, extra=extra), "refs.yaml", base_dir=Path("/base"))
    assert dict(secretrefs.references(site)) == found


def test_references_finds_the_default_k3s_token() -> None:
    text = SITE.replace("kubernetes: {{token: {{env: K3S_TOKEN}}}}\n", "")
    site = load_site_text(
        text.format(url="/srv/repo", extra=""), "refs.yaml", base_dir=Path("/base")
    )
    assert list(secretrefs.references(site)) == [
        ("kubernetes.token", EscrowRef(escrow="k3s_token")),
        ("escrow.passphrase", SecretRef(file=Path("/base/pass.txt"))),
    ]


def test_preflight_references_reports_every_unresolved_reference_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bootstrap.engine.context import RunScope, StepContext
    from bootstrap.events import EventBus
    from bootstrap.steps.preflight import check_references

    (tmp_path / "kh").write_text("\n")
    (tmp_path / "id").write_text("operator key")
    text = SITE.format(url="https://git.example/r.git", extra=", known_hosts: {file: kh}")
    text += "ssh: {private_key_file: id}\n"
    site = load_site_text(text, "refs.yaml", base_dir=tmp_path)
    monkeypatch.delenv("K3S_TOKEN", raising=False)
    ctx = StepContext(RunScope("r", site, tmp_path, EventBus()), "preflight-references", 60)
    with pytest.raises(PreflightError) as exc:
        check_references(ctx)
    assert exc.value.message == (
        "unresolved secret references: "
        "kubernetes.token: environment variable K3S_TOKEN is not set; "
        f"escrow.passphrase: file {tmp_path}/pass.txt is not readable (No such file or "
        f"directory); repo.known_hosts: file {tmp_path}/kh is empty"
    )

    monkeypatch.setenv("K3S_TOKEN", SECRET)
    (tmp_path / "pass.txt").write_text(SECRET)
    (tmp_path / "kh").write_text("git.example ssh-ed25519 AAAA\n")
    ok = StepContext(RunScope("r", site, tmp_path, EventBus()), "preflight-references", 60)
    check_references(ok)
    assert ok.noops == ["3 env/file secret reference(s) resolve"]
    assert SECRET not in repr(ok.outputs) + repr(ok.noops)
