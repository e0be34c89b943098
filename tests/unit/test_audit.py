"""The audit log detects any edit, reordering, insertion or deletion; against an anchor outside
the state directory, also a forgery whose hash chain was recomputed, and a deleted log."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bootstrap.audit import GENESIS, NO_AUDIT_LOG, AuditLog
from bootstrap.cli import Deps, cli


def _log(tmp_path: Path, n: int = 5) -> AuditLog:
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(n):
        log.append("step.done", "run-1", {"step": f"s{i}", "message": "ok"})
    return log


def _lines(log: AuditLog) -> list[str]:
    return log.path.read_text().splitlines()


def _write(log: AuditLog, lines: list[str]) -> None:
    log.path.write_text("".join(line + "\n" for line in lines))


def test_intact_log_verifies(tmp_path: Path) -> None:
    log = _log(tmp_path)
    assert log.verify() == []
    assert log.path.stat().st_mode & 0o777 == 0o600


def _edit(lines: list[str]) -> list[str]:
    rec = json.loads(lines[2])
    rec["data"]["message"] = "forged"
    lines[2] = json.dumps(rec, sort_keys=True, separators=(",", ":"))
    return lines


def _edit_last(lines: list[str]) -> list[str]:
    lines[-1] = lines[-1].replace('"ok"', '"OK"')
    return lines


TAMPERS: dict[str, Callable[[list[str]], list[str]]] = {
    "edit-middle": _edit,
    "edit-last": _edit_last,
    "delete-middle": lambda ls: ls[:1] + ls[2:],
    "delete-first": lambda ls: ls[1:],
    "delete-last": lambda ls: ls[:-1],
    "truncate-all": lambda ls: [],
    "swap": lambda ls: [ls[0], ls[2], ls[1], *ls[3:]],
    "duplicate": lambda ls: [*ls[:3], ls[2], *ls[3:]],
    "append-forged": lambda ls: [*ls, ls[-1]],
}


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_tampering_is_detected(tmp_path: Path, tamper: str) -> None:
    log = _log(tmp_path)
    _write(log, TAMPERS[tamper](_lines(log)))
    problems = log.verify()
    assert problems, f"{tamper} went unnoticed"


def test_appending_after_verify_keeps_chain(tmp_path: Path) -> None:
    log = _log(tmp_path, 2)
    log.append("audit", "run-2", {"what": "trusted host key", "fingerprint": "SHA256:x"})
    assert log.verify() == []
    assert json.loads(_lines(log)[-1])["seq"] == 3


# --------------------------------------------------------------------------- the anchor


def _rechain(lines: list[str], log: AuditLog) -> None:
    """What whoever can write the state directory can do: edit, recompute every hash, rewrite
    the head. The chain alone cannot tell."""
    prev = GENESIS
    out = []
    for n, line in enumerate(lines, start=1):
        rec = json.loads(line)
        rec["prev"], rec["seq"] = prev, n
        text = json.dumps(rec, sort_keys=True, separators=(",", ":"))
        out.append(text)
        prev = hashlib.sha256(text.encode()).hexdigest()
    _write(log, out)
    log.head_path.write_text(json.dumps({"seq": len(out), "hash": prev}))


REWRITES: dict[str, Callable[[list[str]], list[str]]] = {
    "edit": _edit,
    "delete-middle": lambda ls: ls[:1] + ls[2:],
    "delete-last": lambda ls: ls[:-1],
    "insert": lambda ls: [*ls[:2], ls[1].replace('"ok"', '"inserted"'), *ls[2:]],
}


@pytest.mark.parametrize("rewrite", list(REWRITES))
def test_a_rechained_forgery_passes_the_chain_but_not_the_anchor(
    tmp_path: Path, rewrite: str
) -> None:
    anchor = tmp_path / "elsewhere" / "audit.anchor"
    log = AuditLog(tmp_path / "state" / "audit.jsonl", anchor=anchor)
    for i in range(5):
        log.append("step.done", "run-1", {"step": f"s{i}", "message": "ok"})
    _rechain(REWRITES[rewrite](_lines(log)), log)
    assert AuditLog(log.path).verify() == [], "the chain alone is fooled (this is why)"
    problems = log.verify()
    assert problems, f"{rewrite} went unnoticed by the anchor"
    assert str(anchor) in problems[0].reason


def test_a_deleted_log_is_no_audit_log_never_intact(tmp_path: Path) -> None:
    anchor = tmp_path / "elsewhere" / "audit.anchor"
    log = AuditLog(tmp_path / "state" / "audit.jsonl", anchor=anchor)
    assert [p.reason for p in log.verify()] == [NO_AUDIT_LOG]
    log.append("step.done", "run-1", {"message": "ok"})
    log.path.unlink()
    log.head_path.unlink()
    assert [p.reason for p in AuditLog(log.path).verify()] == [NO_AUDIT_LOG]
    (problem,) = log.verify()
    assert "no audit log, but the anchor" in problem.reason and "deleted" in problem.reason


def test_an_anchor_set_later_vouches_for_the_log_from_then_on(tmp_path: Path) -> None:
    path = tmp_path / "state" / "audit.jsonl"
    unanchored = _log(tmp_path / "state", 3)
    anchored = AuditLog(path, anchor=tmp_path / "audit.anchor")
    anchored.append("audit", "run-2", {"message": "anchored from here"})
    assert anchored.verify() == []
    assert len((tmp_path / "audit.anchor").read_text().splitlines()) == 4
    unanchored.append("audit", "run-3", {"message": "written without the anchor"})
    (problem,) = anchored.verify()
    assert problem.line == 5 and "not in the anchor" in problem.reason


def test_one_anchor_serves_several_logs(tmp_path: Path) -> None:
    anchor = tmp_path / "audit.anchor"
    a = AuditLog(tmp_path / "a" / "audit.jsonl", anchor=anchor)
    b = AuditLog(tmp_path / "b" / "audit.jsonl", anchor=anchor)
    for log in (a, b, a):
        log.append("audit", None, {"message": "x"})
    assert a.verify() == [] and b.verify() == []


def _cli(state: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--state-dir", str(state), *args], obj=Deps())


def test_audit_verify_command_against_an_anchor(tmp_path: Path) -> None:
    state, anchor = tmp_path / "state", tmp_path / "anchor" / "audit.anchor"
    res = _cli(state, "audit", "verify")
    assert res.exit_code == 3 and "no audit log" in res.stderr and "intact" not in res.output
    log = AuditLog(state / "audit.jsonl", anchor=anchor)
    for i in range(3):
        log.append("step.done", "run-1", {"step": f"s{i}", "message": "ok"})
    res = _cli(state, "audit", "verify")
    assert res.exit_code == 0 and "not anchored" in res.stdout
    res = _cli(state, "--audit-anchor", str(anchor), "audit", "verify")
    assert res.exit_code == 0 and "matches the anchor" in res.stdout
    _rechain(_edit(_lines(log)), log)
    assert _cli(state, "audit", "verify").exit_code == 0
    res = _cli(state, "audit", "verify", "--against", str(anchor), "-o", "json")
    assert res.exit_code == 3
    doc = json.loads(res.stdout)
    assert doc["ok"] is False and doc["problems"][0]["line"] == 3


def test_an_anchor_inside_the_state_dir_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    res = _cli(state, "--audit-anchor", str(state / "sub" / "anchor"), "audit", "verify")
    assert res.exit_code == 2 and "inside the state directory" in res.stderr
