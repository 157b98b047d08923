"""The widgets in a real browser: JupyterLab on 127.0.0.1 with a token, driven by Chromium.

The other widget tests drive explorers through ``.update`` and ``.state``;
this one checks what a reader sees: the explorer renders in JupyterLab, and
moving its slider with the keyboard redraws the figure. Needs Debian's
Chromium at /usr/bin/chromium and Python Playwright; skipped without them,
except under CI (the ``CI`` environment variable set), where it fails instead.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    in_ci = bool(os.environ.get("CI"))  # CI must check the explorers in a real browser
    if not CHROMIUM.exists():
        (pytest.fail if in_ci else pytest.skip)(
            "needs Chromium at /usr/bin/chromium (apt-get install chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        (pytest.fail if in_ci else pytest.skip)("needs the playwright Python package")
    from vlmscope.models import organisms

    if "organism" not in organisms():
        pytest.fail("the bundled organism is missing from data/organism")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import vlmscope\n"
        "from vlmscope.datasets.synthetic import World\n"
        "from vlmscope.maps import record_generation\n"
        "from vlmscope.widgets import fractions_explorer\n"
        "vlm = vlmscope.load('organism')\n"
        "rec = record_generation(vlm, World().scene(seed=3).image, max_new_tokens=6, maps='none')\n"
        "ex = fractions_explorer(rec.fractions())\n"
        "ex")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "explore.ipynb")
    token, port = secrets.token_hex(16), _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={tmp_path}", "--LabApp.news_url=", "--ServerApp.open_browser=False", "--allow-root"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    json.load(r)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not start")
        with pytest.raises(urllib.error.HTTPError):  # the token is required
            urllib.request.urlopen(f"{base}/api/contents", timeout=5)
        yield base, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_explorer_renders_and_redraws_in_jupyterlab(lab):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    base, token = lab
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(f"{base}/lab/tree/explore.ipynb?token={token}", timeout=120_000)
            page.wait_for_selector(".jp-Notebook", timeout=120_000)
            page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]',
                                   state="attached", timeout=120_000)  # the kernel is up
            for _ in range(6):  # a key press before the editor has focus is lost: retry
                page.locator(".jp-Cell .jp-InputArea-editor").first.click()
                page.keyboard.press("Shift+Enter")
                try:
                    page.wait_for_function(
                        "() => /\\[(\\*|\\d+)\\]/.test("
                        "document.querySelector('.jp-InputPrompt')?.innerText || '')",
                        timeout=15_000)
                    break
                except PlaywrightTimeout:
                    continue
            else:
                pytest.fail("the cell never started running")
            slider = page.locator(".widget-slider").nth(1)  # image, then token
            slider.wait_for(timeout=180_000)
            image = page.locator(".jp-OutputArea img").first
            image.wait_for(timeout=120_000)
            before = image.get_attribute("src")
            readout = page.locator(".widget-readout").nth(1)
            first = readout.inner_text()
            page.locator(".widget-slider .ui-slider-handle, .widget-slider .noUi-handle").nth(1).focus()
            page.keyboard.press("ArrowRight")
            page.wait_for_function(
                "([sel, old]) => { const i = document.querySelector(sel); return i && i.src !== old; }",
                arg=[".jp-OutputArea img", before], timeout=60_000)
            assert readout.inner_text() != first  # the token slider moved
            assert image.get_attribute("src") != before  # and the figure was redrawn
        finally:
            browser.close()
