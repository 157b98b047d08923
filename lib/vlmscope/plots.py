"""Figures from results: each function takes data and returns a matplotlib ``Figure``.

No computing happens here beyond arranging values for display.

Every figure the notebooks draw lives in this one module (one place to make
them legible and consistent), in blocks by notebook; that is why it is longer
than the library's other modules.

Legibility rules, for every figure (``tests/test_figures.py`` checks them on
every figure the notebooks draw): text is at least ``MIN_FONT`` points at the
saved size and at a notebook's display width (``DISPLAY_WIDTH``: figures are
drawn no wider, so nothing shrinks on screen); tick labels never overlap;
layers get integer ticks; every map has a colour bar or a legend; overlapping
curves stay visible (markers and line styles per curve, and the legend says
when two coincide); a shaded band is named in the legend.
"""

from __future__ import annotations

import matplotlib

import matplotlib.pyplot as plt
import numpy as np

from .tokens import TokenGeometry

# --- style ---------------------------------------------------------------------------------------
DISPLAY_WIDTH = 8.5  # inches: the widest a notebook cell shows a figure without shrinking it
MIN_FONT = 8.0  # points: the smallest text, at the saved size and at display width
STYLE = {"font.size": 9.0, "axes.titlesize": 9.0, "axes.labelsize": 9.0, "xtick.labelsize": 8.0,
         "ytick.labelsize": 8.0, "legend.fontsize": 8.0, "legend.title_fontsize": 8.0,
         "figure.titlesize": 10.0, "axes.spines.top": False, "axes.spines.right": False}
matplotlib.rcParams.update(STYLE)

# one look per curve: colour, marker and line style all differ, and later curves are drawn
# thinner on top of earlier ones, so a curve lying on another still shows
_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
           "tab:gray")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_STYLES = ("-", (0, (5, 2)), ":", "-.", (0, (1, 1)), (0, (3, 1, 1, 1)), "-", ":")

# readable names for the columns the line plots draw (legends show these, never column names)
NAMES = {"image": "image", "query": "query (with BOS)", "query_no_bos": "query without BOS",
         "bos": "BOS", "generated": "generated tokens", "share": "colour or shape word",
         "share_color": "colour word", "share_shape": "shape word"}


def _curves(ax, data, x: str, y: str, by: str | None = None, names: dict | None = None,
            band: str | bool = False, order=None) -> list[tuple]:
    """The mean of ``y`` per ``x`` for each group of ``by``, one Line2D each.

    Each group gets its own colour, marker and line style (by its place in ``order``
    when given, so panels agree), later ones thinner and on top of earlier ones;
    ``band``: shade the range (``"range"``: min to max) or ``"sd"`` (mean ± 1 sd) over
    the rows of each point (the caller's legend says which). A group whose curve
    lies on an earlier one's (within 1% of the axis) says "(= that one)" in its label. Returns the
    ``(label, x, mean)`` of each curve.
    """
    groups = list(data.groupby(by, sort=False)) if by else [("mean", data)]
    if order is not None:
        rank = {v: i for i, v in enumerate(order)}
        groups.sort(key=lambda g: rank.get(g[0], len(rank)))
    values = np.asarray(data[y], dtype=float) if len(data) else np.zeros(1)
    span = float(np.nanmax(values) - np.nanmin(values)) if np.isfinite(values).any() else 0.0
    close = 0.01 * (span or 1.0)  # curves closer than 1% of the axis lie on each other
    drawn = []
    for n, (key, d) in enumerate(groups):
        k = rank.get(key, n) if order is not None else n
        label = str((names or {}).get(key, NAMES.get(key, key)))
        stats = d.groupby(x)[y].agg(["mean", "min", "max", "count"]).sort_index()
        xs, mean = stats.index.to_numpy(dtype=float), stats["mean"].to_numpy(dtype=float)
        same = next((lab for lab, x0, m0 in drawn if len(x0) == len(xs) and np.allclose(x0, xs)
                     and np.allclose(m0, mean, rtol=0, atol=close, equal_nan=True)), None)
        color = _COLORS[k % len(_COLORS)]
        ax.plot(xs, mean, color=color, marker=_MARKERS[k % len(_MARKERS)],
                ls=_STYLES[k % len(_STYLES)], lw=max(1.0, 2.6 - 0.5 * k), ms=max(4.0, 8.0 - 1.5 * k),
                mfc=color if k == 0 else "white", zorder=3 + k,
                label=f"{label} (= {same})" if same is not None else label)
        if band and (stats["count"] > 1).any():
            if band == "sd":
                sd = np.nan_to_num(d.groupby(x)[y].std().sort_index().to_numpy(dtype=float))
                lo, hi = mean - sd, mean + sd
            else:
                lo, hi = stats["min"].to_numpy(float), stats["max"].to_numpy(float)
            ax.fill_between(xs, lo, hi, color=color, alpha=0.12, lw=0, zorder=1)
        drawn.append((label, xs, mean))
    return drawn


def _integer_ticks(ax, values, axis: str = "x") -> None:
    """Ticks at the integers in ``values`` (e.g. layers), never at 0.5."""
    ticks = sorted({int(v) for v in values if float(v).is_integer()})
    if len(ticks) > 16:  # many layers: every k-th, ends kept
        step = int(np.ceil(len(ticks) / 12))
        ticks = ticks[::step] + ([ticks[-1]] if (len(ticks) - 1) % step else [])
    (ax.set_xticks if axis == "x" else ax.set_yticks)(ticks)


def _colorbar(fig, ax, label: str = "importance (min-max per panel)", cmap: str = "inferno"):
    """A 0-1 colour bar beside ``ax`` (an inset, so ``fig.axes`` still lists the panels only)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    cax = ax.inset_axes([1.04, 0.0, 0.06, 1.0])
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), cax=cax, ticks=[0, 0.5, 1])
    bar.set_label(label, fontsize=MIN_FONT)
    bar.ax.tick_params(labelsize=MIN_FONT)
    return bar


def object_colour(obj, image) -> tuple:
    """The colour an object is drawn in: its mean pixel colour in ``image`` (RGB in [0, 1]).

    A synthetic "red triangle" comes out red, a photo's object its own average hue,
    so a swatch or an outline matches what the reader sees.
    """
    a = _hwc(image)[..., :3].astype(float)
    mask = np.asarray(obj.mask, dtype=bool)
    if a.ndim != 3 or mask.shape != a.shape[:2] or not mask.any():
        return (0.3, 0.3, 0.3)
    rgb = a[mask].mean(axis=0)
    return tuple(np.clip(rgb / (255.0 if a.max() > 1.0 else 1.0), 0, 1))


def save(fig, folder, name: str, dpi: int = 120):
    """Write ``fig`` to ``folder/name`` (".png" when ``name`` has no suffix; the folder made if
    missing); return the path.

    The notebooks' one way to keep a figure: ``plots.save(plots.baselines(...), figures_dir,
    "05_baselines")``.
    """
    from pathlib import Path

    path = Path(folder) / name
    if not path.suffix:
        path = path.with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def _overlay_mask(ax, mask, color, alpha=0.45):
    rgba = np.zeros((*mask.shape, 4))
    rgba[mask] = (*matplotlib.colors.to_rgb(color), alpha)
    ax.imshow(rgba)


def scenes(scenes, masks: bool = True, ncols: int = 2, titles=None):
    """A grid of scenes (synthetic or ``datasets.folder`` records), beside each its objects' masks.

    Each mask is painted in its object's own colour (``object_colour``) and named in
    a legend of swatches in that colour; ``ncols`` scenes per row (two keep the
    figure within a notebook's display width).
    """
    from matplotlib.patches import Patch

    n = len(scenes)
    ncols = max(1, min(n, ncols))
    rows = int(np.ceil(n / ncols))
    per = 2 if masks else 1
    most = max((len(sc.objects) for sc in scenes), default=0) if masks else 0
    fig, axes = plt.subplots(rows, ncols * per, squeeze=False,
                             figsize=(min(DISPLAY_WIDTH, 2.05 * ncols * per),
                                      rows * (2.35 + 0.17 * most)))
    for ax in axes.flat:
        ax.axis("off")
    for i, sc in enumerate(scenes):
        r, c = divmod(i, ncols)
        ax = axes[r, c * per]
        ax.imshow(sc.image)
        label = f"seed {sc.seed % 10000}" if hasattr(sc, "seed") else getattr(sc, "file", str(i))
        ax.set_title(titles[i] if titles else label, fontsize=9)
        if masks:
            m = axes[r, c * per + 1]
            m.imshow(np.ones((*sc.objects[0].mask.shape, 3)) if sc.objects
                     else np.ones((*np.asarray(sc.image).shape[:2], 3)))
            handles = []
            for o in sc.objects:
                colour = object_colour(o, sc.image)
                _overlay_mask(m, o.mask, colour, alpha=1.0)
                handles.append(Patch(fc=colour, ec="0.3", lw=0.5, label=o.name))
            m.set_title("masks", fontsize=9)
            if handles:
                m.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                         fontsize=MIN_FONT, frameon=False, handlelength=1.2, borderaxespad=0.2)
    fig.tight_layout()
    return fig


def token_grid(image, geometry: TokenGeometry, highlight: dict | None = None, view: int = 0,
               title: str = ""):
    """The image with every image token's box drawn; ``highlight`` maps a label to token indices.

    Each highlighted set is outlined (the border of its tokens' union), not filled, so
    the objects under it keep their colours; sets differ in colour, line style and
    width (the first widest), so nested sets that share a border all show.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    fig, ax = plt.subplots(figsize=(4.6, 4.9 if highlight else 4.6))
    ax.imshow(image)
    for i in np.nonzero(geometry.views == view)[0]:
        if geometry.cells[i, 0] < 0:
            continue
        x0, y0, x1, y1 = geometry.boxes[i]
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, lw=0.5,
                               ec="0.6"))
    colors = ["black", "tab:cyan", "magenta", "tab:olive"]
    styles = ["-", (0, (4, 2)), (0, (1, 1.5)), "-."]
    handles = []
    n = len(geometry.boxes)
    for k, (label, idx) in enumerate((highlight or {}).items()):
        chosen = set(np.asarray(idx, dtype=int).tolist())
        inside = geometry.to_pixels([1.0 if i in chosen else 0.0 for i in range(n)], view=view)
        inside = np.nan_to_num(np.asarray(inside, dtype=float))
        style = dict(color=colors[k % len(colors)], ls=styles[k % len(styles)],
                     lw=max(1.2, 3.0 - 0.7 * k))
        if inside.max() > 0.5:
            padded = np.pad(inside, 1)  # a set touching the image's edge is closed there too
            ax.contour(np.arange(-1, inside.shape[1] + 1), np.arange(-1, inside.shape[0] + 1),
                       padded, levels=[0.5], colors=[style["color"]], linestyles=[style["ls"]],
                       linewidths=style["lw"], zorder=3 + k)
        handles.append(Line2D([], [], label=f"{label} ({len(chosen)} tokens)", **style))
    if handles:
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01),
                  ncol=1 if len(handles) > 2 else len(handles), fontsize=MIN_FONT, frameon=False)
    ax.set_xlim(-0.5, np.asarray(image).shape[1] - 0.5)
    ax.set_ylim(np.asarray(image).shape[0] - 0.5, -0.5)
    ax.set_title(title or geometry.note, fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    return fig


def accuracy_bars(scores: dict, reference: float | None = None, title: str = ""):
    """Bars of accuracy (or F1) per question kind; an optional reference line."""
    kinds = [k for k, v in scores.items() if isinstance(v, float)]
    vals = [scores[k] for k in kinds]
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(kinds), 3))
    ax.bar(kinds, vals, color="tab:blue")
    for x, v in enumerate(vals):
        ax.text(x, v + 0.01, f"{v:.2f}", ha="center", fontsize=8)
    if reference is not None:
        ax.axhline(reference, color="tab:red", ls="--", lw=1, label=f"bar {reference:.2f}")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("exact match / F1")
    ax.set_title(title, fontsize=9)
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    return fig


def fractions_by_layer(df, title: str = ""):
    """Mean per layer of the attention fractions (image, query, query w/o BOS, generated).

    ``df``: tidy rows with columns layer, image, query, query_no_bos, generated
    (one row per image, layer and generated token); shaded: ± 1 sd over those rows.
    """
    long = df.melt(id_vars=["layer"], value_vars=["image", "query", "query_no_bos", "generated"],
                   var_name="attends to", value_name="fraction")
    fig, ax = plt.subplots(figsize=(7.0, 3.4))
    _curves(ax, long, "layer", "fraction", by="attends to", band="sd")
    ax.set_ylim(0, 1)
    _integer_ticks(ax, df.layer.unique())
    ax.set_xlabel("layer")
    ax.set_ylabel("share of attention")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False,
              title="attends to\n(shaded: mean ± 1 sd\nover tokens)")
    ax.set_title(title or "share of each generated token's attention, by layer (mean)", fontsize=9)
    fig.tight_layout()
    return fig


def knockout_curves(df, title: str = "", y: str = "f1"):
    """Object F1 against the paper's l (cut in layers > l), one line per configuration.

    ``y``: the F1 column to plot (``"f1"``, or e.g. ``"f1_exact"``). Lines are means
    over images; with more than one image the shaded band is their range (min to
    max), as the legend says. Coinciding lines say so in the legend.
    """
    d = df if "l" in df else df.assign(l=df.start - 1)
    n = int(d["image_id"].nunique()) if "image_id" in d else int(d.groupby(["config", "l"]).size().max())
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    _curves(ax, d, "l", y, by="config", band="range" if n > 1 else False)
    L = int(df.n_layers.iloc[0])
    ax.set_xlabel(f"l: knocked out in layers with index > l (-1 = all {L} layers, {L - 1} = none)")
    ax.set_ylabel("object F1 vs.\nun-knocked description")
    ax.set_ylim(-0.04, 1.06)
    _integer_ticks(ax, range(-1, L))
    what = f"cut (mean of {n} images;\nshaded: min to max)" if n > 1 else "cut (1 image)"
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, title=what)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def attention_map(image, geometry: TokenGeometry, values, title: str = "", ax=None, view: int = 0,
                  outline=None):
    """Per-token values (e.g. one layer's attention) min-max normalised and laid over the image.

    ``outline``: an optional boolean ``[H, W]`` mask (e.g. the named object's) drawn in cyan.
    A figure of its own gets a colour bar (a panel of a grid: the grid draws one).
    """
    v = np.asarray(values, dtype=float)
    lo, hi = np.nanmin(v), np.nanmax(v)
    norm = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(3.8, 3.3))
    ax.imshow(image)
    ax.imshow(geometry.to_pixels(norm, view=view), cmap="inferno", alpha=0.55, vmin=0, vmax=1)
    if outline is not None:
        ax.contour(np.asarray(outline, dtype=float), levels=[0.5], colors="cyan", linewidths=1.0)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    if own:
        _colorbar(ax.figure, ax, "min-max normalised\n(bright = high)")
        ax.figure.tight_layout()
    return ax.figure


def maps_across_layers(image, geometry: TokenGeometry, maps, steps, labels=None, layers=None,
                       masks=None, title: str = "", view: int = 0):
    """A grid of attention maps: rows = chosen generated tokens, columns = layers.

    ``maps``: ``[layers, steps, n_image]`` (e.g. ``Recorded.maps()``); ``steps``:
    the step (row) of each token to show; ``labels``: one text per row (the
    token); ``masks``: optional ``[H, W]`` boolean mask per row, outlined in
    cyan. Every panel is min-max normalised on its own, so panels show where
    attention goes, not how much (the colour bar says so).
    """
    maps = np.asarray(maps)
    layers = list(range(maps.shape[0])) if layers is None else list(layers)
    steps = list(steps)
    side = min(1.8, (DISPLAY_WIDTH - 1.6) / len(layers))
    fig, axes = plt.subplots(len(steps), len(layers), squeeze=False,
                             figsize=(1.6 + side * len(layers), 0.5 + (side + 0.25) * len(steps)))
    for r, s in enumerate(steps):
        for c, layer in enumerate(layers):
            ax = axes[r, c]
            attention_map(image, geometry, maps[layer, s], ax=ax, view=view,
                          title=f"layer {layer}" if r == 0 else "",
                          outline=masks[r] if masks is not None else None)
        label = labels[r] if labels is not None else f"step {s}"
        axes[r, 0].text(-0.06, 0.5, label, transform=axes[r, 0].transAxes, rotation=90,
                        ha="right", va="center", fontsize=MIN_FONT)
    _colorbar(fig, axes[0, -1], "attention\n(min-max per panel)")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def localisation_by_layer(df, hue=None, title: str = ""):
    """Pointing game and mass-in-mask ratio per layer, mean over the rows given.

    ``df``: tidy rows with columns layer, pointing, ratio and mask_share (e.g.
    ``maps.localisation`` rows, or their per-image means so the spread is over
    images); shaded: ± 1 sd over those rows. Chance: a peak dropped
    uniformly on the image tokens lands in the mask with probability mask_share
    (dashed, left); a uniform map has ratio 1.0 (dashed, right).
    """
    d = df.assign(pointing=df["pointing"].astype(float))
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.4, 3.6))
    _curves(left, d, "layer", "pointing", by=hue, band="sd")
    left.axhline(float(d["mask_share"].mean()), color="0.4", ls="--", lw=1,
                 label="chance (mean mask share)")
    left.set_ylim(-0.02, 1.05)
    left.set_ylabel("pointing game:\npeak inside the mask")
    _curves(right, d, "layer", "ratio", by=hue, band="sd")
    right.axhline(1.0, color="0.4", ls="--", lw=1, label="chance = 1.0 (uniform map)")
    right.set_ylim(bottom=0)
    right.set_ylabel("mass in mask / mask share")
    for ax in (left, right):
        _integer_ticks(ax, d["layer"].unique())
        ax.set_xlabel("layer")
        ax.legend(loc="best", title="mean (shaded: ± 1 sd)")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def token_fractions(rows, title: str = ""):
    """One generated token's attention split per layer, as stacked bars.

    ``rows``: one row per layer with columns layer, image, query_no_bos, bos,
    generated (e.g. ``Recorded.fractions()`` filtered to one step).
    """
    fig, ax = plt.subplots(figsize=(6.5, 3))
    parts = {"image": "tab:blue", "query_no_bos": "tab:brown", "bos": "tab:orange",
             "generated": "tab:green"}
    bottom = np.zeros(len(rows))
    for col, color in parts.items():
        vals = np.asarray(rows[col], dtype=float)
        ax.bar(np.asarray(rows["layer"]), vals, bottom=bottom, color=color, label=NAMES.get(col, col))
        bottom += vals
    ax.set_ylim(0, 1)
    ax.set_xticks(np.asarray(rows["layer"]))
    ax.set_xlabel("layer")
    ax.set_ylabel("share of attention")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def compression_curves(table, title: str = ""):
    """ACC and ACC+ against the kept share of image tokens, per compressed-context variant.

    ``table``: ``compression.scores(...)`` (variant, k_frac, acc, acc_plus,
    compression). Pruned variants ("both", "query", "image") are lines over
    ``k_frac`` labelled with their mean compression; the references ("full",
    "direct") are horizontal lines.
    """
    import textwrap

    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.6), sharey=True)
    colors = {"both": "tab:blue", "query": "tab:orange", "image": "tab:green",
              "full": "0.2", "direct": "0.55"}
    ks = sorted(table.loc[~table.variant.isin(["full", "direct"]), "k_frac"].unique())
    for ax, metric, label in zip(axes, ("acc", "acc_plus"), ("ACC (per question)",
                                                             "ACC+ (all questions of an image)")):
        seen, same = [], []
        for variant, d in table.groupby("variant", sort=False):
            d = d.sort_values("k_frac")
            if variant not in ("full", "direct"):
                y = d[metric].to_numpy(dtype=float)
                twin = next((v for v, x0, y0 in seen if len(y0) == len(y) and np.allclose(y0, y)
                             and np.allclose(x0, d.k_frac)), None)
                if twin is not None:
                    same.append(f"{variant} = {twin}")
                seen.append((variant, d.k_frac.to_numpy(dtype=float), y))
            c = colors.get(variant, None)
            if variant in ("full", "direct"):
                ax.axhline(float(d[metric].iloc[0]), color=c, ls="--", lw=1.2, zorder=1,
                           label=f"{variant} ({d.compression.iloc[0]:.0f}x)")
            else:
                lo, hi = d.compression.min(), d.compression.max()
                span = f"{lo:.1f}x" if np.isclose(lo, hi) else f"{lo:.1f}-{hi:.1f}x"
                k = list(colors).index(variant) if variant in colors else 3
                ax.plot(d.k_frac, d[metric], marker=_MARKERS[k % len(_MARKERS)], color=c,
                        ls=_STYLES[k % len(_STYLES)], lw=max(1.0, 2.4 - 0.5 * k),
                        mfc=c if k == 0 else "white", zorder=2 + k, label=f"{variant} ({span})")
        refs = {v: float(d[metric].iloc[0]) for v, d in table.groupby("variant", sort=False)
                if v in ("full", "direct")}
        same += [f"{v} = {r}" for v, _, y in seen for r, level in refs.items()
                 if np.allclose(y, level)]
        ax.set_xscale("log")
        ax.set_xticks(ks, [f"{k:.0%}" for k in ks])
        ax.minorticks_off()
        ax.set_ylim(-0.02, 1.05)
        ax.set_xlabel("K: image tokens kept per layer")
        note = textwrap.fill(f"(on each other: {'; '.join(same)})", 40) if same else ""
        ax.set_title(f"{label}\n{note}".strip(), fontsize=9)
    axes[0].set_ylabel("accuracy")
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False,
                   title="variant\n(token reduction)")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def heatmap(image, importance, target=None, title: str = "", ax=None):
    """An importance map ``[H, W]`` (high = important) min-max normalised over the image.

    ``target``: optional boolean mask outlined in cyan (the object the question asks about).
    A figure of its own gets a colour bar (panels of a row share the row's).
    """
    v = np.nan_to_num(np.asarray(importance, dtype=float))
    lo, hi = v.min(), v.max()
    norm = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
    own = ax is None
    if own:
        _, ax = plt.subplots(figsize=(3.8, 3.3))
    ax.imshow(image)
    ax.imshow(norm, cmap="inferno", alpha=0.6, vmin=0, vmax=1)
    if target is not None:
        ax.contour(np.asarray(target, dtype=float), levels=[0.5], colors="cyan", linewidths=1.0)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    if own:
        _colorbar(ax.figure, ax)
        ax.figure.tight_layout()
    return ax.figure


def heatmap_panels(image, maps: dict, target=None, title: str = "", scores: dict | None = None):
    """One panel per named map (e.g. iGOS, attention, gradient), target outlined, one colour bar.

    ``scores``: optional per-name text shown under each panel's title.
    """
    n = len(maps)
    side = min(2.3, (DISPLAY_WIDTH - 1.2) / max(n, 1))
    fig, axes = plt.subplots(1, n, squeeze=False, figsize=(1.2 + side * n, side + 1.0))
    for ax, (name, m) in zip(axes[0], maps.items()):
        label = name if not scores or name not in scores else f"{name}\n{scores[name]}"
        heatmap(image, m, target, title=label, ax=ax)
    _colorbar(fig, axes[0, -1], "importance\n(min-max per panel)" + ("\ncyan: the asked object"
                                                                    if target is not None else ""))
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def faithfulness_curves(curves: dict, title: str = ""):
    """Deletion and insertion curves (normalised score per step), one line per map.

    ``curves``: name -> ``heatmaps.Faithfulness``; the legend gives each mean
    (lower deletion and higher insertion are better) and says which curves
    coincide; every curve has its own marker and line style.
    """
    import pandas as pd

    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.4), sharey=True)
    for ax, part, score in ((axes[0], "deletion_curve", "deletion"),
                            (axes[1], "insertion_curve", "insertion")):
        rows = [pd.DataFrame({"x": np.linspace(0, 1, len(getattr(f, part))),
                              "score": np.asarray(getattr(f, part), dtype=float),
                              "map": f"{name} ({getattr(f, score):.2f})"})
                for name, f in curves.items()]
        if rows:
            _curves(ax, pd.concat(rows), "x", "score", by="map")
            for line in ax.lines:
                line.set_markevery(max(1, len(line.get_xdata()) // 8))
    for ax, what in zip(axes, ("deletion: image -> baseline\n(lower mean is better)",
                               "insertion: baseline -> image\n(higher mean is better)")):
        ax.set_title(what, fontsize=9)
        ax.axhline(0, color="0.7", lw=0.6, zorder=0)
        ax.axhline(1, color="0.7", lw=0.6, zorder=0)
        ax.legend(loc="center right", title="map (mean score)")
    axes[0].set_ylabel("normalised score\n(1 = image, 0 = baseline)")
    fig.supxlabel("share of mask cells changed, most important first", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def lens_tokens(image, geometry: TokenGeometry, tokens, highlight=None, title: str = "", ax=None,
                view: int = 0):
    """Each image token's logit-lens top word written on its box; ``highlight`` tokens boxed.

    ``tokens``: one string per image token (e.g. ``LensResult.top_tokens(layer)``);
    ``highlight``: image-token indices to outline (e.g. an object's tokens), their words
    in crimson. Words are ``MIN_FONT`` points and never overlap: a word wider than its
    box is cut ("triangle" -> "tria."), and where boxes are too small even for that,
    only every k-th row and column of boxes (through the highlighted ones) get a word.
    """
    import matplotlib.patches as mpatches

    if ax is None:
        _, ax = plt.subplots(figsize=(5.0, 5.2))
        ax.figure.tight_layout()
    if not ax.images:  # (lens_layers draws the images first, to lay the panels out)
        ax.imshow(image)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    hl = set(np.asarray(highlight if highlight is not None else [], dtype=int).tolist())
    rows, cols = geometry.grids[view]
    shown = [i for i, (x0, y0, x1, y1) in enumerate(geometry.boxes)
             if geometry.views[i] == view and geometry.cells[i, 0] >= 0 and x1 > x0]
    for i in shown:
        if i in hl:
            x0, y0, x1, y1 = geometry.boxes[i]
            ax.add_patch(mpatches.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                            ec="crimson", lw=1.0))
    if not shown:
        return ax.figure
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    box = geometry.boxes[shown[0]]
    (ax0, _), (ax1, _) = ax.transData.transform([(box[0], box[1]), (box[2], box[1])])
    cell_px = abs(ax1 - ax0) * 0.92  # a little air between neighbours

    def width(text):
        t = ax.text(0, 0, text, fontsize=MIN_FONT)
        w = t.get_window_extent(renderer).width
        t.remove()
        return w

    stride = 1
    while width("abc.") > cell_px * stride and stride < max(rows, cols):
        stride += 1
    if stride > 1:
        anchor = geometry.cells[min(hl)] if hl else geometry.cells[shown[0]]
        shown = [i for i in shown if (geometry.cells[i, 0] - anchor[0]) % stride == 0
                 and (geometry.cells[i, 1] - anchor[1]) % stride == 0]
    room = cell_px * stride
    fits = {}
    for i in shown:
        word = tokens[i].lstrip("▁Ġ")
        if word not in fits:
            cut = word
            while len(cut) > 1 and width(cut if cut == word else cut + ".") > room:
                cut = cut[:-1]
            fits[word] = cut if cut == word else cut + "."
        x0, y0, x1, y1 = geometry.boxes[i]
        ax.text((x0 + x1) / 2, (y0 + y1) / 2, fits[word], ha="center", va="center",
                fontsize=MIN_FONT, color="black" if i not in hl else "crimson",
                bbox=dict(boxstyle="square,pad=0.05", fc="white", alpha=0.55, lw=0))
    return fig


# --- notebooks 00-04 ---------------------------------------------------------------------------

def object_word_maps(image, geometry: TokenGeometry, maps, tokens, words, title: str = "",
                     n: int = 4, view: int = 0, max_layers: int = 4):
    """``maps_across_layers`` for the object words of one generated description.

    ``maps``: ``[layers, steps, n_image]`` (``Recorded.maps()``); ``tokens``:
    the generated tokens; ``words``: ``(step, object)`` pairs (e.g.
    ``findings.mentioned_objects``), at most ``n`` shown, each row labelled
    with its token and the object's name and outlined with its mask. Without
    object words the first three generated tokens are shown, unoutlined. Up to
    ``max_layers`` columns (evenly spaced layers, first and last kept) fit a
    notebook's width.
    """
    shown = list(words)[:n] or [(s, None) for s in range(min(3, len(tokens)))]
    L = np.asarray(maps).shape[0]
    layers = sorted({int(round(x)) for x in np.linspace(0, L - 1, min(L, max_layers))})
    return maps_across_layers(
        image, geometry, maps, steps=[s for s, _ in shown], layers=layers,
        labels=[f"{tokens[s]!r}" + (f" ({o.name})" if o is not None else "") for s, o in shown],
        masks=[o.mask if o is not None else None for _, o in shown], title=title, view=view)


# --- notebooks 05-09 ---


def _named(model: str, title: str) -> str:
    return f"{model}: {title}" if model else title


def _hwc(picture) -> np.ndarray:
    """An image as ``[H, W, C]`` for ``imshow``: PIL, ``[H, W, C]`` or ``[C, H, W]`` (a tensor)."""
    a = np.asarray(picture)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3, 4):
        a = a.transpose(1, 2, 0)
    return a


def baselines(image, pictures: dict, title: str = ""):
    """The image and each baseline it is blended with (e.g. blur, black, noise), side by side.

    ``image`` and each value: a PIL image, ``[H, W, 3]`` or ``[3, H, W]`` (a pixel tensor in [0, 1]).
    """
    panels = {"image": image, **pictures}
    side = min(2.25, DISPLAY_WIDTH / len(panels))
    fig, axes = plt.subplots(1, len(panels), squeeze=False, figsize=(side * len(panels), side + 0.3))
    for ax, (name, pic) in zip(axes[0], panels.items()):
        ax.imshow(_hwc(pic))
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def igos_iterations(image, heatmap, target=None,
                    title: str = "iGOS+ mask by iteration (target outlined)"):
    """The iGOS+ mask after each iteration (``Heatmap.history``, kept with ``keep_history``).

    Each panel is 1 - the mask upsampled to the image (high = important), as
    ``Heatmap.importance`` shows the final one; panels are numbered from 1.
    """
    import torch

    from .heatmaps import upsample

    if not heatmap.history:
        raise ValueError("the heatmap kept no history: run igos(..., keep_history=True)")
    w, h = heatmap.image_size
    steps = {f"iteration {i + 1}": 1 - upsample(torch.from_numpy(np.asarray(m)).float(), h, w).numpy()
             for i, m in enumerate(heatmap.history)}
    return heatmap_panels(image, steps, target, title=title)


def heatmap_checks(panels: dict):
    """One heatmap per panel, each on its own image (a sanity check's scenes side by side).

    ``panels``: title -> ``(image, importance, target)``; ``target`` may be None.
    """
    n = max(len(panels), 1)
    side = min(2.5, (DISPLAY_WIDTH - 1.2) / n)
    fig, axes = plt.subplots(1, n, squeeze=False, figsize=(1.2 + side * n, side + 0.8))
    for ax, (name, (image, importance, target)) in zip(axes[0], panels.items()):
        heatmap(image, importance, target, name, ax=ax)
    _colorbar(fig, axes[0, -1], "importance\n(min-max per panel)")
    fig.tight_layout()
    return fig


def focus_by_correctness(scored, title: str = "focus on the asked object, by correctness"):
    """iGOS+ mass in the asked object (boxes) and pointing hits (bars) per model, by correctness.

    ``scored``: one row per explained answer with columns model, correct (bool),
    igos_mass and igos_pointing (e.g. averaged over noise seeds).
    """
    import seaborn as sns

    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.4))
    sns.boxplot(data=scored, x="model", y="igos_mass", hue="correct", ax=axes[0])
    axes[0].set_ylabel("iGOS+ mass in the asked object")
    point = scored.groupby(["model", "correct"]).igos_pointing.mean().reset_index()
    sns.barplot(data=point, x="model", y="igos_pointing", hue="correct", ax=axes[1])
    axes[1].set_ylabel("pointing game (share of hits)")
    axes[0].set_ylim(bottom=0)
    axes[1].set_ylim(0, 1.05)
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=20)
        if ax.get_legend() is not None:
            ax.get_legend().set_title("answer correct")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def design_vs_scale(tests: dict):
    """Per similarity measure (one panel a row), the model pairs' similarity by relation
    (same design, same scale...), relations named on the left.

    ``tests``: name -> ``stats.design_vs_scale`` result (its ``pairs``, ``observed``, ``p_value``).
    """
    import seaborn as sns

    n = max(len(tests), 1)
    relations = max((t.pairs["relation"].nunique() for t in tests.values()), default=1)
    fig, axes = plt.subplots(n, 1, squeeze=False, sharex=False,
                             figsize=(7.0, n * (0.9 + 0.45 * relations)))
    for ax, (name, t) in zip(axes[:, 0], tests.items()):
        sns.boxplot(data=t.pairs.dropna(subset=["similarity"]), y="relation", x="similarity", ax=ax,
                    orient="h")
        ax.set_title(f"{name}: observed difference {t.observed:.3f}, p = {t.p_value:.3g}",
                     fontsize=9)
        ax.set_ylabel("")
        ax.set_xlabel(f"{name} similarity of the two models' maps")
    fig.tight_layout()
    return fig


def object_tokens(image, geometry: TokenGeometry, rings: dict, name: str = "object", view: int = 0):
    """An object's image tokens shaded over the image, one panel per ring count.

    ``rings``: ring count -> token indices (``geometry.tokens_for_mask(mask, rings=r)``).
    """
    side = min(2.6, (DISPLAY_WIDTH - 0.3) / max(len(rings), 1))
    fig, axes = plt.subplots(1, len(rings), squeeze=False, figsize=(0.3 + side * len(rings), side + 0.9))
    n = len(geometry.boxes)
    for ax, (r, toks) in zip(axes[0], rings.items()):
        chosen = set(np.asarray(toks, dtype=int).tolist())
        ax.imshow(image)
        ax.imshow(geometry.to_pixels([1.0 if i in chosen else 0.0 for i in range(n)], view=view),
                  cmap="Reds", alpha=0.45, vmin=0, vmax=1)
        ax.set_title(f"{name}: {len(chosen)} tokens (rings {r})", fontsize=MIN_FONT)
        ax.axis("off")
    from matplotlib.patches import Patch

    fig.legend(handles=[Patch(fc=plt.get_cmap("Reds")(1.0), alpha=0.45, label="shaded: the tokens ablated")],
               loc="lower center", frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def loss_by_count(table, model: str = ""):
    """Share of correct identifications lost against the number of tokens ablated, per rule;
    one panel per task.

    ``table``: ``ablation.loss_table(df, by=("rule", "rings", "task"))`` (n_tokens, lost, rule,
    task); ``model`` names the model in the first panel's title.
    """
    tasks = list(dict.fromkeys(table["task"])) or [""]
    fig, axes = plt.subplots(1, len(tasks), squeeze=False, sharey=True,
                             figsize=(min(DISPLAY_WIDTH, 2.0 + 2.5 * len(tasks)), 3.4))
    rules = list(dict.fromkeys(table["rule"]))
    for ax, task in zip(axes[0], tasks):
        _curves(ax, table[table["task"] == task], "n_tokens", "lost", by="rule", order=rules)
        ax.set_title(_named(model, f"task {task}") if ax is axes[0, 0] else f"task {task}",
                     fontsize=9)
        ax.set_ylim(-0.04, 1.06)
    axes[0, 0].set_ylabel("share of correct\nidentifications lost")
    axes[0, -1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False,
                       title="tokens chosen by")
    fig.supxlabel("ablated tokens (mean per object; rings 0, 1, 2)", fontsize=9)
    fig.suptitle("accuracy lost against tokens ablated, by selection rule", fontsize=9)
    fig.tight_layout()
    return fig


def lens_layers(image, geometry: TokenGeometry, tokens_by_layer, highlight=None, title: str = "",
                view: int = 0, max_layers: int = 4):
    """``lens_tokens`` for several layers, two panels a row: each patch's top lens word.

    ``tokens_by_layer``: per layer, one string per image token (``LensResult.top_tokens(layer)``);
    more than ``max_layers`` layers: that many evenly spaced ones, first and last kept.
    """
    L = len(tokens_by_layer)
    layers = sorted({int(round(x)) for x in np.linspace(0, L - 1, min(L, max_layers))})
    ncols = min(2, len(layers))
    nrows = int(np.ceil(len(layers) / ncols))
    fig, axes = plt.subplots(nrows, ncols, squeeze=False,
                             figsize=(4.1 * ncols, 4.1 * nrows + (0.4 if title else 0.1)))
    for ax in axes.flat[len(layers):]:
        ax.remove()
    for layer, ax in zip(layers, axes.flat):
        ax.imshow(image)
        ax.set_title(f"layer {layer}", fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    for layer, ax in zip(layers, axes.flat):
        lens_tokens(image, geometry, tokens_by_layer[layer], highlight, title=f"layer {layer}",
                    ax=ax, view=view)
    return fig


def lens_score(df, rings: int = 0, model: str = ""):
    """Per layer, the share of object patches whose top lens word is the object's colour or shape.

    ``df``: the lens finding's rows (object, rings, layer, share, and on synthetic
    scenes share_color, share_shape); lines are means over objects (of ``rings``),
    shaded: their range (min to max); ``model`` names the model in the title.
    """
    shares = [c for c in ("share", "share_color", "share_shape") if c in df]
    long = df.melt(id_vars=["object", "rings", "layer"], value_vars=shares, var_name="word",
                   value_name="top-1 share")
    fig, ax = plt.subplots(figsize=(7.0, 3.2))
    _curves(ax, long[long.rings == rings], "layer", "top-1 share", by="word", band="range")
    _integer_ticks(ax, df.layer.unique())
    ax.set_xlabel("layer")
    ax.set_ylabel("share of object patches")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False,
              title="the top lens word is\nthe object's ...\n(mean over objects;\nshaded: min to max)")
    ax.set_title(_named(model, "object patches whose top lens word names the object"), fontsize=9)
    fig.tight_layout()
    return fig


def lastpos_windows(table, windows: dict, model: str = ""):
    """Relative accuracy and drop in the top token's probability, window by window, per condition.

    ``table``: ``lastpos.summary_table`` rows; only those whose window is a key
    of ``windows`` (e.g. ``lastpos.sliding_windows(L)``) are drawn, against the
    window's first layer. No rows (nothing answered right): empty axes.
    ``model`` names the model in the title.
    """
    import pandas as pd

    sliding = table[table.window.isin(list(windows))].copy()
    if sliding.empty:
        sliding = pd.DataFrame({"window": pd.Series(dtype=str), "condition": pd.Series(dtype=str),
                                "relative_accuracy": pd.Series(dtype=float),
                                "p_drop": pd.Series(dtype=float)})
    sliding["start"] = [windows[w][0] for w in sliding.window]
    n = sliding["condition"].nunique()
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.3 + (0.6 + 0.19 * n if n else 0)))
    _curves(axes[0], sliding, "start", "relative_accuracy", by="condition")
    _curves(axes[1], sliding, "start", "p_drop", by="condition")
    for ax in axes:
        ax.set_xlabel("first layer of the window")
        _integer_ticks(ax, [w[0] for w in windows.values()] if windows else [])
    for ax in axes:  # each panel's own legend: which of its curves coincide differs
        if ax.lines:
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False,
                      title="cut from the last position")
    axes[0].set_title("relative accuracy", fontsize=9)
    axes[1].set_title("drop in the top token's probability", fontsize=9)
    width = len(next(iter(windows.values()))) if windows else 0
    fig.suptitle(_named(model, f"last position cut from ..., window by window (width {width})"),
                 fontsize=9)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------ notebook 10: method agreement
def agreement_leaderboard(lb, truths=("pointing", "auroc", "causal_spearman", "deletion",
                                      "insertion", "random_spearman"), title: str = ""):
    """Each method's mean per truth with its bootstrap interval, a panel per truth, a colour
    per model. ``lb``: ``findings.agreement.leaderboard`` rows (model, method, truth, mean,
    low, high). Methods in the order of the first panel's means; deletion is lower-better."""
    truths = [t for t in truths if t in set(lb.truth)]
    cols = min(max(len(truths), 1), 3)  # at most three panels a row: legible at display width
    rows = -(-max(len(truths), 1) // cols)
    fig, axes = plt.subplots(rows, cols, squeeze=False, sharey=True,
                             figsize=(0.9 + 2.5 * cols, rows * (0.9 + 0.3 * lb.method.nunique())))
    if not truths:
        return fig
    first = lb[lb.truth == truths[0]].groupby("method")["mean"].mean().sort_values()
    order = list(first.index) + sorted(set(lb.method) - set(first.index))
    y = {m: i for i, m in enumerate(order)}
    models = list(dict.fromkeys(lb.model)) if "model" in lb else [None]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, truth in zip(axes.flat, truths):
        for j, model in enumerate(models):
            d = lb[(lb.truth == truth) & ((lb.model == model) if model is not None else True)]
            off = (j - (len(models) - 1) / 2) * 0.12
            ys = [y[m] + off for m in d.method]
            err = np.vstack([d["mean"] - d.low, d.high - d["mean"]]).clip(0)
            ax.errorbar(d["mean"], ys, xerr=np.nan_to_num(err), fmt="o", ms=3, lw=0.8,
                        color=colours[j % len(colours)], label=model)
        ax.set_title(truth + (" (lower better)" if truth == "deletion" else ""), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(labelsize=8)
    for ax in axes.flat[len(truths):]:
        ax.set_visible(False)
    for row in axes:
        row[0].set_yticks(range(len(order)), order, fontsize=8)
    if len(models) > 1:
        axes.flat[len(truths) - 1].legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def method_maps(ex, methods=None, title: str = ""):
    """One question, every map side by side: the image with the asked-about object's tokens
    (the geometric truth), the causal map, then each method's token map, target outlined.
    ``ex``: ``findings.agreement.example``; each panel titled with its AUROC and Spearman with
    the causal map."""
    q = ex.question
    names = ["causal", *(methods or [m for m in ex.tokens if m != "causal"])]
    target = q.target.mask if q.target is not None else None
    n = len(names) + 1
    cols = min(n, 6)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, squeeze=False, figsize=(1.9 * cols, 2.1 * rows))
    flat = axes.ravel()
    inside = q.inside if q.inside is not None else np.zeros(len(q.prepared.geometry))
    attention_map(q.scene.image, q.prepared.geometry, inside.astype(float), ax=flat[0],
                  title="mask (geometric truth)", outline=target)
    for ax, name in zip(flat[1:], names):
        s = ex.scores.loc[name]
        label = f"{name}\nAUROC {s['auroc']:.2f}" + (
            f", rho {s['causal_spearman']:.2f}" if name != "causal" else " (causal truth)")
        attention_map(q.scene.image, q.prepared.geometry, np.nan_to_num(ex.tokens[name]), ax=ax,
                      title=label, outline=target)
    for ax in flat[n:]:
        ax.axis("off")
    fig.suptitle(title or f"{q.text} -> {q.answer!r} (expected {q.expected!r})", fontsize=9)
    fig.tight_layout()
    return fig


def mechanism_variants(rows: dict, paper: dict):
    """Notebook 11: per measured model (``rows``: model -> mechanism row,
    ``organism.mechanisms.measure``), left the description's object F1 when image->generated
    edges are cut from a depth on (0 = every layer, 1 = none), right the lens share of object
    patches read as their colour or shape word by depth; the paper's LLaVA-1.5 figures marked
    (stars) and the lens criterion dashed. Depth is a share of each model's layers, so models
    of 2, 4 and 8 layers share an axis."""
    import pandas as pd

    from .organism.mechanisms import LENS_SHARE

    ko, lens = [], []
    for name, r in rows.items():
        L = r["n_layers"]
        ko += [{"model": name, "depth": s / L, "f1": f}
               for s, f in enumerate(r["knockout_start_curve"]["img->gen"])]
        lens += [{"model": name, "depth": (i + 1) / L, "share": v}
                 for i, v in enumerate(r["lens_share_by_layer"])]
    fig, (a, b) = plt.subplots(1, 2, figsize=(8.4, 3.6))
    order = list(rows)
    _curves(a, pd.DataFrame(ko), "depth", "f1", by="model", order=order)
    a.plot([0], [paper["knockout_f1_all_layers"]["img->gen"]], marker="*", ms=14, color="black",
           ls="none", label="paper, LLaVA-1.5-7B (left: cut in\nevery layer; right: its best layer)",
           zorder=20)
    a.set_xlabel("cut from this depth on (share of layers)")
    a.set_ylabel("object F1 vs.\nun-knocked description")
    a.set_ylim(-0.04, 1.06)
    a.set_title("image -> generated tokens cut", fontsize=9)
    _curves(b, pd.DataFrame(lens), "depth", "share", by="model", order=order)
    b.plot([paper["lens_best_layer_fraction"]], [paper["lens_best_share"]], marker="*", ms=14,
           color="black", ls="none", label="paper, LLaVA-1.5-7B", zorder=20)
    b.axhline(LENS_SHARE, color="gray", ls="--", lw=1, label=f"criterion ({LENS_SHARE})")
    b.set_xlabel("layer (share of depth)")
    b.set_ylabel("object patches read as\ntheir colour or shape")
    b.set_ylim(0, max(0.3, paper["lens_best_share"] * 1.15))
    b.set_title("logit lens on object patches", fontsize=9)
    for ax in (a, b):
        ax.set_xlim(-0.03, 1.03)
    handles, labels = b.get_legend_handles_labels()
    star = a.get_legend_handles_labels()
    fig.legend(handles[:len(order)] + [star[0][-1], handles[-1]],
               labels[:len(order)] + [star[1][-1], labels[-1]], loc="lower center",
               ncol=3, frameon=False, bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.17, 1, 1))
    return fig
