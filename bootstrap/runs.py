"""Start, resume, plan and inspect runs: the functions the CLI calls.

This module joins the pieces for one command: the site file, the state
directory (journal, audit log, run folders, locks), the pipeline, and the
observers. It knows nothing of click; it returns ``RunResult`` and raises
``BootstrapError``.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootstrap.audit import AuditLog
from bootstrap.engine.context import RunScope
from bootstrap.engine.journal import Journal, RunRow, StepRow
from bootstrap.engine.lock import SiteLock
from bootstrap.engine.runner import RunResult, execute, plan
from bootstrap.engine.step import Pipeline
from bootstrap.errors import ConfigError
from bootstrap.events import EventBus, Observer
from bootstrap.fsutil import private_dir, write_atomic
from bootstrap.options import RunOptions
from bootstrap.render.recorders import AuditRecorder, JournalRecorder

SITE_COPY = "site.yaml"


def default_state_dir() -> Path:
    env = os.environ.get("DRBOOT_STATE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "drboot"


@dataclass
class StateDir:
    """Where drboot keeps its journal, audit log, locks and run folders."""

    root: Path

    def __post_init__(self) -> None:
        private_dir(self.root)

    @property
    def journal_path(self) -> Path:
        return self.root / "journal.sqlite"

    @property
    def audit(self) -> AuditLog:
        return AuditLog(self.root / "audit.jsonl")

    def run_dir(self, run_id: str) -> Path:
        return private_dir(self.root / "runs" / run_id)

    def journal(self) -> Journal:
        return Journal(self.journal_path)


@dataclass
class RunRequest:
    """Everything one restore/resume/plan needs besides the pipeline."""

    state: StateDir
    observers: list[Observer] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    force_unlock: bool = False
    until: str | None = None


def new_run_id(site: str) -> str:
    return f"{site}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(2)}"


def _bus(req: RunRequest, journal: Journal, *, dry_run: bool = False) -> EventBus:
    bus = EventBus()
    if not dry_run:
        bus.subscribe(JournalRecorder(journal))
        bus.subscribe(AuditRecorder(req.state.audit))
    for obs in req.observers:
        bus.subscribe(obs)
    return bus


def start(
    pipeline: Pipeline,
    site: Any,
    site_text: str,
    req: RunRequest,
    site_path: Path | None = None,
) -> RunResult:
    """A new run of ``pipeline`` for ``site`` (its validated model and the exact text).

    ``site_path`` is where the text came from: relative paths in it are resolved
    against its folder again when the run is resumed from the copy in the run folder.
    """
    name = str(site.name)
    if site_path is not None:
        req.options.setdefault("site_dir", str(Path(site_path).resolve().parent))
    run_id = new_run_id(name)
    journal = req.state.journal()
    lock = SiteLock(req.state.root, name)
    try:
        lock.acquire(run_id, force_unlock=req.force_unlock)
        run_dir = req.state.run_dir(run_id)
        write_atomic(run_dir / SITE_COPY, site_text)
        digest = hashlib.sha256(site_text.encode()).hexdigest()
        journal.create_run(run_id, name, pipeline.name, pipeline.ids(), req.options, digest)
        scope = RunScope(
            run_id=run_id,
            site=site,
            run_dir=run_dir,
            bus=_bus(req, journal),
            options=RunOptions.from_json(dict(req.options)),
            until=req.until,
        )
        return execute(pipeline, journal, scope)
    finally:
        lock.release()
        journal.close()


def resume(
    run_id: str,
    pipelines: dict[str, Pipeline],
    load_site_text: Callable[[str, str, Path], Any],
    req: RunRequest,
) -> RunResult:
    """Continue ``run_id`` from its first unfinished step, with the site text it started with."""
    journal = req.state.journal()
    try:
        row = journal.run(run_id)
        if row is None:
            raise ConfigError(
                f"no run {run_id} in {req.state.root}",
                hint="list runs with `drboot status` (and check --state-dir)",
            )
        if row.status == "ok":
            raise ConfigError(
                f"run {run_id} already finished ok; nothing to resume",
                hint="start a new run with `drboot restore SITE`",
            )
        pipeline = pipelines.get(row.pipeline)
        if pipeline is None:
            raise ConfigError(
                f"run {run_id} used pipeline {row.pipeline!r}, unknown to this drboot"
            )
        run_dir = req.state.run_dir(run_id)
        site_path = run_dir / SITE_COPY
        base = row.options.get("site_dir")
        site = load_site_text(
            site_path.read_text(), str(site_path), Path(base) if base else site_path.parent
        )
        lock = SiteLock(req.state.root, row.site)
        try:
            lock.acquire(run_id, force_unlock=req.force_unlock)
            journal.reopen_run(run_id, pipeline.ids())
            options = dict(row.options)
            options.update(req.options)
            scope = RunScope(
                run_id=run_id,
                site=site,
                run_dir=run_dir,
                bus=_bus(req, journal),
                options=RunOptions.from_json(options),
                until=req.until,
            )
            return execute(pipeline, journal, scope)
        finally:
            lock.release()
    finally:
        journal.close()


def dry_run(pipeline: Pipeline, site: Any, req: RunRequest) -> RunResult:
    """``drboot plan``: observe only; no journal rows, no lock, no audit records."""
    run_id = f"plan-{new_run_id(str(site.name))}"
    journal = req.state.journal()
    run_dir = req.state.run_dir(run_id)
    try:
        scope = RunScope(
            run_id=run_id,
            site=site,
            run_dir=run_dir,
            bus=_bus(req, journal, dry_run=True),
            options=RunOptions.from_json(dict(req.options)),
        )
        return plan(pipeline, scope)
    finally:
        journal.close()
        shutil.rmtree(run_dir, ignore_errors=True)  # a plan leaves nothing behind


def status(state: StateDir, run_id: str | None) -> tuple[list[RunRow], list[StepRow]]:
    journal = state.journal()
    try:
        if run_id is None:
            return journal.runs(), []
        row = journal.run(run_id)
        if row is None:
            raise ConfigError(
                f"no run {run_id} in {state.root}", hint="list runs with `drboot status`"
            )
        return [row], journal.steps(run_id)
    finally:
        journal.close()
