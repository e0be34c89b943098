"""Drive one real lab restore through a list of faults, resuming after each kill, and count
what was lost.

A kill point names a step and where in it: at its ``step.done`` event (a step boundary) or at
its n-th event inside it (started / progress / change / noop / retry). Every kill waits for
its event, so it lands where it says (or, when the step ends sooner than its n-th event, at
the boundary, and the note says so). After each kill the journal is checked
(``PRAGMA integrity_check``, every step row present, nothing done undone), the lab's hosts
are counted and the run's processes looked for; then ``resume`` continues.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration.labrun import LabSite, LiveRun, events
from tests.reliability.results import CaseResult

INSIDE = {"step.started", "step.progress", "step.change", "step.noop", "step.retry"}
STEPS = [
    "preflight-references", "preflight-sovereignty", "preflight-escrow", "provision",
    "connect", "disk-gate", "cpu-gate", "prepare-hosts", "install-k3s", "fetch-kubeconfig",
    "restore-sealing-keys",
    "install-sealed-secrets", "verify-sealing-key", "install-reconciler", "point-at-repo",
    "wait-synced", "report",
]  # fmt: skip


@dataclass(frozen=True)
class KillPoint:
    step: str
    nth: int = 0  # 0: at step.done (the boundary after the step); n: its n-th event inside

    def label(self) -> str:
        return f"after {self.step}" if self.nth == 0 else f"inside {self.step} (event {self.nth})"


def boundaries(last: str = STEPS[-2]) -> list[KillPoint]:
    """The boundary after each step up to ``last`` (after the report, the run is over)."""
    return [KillPoint(s) for s in STEPS[: STEPS.index(last) + 1]]


def random_points(rng: random.Random, n: int, last: str = STEPS[-2]) -> list[KillPoint]:
    # The first steps last well under a second: a point there is a boundary in all but name.
    return [KillPoint(rng.choice(STEPS[3 : STEPS.index(last) + 1]), rng.randint(1, 4))
            for _ in range(n)]  # fmt: skip


def order(points: list[KillPoint]) -> list[KillPoint]:
    """In pipeline order; inside a step, the earlier event first and the boundary last."""
    return sorted(points, key=lambda p: (STEPS.index(p.step), p.nth or 10**6))


class _Matcher:
    def __init__(self, point: KillPoint) -> None:
        self.point = point
        self.count = 0
        self.landed = ""

    def __call__(self, ev: dict[str, Any]) -> bool:
        if ev.get("step") != self.point.step:
            return False
        if ev["kind"] == "step.done":
            self.landed = "boundary" if self.point.nth else "boundary (as planned)"
            return True
        if self.point.nth and ev["kind"] in INSIDE:
            self.count += 1
            if self.count >= self.point.nth:
                self.landed = f"inside, at {ev['kind']} {ev.get('message', '')[:60]!r}"
                return True
        return False


def journal_state(state: Path, rid: str) -> tuple[str, dict[str, str]]:
    with sqlite3.connect(state / "journal.sqlite") as db:
        check = db.execute("PRAGMA integrity_check").fetchone()[0]
        rows = dict(db.execute("SELECT step_id, status FROM steps WHERE run_id=?", (rid,)))
    return str(check), rows


def run_processes(run_dir: Path) -> list[int]:
    needle = str(run_dir).encode()
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "cmdline").read_bytes():
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


Fault = Callable[[LiveRun, LabSite, CaseResult], None]


def drive(ls: LabSite, res: CaseResult, points: list[KillPoint], *, servers: int = 1,
          faults_in_wait: list[Fault] | None = None,
          on_failure: Callable[[Any], None] | None = None) -> None:  # fmt: skip
    """One restore to its end through ``points`` (and the faults after them, each waiting for
    its own event); fills ``res``. A run that ends non-zero is resumed once when
    ``on_failure`` is given (called first with the failed process: it records the failure
    and undoes the fault, as an operator would before ``resume``)."""
    started = time.monotonic()
    res.runs += 1
    run = ls.start("restore", str(ls.site))
    rid = ""
    done_before: set[str] = set()
    invocations: list[tuple[set[str], list[dict[str, Any]]]] = []
    pending_wait = list(faults_in_wait or [])
    identities: dict[str, str] = {}
    for point in order(points):
        m = _Matcher(point)
        run.wait_for(m, timeout=1200, what=point.label())
        run.proc.send_signal(signal.SIGKILL)
        first = run.finish(timeout=120)
        rid = rid or _rid(first)
        res.faults += 1
        res.notes.append(f"kill {point.label()}: landed {m.landed}")
        invocations.append((set(done_before), events(first)))
        check, rows = journal_state(ls.state, rid)
        if check != "ok" or len(rows) != len(STEPS):
            res.journal_bad += 1
            res.notes.append(f"journal after kill {point.label()}: {check}, {len(rows)} rows")
        done_now = {s for s, st in rows.items() if st == "done"}
        if not done_before <= done_now:
            res.journal_bad += 1
            res.notes.append(f"done steps undone after kill: {sorted(done_before - done_now)}")
        done_before = done_now
        _count_hosts(ls, res, servers, identities)
        run = ls.start("resume", rid)
    for fault in pending_wait:
        fault(run, ls, res)
    last = run.finish(timeout=1800)
    rid = rid or _rid(last)
    invocations.append((set(done_before), events(last)))
    if last.returncode != 0 and on_failure is not None:
        on_failure(last)
        _, rows = journal_state(ls.state, rid)
        done_before = {s for s, st in rows.items() if st == "done"}
        last = ls.start("resume", rid).finish(timeout=1800)
        invocations.append((set(done_before), events(last)))
    for done_at_start, evs in invocations:
        again = {e["step"] for e in evs if e["kind"] == "step.started"} & done_at_start
        res.repeated += len(again)
        if again:
            res.notes.append(f"steps done before a kill ran again: {sorted(again)}")
        res.leftovers_stopped += sum(
            1 for e in evs if e["kind"] == "audit" and e["message"].startswith("stopped leftover")
        )
    check, rows = journal_state(ls.state, rid)
    ended = [e for e in events(last) if e["kind"] == "run.finished"]
    synced = (last.returncode == 0 and rows.get("wait-synced") == "done" and check == "ok"
              and all(st == "done" for st in rows.values()))  # fmt: skip
    if synced:
        res.synced += 1
    else:
        res.notes.append(f"run {rid} ended rc {last.returncode}: {ended[-1:]}; "
                         f"{last.stderr[-400:]}")  # fmt: skip
    _count_hosts(ls, res, servers, identities)
    left = run_processes(ls.state / "runs" / rid)
    if left:
        res.notes.append(f"processes of the run still alive at its end: {left}")
        res.repeated += len(left)
    res.seconds += time.monotonic() - started


def _rid(proc: Any) -> str:
    for ev in events(proc):
        if ev.get("kind") == "run.started":
            return str(ev["run_id"])
    raise AssertionError(f"no run.started event: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")


def _count_hosts(ls: LabSite, res: CaseResult, servers: int,
                 seen: dict[str, str] | None = None) -> None:  # fmt: skip
    """Duplicate hosts (more lab hosts than servers) and, with ``seen``, hosts created twice: a
    host of the same name whose SSH host key changed was destroyed and made again."""
    try:
        hosts = ls.lab().hosts()
    except Exception:  # no lab yet: provision has not run
        hosts = []
    n = len(hosts)
    for h in hosts:
        if seen is None:
            break
        key = h.host_public_key
        if seen.setdefault(h.name, key) != key:
            res.repeated += 1
            res.notes.append(f"host {h.name} was created again (new host key)")
            seen[h.name] = key
    if n > servers:
        res.duplicate_hosts = max(res.duplicate_hosts, n - servers)
        res.notes.append(f"{n} lab hosts for {servers} server(s)")
