"""The run journal: every run, step, attempt and event, in SQLite (WAL).

Rows are plain typed records. Outputs are JSON and hold references only
(paths, names, fingerprints), never secret material. Each state change is its
own committed transaction, so a SIGKILL at any instant leaves a consistent
journal from which ``resume`` can continue.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bootstrap.records import RunRow, RunStatus, StepRow, StepStatus

__all__ = ["Journal", "RunRow", "RunStatus", "StepRow", "StepStatus"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    ended REAL,
    pid INTEGER,
    exit_code INTEGER,
    error TEXT,
    options TEXT NOT NULL DEFAULT '{}',
    site_digest TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL REFERENCES runs(id),
    step_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    started REAL,
    ended REAL,
    outputs TEXT NOT NULL DEFAULT '{}',
    summary TEXT NOT NULL DEFAULT '',
    error TEXT,
    PRIMARY KEY (run_id, step_id)
);
CREATE TABLE IF NOT EXISTS attempts (
    run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    started REAL NOT NULL,
    ended REAL,
    outcome TEXT,
    error TEXT,
    PRIMARY KEY (run_id, step_id, n)
);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    step_id TEXT,
    target TEXT,
    message TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Journal:
    """A thin typed facade over the SQLite journal file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Opening is serialised across processes: two drboot processes that create the journal
        # at once can both try to switch it to WAL, and SQLite answers one of them "database
        # is locked" at once, without waiting (its busy timeout does not cover that switch).
        opener = os.open(f"{self.path}.open-lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(opener, fcntl.LOCK_EX)
            fresh = not self.path.exists()
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            if fresh:
                os.chmod(self.path, 0o600)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(SCHEMA)
        finally:
            os.close(opener)  # closing the descriptor releases the lock

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # runs -----------------------------------------------------------------
    def create_run(
        self,
        run_id: str,
        site: str,
        pipeline: str,
        step_ids: list[str],
        options: dict[str, Any],
        site_digest: str,
    ) -> None:
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO runs (id, site, pipeline, status, created, pid, options, site_digest)"
                " VALUES (?, ?, ?, 'running', ?, ?, ?, ?)",
                (run_id, site, pipeline, now, os.getpid(), json.dumps(options), site_digest),
            )
            db.executemany(
                "INSERT INTO steps (run_id, step_id, position, status) VALUES (?, ?, ?, 'pending')",
                [(run_id, sid, i) for i, sid in enumerate(step_ids)],
            )

    def reopen_run(self, run_id: str, step_ids: list[str]) -> None:
        """Mark a run running again under this process; add steps a newer pipeline declares."""
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET status='running', pid=?, ended=NULL, exit_code=NULL, error=NULL"
                " WHERE id=?",
                (os.getpid(), run_id),
            )
            known = {
                r[0] for r in db.execute("SELECT step_id FROM steps WHERE run_id=?", (run_id,))
            }
            for i, sid in enumerate(step_ids):
                if sid not in known:
                    db.execute(
                        "INSERT INTO steps (run_id, step_id, position, status)"
                        " VALUES (?, ?, ?, 'pending')",
                        (run_id, sid, i),
                    )
            # A step left 'running' by a killed process is unfinished, not failed.
            db.execute(
                "UPDATE steps SET status='pending'"
                " WHERE run_id=? AND status IN ('running','failed')",
                (run_id,),
            )

    def reopen_step(self, run_id: str, step_id: str) -> None:
        """Run ``step_id`` again on the next resume (a report written before the run ended)."""
        with self._tx() as db:
            db.execute(
                "UPDATE steps SET status='pending' WHERE run_id=? AND step_id=?",
                (run_id, step_id),
            )

    def finish_run(
        self, run_id: str, status: RunStatus, exit_code: int, error: str | None = None
    ) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET status=?, ended=?, exit_code=?, error=? WHERE id=?",
                (status, time.time(), exit_code, error, run_id),
            )

    def run(self, run_id: str) -> RunRow | None:
        row = self._db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        return _run_row(row) if row else None

    def runs(self, site: str | None = None, limit: int = 50) -> list[RunRow]:
        if site:
            rows = self._db.execute(
                "SELECT * FROM runs WHERE site=? ORDER BY created DESC LIMIT ?", (site, limit)
            )
        else:
            rows = self._db.execute("SELECT * FROM runs ORDER BY created DESC LIMIT ?", (limit,))
        return [_run_row(r) for r in rows]

    # steps ----------------------------------------------------------------
    def steps(self, run_id: str) -> list[StepRow]:
        rows = self._db.execute(
            "SELECT run_id, step_id, position, status, attempts, started, ended, outputs,"
            " summary, error FROM steps WHERE run_id=? ORDER BY position",
            (run_id,),
        )
        return [
            StepRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7]), r[8], r[9])
            for r in rows
        ]

    def step(self, run_id: str, step_id: str) -> StepRow | None:
        for row in self.steps(run_id):
            if row.step_id == step_id:
                return row
        return None

    def start_attempt(self, run_id: str, step_id: str) -> int:
        now = time.time()
        with self._tx() as db:
            (attempts,) = db.execute(
                "SELECT attempts FROM steps WHERE run_id=? AND step_id=?", (run_id, step_id)
            ).fetchone()
            n = int(attempts) + 1
            db.execute(
                "UPDATE steps SET status='running', attempts=?,"
                " started=COALESCE(started, ?), error=NULL WHERE run_id=? AND step_id=?",
                (n, now, run_id, step_id),
            )
            db.execute(
                "INSERT INTO attempts (run_id, step_id, n, started) VALUES (?, ?, ?, ?)",
                (run_id, step_id, n, now),
            )
        return n

    def end_attempt(
        self, run_id: str, step_id: str, n: int, outcome: str, error: str | None
    ) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE attempts SET ended=?, outcome=?, error=?"
                " WHERE run_id=? AND step_id=? AND n=?",
                (time.time(), outcome, error, run_id, step_id, n),
            )

    def finish_step(
        self,
        run_id: str,
        step_id: str,
        status: StepStatus,
        outputs: dict[str, Any],
        summary: str,
        error: str | None = None,
    ) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE steps SET status=?, ended=?, outputs=?, summary=?, error=?"
                " WHERE run_id=? AND step_id=?",
                (status, time.time(), json.dumps(outputs), summary, error, run_id, step_id),
            )

    def attempts(self, run_id: str, step_id: str) -> list[tuple[int, str | None, str | None]]:
        rows = self._db.execute(
            "SELECT n, outcome, error FROM attempts WHERE run_id=? AND step_id=? ORDER BY n",
            (run_id, step_id),
        )
        return [(r[0], r[1], r[2]) for r in rows]

    # events ---------------------------------------------------------------
    def add_event(
        self,
        run_id: str,
        ts: float,
        kind: str,
        step_id: str | None,
        target: str | None,
        message: str,
        data: dict[str, Any],
    ) -> None:
        with self._tx() as db:
            (seq,) = db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE run_id=?", (run_id,)
            ).fetchone()
            db.execute(
                "INSERT INTO events (run_id, seq, ts, kind, step_id, target, message, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, seq, ts, kind, step_id, target, message, json.dumps(data, default=str)),
            )

    def events(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT seq, ts, kind, step_id, target, message, data FROM events WHERE run_id=?"
            " ORDER BY seq",
            (run_id,),
        )
        return [
            {
                "seq": r[0],
                "ts": r[1],
                "kind": r[2],
                "step": r[3],
                "target": r[4],
                "message": r[5],
                "data": json.loads(r[6]),
            }
            for r in rows
        ]

    # meta -----------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, value),
            )

    def integrity_ok(self) -> bool:
        (result,) = self._db.execute("PRAGMA integrity_check").fetchone()
        return bool(result == "ok")


def _run_row(r: tuple[Any, ...]) -> RunRow:
    return RunRow(
        id=r[0],
        site=r[1],
        pipeline=r[2],
        status=r[3],
        created=r[4],
        ended=r[5],
        pid=r[6],
        exit_code=r[7],
        error=r[8],
        options=json.loads(r[9]),
        site_digest=r[10],
    )
