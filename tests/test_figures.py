"""Every figure the notebooks draw is legible: text size, tick labels, words on patches, legends.

A module-scoped fixture runs the code of every numbered notebook (its .py
form, cell by cell, in this process) on the smallest organism with the
notebooks' quick settings, and records every figure a ``plots`` function
returns, the explorers' included. Each figure is then drawn and checked:

- every drawn text is at least ``MIN_PT`` points at the saved size, and
  still at least that when a figure wider than ``DISPLAY_IN`` inches is shown
  scaled to that width (a notebook cell's width);
- no two drawn tick labels of one axis overlap;
- no two drawn texts inside one Axes overlap (words on patches, bar labels);
- no legend shows a raw column name (a word with an underscore).

The checker is written here from matplotlib's text extents alone (it shares
no code with ``plots``), and the first tests show it flags bad figures.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pytest
from matplotlib.text import Text

ROOT = Path(__file__).resolve().parents[1]
MIN_PT = 8.0
DISPLAY_IN = 8.5


# ------------------------------------------------------------------------------------- checker
def _drawn_texts(fig) -> list[Text]:
    """The Text artists that drawing ``fig`` actually draws (visible, non-empty)."""
    drawn = []
    original = Text.draw

    def record(self, renderer):
        if self.get_visible() and self.get_text().strip():
            drawn.append(self)
        return original(self, renderer)

    Text.draw = record
    try:
        fig.canvas.draw()
    finally:
        Text.draw = original
    return drawn


def _overlap(a, b, slack: float = 0.5) -> bool:
    return (min(a.x1, b.x1) - max(a.x0, b.x0) > slack) and (min(a.y1, b.y1) - max(a.y0, b.y0) > slack)


def problems(fig) -> list[str]:
    """What makes ``fig`` hard to read, one line each (empty: nothing found)."""
    out = []
    if not hasattr(fig.canvas, "get_renderer"):  # a closed pyplot figure: draw it with Agg
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
    texts = _drawn_texts(fig)
    renderer = fig.canvas.get_renderer()
    width = fig.get_size_inches()[0]
    scale = min(1.0, DISPLAY_IN / width)
    for t in texts:
        size = t.get_fontsize()
        if size < MIN_PT - 1e-6:
            out.append(f"{t.get_text()!r} is {size:.1f} pt")
        elif size * scale < MIN_PT - 1e-6:
            out.append(f"{t.get_text()!r} is {size * scale:.1f} pt when the {width:.1f}-in figure "
                       f"is shown {DISPLAY_IN} in wide")
    drawn = {id(t) for t in texts}
    boxes = {id(t): t.get_window_extent(renderer) for t in texts}
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            labels = [t for t in axis.get_ticklabels() + axis.get_ticklabels(minor=True)
                      if id(t) in drawn]
            for a, b in itertools.combinations(labels, 2):
                if _overlap(boxes[id(a)], boxes[id(b)]):
                    out.append(f"tick labels {a.get_text()!r} and {b.get_text()!r} overlap")
        inside = [t for t in ax.texts if id(t) in drawn]
        for a, b in itertools.combinations(inside, 2):
            if _overlap(boxes[id(a)], boxes[id(b)]):
                out.append(f"texts {a.get_text()!r} and {b.get_text()!r} overlap")
    titles = [t for ax in fig.axes for t in (ax.title, ax._left_title, ax._right_title)]
    titles += [t for t in (fig._suptitle, fig._supxlabel, fig._supylabel, *fig.texts) if t is not None]
    titles = list({id(t): t for t in titles if id(t) in drawn}.values())  # suptitle: in fig.texts too
    for a, b in itertools.combinations(titles, 2):
        if _overlap(boxes[id(a)], boxes[id(b)]):
            out.append(f"titles {a.get_text()!r} and {b.get_text()!r} overlap")
    legends = [ax.get_legend() for ax in fig.axes] + list(fig.legends)
    for legend in filter(None, legends):
        for t in legend.get_texts():
            if re.search(r"[a-z]_[a-z]", t.get_text()):
                out.append(f"legend shows a column name: {t.get_text()!r}")
    return out


def test_the_checker_flags_tiny_text_crowded_ticks_shrunk_figures_and_raw_names():
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.set_title("tiny", fontsize=6)
    ax.set_xticks(range(40), [f"label {i}" for i in range(40)])
    ax.plot(range(40), range(40), label="share_color")
    ax.legend()
    found = problems(fig)
    assert any("'tiny' is 6.0 pt" in p for p in found)
    assert any(p.startswith("tick labels") for p in found)
    assert any("column name: 'share_color'" in p for p in found)

    wide, ax = plt.subplots(figsize=(17, 2))
    ax.set_title("fine when saved, half size on screen", fontsize=9)
    assert any("4.5 pt when the 17.0-in figure" in p for p in problems(wide))

    words, ax = plt.subplots(figsize=(2, 2))
    ax.imshow([[0, 1], [1, 0]])
    ax.text(0.4, 0.5, "middle", fontsize=9)
    ax.text(0.5, 0.5, "bottom", fontsize=9)  # "middlbottom"
    assert any(p.startswith("texts 'middle' and 'bottom' overlap") for p in problems(words))

    titled, (left, right) = plt.subplots(1, 2, figsize=(4, 2))
    left.set_title("a long title that runs into the next panel's")
    right.set_title("the next panel's title")
    assert any(p.startswith("titles") for p in problems(titled))

    good, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1, 2], [1, 0, 1], label="colour word")
    ax.set_xticks([0, 1, 2])
    ax.legend()
    ax.set_title("readable")
    assert problems(good) == []
    plt.close("all")


# ------------------------------------------------------------------------ every notebook's figures
QUICK_MODEL = "organism-vit-s"


def _notebooks():
    return sorted(p for p in (ROOT / "notebooks").glob("[0-9][0-9]*_*.py"))


def _cells(path: Path):
    import jupytext

    nb = jupytext.read(path)
    return [c for c in nb.cells if c.cell_type == "code"]


def _walk(path: Path, tmp: Path) -> None:
    """Run the notebook's code cells in a fresh namespace with quick, small parameters."""
    import os

    from vlmscope.notebooks import QUICK

    prefix = path.name.split("_")[0]
    params = {"model_id": QUICK_MODEL, **QUICK.get(prefix, QUICK.get(prefix[:2], {})),
              "figures_dir": str(tmp / "figures"), "runs_dir": str(tmp / "runs")}
    if prefix == "06":  # the zoo, for its design-vs-scale figure: three small members
        del params["model_id"]
        params["models"] = [QUICK_MODEL, "organism-vit-m", "organism-siglip-s"]  # design x scale
    ns = {"__name__": f"notebook_{prefix}", "display": lambda *a, **k: None}  # IPython's builtin
    here = os.getcwd()
    os.chdir(path.parent)
    try:
        for cell in _cells(path):
            source = cell.source
            exec(compile(source, f"{path.name}", "exec"), ns)
            if "parameters" in cell.metadata.get("tags", []):
                ns.update({k: v for k, v in params.items() if k in ns})
    finally:
        os.chdir(here)


def _plots_functions():
    from vlmscope import plots

    return {name: f for name, f in vars(plots).items()
            if callable(f) and not name.startswith("_") and getattr(f, "__module__", "") == plots.__name__
            and name not in ("save", "object_colour")}


@pytest.fixture(scope="module")
def walked(tmp_path_factory):
    """notebook name -> [(plots function, figure)] for every figure its code drew."""
    from vlmscope import plots

    matplotlib.use("Agg")
    functions = _plots_functions()
    figures: dict[str, list] = {}
    current = {"nb": None}

    def wrap(name, f):
        def recorded(*args, **kwargs):
            fig = f(*args, **kwargs)
            drawn = figures.setdefault(current["nb"], [])
            if isinstance(fig, matplotlib.figure.Figure) and not kwargs.get("ax"):
                # a figure made by another plots function: once, named by the outer one
                drawn[:] = [(n, other) for n, other in drawn if other is not fig]
                drawn.append((name, fig))
            return fig
        return recorded

    mp = pytest.MonkeyPatch()
    for name, f in functions.items():
        mp.setattr(plots, name, wrap(name, f))
    mp.setattr(plt, "close", lambda *a, **k: None)  # keep every figure for the checks
    try:
        for path in _notebooks():
            current["nb"] = path.stem
            _walk(path, tmp_path_factory.mktemp(path.stem[:3]))
    finally:
        mp.undo()
    yield figures
    for drawn in figures.values():
        for _, fig in drawn:
            plt.close(fig)


@pytest.mark.slow
@pytest.mark.parametrize("notebook", [p.stem for p in _notebooks()])
def test_every_figure_of_the_notebook_is_legible(walked, notebook):
    drawn = walked.get(notebook, [])
    calls = set(re.findall(r"plots\.(\w+)\(", (ROOT / "notebooks" / f"{notebook}.py").read_text()))
    assert calls - {"save"} <= {name for name, _ in drawn} | {"save"}, (
        f"{notebook} calls plots functions its run did not draw")
    bad = {f"{name} #{i}": problems(fig) for i, (name, fig) in enumerate(drawn)}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, bad


@pytest.mark.slow
def test_the_walk_drew_every_plots_function_the_notebooks_and_explorers_use(walked):
    used = set()
    for path in [*_notebooks(), ROOT / "lib" / "vlmscope" / "widgets.py"]:
        used |= set(re.findall(r"plots\.(\w+)\(", path.read_text()))
    drawn = {name for figs in walked.values() for name, _ in figs}
    # functions drawn only as panels of another figure (ax=...) are walked through it
    inner = {"attention_map": "maps_across_layers", "heatmap": "heatmap_panels",
             "lens_tokens": "lens_layers"}
    missing = {u for u in used - {"save"} if u not in drawn and inner.get(u) not in drawn}
    assert not missing, missing


@pytest.mark.slow
def test_igos_trace_and_iteration_panels_number_the_same_iterations(walked):
    [(_, fig)] = [(n, f) for n, f in walked["05_heatmaps"] if n == "igos_iterations"]
    titles = [ax.get_title() for ax in fig.axes]
    from vlmscope.findings.heatmaps import WorkedExample

    class Fake:
        trace = [{"deletion": 0.0}] * len(titles)

    trace = WorkedExample(vlm=None, scene=None, question=None, prepared=None, answer=None,
                          config=None, baselines={}, selection=None, nonsense=None,
                          heatmap=Fake()).trace()
    assert titles == [f"iteration {i}" for i in trace.index]


@pytest.mark.parametrize("grid", [8, 24])
def test_patch_words_are_cut_or_thinned_until_none_overlap(grid):
    import numpy as np

    from vlmscope import plots
    from vlmscope.tokens import TokenGeometry, grid_boxes

    n = grid * grid
    side = 14 * grid
    geometry = TokenGeometry(grid_boxes(grid, grid, lambda u, v: (u * side, v * side)),
                             np.zeros(n, dtype=int), np.stack(np.divmod(np.arange(n), grid), axis=1),
                             ((grid, grid),), (side, side))
    words = ["▁extraordinarily"] * n
    fig = plots.lens_tokens(np.full((side, side, 3), 230, np.uint8), geometry, words,
                            highlight=[grid + 1], title="t")
    texts = fig.axes[0].texts
    assert problems(fig) == []
    assert all(t.get_text() != "extraordinarily" and t.get_text().endswith(".") for t in texts)
    if grid == 24:  # boxes too small for even a cut word: a lattice through the highlighted box
        assert 0 < len(texts) < n
    else:
        assert len(texts) == n
    assert [t.get_color() for t in texts].count("crimson") == 1
    plt.close(fig)
