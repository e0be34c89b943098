"""The report as JUnit XML: so a scheduled drill shows up in CI like a test run.

Why it exists: CI systems (GitLab, Jenkins, GitHub test reporters) read JUnit XML. Each step is
a test case (failed steps carry a ``<failure>``, steps that never ran are ``<skipped>``), and
the RTO is one more case that fails when the objective was missed or not reached.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any


def render(report: dict[str, Any]) -> str:
    classname = f"drboot.{report['pipeline']}.{report['site']}"
    suite = ET.Element("testsuite", name=f"drboot {report['pipeline']} {report['site']}")
    suite.set("timestamp", str(report["started_at"]))
    failures = skipped = 0
    total = 0.0
    for s in report["steps"]:
        case = ET.SubElement(suite, "testcase", classname=classname, name=s["id"])
        case.set("time", f"{s['seconds'] or 0:.3f}")
        total += s["seconds"] or 0.0
        if s["status"] == "failed":
            failures += 1
            fail = ET.SubElement(case, "failure", message=(s["error"] or "failed")[:500])
            fail.text = s["error"] or ""
        elif s["status"] in ("pending", "skipped"):
            skipped += 1
            ET.SubElement(case, "skipped", message=f"step {s['status']}")
        elif s["status"] == "running":
            ET.SubElement(case, "system-out").text = "running while the report was written"
        elif s["summary"]:
            ET.SubElement(case, "system-out").text = s["summary"]
    rto = report["rto"]
    case = ET.SubElement(suite, "testcase", classname=classname, name="rto")
    case.set("time", f"{rto['seconds'] or 0:.3f}")
    if not rto["met"]:
        failures += 1
        if rto["seconds"] is None:
            msg = "RTO not measured: the apps never all became Synced+Healthy"
        else:
            msg = f"RTO {rto['seconds']:.0f}s exceeds the objective {rto['objective_seconds']:.0f}s"
        ET.SubElement(case, "failure", message=msg).text = msg
    if report["warnings"]:
        ET.SubElement(suite, "system-out").text = "\n".join(report["warnings"])
    suite.set("tests", str(len(report["steps"]) + 1))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", str(skipped))
    suite.set("time", f"{total:.3f}")
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
