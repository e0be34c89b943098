"""The audit log detects any edit, reordering, insertion or deletion."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from bootstrap.audit import AuditLog


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
