"""Reports built from a real journal file: RTO against the objective, warnings collected from
step outputs and audit events, the LAB STAND-IN list, and the three renderings (JSON, Markdown,
JUnit XML parsed back)."""

from __future__ import annotations

import json
import stat
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from bootstrap.engine.journal import Journal
from bootstrap.lab.plugin import LabCluster
from bootstrap.providers.plugin import ProductionCluster
from bootstrap.report import markdown, model, write
from bootstrap.siteload import load_site_text
from bootstrap.steps.finish import from_journal

APP = {"namespace": "argocd", "sync": "Synced", "health": "Healthy", "ready": True, "reason": ""}
STEPS = ["disk-gate", "restore-sealing-keys", "verify-sealing-key", "wait-synced", "report"]


def journal_with_run(
    tmp_path: Path, *, ready_after: float | None, fail: str | None = None
) -> tuple[Path, str, float]:
    """A journal holding one run like the pipeline records it; returns (path, run id, start)."""
    path = tmp_path / "journal.sqlite"
    j = Journal(path)
    rid = "site-a-20260101T000000-abcd"
    j.create_run(rid, "site-a", "restore", STEPS, {}, "digest")
    start = j.run(rid).created  # type: ignore[union-attr]
    verdict = {"host": "server-1", "p50_ms": 3.0, "p99_ms": 14.2, "p999_ms": 20.0, "syncs": 9000,
               "threshold_ms": 10.0, "ok": False}  # fmt: skip
    outputs: dict[str, dict[str, Any]] = {
        "disk-gate": {"verdicts": [verdict]},
        "restore-sealing-keys": {"foreign_keys": [], "warning": "take a fresh escrow backup"},
        "verify-sealing-key": {"serving_fingerprint": "SHA256:x"},
        "wait-synced": {
            "apps": {"root": APP},
            "ready_at": start + ready_after if ready_after is not None else None,
        },
    }
    for sid in STEPS[:-1]:
        n = j.start_attempt(rid, sid)
        if sid == "verify-sealing-key":  # a retried step
            j.end_attempt(rid, sid, n, "transient", "not yet")
            n = j.start_attempt(rid, sid)
        if sid == fail:
            j.end_attempt(rid, sid, n, "failed", "boom")
            j.finish_step(rid, sid, "failed", {}, "", "step wait-synced: gave up after 60s")
            break
        j.end_attempt(rid, sid, n, "ok", None)
        j.finish_step(rid, sid, "done", outputs[sid], f"{sid} summary")
    accepted = {"p99_ms": 14.2, "threshold_ms": 10.0, "reason": "lab: throttled on purpose"}
    j.add_event(rid, start + 5, "audit", "disk-gate", "server-1",
                "slow disk accepted by the operator", accepted)  # fmt: skip
    j.add_event(rid, start + 6, "step.progress", "disk-gate", None, "fio", {})
    j.start_attempt(rid, "report")
    j.close()
    return path, rid, start


LAB_SITE = """\
apiVersion: drboot.dev/v1
name: site-a
provider: {type: lab}
escrow: {backend: age, bundle: kit.age, identity_files: [id.txt]}
repo: {url: file:///nonexistent}
"""


def ctx(start: float, provider: str = "lab", objective: float = 1200.0) -> model.Context:
    """The context the report step builds: lab runs list what the lab plug-in simulated."""
    standins: list[str] = []
    if provider == "lab":
        standins = LabCluster(load_site_text(LAB_SITE, "lab.yaml"), Path("/nonexistent")).standins()
    return model.Context(objective, provider, "argocd", start + 700, standins=tuple(standins))


def test_rto_met_with_warnings_decisions_and_lab_standins(tmp_path: Path) -> None:
    path, rid, start = journal_with_run(tmp_path, ready_after=612.5)
    r = from_journal(path, rid, ctx(start))
    assert r["rto"]["seconds"] == pytest.approx(612.5, abs=0.01)
    assert r["rto"]["met"] is True and r["rto"]["objective_seconds"] == 1200.0
    assert r["outcome"] == "restored"
    assert [s["id"] for s in r["steps"]] == STEPS
    assert r["steps"][2]["attempts"] == 2 and r["steps"][-1]["status"] == "running"
    # journalled before the wait recorded revisions and ready times: read back with defaults
    assert r["apps"] == {"root": APP | {"revision": "", "ready_since": None}}
    assert r["converged"] == {"commit": "", "verified": False, "verified_commits": [],
                              "expected_apps": 0, "strays": []}  # fmt: skip
    assert r["warnings"] == [
        "disk-gate: server-1: fdatasync p99 14.20 ms exceeds 10.00 ms",
        "restore-sealing-keys: take a fresh escrow backup",
        "verify-sealing-key: succeeded after 2 attempts",
        "disk-gate: slow disk accepted by the operator on server-1: lab: throttled on purpose",
    ]
    assert [d["what"] for d in r["decisions"]] == ["slow disk accepted by the operator"]
    assert any(s.startswith("argocd: LAB STAND-IN") for s in r["lab_standins"])
    assert not any(s.startswith("flux") for s in r["lab_standins"])
    assert ProductionCluster().standins() == []


def test_rto_missed_and_not_measured(tmp_path: Path) -> None:
    path, rid, start = journal_with_run(tmp_path, ready_after=1500)
    r = from_journal(path, rid, ctx(start, objective=1200))
    assert r["rto"]["met"] is False
    failed = tmp_path / "failed"
    failed.mkdir()
    path2, rid2, start2 = journal_with_run(failed, ready_after=None, fail="wait-synced")
    r2 = from_journal(path2, rid2, ctx(start2))
    assert r2["rto"]["seconds"] is None and r2["rto"]["met"] is None
    assert r2["outcome"] == "failed"
    junit = ET.fromstring(write.render(r2, "junit").split("\n", 1)[1])
    suite = junit.find("testsuite")
    assert suite is not None
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["wait-synced"].find("failure") is not None
    assert cases["report"].find("skipped") is None  # running: it is writing this report
    rto_failure = cases["rto"].find("failure")
    assert rto_failure is not None and "not measured" in str(rto_failure.get("message"))


def test_renderings_and_atomic_files(tmp_path: Path) -> None:
    path, rid, start = journal_with_run(tmp_path, ready_after=613.0)
    r = from_journal(path, rid, ctx(start))
    out = tmp_path / "reports"
    paths = write.write(r, out, ["json", "markdown", "junit", "json"])
    assert [p.name for p in paths] == ["report.json", "report.md", "report.junit.xml"]
    for p in paths:
        assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert json.loads(paths[0].read_text()) == r

    md = paths[1].read_text()
    assert "**met**: 10m13s against an objective of 20m00s" in md
    assert "| verify-sealing-key | done | 2 |" in md
    assert "| root | Synced | Healthy |" in md
    assert "## LAB STAND-INS" in md and "lab: throttled on purpose" in md

    suite = ET.parse(paths[2]).getroot().find("testsuite")
    assert suite is not None
    assert suite.get("tests") == str(len(STEPS) + 1)
    assert suite.get("failures") == "0"
    rto_case = next(c for c in suite.iter("testcase") if c.get("name") == "rto")
    assert rto_case.find("failure") is None and rto_case.get("time") == "613.000"

    static = write.render(model.build(*_rows(path, rid), ctx(start, provider="static")), "markdown")
    assert "LAB STAND-INS" not in static


def _rows(path: Path, rid: str) -> tuple[Any, Any, Any]:
    j = Journal(path)
    try:
        return j.run(rid), j.steps(rid), j.events(rid)
    finally:
        j.close()


def test_unknown_run_and_format(tmp_path: Path) -> None:
    path, _, start = journal_with_run(tmp_path, ready_after=1)
    with pytest.raises(KeyError):
        from_journal(path, "no-such-run", ctx(start))
    with pytest.raises(ValueError, match="unknown report format"):
        write.render({}, "pdf")


def test_hosts_section_has_country_fio_and_cpu_figures_and_the_repo_location(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.sqlite"
    j = Journal(path)
    rid = "site-a-20260101T000000-gate"
    steps = ["preflight-sovereignty", "disk-gate", "cpu-gate", "report"]
    j.create_run(rid, "site-a", "restore", steps, {}, "digest")
    start = j.run(rid).created  # type: ignore[union-attr]
    disk = {"host": "server-1", "p50_ms": 1.0, "p99_ms": 2.5, "p999_ms": 4.0, "syncs": 9000,
            "threshold_ms": 10.0, "ok": True}  # fmt: skip
    sustained = {"host": "server-1", "seconds": 60, "p50_ms": 9.0, "p99_ms": 45.0, "max_ms": 80.0,
                 "syncs": 2000, "write_kib_s": 75.0, "threshold_ms": 10.0, "ok": False}  # fmt: skip
    cpu = {"host": "server-1", "cores": 2, "steal_percent": 7.5, "single_ratio": 0.1,
           "all_ratio": 0.05, "single_ops_per_s": 1e6, "all_ops_per_s": 1e6, "window_s": 3.0,
           "max_steal_percent": 5.0, "min_throughput_ratio": 0.7, "ok": False}  # fmt: skip
    where = {"host": "git.example.se", "country": "SE", "allowed": ["NO", "SE"]}
    sov = {"hosts": {"server-1": "NO"}, "repo_host": "git.example.se", "repo_country": "SE",
           "allowed": ["NO", "SE"]}  # fmt: skip
    outputs: dict[str, dict[str, Any]] = {
        "preflight-sovereignty": sov,
        "disk-gate": {"verdicts": [disk], "sustained": [sustained]},
        "cpu-gate": {"verdicts": [cpu]},
    }
    for sid, out in outputs.items():
        n = j.start_attempt(rid, sid)
        j.end_attempt(rid, sid, n, "ok", None)
        j.finish_step(rid, sid, "done", out, f"{sid} summary")
    j.close()
    r = from_journal(path, rid, ctx(start, provider="static"))
    host = r["hosts"]["server-1"]
    assert host["country"] == "NO" and host["disk"]["p99_ms"] == 2.5
    assert host["cpu"]["steal_percent"] == 7.5 and host["cpu"]["throughput_ratio"] == 0.05
    assert r["repo_location"] == where
    assert any(w.startswith("cpu-gate: server-1: steal 7.5% (max 5%)") for w in r["warnings"])
    md = write.render(r, "markdown")
    assert "| server-1 | NO | 2.50 ms (max 10); 60 s sustained: p99 45.00 ms, max 80.00 ms, " in md
    assert "| 7.5% (max 5%) | 0.10 of 1 core, 0.05 of 2" in md
    assert host["disk_sustained"]["p99_ms"] == 45.0
    assert any(w.startswith("disk-gate: server-1: sustained 60 s: fdatasync p99 45.00") for w in
               r["warnings"])  # fmt: skip
    assert "Config repo on git.example.se, in SE; allowed countries: NO, SE." in md


def test_report_states_the_renderer_preflight_used(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    j = Journal(path)
    rid = "site-a-20260101T000000-rend"
    j.create_run(rid, "site-a", "restore", ["preflight-escrow", "report"], {}, "digest")
    start = j.run(rid).created  # type: ignore[union-attr]
    n = j.start_attempt(rid, "preflight-escrow")
    j.end_attempt(rid, "preflight-escrow", n, "ok", None)
    repo = {"url": "file:///r", "revision": "main", "commit": "c" * 40, "path": ".",
            "renderer": "kubectl v1.37.1 (kustomize v5.8.1)"}  # fmt: skip
    j.finish_step(rid, "preflight-escrow", "done", {"escrow_fingerprints": [], "repo": repo}, "ok")
    j.close()
    r = from_journal(path, rid, ctx(start, provider="static"))
    assert r["renderer"] == "kubectl v1.37.1 (kustomize v5.8.1)"
    assert "repo rendered with kubectl v1.37.1 (kustomize v5.8.1)" in markdown.render(r)
