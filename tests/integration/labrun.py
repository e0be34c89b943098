"""Helpers for tests that run the real `drboot` CLI against lab sites.

Each test gets its own lab site (its own /24, state dir, escrow and config repo)
and tears it down afterwards, whatever happened.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
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

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "bootstrap.cli", "-o", "json", *args],
                                env=self.env, cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

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


def wait_for_event(proc: subprocess.Popen[str], pred: Callable[[dict[str, Any]], bool]
                   ) -> tuple[str, list[str]]:
    """Read JSON events until ``pred`` holds; returns (run_id, lines read)."""
    assert proc.stdout is not None
    lines: list[str] = []
    rid = ""
    for line in proc.stdout:
        lines.append(line)
        ev = json.loads(line)
        if ev.get("kind") == "run.started":
            rid = ev["run_id"]
        if pred(ev):
            return rid, lines
    raise AssertionError("process ended first: " + "".join(lines[-20:]))


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
