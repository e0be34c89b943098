"""The end of a drill or restore: the Prometheus textfile, the webhook, and exit 7.

Runs go through the real command line (``drboot drill`` / ``restore``), the real engine,
journal and report step; only the steps before the report are the small ones of
``tests.engine_fixtures.drillkit`` (the RTO they produce is set exactly). The metrics
file is read back with ``prometheus_client``'s own parser; the webhooks are HTTP servers
on loopback that record what they get.
"""

from __future__ import annotations

import http.server
import json
import socket
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from bootstrap.cli import Deps, cli
from bootstrap.engine.journal import Journal
from bootstrap.errors import ExitCode
from tests.conftest import MINIMAL_SITE, REPO
from tests.engine_fixtures import drillkit

TOKEN = "T0KEN-s3cret-in-the-path"


def _site(tmp_path: Path, extra: str = "", objective: str = "10m") -> Path:
    path = tmp_path / "site.yaml"
    text = MINIMAL_SITE.format(name="oslo") + f"rto:\n  objective: {objective}\n" + extra
    path.write_text(text)
    return path


def _run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    site: Path,
    *,
    rto: float = 30,
    fail: str | None = None,
) -> tuple[int, str]:
    monkeypatch.setenv("DRILLKIT_RTO", str(rto))
    if fail:
        monkeypatch.setenv("DRILLKIT_FAIL", fail)
    else:
        monkeypatch.delenv("DRILLKIT_FAIL", raising=False)
    res = CliRunner().invoke(
        cli,
        ["--state-dir", str(tmp_path / "state"), command, str(site)],
        obj=Deps(pipelines=drillkit.pipelines),
    )
    return res.exit_code, res.output


def _metrics(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(path.read_text()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def _key(name: str, kind: str, **extra: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted({"site": "oslo", "kind": kind, **extra}.items()))


def _journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "state" / "journal.sqlite")


# --------------------------------------------------------------------------- metrics


def test_metrics_textfile_after_a_drill_and_a_failed_restore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prom = tmp_path / "textfile" / "drboot.prom"
    site = _site(tmp_path, f"metrics:\n  textfile: {prom}\n")
    code, out = _run(tmp_path, monkeypatch, "drill", site, rto=42.5)
    assert code == 0, out
    j = _journal(tmp_path)
    (drill,) = j.runs("oslo")
    steps = {s.step_id: s.seconds for s in j.steps(drill.id)}
    j.close()
    m = _metrics(prom)
    assert m[_key("drboot_last_run_success", "drill")] == 1.0
    assert m[_key("drboot_rto_seconds", "drill")] == 42.5
    assert m[_key("drboot_rto_objective_seconds", "drill")] == 600.0
    assert m[_key("drboot_rto_objective_met", "drill")] == 1.0
    assert drill.ended is not None
    assert m[_key("drboot_last_run_timestamp_seconds", "drill")] == drill.ended
    assert m[_key("drboot_last_success_timestamp_seconds", "drill")] == drill.ended
    for step in ("preflight", "wait-synced", "teardown"):
        value = m[_key("drboot_step_duration_seconds", "drill", step=step)]
        assert value == pytest.approx(steps[step], abs=1e-3)
    assert stat.S_IMODE(prom.stat().st_mode) == 0o644  # node-exporter runs as another user
    # no tmp file left; the lock file is not a *.prom (node-exporter ignores it)
    assert sorted(p.name for p in prom.parent.iterdir()) == ["drboot.prom", "drboot.prom.lock"]

    # A failed restore of the same site: its own samples, the drill's kept as they were.
    code, _ = _run(tmp_path, monkeypatch, "restore", site, fail="preflight")
    assert code == ExitCode.STEP_FAILED
    after = _metrics(prom)
    assert after[_key("drboot_last_run_success", "restore")] == 0.0
    assert after[_key("drboot_rto_objective_met", "restore")] == 0.0
    assert _key("drboot_rto_seconds", "restore") not in after  # never got that far
    assert _key("drboot_last_success_timestamp_seconds", "restore") not in after
    assert {k: v for k, v in after.items() if ("kind", "drill") in k[1]} == m

    # A failed drill: success 0, and the last success stays the first drill's.
    code, _ = _run(tmp_path, monkeypatch, "drill", site, fail="teardown")
    assert code == ExitCode.STEP_FAILED
    last = _metrics(prom)
    assert last[_key("drboot_last_run_success", "drill")] == 0.0
    assert last[_key("drboot_last_success_timestamp_seconds", "drill")] == drill.ended
    assert last[_key("drboot_last_run_timestamp_seconds", "drill")] > drill.ended


def test_a_site_without_metrics_textfile_writes_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _ = _run(tmp_path, monkeypatch, "drill", _site(tmp_path))
    assert code == 0
    assert not list(tmp_path.rglob("*.prom"))


def test_an_unwritable_metrics_file_is_a_warning_not_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    site = _site(tmp_path, f"metrics:\n  textfile: {blocker}/drboot.prom\n")
    code, out = _run(tmp_path, monkeypatch, "restore", site)
    assert code == 0, out
    assert "metrics not written" in out
    j = _journal(tmp_path)
    (run,) = j.runs("oslo")
    warned = [(e["step"], e["message"]) for e in j.events(run.id) if e["kind"] == "warning"]
    j.close()
    assert warned == [("metrics", f"metrics not written to {blocker}/drboot.prom: File exists")]
    report = json.loads((tmp_path / "state" / "runs" / run.id / "report.json").read_text())
    assert any(w.startswith("metrics: metrics not written") for w in report["warnings"])


# --------------------------------------------------------------------------- exit 7


@pytest.mark.parametrize(
    ("command", "rto", "expected"),
    [
        ("drill", 61, ExitCode.RTO_MISSED),
        ("drill", 60, ExitCode.OK),  # exactly the objective is met
        ("restore", 61, ExitCode.OK),  # a restore that worked is not failed after the fact
    ],
)
def test_a_drill_that_misses_its_rto_objective_exits_7(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, rto: float, expected: int
) -> None:
    site = _site(tmp_path, objective="1m")
    code, out = _run(tmp_path, monkeypatch, command, site, rto=rto)
    assert code == expected, out
    j = _journal(tmp_path)
    (run,) = j.runs("oslo")
    j.close()
    assert run.status == "ok"  # the run itself succeeded: nothing to resume
    if expected == ExitCode.RTO_MISSED:
        assert "RTO objective was missed: 61s > 60s" in out
        assert "drboot history oslo" in out


def test_exit_7_is_documented_in_the_readme_and_the_help() -> None:
    assert int(ExitCode.RTO_MISSED) == 7
    readme = (REPO / "README.md").read_text()
    assert "| 7 |" in readme and "RTO objective" in readme
    res = CliRunner().invoke(cli, ["--help"])
    assert "7 drill restored everything but missed the RTO objective" in " ".join(
        res.output.split()
    )


# --------------------------------------------------------------------------- webhook


@dataclass
class Hook:
    """A webhook on loopback that answers ``status`` (or never answers) and keeps the bodies."""

    status: int = 204
    hang: bool = False
    bodies: list[dict[str, object]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    port: int = 0


@pytest.fixture
def hook() -> Iterator[Hook]:
    state = Hook()
    release = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            state.bodies.append(json.loads(self.rfile.read(length)))
            state.paths.append(self.path)
            if state.hang:
                release.wait(10)
                return
            self.send_response(state.status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    release.set()
    server.shutdown()
    server.server_close()


def _hook_site(tmp_path: Path, fmt: str, port: int, timeout: str = "10s") -> Path:
    url_file = tmp_path / "webhook-url"
    url_file.write_text(f"http://127.0.0.1:{port}/hooks/{TOKEN}\n")
    url_file.chmod(0o600)
    extra = (
        "notify:\n  webhook:\n"
        f"    url: {{file: {url_file}}}\n    format: {fmt}\n    timeout: {timeout}\n"
    )
    return _site(tmp_path, extra, objective="1m")


def _everything_written(tmp_path: Path) -> str:
    """Every file drboot wrote under the state dir (journal, audit log, reports)."""
    state = tmp_path / "state"
    return "\n".join(
        p.read_bytes().decode("utf-8", "replace") for p in state.rglob("*") if p.is_file()
    )


def test_webhook_json_body_of_a_drill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hook: Hook
) -> None:
    site = _hook_site(tmp_path, "json", hook.port)
    code, out = _run(tmp_path, monkeypatch, "drill", site, rto=75)
    assert code == ExitCode.RTO_MISSED, out
    (body,) = hook.bodies
    assert hook.paths == [f"/hooks/{TOKEN}"]
    run_id = body.pop("run_id")
    assert str(run_id).startswith("oslo-")
    assert body.pop("started_at") and body.pop("ended_at")
    assert body == {
        "schema": "drboot.dev/notify/v1",
        "site": "oslo",
        "kind": "drill",
        "outcome": "rto-missed",
        "succeeded": True,
        "rto_seconds": 75.0,
        "rto_objective_seconds": 60.0,
        "rto_objective_met": False,
        "failed_step": None,
        "error": None,
    }
    assert TOKEN not in out + _everything_written(tmp_path)


def test_webhook_slack_body_of_a_failed_restore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hook: Hook
) -> None:
    site = _hook_site(tmp_path, "slack", hook.port)
    code, _ = _run(tmp_path, monkeypatch, "restore", site, fail="preflight")
    assert code == ExitCode.STEP_FAILED
    (body,) = hook.bodies
    assert list(body) == ["text"]
    text = str(body["text"])
    assert text.startswith("drboot restore of site oslo failed at step preflight")
    assert "preflight refused (DRILLKIT_FAIL)" in text and "RTO not measured" in text


@pytest.mark.parametrize("trouble", ["http-500", "refused", "timeout"])
def test_a_failing_webhook_is_a_warning_and_never_shows_its_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hook: Hook, trouble: str
) -> None:
    port = hook.port
    if trouble == "http-500":
        hook.status = 500
    elif trouble == "timeout":
        hook.hang = True
    else:
        with socket.socket() as s:  # a port nothing listens on: connection refused
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    site = _hook_site(tmp_path, "json", port, timeout="1s")
    code, out = _run(tmp_path, monkeypatch, "restore", site)
    assert code == 0, out  # the restore worked; the webhook does not change that
    expected = {
        "http-500": "webhook (notify.webhook.url) answered HTTP 500",
        "refused": "webhook (notify.webhook.url) unreachable: connection refused",
        "timeout": "webhook (notify.webhook.url) unreachable: no answer within 1s",
    }[trouble]
    assert expected in " ".join(out.split())  # the terminal wraps long lines
    j = _journal(tmp_path)
    (run,) = j.runs("oslo")
    warnings = [e["message"] for e in j.events(run.id) if e["kind"] == "warning"]
    j.close()
    assert len(warnings) == 1 and warnings[0].startswith(expected)
    report = json.loads((tmp_path / "state" / "runs" / run.id / "report.json").read_text())
    assert any(w.startswith(f"notify: {expected}") for w in report["warnings"])
    assert TOKEN not in out + _everything_written(tmp_path)


def test_runs_ending_at_once_keep_each_others_samples(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from bootstrap import metrics
    from bootstrap.history import Outcome

    prom = tmp_path / "drboot.prom"
    sites = [f"site-{i}" for i in range(12)]

    def one(site: str) -> None:
        metrics.write(prom, Outcome(
            run_id=f"{site}-r", site=site, kind="drill", status="ok", started=1.0, ended=2.0,
            rto_seconds=1.0, objective_seconds=60.0, failed_step=None, error=None,
            step_seconds={"a": 0.5},
        ))  # fmt: skip

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(one, sites))
    found = {
        s.labels["site"]
        for f in text_string_to_metric_families(prom.read_text())
        for s in f.samples
        if s.name == "drboot_last_run_success"
    }
    assert found == set(sites)


def test_a_resumed_drill_that_ends_writes_its_metrics_and_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prom = tmp_path / "drboot.prom"
    site = _site(tmp_path, f"metrics:\n  textfile: {prom}\n", objective="1m")
    code, _ = _run(tmp_path, monkeypatch, "drill", site, rto=90, fail="teardown")
    assert code == ExitCode.STEP_FAILED
    assert _metrics(prom)[_key("drboot_last_run_success", "drill")] == 0.0
    j = _journal(tmp_path)
    (run,) = j.runs("oslo")
    j.close()
    monkeypatch.delenv("DRILLKIT_FAIL")
    res = CliRunner().invoke(
        cli,
        ["--state-dir", str(tmp_path / "state"), "resume", run.id],
        obj=Deps(pipelines=drillkit.pipelines),
    )
    assert res.exit_code == ExitCode.RTO_MISSED, res.output  # 90s > 60s, finished by the resume
    m = _metrics(prom)
    assert m[_key("drboot_last_run_success", "drill")] == 1.0
    assert m[_key("drboot_rto_seconds", "drill")] == 90.0
    assert m[_key("drboot_rto_objective_met", "drill")] == 0.0


def test_an_unresolved_webhook_reference_never_stops_a_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bootstrap.engine.context import RunScope, StepContext
    from bootstrap.events import Event, EventBus
    from bootstrap.siteload import load_site_text
    from bootstrap.steps.preflight import check_references

    monkeypatch.delenv("DRBOOT_TEST_UNSET_HOOK", raising=False)
    (tmp_path / "id").write_text("operator key")
    extra = (
        f"ssh: {{private_key_file: {tmp_path / 'id'}}}\n"
        "notify:\n  webhook:\n    url: {env: DRBOOT_TEST_UNSET_HOOK}\n"
    )
    site_file = _site(tmp_path, extra)
    site = load_site_text(site_file.read_text(), str(site_file), base_dir=tmp_path)
    seen: list[Event] = []
    bus = EventBus()
    bus.subscribe(seen.append)
    ctx = StepContext(RunScope("r", site, tmp_path, bus), "preflight-references", 60)
    check_references(ctx)  # the restore goes on
    assert [e.message for e in seen if e.kind == "step.progress"] == [
        "warning: notify.webhook.url: environment variable DRBOOT_TEST_UNSET_HOOK is not set; "
        "the run goes on without it"
    ]

    code, out = _run(tmp_path, monkeypatch, "restore", site_file)
    assert code == 0, out
    j = _journal(tmp_path)
    (run,) = j.runs("oslo")
    warned = [e["message"] for e in j.events(run.id) if e["kind"] == "warning"]
    j.close()
    assert warned == [
        "webhook not sent: notify.webhook.url: environment variable DRBOOT_TEST_UNSET_HOOK "
        "is not set"
    ]
