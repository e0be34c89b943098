"""The append-only audit log: JSON lines chained by SHA-256, optionally anchored outside.

Each record carries ``prev``, the SHA-256 of the previous line's exact bytes
(the first record chains to 64 zeros). The number of records and the hash of
the last line are also kept beside it (``audit.head``) so that cutting lines
off the end is detected too. ``verify`` finds any edit, reordering, insertion
or deletion and names the first bad line.

The chain alone cannot catch whoever can write the state directory: they can
re-chain the hashes and rewrite the head. So each record's sequence number and
hash can also be appended to an *anchor*, a file outside the state directory
(``DRBOOT_AUDIT_ANCHOR``; make it append-only with ``chattr +a``, or keep it on
another mount or machine). ``verify`` against the anchor catches a re-chained
forgery, and deleted records or files, as long as the anchor itself was not
rewritten. A log that does not exist is "no audit log", never "intact".

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

    def __init__(self, path: Path, anchor: Path | None = None) -> None:
        self.path = Path(path)
        self.head_path = self.path.with_name(self.path.name + ".head")
        self.anchor = anchor

    @property
    def log_id(self) -> str:
        """How anchor lines name this log (several state directories may share one anchor)."""
        return str(self.path.absolute())

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
            if self.anchor is not None:
                self._anchor(fd, seq + 1, _digest(line))
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _anchor(self, log_fd: int, seq: int, digest: str) -> None:
        """Append ``seq`` and ``digest`` to the anchor file (O_APPEND, one write, fsync).

        The first record anchored for a log that already has records anchors those too (as
        they are now: an anchor vouches only from the moment it was set).
        """
        assert self.anchor is not None
        pairs = [(seq, digest)]
        if seq > 1 and not _anchored(self.anchor, self.log_id):
            size = os.fstat(log_fd).st_size
            lines = os.pread(log_fd, size, 0).rstrip(b"\n").split(b"\n")[:-1]
            pairs = [(n, _digest(line)) for n, line in enumerate(lines, start=1)] + pairs
        text = "".join(
            json.dumps({"log": self.log_id, "seq": n, "hash": d}, sort_keys=True) + "\n"
            for n, d in pairs
        )
        self.anchor.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.anchor, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
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

    def verify(self, against: Path | None = None) -> list[AuditProblem]:
        """Every problem found, first line first; empty means intact.

        ``against`` is an anchor file (default: this log's own anchor, if any): every record
        it holds for this log must be in the log with the same hash, and the log must hold no
        record past the anchor's last.
        """
        anchor = against if against is not None else self.anchor
        anchored = _anchored(anchor, self.log_id) if anchor is not None else None
        if isinstance(anchored, AuditProblem):
            return [anchored]
        problems: list[AuditProblem] = []
        if not self.path.exists():
            if anchored:
                return [
                    AuditProblem(
                        0,
                        f"no audit log, but the anchor {anchor} holds {len(anchored)} "
                        "record(s) of it: the log was deleted",
                    )
                ]
            if self.head_path.exists():
                return [AuditProblem(0, "audit log is missing but its head record exists")]
            return [AuditProblem(0, NO_AUDIT_LOG)]
        prev = GENESIS
        expected_seq = 1
        last = b""
        count = 0
        digests: list[str] = []
        with self.path.open("rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                line = raw.rstrip(b"\n")
                count = lineno
                last = line
                digests.append(_digest(line))
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
        if anchored is not None:
            problems += _against_anchor(anchored, digests, anchor)
        try:
            head = json.loads(self.head_path.read_text())
        except (OSError, ValueError):
            if count:
                problems.append(AuditProblem(count, "head record missing or unreadable"))
            return problems
        if not isinstance(head, dict):
            problems.append(AuditProblem(count, "head record unreadable"))
        elif head.get("seq") != count:
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


NO_AUDIT_LOG = "no audit log (nothing was audited in this state directory, or it was deleted)"


def _anchored(anchor: Path, log_id: str) -> dict[int, str] | AuditProblem:
    """The anchor's ``seq -> hash`` for ``log_id``; an unreadable anchor is a problem."""
    try:
        data = anchor.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        return AuditProblem(0, f"cannot read the anchor {anchor}: {exc.strerror or exc}")
    entries: dict[int, str] = {}
    for n, raw in enumerate(data.splitlines(), start=1):
        try:
            entry = json.loads(raw)
            log, seq, digest = entry["log"], entry["seq"], entry["hash"]
        except (ValueError, KeyError, TypeError):
            return AuditProblem(0, f"the anchor {anchor} is damaged at its line {n}")
        if log == log_id and isinstance(seq, int) and isinstance(digest, str):
            entries[seq] = digest
    return entries


def _against_anchor(
    anchored: dict[int, str], digests: list[str], anchor: Path | None
) -> list[AuditProblem]:
    problems: list[AuditProblem] = []
    for seq in sorted(anchored):
        if seq > len(digests):
            problems.append(
                AuditProblem(
                    len(digests),
                    f"the anchor {anchor} holds records up to {max(anchored)} but the log ends "
                    f"at {len(digests)}: records were deleted",
                )
            )
            break
        if digests[seq - 1] != anchored[seq]:
            problems.append(
                AuditProblem(
                    seq,
                    f"differs from the record anchored in {anchor}: edited (even if the chain "
                    "was recomputed), inserted before it, or reordered",
                )
            )
            break
    last = max(anchored, default=0)
    if len(digests) > last:
        problems.append(
            AuditProblem(
                last + 1,
                f"records {last + 1}-{len(digests)} are not in the anchor {anchor}: added "
                "outside drboot (or written while no anchor was set, or, for the last one "
                "only, by a drboot killed between the two writes)",
            )
        )
    return problems
