"""Run one bad-input case and write down what really happened: the exit code, the message, what
the state directory and journal hold afterwards, whether any input (escrow, shares, known_hosts,
repo) changed, what the SSH servers saw, and any secret found in the output or the state
directory. The verdict compares that with the case; the document is written from it.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from click.testing import CliRunner

from bootstrap.cli import Deps, cli
from tests.badinput.cases import Case
from tests.badinput.world import World
from tests.leaks import Form, files_under, find_leaks

_JOURNAL = {"journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm", "audit.jsonl",
            "audit.jsonl.head", "locks"}  # fmt: skip


@dataclass
class Observation:
    case: Case
    command: str
    code: int
    message: str
    state: str
    inputs: str
    leaks: list[str]
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


def _inputs(world: World) -> dict[str, str]:
    """A digest of every file the row and the lab hold, except drboot's own: the state
    directory and the machine-wide lock directory."""
    own = [world.state, Path(os.environ.get("DRBOOT_LOCK_DIR") or world.state)]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files_under(world.lab.root, world.tmp)
            if not any(p.is_relative_to(d) for d in own)}  # fmt: skip


class Normal:
    """Makes a message stable from run to run: temporary paths, ports, fingerprints, run ids
    and timings replaced by placeholders, so the document changes only when behaviour does."""

    def __init__(self, world: World) -> None:
        self.subs = [(str(world.tmp), "$ROW"), (str(world.lab.root), "$LAB")]

    def __call__(self, text: str) -> str:
        for old, new in self.subs:
            text = text.replace(old, new)
        text = re.sub(r"(127\.0\.0\.1\]?):\d{2,5}", r"\1:$PORT", text)
        text = re.sub(r"SHA256:[A-Za-z0-9+/]{43}", "SHA256:…", text)
        text = re.sub(r"\b[a-z0-9-]+-\d{8}T\d{6}-[0-9a-f]{4}\b", "$RUN", text)
        text = re.sub(r"@[0-9a-f]{12}\b", "@$COMMIT", text)
        text = re.sub(r"\b\d+\.\d+s\b", "…s", text)
        splits: dict[str, str] = {}
        text = re.sub(r"\bsplit [0-9a-f]{16}\b",
                      lambda m: splits.setdefault(m.group(), f"split $SPLIT{len(splits) + 1}"),
                      text)  # fmt: skip
        text = re.sub(r"\(\d+ characters\)", "(… characters)", text)  # the temp path counts
        return re.sub(r"b{40,}", "bbb…", text)


def _message(output: str) -> str:
    """The error line and its ``next:`` line; for a success, the first line of output."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.lower().startswith("error:"):  # drboot's own, or click's usage error
            text = line
            if i + 1 < len(lines) and lines[i + 1].lstrip().startswith("next:"):
                text += " — " + lines[i + 1].strip()
            return text
    return next((ln for ln in lines if ln.strip()), "(no output)")


def _journal(state: Path, case: Case) -> tuple[str, list[str]]:
    """The runs in the journal, in words, and what is wrong with them for this case."""
    db_path = state / "journal.sqlite"
    runs: list[tuple[str, str]] = []
    if db_path.exists():
        db = sqlite3.connect(db_path)
        try:
            runs = list(db.execute("SELECT id, status FROM runs"))
            steps = list(db.execute("SELECT step_id, status FROM steps ORDER BY position"))
            changes = db.execute("SELECT count(*) FROM events WHERE kind = 'step.change'")
            changed = int(changes.fetchone()[0])
        finally:
            db.close()
    if case.stops_at is None:
        if runs:
            return f"{len(runs)} run(s) recorded", ["a command that starts no run recorded one"]
        return "no run", []
    problems = []
    if len(runs) != 1:
        return f"{len(runs)} runs", [f"expected one run, the journal holds {len(runs)}"]
    status = dict(steps)
    failed = [s for s, st in steps if st == "failed"]
    done = [s for s, st in steps if st == "done"]
    order = [s for s, _ in steps]
    after = order[order.index(case.stops_at) + 1 :]
    if failed != [case.stops_at]:
        problems.append(f"expected {case.stops_at} to fail, failed: {failed or 'none'}")
    if any(status[s] != "pending" for s in after):
        problems.append("a step after the failed one ran")
    if changed:
        problems.append(f"{changed} step(s) changed something")
    words = (f"one run, {runs[0][1]} at {', '.join(failed) or '?'}: {len(done)} step(s) before "
             f"it done with {changed} change(s), the {len(after)} after it not run")  # fmt: skip
    return words, problems


def observe(case: Case, world: World, forms: list[Form]) -> Observation:
    norm = Normal(world)
    given = case.argv(world)
    shown = "drboot " + " ".join(norm(a) for a in given)
    argv = given if given[0] == "--state-dir" else ["--state-dir", str(world.state), *given]
    before = _inputs(world)
    res = CliRunner().invoke(cli, argv, obj=Deps())
    after = _inputs(world)
    output = res.output
    problems: list[str] = []
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        problems.append(f"raised {type(res.exception).__name__}")
    if res.exit_code != case.code:
        problems.append(f"exit {res.exit_code}, expected {case.code}")
    if case.words not in output:
        problems.append(f"the message lacks {case.words!r}")
    if "Traceback" in output:
        problems.append("a traceback was shown")
    if (world.state / "crashes").exists():
        problems.append("a crash report was written (an internal error)")

    # What was created: the journal, and anything else in the state directory.
    state = "no state directory"
    if world.state.is_dir():
        state, journal_problems = _journal(world.state, case)
        problems += journal_problems
        extra = sorted(p.name for p in world.state.iterdir() if p.name not in _JOURNAL)
        if case.stops_at is None and extra:
            problems.append(f"left in the state directory: {', '.join(extra)}")
        if extra:
            state += f"; also {', '.join(extra)}/"

    # What was lost or changed: every input file, and the hosts (SSH servers).
    changed = sorted(set(before) ^ set(after) | {p for p in before if before[p] != after.get(p)})
    inputs = "unchanged" if not changed else "CHANGED: " + ", ".join(map(norm, changed))
    if changed:
        problems.append(f"inputs changed: {', '.join(changed)}")
    for srv in world.servers:
        inputs += f"; SSH server: {srv.seen.summary()}"
        if not case.serves and (srv.seen.accepted or srv.seen.commands):
            problems.append("the SSH server accepted a login or ran a command")

    blobs = {"output": output.encode()}
    blobs.update({str(p): p.read_bytes() for p in files_under(world.state)})
    leaks = find_leaks(forms, blobs)
    if leaks:
        problems.append("secret material in the output or state: " + "; ".join(leaks))
    return Observation(case, shown, res.exit_code, norm(_message(output)), state, inputs,
                       leaks, problems)  # fmt: skip
