"""The renderers: every line names its unit; JSON lines parse; the live view shows the steps."""

from __future__ import annotations

import io
import json

from bootstrap.events import Event
from bootstrap.render.jsonlines import JsonLinesRenderer
from bootstrap.render.terminal import TerminalRenderer

EVENTS = [
    Event("run.started", "r1", "restore started", data={"steps": ["provision", "connect"]}),
    Event("step.started", "r1", "Create the hosts", step="provision"),
    Event("step.change", "r1", "create 1 host(s): server-1", step="provision", target="lab"),
    Event("step.done", "r1", "created", step="provision"),
    Event("step.started", "r1", "Reach every host", step="connect"),
    Event("step.failed", "r1", "host key differs", step="connect", target="server-1"),
    Event("run.finished", "r1", "failed", data={"exit_code": 4, "seconds": 1.5}),
]


def test_plain_terminal_lines_name_step_and_target() -> None:
    out = io.StringIO()
    render = TerminalRenderer(out, live=False)
    for ev in EVENTS:
        render(ev)
    text = out.getvalue()
    assert "step provision on lab: create 1 host(s): server-1" in text
    assert "step connect on server-1: host key differs" in text
    assert "run r1 failed in 1.5s" in text
    assert "\x1b[" not in text  # no colour codes when not a terminal


def test_live_view_lists_every_step_with_its_state() -> None:
    out = io.StringIO()
    render = TerminalRenderer(out, live=True)
    for ev in EVENTS:
        render(ev)
    assert [r.status for r in render.rows.values()] == ["done", "failed"]
    text = out.getvalue()
    assert "provision" in text and "connect" in text


def test_json_lines_are_one_object_per_event() -> None:
    out = io.StringIO()
    render = JsonLinesRenderer(out)
    for ev in EVENTS:
        render(ev)
    lines = out.getvalue().splitlines()
    assert len(lines) == len(EVENTS)
    docs = [json.loads(line) for line in lines]
    assert [d["kind"] for d in docs] == [e.kind for e in EVENTS]
    assert docs[5]["target"] == "server-1"
