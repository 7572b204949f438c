"""The HTML report in a real browser: headless Chromium renders it offline, without console errors, plots visible.

Skipped when Chromium is not installed (``.ci/run`` installs Debian's ``chromium``).
"""

import io
import os
import re
import shutil
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.profiles import PROFILES

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")

WIDTH, HEIGHT = 1280, 12000  # tall enough to reach the plots below the report's tables
CONSOLE = re.compile(r"CONSOLE[:(]")  # how Chromium logs a page's console messages and CSP violations to stderr


def chromium(page: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """Open ``page`` in headless Chromium with a fresh profile: screenshot to tmp_path/shot.png, DOM on stdout."""
    profile = tmp_path / f"profile-{page.stem}"
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={profile}", "--hide-scrollbars", "--enable-logging=stderr", "--v=0",
        f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={tmp_path / 'shot.png'}", "--dump-dom", page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=90, cwd=tmp_path)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """A smoke run of every cell, its HTML report, and that report opened in Chromium."""
    tmp = tmp_path_factory.mktemp("browser")
    db = tmp / "results.sqlite"
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        assert main(["run", "--cells", "all", "--profile", "smoke", "--device", "cpu", "--db", str(db),
                     "--out", str(tmp / "run")]) == 0, err.getvalue()
        assert main(["report", "latest", "--format", "html", "--db", str(db), "--out", str(tmp / "html")]) == 0
    page = tmp / "html" / "report.html"
    browser = chromium(page, tmp)
    return page, browser, tmp / "shot.png"


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if CONSOLE.search(line)]


def test_page_renders_without_console_errors(rendered):
    _, browser, shot = rendered
    assert browser.returncode == 0, browser.stderr[-2000:]
    assert shot.is_file()
    assert console_messages(browser.stderr) == []


class Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources, self.headings = [], []
        self._in_h1 = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs).get("src", ""))
        self._in_h1 = tag == "h1"

    def handle_data(self, data):
        if self._in_h1:
            self.headings.append(data)
            self._in_h1 = False


def test_dom_holds_the_report_and_its_embedded_plots(rendered):
    """The DOM Chromium built (not just the file) has the heading and every plot, all as data: URIs."""
    _, browser, _ = rendered
    dom = Images()
    dom.feed(browser.stdout)
    assert dom.headings == ["rnnbench report — run 1"]
    # speed; learning curves, fraction solved and gradient decay per task the smoke run trains
    assert len(dom.sources) == 1 + 3 * len(PROFILES["smoke"].tasks)
    assert all(src.startswith("data:image/png;base64,") for src in dom.sources)


def colour_bands(shot: Path, min_pixels: int = 3, max_gap: int = 80) -> list[tuple[int, int, int]]:
    """Regions of the screenshot drawn in saturated colour, as (top, bottom, width) in pixels.

    Page text is black or grey, so colour comes from the plots' lines and bars, and from a few
    table notes and links; ``width`` (the horizontal spread of the colour) tells a figure
    spanning two panels from a column of coloured text.
    """
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    coloured = (pixels.max(axis=2) - pixels.min(axis=2)) > 80
    bands: list[list[int]] = []
    for row in np.flatnonzero(coloured.sum(axis=1) >= min_pixels):
        if bands and row - bands[-1][1] <= max_gap:
            bands[-1][1] = row
        else:
            bands.append([row, row])
    out = []
    for top, bottom in bands:
        columns = np.flatnonzero(coloured[top:bottom + 1].any(axis=0))
        out.append((int(top), int(bottom), int(columns.max() - columns.min())))
    return out


def plot_regions(shot: Path) -> list[tuple[int, int]]:
    """Coloured regions at least 150 px tall and 500 px wide: figures, not text."""
    return [(top, bottom) for top, bottom, width in colour_bands(shot) if bottom - top >= 150 and width >= 500]


def test_plots_are_visible_in_the_screenshot(rendered):
    """Within the first 12000 px the speed plot and both learning-curve figures show as tall, wide coloured regions."""
    from PIL import Image

    _, _, shot = rendered
    image = Image.open(shot)
    assert image.size == (WIDTH, HEIGHT)
    plots = plot_regions(shot)
    assert len(plots) >= 3, colour_bands(shot)
    grey = np.asarray(image.convert("L")).astype(float)
    for top, bottom in plots:
        assert grey[top:bottom].std() > 20  # drawn, not a flat box


def test_the_checks_catch_a_bad_page(tmp_path):
    """The console check is not vacuous: an external image and a script on a locked-down page are reported."""
    page = tmp_path / "bad.html"
    page.write_text(
        "<!DOCTYPE html><html><head><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'\">"
        "</head><body><h1>bad</h1><img src=\"http://example.invalid/x.png\"><script>console.error('x')</script>"
        "</body></html>"
    )
    browser = chromium(page, tmp_path)
    assert browser.returncode == 0
    messages = console_messages(browser.stderr)
    assert any("example.invalid" in m for m in messages) and any("inline script" in m for m in messages)
    assert plot_regions(tmp_path / "shot.png") == []
