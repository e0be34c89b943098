"""The report's contents and its four formats, from journal rows.

A resumed run's RTO (wall time from the first start, and the time drboot was running), the
config repo and the commit that became synced, escrow fingerprints, versions, overrides with
their reasons, a drill's teardown; the HTML page is self-contained and its timeline PNG
really draws the steps and each app; the JUnit file validates against the published JUnit
schema (tests/fixtures/junit/junit-10.xsd); no format carries secret material; an old
journal still renders in every format.
"""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import xmlschema
from click.testing import CliRunner
from PIL import Image

from bootstrap import sealing
from bootstrap.cli import Deps, cli
from bootstrap.engine.journal import Journal
from bootstrap.escrow.kit import SealingKey
from bootstrap.report import model, timeline, write
from bootstrap.steps.finish import from_journal
from tests import reportrows as rows
from tests.leaks import assert_no_leak, rsa_forms, text_forms

XSD = Path(__file__).resolve().parent.parent / "fixtures" / "junit" / "junit-10.xsd"
STANDINS = ("k3s: LAB STAND-IN (kube-apiserver v1.20.2 behind a k3s-shaped binary)",)


def _ctx(objective: float = 3600.0) -> model.Context:
    return model.Context(objective, "lab", "argocd", rows.NOW, writing_step="report",
                         standins=STANDINS)  # fmt: skip


def _drill(fingerprint: str = "SHA256:public-fp", **kw: Any) -> dict[str, Any]:
    run, steps, events = rows.drill_rows(fingerprint, **kw)
    return model.build(run, steps, events, _ctx())


# ------------------------------------------------------------------------------- contents


def test_a_resumed_run_reports_wall_and_active_time_through_the_real_journal(
    tmp_path: Path,
) -> None:
    """Killed after 300 s, resumed 600 s later, ready 250 s after that: the objective is
    checked against the 1,150 s of wall time; drboot ran 550 s of it over two attempts."""
    j = Journal(tmp_path / "journal.sqlite")
    rid = "site-a-20260101T000000-rsmd"
    j.create_run(rid, "site-a", "restore", ["wait-synced", "report"], {}, "digest")
    t0 = j.run(rid).created  # type: ignore[union-attr]
    j.add_event(rid, t0 + 0.01, "run.started", None, None, "restore started", {})
    j.add_event(rid, t0 + 300, "step.progress", "wait-synced", None, "3/5 ready", {})
    j.add_event(rid, t0 + 900, "run.started", None, None, "restore started", {})
    n = j.start_attempt(rid, "wait-synced")
    j.end_attempt(rid, "wait-synced", n, "ok", None)
    j.finish_step(rid, "wait-synced", "done", {"apps": {}, "ready_at": t0 + 1150}, "ok")
    j.add_event(rid, t0 + 1160, "run.finished", None, None, "ok", {"exit_code": 0})
    j.finish_run(rid, "ok", 0)
    j.close()
    ctx = model.Context(1000.0, "static", "argocd", t0 + 1200)
    rto = from_journal(tmp_path / "journal.sqlite", rid, ctx)["rto"]
    assert rto["wall_seconds"] == rto["seconds"] == pytest.approx(1150, abs=0.01)
    assert rto["active_seconds"] == pytest.approx(550, abs=0.01)
    assert rto["attempts"] == 2 and rto["checked_against"] == "wall"
    assert rto["met"] is False  # 1,150 s of outage against 1,000 s, whatever drboot's share


def test_a_run_that_never_stopped_was_active_all_along() -> None:
    run, steps, events = rows.drill_rows("SHA256:x")
    events = [e for e in events if e["ts"] < rows.KILLED_AT]  # one process, still running
    spans = model.attempts(run, events, rows.NOW)
    assert spans == [(rows.T0, rows.NOW)]
    rto = model.rto(run, steps, 3600, spans)
    assert rto["active_seconds"] == rto["wall_seconds"] == pytest.approx(1150)


def test_the_report_says_what_was_restored_from_what() -> None:
    r = _drill()
    assert r["config_repo"] == {
        "url": rows.REPO, "revision": "main", "path": "clusters/oslo",
        "preflight_commit": rows.COMMIT, "synced_commit": rows.COMMIT,
        "synced_commit_verified": True,
    }  # fmt: skip
    keys = r["escrow_keys"]
    assert keys["escrow_fingerprints"] == ["SHA256:public-fp"]
    assert [k["fingerprint"] for k in keys["restored"]] == ["SHA256:public-fp"]
    assert keys["serving_fingerprint"] == "SHA256:public-fp"
    assert keys["renewal_due"] is True and keys["renewal_period_days"] == 30.0
    assert keys["newest_age_days"] > 30
    assert r["versions"] == {
        "k3s": {"version": "v1.30.6+k3s1", "checked_on_hosts": True},
        "reconciler": {"name": "argocd", "version": "v3.5.1"},
        "sealed_secrets": "0.36.6",
    }
    assert r["overrides"] == [
        {"option": "--accept-slow-disk", "reason": "lab: throttled on purpose",
         "used_on": ["server-1"]},
        {"option": "trust on first use", "reason": "enabled by --trust-on-first-use",
         "used_on": ["server-1 (SHA256:hostkeyfp)"]},
    ]  # fmt: skip
    assert r["teardown"] == {"status": "done", "destroyed": ["server-1", "agent-1"],
                             "changed": {}, "error": None}  # fmt: skip
    assert any("back up the escrow again" in w for w in r["warnings"])
    assert r["hosts"]["server-1"]["disk"]["p99_ms"] == 14.2
    md = write.render(r, "markdown")
    for text in (rows.REPO, f"commit that became synced: `{rows.COMMIT}` (escrow-verified)",
                 "restored `SHA256:public-fp`", "k3s v1.30.6+k3s1 (checked on the hosts)",
                 "argocd v3.5.1", "Sealed Secrets 0.36.6",
                 "--accept-slow-disk: lab: throttled on purpose; used on server-1",
                 "destroyed: server-1, agent-1", "drboot was running 9m10s",
                 "checked against the wall time"):  # fmt: skip
        assert text in md, text


def test_a_young_key_is_not_due_for_renewal_and_a_restore_has_no_teardown() -> None:
    run, steps, events = rows.drill_rows("SHA256:x", not_before="2026-09-10T00:00:00+00:00")
    steps = [s for s in steps if s.step_id != "teardown"]
    r = model.build(run, steps, events, _ctx())
    assert r["escrow_keys"]["renewal_due"] is False
    assert r["teardown"] is None
    assert "## Teardown" not in write.render(r, "markdown")


# ---------------------------------------------------------------------------- HTML + PNG


class _Resources(HTMLParser):
    """Every tag and every attribute that could load something."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.loads: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "poster", "action"):
                self.loads.append((tag, name, value or ""))


def _png_of(page: str) -> Image.Image:
    found = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(found) == 1, "one embedded timeline picture"
    return Image.open(io.BytesIO(base64.b64decode(found[0]))).convert("RGB")


def _has_colour(img: Image.Image, hex_colour: str, tolerance: int = 8) -> bool:
    want = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return any(
        all(abs(c - w) <= tolerance for c, w in zip(px, want, strict=True))
        for _, px in img.getcolors(maxcolors=1 << 20) or []
    )


def test_the_html_page_is_self_contained_and_its_timeline_draws_steps_and_apps() -> None:
    page = write.render(_drill(), "html")
    found = _Resources()
    found.feed(page)
    assert not {"script", "link", "iframe", "object", "embed"} & set(found.tags)
    assert [(t, n) for t, n, _ in found.loads] == [("img", "src")]
    assert found.loads[0][2].startswith("data:image/png;base64,")
    assert "url(" not in page and "@import" not in page
    assert "default-src 'none'; img-src data:" in page  # nothing else may load, even by mistake

    img = _png_of(page)
    assert img.width >= 800 and img.height >= 500
    assert len(img.getcolors(maxcolors=1 << 20) or []) > 20  # not a blank canvas
    assert _has_colour(img, timeline.STATUS_COLOURS["done"]), "step bars"
    assert _has_colour(img, timeline.WAITING), "apps waiting inside the wait"
    assert _has_colour(img, timeline.READY), "apps Synced+Healthy"
    assert _has_colour(img, timeline.IDLE, tolerance=2), "the time drboot was not running"
    for text in ("19m10s of wall time", "9m10s over 2 attempt(s)", rows.COMMIT,
                 "SHA256:public-fp", "v1.30.6+k3s1", "LAB STAND-IN", "Destroyed: server-1"):
        assert text in page, text  # fmt: skip


def test_without_apps_the_picture_has_no_app_panel_and_without_steps_no_picture() -> None:
    run, steps, events = rows.drill_rows("SHA256:x")
    no_wait = [s for s in steps if s.step_id not in ("wait-synced", "teardown", "report")]
    r = model.build(run, no_wait, events[:1], _ctx())
    img = _png_of(write.render(r, "html"))
    assert not _has_colour(img, timeline.WAITING)
    assert _has_colour(img, timeline.STATUS_COLOURS["done"])
    pending = [s.__class__(**{**s.__dict__, "started": None, "ended": None, "status": "pending"})
               for s in no_wait]  # fmt: skip
    empty = model.build(run, pending, [], _ctx())
    assert timeline.render_png(empty) is None
    assert "nothing to draw" in write.render(empty, "html")


def test_journal_text_is_escaped_in_the_page() -> None:
    run, steps, events = rows.drill_rows("SHA256:x")
    bad = steps[3].__class__(**{**steps[3].__dict__, "status": "failed",
                                "error": '<script>alert("x")</script> & <img src=x>'})
    r = model.build(run, [*steps[:3], bad], events, _ctx())
    page = write.render(r, "html")
    assert "<script>" not in page and "<img src=x>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;img src=x&gt;" in page


# --------------------------------------------------------------------------------- JUnit


def test_junit_validates_against_the_published_junit_schema() -> None:
    schema = xmlschema.XMLSchema(str(XSD))
    passed = _drill()
    run, steps, events = rows.drill_rows("SHA256:x")
    failed_row = steps[12].__class__(**{**steps[12].__dict__, "status": "failed",
                                        "error": "gave up after 1800s", "outputs": {}})
    failed = model.build(run, [*steps[:12], failed_row], events, _ctx())
    for report in (passed, failed):
        xml = write.render(report, "junit")
        schema.validate(xml)  # raises with the place of the first problem
    assert "<failure" in write.render(failed, "junit")
    # the validator can say no: a testcase without its required name
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        schema.validate('<testsuites><testsuite tests="1"><testcase/></testsuite></testsuites>')


# ---------------------------------------------------------------------------- no secrets


def test_no_format_carries_secret_material() -> None:
    """The report of a run whose key and token are real: every form of the private key and
    of the cluster token is absent from all four files (the public fingerprint is there)."""
    key, cert = sealing.generate_key(bits=2048)
    sk = SealingKey.from_pem("sealed-secrets-keyabcde", sealing.private_key_pem(key), cert)
    token = "K10-report-token-0123456789abcdef::server:cafebabe"
    r = _drill(sk.fingerprint, not_before=sk.not_before.isoformat())
    files = {fmt: write.render(r, fmt).encode() for fmt in write.FORMATS}
    assert all(sk.fingerprint.encode() in files[f] for f in ("json", "markdown", "html"))
    forms = rsa_forms("sealing key", key) + text_forms("k3s token", token)
    assert_no_leak(forms, *files.values())


# ------------------------------------------------------------------------ old journals


def test_an_old_journal_renders_in_every_format() -> None:
    """Rows as drboot 0.1.0 journalled them: no ready times, no versions, no run events."""
    run, steps, _ = rows.drill_rows("SHA256:x")
    old: dict[str, dict[str, Any]] = {
        "install-k3s": {"changed": {"server-1": 7}},
        "restore-sealing-keys": {"restored": [], "foreign_keys": [], "warning": None},
        "install-sealed-secrets": {},
        "wait-synced": {"apps": {"a": {"namespace": "argocd", "sync": "Synced",
                                       "health": "Healthy", "ready": True, "reason": ""}},
                        "ignored": [], "seconds": 41.2, "ready_at": rows.READY_AT,
                        "stable_for": 5.0},
    }  # fmt: skip
    steps = [s.__class__(**{**s.__dict__, "outputs": old.get(s.step_id, s.outputs)})
             for s in steps]  # fmt: skip
    r = model.build(run, steps, [], _ctx())
    assert r["versions"]["k3s"] is None and r["versions"]["sealed_secrets"] is None
    assert r["rto"]["attempts"] == 1 and r["timeline"]["apps"] == [
        {"name": "a", "ready_since": None}
    ]
    for fmt in write.FORMATS:
        assert write.render(r, fmt)
    assert json.loads(write.render(r, "json")) == r


# ---------------------------------------------------------------------------------- CLI


def test_drboot_report_format_writes_the_chosen_formats(tmp_path: Path) -> None:
    from tests.unit.test_cli_report import RUN_ID, _finished_run

    state = tmp_path / "state"
    _finished_run(state)
    out = tmp_path / "out"
    res = CliRunner().invoke(
        cli,
        ["--state-dir", str(state), "-o", "json", "report", RUN_ID, "--directory", str(out),
         "--format", "html", "--format", "junit"],
        obj=Deps(),
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["files"] == [str(out / "report.html"),
                                               str(out / "report.junit.xml")]  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.junit.xml"]
    xmlschema.XMLSchema(str(XSD)).validate(str(out / "report.junit.xml"))
    res = CliRunner().invoke(
        cli, ["--state-dir", str(state), "report", RUN_ID, "--format", "pdf"], obj=Deps()
    )
    assert res.exit_code == 2 and "pdf" in res.output


def test_a_key_the_controller_renewed_is_a_warning_in_every_format() -> None:
    from bootstrap.outputs import SealingKeyVerified

    run, steps, events = rows.drill_rows("SHA256:old")
    warning = ("the controller made a new key SHA256:new (Secret kube-system/sealed-secrets-"
               "keyzz) as it started: back up the escrow again (`drboot escrow backup`)")
    verified = SealingKeyVerified("SHA256:new", "lab", renewed_by_controller=True,
                                  warning=warning).to_json()  # fmt: skip
    steps = [s.__class__(**{**s.__dict__, "outputs": verified})
             if s.step_id == "verify-sealing-key" else s for s in steps]  # fmt: skip
    r = model.build(run, steps, events, _ctx())
    assert f"verify-sealing-key: {warning}" in r["warnings"]
    assert r["escrow_keys"]["renewed_by_controller"] is True
    assert r["escrow_keys"]["serving_fingerprint"] == "SHA256:new"
    for fmt in ("markdown", "junit", "html"):
        assert "the controller made a new key SHA256:new" in write.render(r, fmt), fmt


def test_many_apps_with_long_names_keep_the_picture_readable() -> None:
    """50 apps: the first 40 are drawn (the title says so), long names are shortened."""
    r = _drill()
    apps = [{"name": f"argocd/a-very-long-application-name-number-{i:02d}",
             "ready_since": rows.WAIT_STARTED + i} for i in range(50)]  # fmt: skip
    r["timeline"]["apps"] = apps
    assert timeline._label(apps[0]["name"]) == "argocd/a-ver…ame-number-00"
    img = Image.open(io.BytesIO(timeline.render_png(r) or b"")).convert("RGB")
    assert img.height < 100 * (0.35 + 0.28 * 15 + 0.5 + 0.24 * 41 + 0.55)  # 40 rows, not 50
    assert _has_colour(img, timeline.READY)
