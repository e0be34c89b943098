"""Children die with drboot, and a resume stops what a dead run left (issue 13, defect 8).

A stand-in parent (a Python process, as drboot is) starts a marked child tree through the
guard script, exactly as the Ansible adapter does, with a grandchild that detaches
(``setsid``) like an ssh ControlPersist master. Each test waits until the whole tree is
seen in /proc before it kills anything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from bootstrap import procguard
from tests.conftest import REPO
from tests.waiting import wait_until

# The parent: mark, guard script, then the guarded tree; prints the guard's pid and waits.
PARENT = """
import os, subprocess, sys
from pathlib import Path
from bootstrap import procguard
rec = Path(sys.argv[1])
mark = procguard.new_mark(rec, "test tree", match=sys.argv[2])
guard = procguard.write_guard_script(rec.parent / "guard", "sh")
env = {**os.environ, **mark.env()}
tree = "setsid sh -c 'sleep 300; :' " + sys.argv[2] + " & sleep 301; wait"
p = subprocess.Popen([str(guard), "-c", tree], env=env)
print(mark.token, p.pid, flush=True)
p.wait()
"""


def _tree(tmp_path: Path) -> tuple[subprocess.Popen[str], procguard.ChildMark, int]:
    match = str(tmp_path / "drb-cp-test")
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path / "children"), match],
                              stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert parent.stdout is not None
    token, guard_pid = parent.stdout.readline().split()
    mark = procguard.ChildMark(token, match=match)
    # guard + sh + sleep + the detached sleep: the whole tree is up before anything is killed
    wait_until(lambda: len(procguard.marked_pids(mark)) >= 4, 20, "the marked tree to start")
    return parent, mark, int(guard_pid)


def _cleanup(mark: procguard.ChildMark, parent: subprocess.Popen[str]) -> None:
    procguard.stop_marked(mark)
    if parent.poll() is None:
        parent.kill()
    parent.wait(10)


def test_the_tree_dies_with_its_parent_even_a_detached_grandchild(tmp_path: Path) -> None:
    parent, mark, _ = _tree(tmp_path)
    try:
        detached = [p for p in procguard.marked_pids(mark)
                    if os.getsid(p) != os.getsid(parent.pid) and os.getsid(p) == p]
        assert detached, "the setsid grandchild (like an ssh ControlPersist master) is in the tree"
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        wait_until(lambda: not procguard.marked_pids(mark), 20,
                   "every process of the killed parent's tree to die")
    finally:
        _cleanup(mark, parent)


def test_stop_leftovers_kills_what_a_dead_guard_left_and_nothing_else(tmp_path: Path) -> None:
    bystander = subprocess.Popen(["sleep", "300"])  # same command, not marked: must survive
    parent, mark, guard = _tree(tmp_path)
    try:
        os.kill(guard, signal.SIGKILL)  # the guard cannot clean up: its children stay
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        left = procguard.marked_pids(mark)
        assert left, "the guard's children outlive a SIGKILLed guard"
        records = tmp_path / "children"
        assert [p.name for p in records.glob("*.json")] == [f"{mark.token}.json"]
        stopped = procguard.stop_leftovers(records)
        assert len(stopped) >= len(left) and all(s.startswith("test tree: pid ") for s in stopped)
        wait_until(lambda: not procguard.marked_pids(mark), 20, "the leftovers to die")
        assert not list(records.glob("*.json")), "the record goes with its processes"
        assert bystander.poll() is None, "an unmarked process with the same command survives"
    finally:
        bystander.kill()
        bystander.wait()
        _cleanup(mark, parent)


def test_guard_exit_code_is_the_command_s(tmp_path: Path) -> None:
    mark = procguard.new_mark(tmp_path / "children", "exit code")
    guard = procguard.write_guard_script(tmp_path / "guard", "sh")
    r = subprocess.run([str(guard), "-c", "exit 3"], env={**os.environ, **mark.env()})
    assert r.returncode == 3
    r = subprocess.run([str(guard), "-c", "kill -9 $$"], env={**os.environ, **mark.env()})
    assert r.returncode == 128 + signal.SIGKILL
