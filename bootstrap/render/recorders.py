"""Observers that persist events: every event to the journal, decisions to the audit log."""

from __future__ import annotations

from bootstrap.audit import AuditLog
from bootstrap.engine.journal import Journal
from bootstrap.events import Event

# What the audit log keeps: who ran what, what changed, what failed, and decisions.
AUDITED = {"run.started", "run.finished", "step.change", "step.done", "step.failed", "audit"}


class JournalRecorder:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def __call__(self, event: Event) -> None:
        self.journal.add_event(
            event.run_id, event.ts, event.kind, event.step, event.target, event.message, event.data
        )


class AuditRecorder:
    def __init__(self, log: AuditLog, *, dry_run: bool = False) -> None:
        self.log = log
        self.dry_run = dry_run

    def __call__(self, event: Event) -> None:
        if self.dry_run or event.kind not in AUDITED:
            return
        data = {"step": event.step, "target": event.target, "message": event.message}
        data.update(event.data)
        self.log.append(event.kind, event.run_id, data)
