"""The HTML report in a real browser: Debian's Chromium, headless, takes a screenshot.

The page is opened from disk (file://) with every network feature Chromium has switched off;
the page's own Content-Security-Policy forbids loading anything but its embedded picture. The
screenshot must exist, not be blank, and show the timeline: the amber of the applications
still waiting is drawn nowhere else on the page, so finding it in the screenshot proves the
embedded PNG was decoded and painted by the browser.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from bootstrap.report import model, timeline, write
from tests import reportrows as rows

pytestmark = pytest.mark.integration

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--window-size=1200,2000",
]  # fmt: skip


def _chromium() -> str:
    found = shutil.which("chromium")
    assert found, "Debian's chromium package is missing: run bootstrap/lab/scripts/setup-lab.sh"
    return found


def _near(px: tuple[int, ...], hex_colour: str, tolerance: int = 12) -> bool:
    want = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return all(abs(c - w) <= tolerance for c, w in zip(px[:3], want, strict=True))


def screenshot(page: Path, workdir: Path) -> Path:
    """Open ``page`` (file://) in headless Chromium; returns its screenshot (checked non-empty).
    ``workdir`` holds the throw-away profile and HOME."""
    workdir.mkdir(parents=True, exist_ok=True)
    shot = workdir / "shot.png"
    proc = subprocess.run(
        [_chromium(), *FLAGS, f"--user-data-dir={workdir / 'profile'}", f"--screenshot={shot}",
         page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "HOME": str(workdir)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.is_file() and shot.stat().st_size > 0, "Chromium wrote no screenshot"
    return shot


def test_the_html_report_opens_in_headless_chromium(tmp_path: Path) -> None:
    run, steps, events = rows.drill_rows("SHA256:public-fp")
    ctx = model.Context(3600.0, "lab", "argocd", rows.NOW, writing_step="report")
    (page,) = write.write(model.build(run, steps, events, ctx), tmp_path / "out", ["html"])
    shot = screenshot(page, tmp_path / "browser")
    assert shot.stat().st_size > 10_000, "a screenshot with something in it"
    with Image.open(shot) as img:
        rgb = img.convert("RGB")
        assert rgb.size == (1200, 2000)
        colours = rgb.getcolors(maxcolors=1 << 22) or []
    assert len(colours) > 50, "not a blank page"
    assert any(_near(px, timeline.WAITING) for _, px in colours), "the timeline was painted"
    assert any(_near(px, timeline.READY) for _, px in colours)
