"""The append-only audit log: JSON lines chained by SHA-256.

Each record carries ``prev``, the SHA-256 of the previous line's exact bytes
(the first record chains to 64 zeros). The number of records and the hash of
the last line are also kept beside it (``audit.head``) so that cutting lines
off the end is detected too. ``verify`` finds any edit, reordering, insertion
or deletion and names the first bad line.

Records hold names, fingerprints and reasons, never secret material.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootstrap.fsutil import write_atomic

GENESIS = "0" * 64


def _digest(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


@dataclass(frozen=True)
class AuditProblem:
    line: int
    reason: str


class AuditLog:
    """Append and verify ``<state_dir>/audit.jsonl``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.head_path = self.path.with_name(self.path.name + ".head")

    def append(self, event: str, run_id: str | None, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            seq, prev = self._tail(fd)
            record = {
                "seq": seq + 1,
                "ts": time.time(),
                "run": run_id,
                "event": event,
                "data": data,
                "prev": prev,
            }
            line = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str).encode()
            os.write(fd, line + b"\n")
            os.fsync(fd)
            write_atomic(
                self.head_path, json.dumps({"seq": seq + 1, "hash": _digest(line)}).encode()
            )
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _tail(self, fd: int) -> tuple[int, str]:
        size = os.fstat(fd).st_size
        if size == 0:
            return 0, GENESIS
        # Read back from the end to the last full line.
        chunk = 65536
        start = max(0, size - chunk)
        data = os.pread(fd, size - start, start)
        while start > 0 and data.rstrip(b"\n").count(b"\n") == 0:
            start = max(0, start - chunk)
            data = os.pread(fd, size - start, start)
        last = data.rstrip(b"\n").rsplit(b"\n", 1)[-1]
        try:
            seq = int(json.loads(last)["seq"])
        except (ValueError, KeyError, TypeError):
            seq = -1  # a corrupt tail: keep appending, verify will name it
        return seq, _digest(last)

    def verify(self) -> list[AuditProblem]:
        """Every problem found, first line first; empty means intact."""
        problems: list[AuditProblem] = []
        if not self.path.exists():
            if self.head_path.exists():
                return [AuditProblem(0, "audit log is missing but its head record exists")]
            return []
        prev = GENESIS
        expected_seq = 1
        last = b""
        count = 0
        with self.path.open("rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                line = raw.rstrip(b"\n")
                count = lineno
                last = line
                try:
                    rec = json.loads(line)
                except ValueError:
                    problems.append(AuditProblem(lineno, "not valid JSON"))
                    prev = _digest(line)
                    expected_seq += 1
                    continue
                if not isinstance(rec, dict):
                    problems.append(AuditProblem(lineno, "not a record"))
                elif rec.get("prev") != prev:
                    problems.append(
                        AuditProblem(
                            lineno,
                            "hash chain broken: a line before it was edited, "
                            "removed or reordered, or this line was inserted",
                        )
                    )
                elif rec.get("seq") != expected_seq:
                    problems.append(
                        AuditProblem(
                            lineno, f"sequence {rec.get('seq')} where {expected_seq} was expected"
                        )
                    )
                prev = _digest(line)
                expected_seq += 1
        try:
            head = json.loads(self.head_path.read_text())
        except (OSError, ValueError):
            if count:
                problems.append(AuditProblem(count, "head record missing or unreadable"))
            return problems
        if head.get("seq") != count:
            problems.append(
                AuditProblem(
                    count,
                    f"log has {count} records but {head.get('seq')} were written: "
                    "records were deleted from or added to the end",
                )
            )
        elif head.get("hash") != _digest(last):
            problems.append(AuditProblem(count, "last record was edited"))
        return problems
