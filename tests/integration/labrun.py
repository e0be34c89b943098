"""Helpers for tests that run the real `drboot` CLI against lab sites.

Each test gets its own lab site (its own /24, state dir, escrow and config repo)
and tears it down afterwards, whatever happened.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootstrap.lab.hosts import Lab, LabHost

REPO = Path(__file__).resolve().parents[2]

SITE = """\
apiVersion: drboot.dev/v1
kind: Site
name: {name}
provider:
  type: lab
  servers: {servers}
  state_dir: {root}
  disk: {disk}
  slow_disk_iops: {iops}
kubernetes:
  topology: {topology}
  install: airgap
  api_ready_timeout: 3m
disk_gate:
  runtime_limit: 8s
cpu_gate: {{window: 1s, max_steal_percent: 100, min_throughput_ratio: 0.05}}
escrow:
  backend: age
  bundle: {root}/escrow/kit.age
  identity_files: [{root}/escrow/identity.txt]
repo:
  url: file://{root}/config-repo
  path: apps/overlays/lab
"""


@dataclass
class LabSite:
    name: str
    root: Path
    state: Path
    site: Path
    env: dict[str, str] = field(default_factory=dict)

    def drboot(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bootstrap.cli", "-o", "json", *args],
                              env=self.env, cwd=REPO, capture_output=True, text=True,
                              timeout=timeout)

    def start(self, *args: str) -> LiveRun:
        return LiveRun(subprocess.Popen(
            [sys.executable, "-m", "bootstrap.cli", "-o", "json", *args],
            env=self.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))  # fmt: skip

    def lab(self) -> Lab:
        return Lab.attach(self.root / "lab")

    def host(self, name: str = "server-1") -> LabHost:
        return self.lab().host(name)


def events(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    out = []
    for line in proc.stdout.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def run_id(proc: subprocess.CompletedProcess[str]) -> str:
    for ev in events(proc):
        if ev.get("kind") == "run.started":
            return str(ev["run_id"])
    raise AssertionError(f"no run.started event: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")


def step_events(proc: subprocess.CompletedProcess[str], step: str) -> list[dict[str, Any]]:
    return [e for e in events(proc) if e.get("step") == step]


class LiveRun:
    """A `drboot -o json` process still running: a test waits for the event it needs (say, a
    task of the step it is about to fault) before acting, and still gets every line at the end.

    Reader threads drain stdout and stderr as they come (neither pipe can fill up and stall
    drboot), so waiting has a real deadline.
    """

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self._out: list[str] = []
        self._err: list[str] = []
        self._seen = 0  # events before this index were already matched or passed over
        self._cond = threading.Condition()
        self._readers = [
            threading.Thread(target=self._drain, args=(proc.stdout, self._out), daemon=True),
            threading.Thread(target=self._drain, args=(proc.stderr, self._err), daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _drain(self, pipe: Any, into: list[str]) -> None:
        for line in pipe:
            with self._cond:
                into.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _events_from(self, start: int) -> list[tuple[int, dict[str, Any]]]:
        out = []
        for i, line in enumerate(self._out[start:], start):
            try:
                out.append((i, json.loads(line)))
            except ValueError:
                continue
        return out

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], *, timeout: float = 600,
                 what: str = "the event") -> dict[str, Any]:
        """The first event after the last one waited for that satisfies ``pred``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, ev in self._events_from(self._seen):
                    if pred(ev):
                        self._seen = i + 1
                        return ev
                self._seen = len(self._out)
                tail = "".join(self._out[-20:] + self._err[-20:])
                if self.proc.poll() is not None and not self._readers[0].is_alive():
                    raise AssertionError(
                        f"drboot ended (rc {self.proc.returncode}) before {what}: {tail}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {what} within {timeout:g}s: {tail}")
                self._cond.wait(min(left, 1.0))  # woken by every new line

    @property
    def run_id(self) -> str:
        with self._cond:
            for _, ev in self._events_from(0):
                if ev.get("kind") == "run.started":
                    return str(ev["run_id"])
        raise AssertionError("no run.started event yet")

    def finish(self, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Wait for drboot to exit; every line it wrote, as ``drboot()`` returns them."""
        rc = self.proc.wait(timeout)
        for t in self._readers:
            t.join(30)
        with self._cond:
            return subprocess.CompletedProcess(self.proc.args, rc, "".join(self._out),
                                               "".join(self._err))


def make_site(tmp: Path, name: str, *, servers: int = 1, disk: str = "fast",
              iops: int = 300) -> LabSite:
    root = tmp / "lab-root"
    state = tmp / "state"
    site = tmp / f"{name}.yaml"
    site.write_text(SITE.format(name=name, servers=servers, root=root, disk=disk, iops=iops,
                                topology="ha" if servers > 1 else "single"))
    env = dict(os.environ)
    env["DRBOOT_STATE_DIR"] = str(state)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    ls = LabSite(name, root, state, site, env)
    res = ls.drboot("lab", "seed", str(site), timeout=300)
    assert res.returncode == 0, res.stderr
    return ls


def teardown(ls: LabSite) -> None:
    subprocess.run([sys.executable, "-m", "bootstrap.cli", "lab", "down", str(ls.site)],
                   env=ls.env, cwd=REPO, capture_output=True, text=True, timeout=300)


def lab_site_fixture(tmp: Path, name: str, **kw: Any) -> Iterator[LabSite]:
    ls = make_site(tmp, name, **kw)
    try:
        yield ls
    finally:
        teardown(ls)
