"""The explorers in a real browser: JupyterLab on 127.0.0.1 with a token, driven by Chromium.

The other widget tests drive explorers through ``.update`` and ``.state``;
this one checks what a reader sees. One JupyterLab server and one kernel run
a notebook holding every numbered notebook's explorer cell, copied from the
notebook itself, each after a small setup that makes the variables the cell
uses. For each explorer the test checks that its caption shows and its labels
are whole, moves one control as a reader would (a slider with the keyboard, a
toggle and the regenerate button with the mouse), waits for the redraw (the
figure's image, or the explorer's text, changes) and saves a screenshot of the
cell under the test's temporary folder.

Needs Debian's Chromium at /usr/bin/chromium and Python Playwright; skipped
without them, except under CI (the ``CI`` environment variable set), where it
fails instead. ``test_every_explorer_cell_is_covered`` needs neither: it
fails when a notebook gains an explorer this file does not exercise.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

SETUP = """\
import pandas as pd
import vlmscope
from vlmscope.datasets.synthetic import World
from vlmscope.maps import record_generation
from vlmscope.widgets import *
vlm = vlmscope.load("organism")
"""


@dataclass(frozen=True)
class Case:
    """How to make one notebook's explorer cell runnable, and what to do with it."""

    setup: str  # defines the variables the notebook's explorer cell uses (small settings)
    move: tuple  # ("key", slider index, key) or ("click", toggle label, then button label)
    redraws: str  # "image": the figure's <img> changes; "text": the explorer's last HTML text


CASES = {
    "01": Case("fractions = pd.concat([record_generation(vlm, World().scene(seed=s).image, "
               "max_new_tokens=6, maps='none').fractions().assign(image_id=i)\n"
               "                       for i, s in enumerate((3, 4))], ignore_index=True)",
               ("key", 1, "ArrowRight"), "image"),  # the token slider
    "02": Case("scene = World().scene(seed=3)\n"
               "rec = record_generation(vlm, scene.image, max_new_tokens=6, maps='heads')",
               ("key", 0, "ArrowLeft"), "image"),  # the layer slider
    "03": Case("scenes, max_new_tokens = [World().scene(seed=3)], 16",
               ("click", "image → question", "regenerate"), "text"),
    "04": Case("from vlmscope import compression as C\n"
               "scenes = [World().scene(seed=s) for s in (1, 2)]\n"
               "cfg, k_main = C.CompressionConfig(describe_tokens=12, max_new_tokens=4), 0.05",
               ("key", 1, "ArrowRight"), "text"),  # the K slider
    "05": Case("from vlmscope.findings import heatmaps as finding\n"
               "from vlmscope.heatmaps import HeatmapConfig\n"
               "config = HeatmapConfig.preset('reference', iterations=2, ig_iter=3, size=16)\n"
               "ex = finding.explain(vlm, 0, 'color', config)",
               ("key", 2, "ArrowLeft"), "image"),  # the iteration slider (L1, L3, iteration)
    "08": Case("from vlmscope.findings import lens as finding\n"
               "ex = finding.example(vlm, World().scene(seed=1))",
               ("key", 0, "ArrowLeft"), "image"),  # the layer slider
}

CALL = re.compile(r"^\s*(\w+_explorer)\(", re.M)


def explorer_cells() -> dict[str, str]:
    """Each numbered notebook's (00-09, 10a...) explorer cell: the code cell calling a ``*_explorer``."""
    found = {}
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]*_*.ipynb")):
        cells = [c.source for c in nbformat.read(path, as_version=4).cells
                 if c.cell_type == "code" and CALL.search(c.source)]
        if cells:
            assert len(cells) == 1, f"{path.name}: one explorer cell expected, found {len(cells)}"
            found[path.name.split("_")[0]] = cells[0]
    return found


def test_every_explorer_cell_is_covered():
    from vlmscope import widgets

    cells = explorer_cells()
    assert set(cells) == set(CASES), "a notebook's explorer cell has no browser case (or a case " \
                                     "has no notebook cell): update CASES"
    called = {m for source in cells.values() for m in CALL.findall(source)}
    offered = {n for n in widgets.__all__ if n.endswith("_explorer")}
    assert called == offered  # every explorer the library offers is shown by some notebook


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _needs(what: str, ok: bool) -> None:
    if not ok:  # CI must check the explorers in a real browser
        (pytest.fail if os.environ.get("CI") else pytest.skip)(what)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    _needs("needs Chromium at /usr/bin/chromium (apt-get install chromium)", CHROMIUM.exists())
    try:
        import playwright  # noqa: F401
    except ImportError:
        _needs("needs the playwright Python package", False)
    from vlmscope.models import organisms

    if "organism" not in organisms():
        pytest.fail("the bundled organism is missing from data/organism")
    root = tmp_path_factory.mktemp("lab")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SETUP)]
    where = {}
    for name, source in explorer_cells().items():
        nb.cells.append(nbformat.v4.new_code_cell(CASES[name].setup))
        where[name] = len(nb.cells)
        nb.cells.append(nbformat.v4.new_code_cell(source))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "explore.ipynb")
    # every cell attached to the page (not only those in view), so each explorer can be found
    settings = root / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    # and the notebook's own kernel started without asking: a fresh machine otherwise shows a
    # "Select Kernel" dialog over the page, which takes the keyboard focus from the explorers
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps(
        {"windowingMode": "none", "autoStartDefaultKernel": True}))
    news = root / "settings" / "@jupyterlab" / "apputils-extension"  # no news pop-up over cells
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    token, port = secrets.token_hex(16), _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={root}", f"--LabApp.user_settings_dir={root / 'settings'}",
         f"--LabApp.workspaces_dir={root / 'workspaces'}", "--LabApp.expose_app_in_browser=True",
         "--LabApp.news_url=", "--ServerApp.open_browser=False", "--allow-root"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
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
        yield base, token, where, root
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def notebook(lab):
    """The explorer notebook open in Chromium with every cell run: (page, cell index by notebook)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    base, token, where, root = lab
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = chromium.new_page(viewport={"width": 1400, "height": 1000})
            try:
                page.goto(f"{base}/lab/tree/explore.ipynb?token={token}", timeout=120_000)
                page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=120_000)
                page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]',
                                       state="attached", timeout=180_000)  # the kernel is up
                # Run the cells only once the notebook's session holds a connected, idle kernel:
                # a run asked for earlier is lost, or (on a fresh machine) opens a kernel dialog.
                page.wait_for_function(
                    "() => { const w = window.jupyterapp?.shell?.currentWidget; "
                    "const k = w?.sessionContext?.session?.kernel; return !!(w && "
                    "w.sessionContext.isReady && k && k.connectionStatus === 'connected' && "
                    "k.status === 'idle'); }", timeout=180_000)
                page.evaluate("() => { window.jupyterapp.commands.execute("  # not awaited
                              "'notebook:run-all-cells'); }")
                try:
                    page.wait_for_function(
                        "() => /\\[(\\*|\\d+)\\]/.test(document.querySelector("
                        "'.jp-CodeCell .jp-InputPrompt')?.innerText || '')", timeout=30_000)
                except PlaywrightTimeout:
                    pytest.fail("the notebook's cells never started running")
                n = max(where.values()) + 1
                page.wait_for_function(  # every cell has run (each prompt numbered), or one failed
                    "([n, err]) => { const p = [...document.querySelectorAll("
                    "'.jp-CodeCell .jp-InputPrompt')]; return (p.length === n && p.every(e => "
                    "/\\[\\d+\\]/.test(e.innerText))) || !!document.querySelector(err); }",
                    arg=[n, ERROR], timeout=300_000)
                failed = page.locator(ERROR)
                assert failed.count() == 0, failed.first.inner_text()
                dialog = page.locator(".jp-Dialog")  # nothing may sit over the explorers
                assert dialog.count() == 0, f"a dialog covers the page: {dialog.first.inner_text()}"
            except BaseException:  # what the page showed when it failed, for the reader of the log
                page.screenshot(path=str(root / "failed.png"), full_page=True)
                print(f"the page when it failed: {root / 'failed.png'}")
                raise
            yield page, where
        finally:
            chromium.close()


ERROR = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] .ansi-red-fg"
REDRAWN = {  # what a redraw changes, read inside one cell's output area
    "image": "o => { const i = o.querySelector('img'); return i ? i.src : null; }",
    "text": "o => { const t = [...o.querySelectorAll('.widget-html-content')].pop(); "
            "return t && !t.innerText.includes('press regenerate') ? t.innerText : null; }",
}  # (the knockout's text reads null while it waits for regenerate: not yet a redraw)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.browser
@pytest.mark.slow
def test_explorer_renders_and_redraws_in_jupyterlab(notebook, name, tmp_path):
    page, where = notebook
    case = CASES[name]
    cell = page.locator(".jp-Notebook .jp-CodeCell").nth(where[name])
    out = cell.locator(".jp-OutputArea").first
    cell.scroll_into_view_if_needed()
    caption = out.locator(".widget-html-content", has_text="Try:").first
    caption.wait_for(timeout=60_000)  # the explorer rendered, caption first
    out.locator("img" if case.redraws == "image" else ".widget-html-content").first.wait_for(
        timeout=60_000)
    cut = out.locator(".widget-label").evaluate_all(  # descriptions shown whole, not cut short
        "ls => ls.filter(l => l.offsetWidth && l.scrollWidth > l.clientWidth + 1)"
        ".map(l => l.innerText)")
    assert cut == [], f"{name}: labels cut short: {cut}"
    widths = out.locator(".widget-slider .slider-container").evaluate_all(
        "ss => ss.map(s => s.getBoundingClientRect().width)")  # the track, past the label
    assert len(widths) == out.locator(".widget-slider").count()
    assert all(w >= 250 for w in widths), f"{name}: slider tracks {widths} px wide"
    read = out.element_handle()
    before = page.evaluate(REDRAWN[case.redraws], read)
    assert before
    kind, what, then = case.move
    if kind == "key":
        handles = out.locator(".widget-slider .noUi-handle, .widget-slider .ui-slider-handle")
        readout = out.locator(".widget-readout").nth(what)
        first = readout.inner_text()
        handles.nth(what).focus()
        page.keyboard.press(then)
    else:
        out.locator(".widget-toggle-button", has_text=what).click()
        out.locator("button", has_text=then).click()
    page.wait_for_function(f"([o, old]) => {{ const now = ({REDRAWN[case.redraws]})(o); "
                           "return now !== null && now !== old; }",
                           arg=[read, before], timeout=60_000)
    if kind == "key":
        assert readout.inner_text() != first  # the slider moved
    assert page.evaluate(REDRAWN[case.redraws], read) != before  # and the explorer redrew
    shot = tmp_path / f"{name}_explorer.png"
    cell.screenshot(path=str(shot))
    assert shot.stat().st_size > 1000
