"""``python -m bootstrap.rolloutchild PARENT_PID PROGRAM...``: one site of a rollout.

Why a module of its own: a rollout's children must not outlive it, even when it is killed
with SIGKILL (no handler runs then). The kernel can do it: ``prctl(PR_SET_PDEATHSIG)`` asks
for SIGTERM when the parent dies, and that request survives ``exec``. So this tiny launcher
asks for it, checks the rollout did not die in the meantime (then it would never be told),
and becomes ``python PROGRAM...`` (``-m bootstrap.cli --state-dir ... restore FILE``). A
drboot killed that way is an interrupted run (``drboot resume`` goes on), and its own
Ansible guards stop their playbooks (``bootstrap.procguard``).

Only the standard library here: it runs before anything else is imported.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    if len(argv) < 2 or not argv[0].isdigit():
        sys.stderr.write("usage: python -m bootstrap.rolloutchild PARENT_PID PROGRAM...\n")
        sys.exit(2)
    parent = int(argv[0])
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        sys.exit(128 + signal.SIGTERM)  # the rollout died before the kernel could be asked
    os.execv(sys.executable, [sys.executable, *argv[1:]])


if __name__ == "__main__":
    main(sys.argv[1:])
