"""Figures from results: each function takes data and returns a matplotlib ``Figure``.

No computing happens here beyond arranging values for display.

Every figure the notebooks draw lives in this one module (one place to make
them legible and consistent), in blocks by notebook; that is why it is longer
than the library's other modules.
"""

from __future__ import annotations

import matplotlib

import matplotlib.pyplot as plt
import numpy as np

from .tokens import TokenGeometry


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


def scenes(scenes, masks: bool = True, ncols: int = 4, titles=None):
    """A grid of scenes (synthetic or ``datasets.folder`` records), each object's mask in a colour."""
    n = len(scenes)
    rows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(rows, min(n, ncols) * (2 if masks else 1),
                             figsize=(2.2 * min(n, ncols) * (2 if masks else 1), 2.4 * rows),
                             squeeze=False)
    palette = plt.get_cmap("tab10")
    for ax in axes.flat:
        ax.axis("off")
    for i, sc in enumerate(scenes):
        r, c = divmod(i, ncols)
        ax = axes[r, c * (2 if masks else 1)]
        ax.imshow(sc.image)
        label = f"seed {sc.seed % 10000}" if hasattr(sc, "seed") else getattr(sc, "file", str(i))
        ax.set_title(titles[i] if titles else label, fontsize=8)
        if masks:
            m = axes[r, c * 2 + 1]
            m.imshow(np.ones((*sc.objects[0].mask.shape, 3)))
            for j, o in enumerate(sc.objects):
                _overlay_mask(m, o.mask, palette(j), alpha=0.9)
            m.set_title("\n".join(o.name for o in sc.objects), fontsize=7)
    fig.tight_layout()
    return fig


def token_grid(image, geometry: TokenGeometry, highlight: dict | None = None, view: int = 0,
               title: str = ""):
    """The image with every image token's box drawn; ``highlight`` maps a label to token indices."""
    from matplotlib.patches import Rectangle

    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.imshow(image)
    colors = ["tab:red", "tab:orange", "gold", "tab:blue"]
    for i in np.nonzero(geometry.views == view)[0]:
        if geometry.cells[i, 0] < 0:
            continue
        x0, y0, x1, y1 = geometry.boxes[i]
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, lw=0.5,
                               ec="0.3"))
    for k, (label, idx) in enumerate((highlight or {}).items()):
        for j, i in enumerate(idx):
            x0, y0, x1, y1 = geometry.boxes[i]
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=True, lw=0,
                                   fc=colors[k % len(colors)], alpha=0.35,
                                   label=label if j == 0 else None))
    if highlight:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=len(highlight), fontsize=8,
                  frameon=False)
    ax.set_title(title or geometry.note, fontsize=8)
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
    """Mean ± std per layer of the attention fractions (image, query, query w/o BOS, generated).

    ``df``: tidy rows with columns layer, image, query, query_no_bos, generated
    (one row per image, layer and generated token).
    """
    import seaborn as sns

    long = df.melt(id_vars=["layer"], value_vars=["image", "query", "query_no_bos", "generated"],
                   var_name="attends to", value_name="fraction")
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    sns.lineplot(long, x="layer", y="fraction", hue="attends to", errorbar="sd", marker="o", ax=ax,
                 palette={"image": "tab:blue", "query": "tab:orange", "query_no_bos": "tab:brown",
                          "generated": "tab:green"})
    ax.set_ylim(0, 1)
    ax.set_xticks(sorted(df.layer.unique()))
    ax.set_title(title or "share of each generated token's attention, by layer (mean ± sd)",
                 fontsize=9)
    fig.tight_layout()
    return fig


def knockout_curves(df, title: str = "", y: str = "f1"):
    """Object F1 against the paper's l (cut in layers > l), one line per configuration (mean ± sd).

    ``y``: the F1 column to plot (``"f1"``, or e.g. ``"f1_exact"``).
    """
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    d = df if "l" in df else df.assign(l=df.start - 1)
    sns.lineplot(d, x="l", y=y, hue="config", errorbar="sd", marker="o", ax=ax)
    L = int(df.n_layers.iloc[0])
    ax.set_xlabel(f"l: knocked out in layers with index > l (-1 = all {L} layers, {L - 1} = none)")
    ax.set_ylabel("object F1 vs. un-knocked description")
    ax.set_ylim(-0.02, 1.05)
    ax.set_xticks(range(-1, L))
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def attention_map(image, geometry: TokenGeometry, values, title: str = "", ax=None, view: int = 0,
                  outline=None):
    """Per-token values (e.g. one layer's attention) min-max normalised and laid over the image.

    ``outline``: an optional boolean ``[H, W]`` mask (e.g. the named object's) drawn in cyan.
    """
    v = np.asarray(values, dtype=float)
    lo, hi = np.nanmin(v), np.nanmax(v)
    norm = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(3.2, 3.2))
    ax.imshow(image)
    ax.imshow(geometry.to_pixels(norm, view=view), cmap="inferno", alpha=0.55, vmin=0, vmax=1)
    if outline is not None:
        ax.contour(np.asarray(outline, dtype=float), levels=[0.5], colors="cyan", linewidths=0.8)
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    return ax.figure


def maps_across_layers(image, geometry: TokenGeometry, maps, steps, labels=None, layers=None,
                       masks=None, title: str = "", view: int = 0):
    """A grid of attention maps: rows = chosen generated tokens, columns = layers.

    ``maps``: ``[layers, steps, n_image]`` (e.g. ``Recorded.maps()``); ``steps``:
    the step (row) of each token to show; ``labels``: one text per row (the
    token); ``masks``: optional ``[H, W]`` boolean mask per row, outlined in
    cyan. Every panel is min-max normalised on its own, so panels show where
    attention goes, not how much.
    """
    maps = np.asarray(maps)
    layers = list(range(maps.shape[0])) if layers is None else list(layers)
    steps = list(steps)
    fig, axes = plt.subplots(len(steps), len(layers), squeeze=False,
                             figsize=(0.5 + 1.8 * len(layers), 0.4 + 1.9 * len(steps)))
    for r, s in enumerate(steps):
        for c, layer in enumerate(layers):
            ax = axes[r, c]
            attention_map(image, geometry, maps[layer, s], ax=ax, view=view,
                          title=f"layer {layer}" if r == 0 else "",
                          outline=masks[r] if masks is not None else None)
        label = labels[r] if labels is not None else f"step {s}"
        axes[r, 0].text(-0.06, 0.5, label, transform=axes[r, 0].transAxes, rotation=90,
                        ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def localisation_by_layer(df, hue=None, title: str = ""):
    """Pointing game and mass-in-mask ratio per layer, mean ± sd over the rows given.

    ``df``: tidy rows with columns layer, pointing, ratio and mask_share (e.g.
    ``maps.localisation`` rows, or their per-image means so the spread is over
    images). Chance: a peak dropped uniformly on the image tokens lands in the
    mask with probability mask_share (dashed, left); a uniform map has ratio
    1.0 (dashed, right).
    """
    import seaborn as sns

    d = df.assign(pointing=df["pointing"].astype(float))
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.4))
    sns.lineplot(d, x="layer", y="pointing", hue=hue, errorbar="sd", marker="o", ax=left)
    left.axhline(float(d["mask_share"].mean()), color="0.4", ls="--", lw=1,
                 label="chance (mean mask share)")
    left.set_ylim(-0.02, 1.05)
    left.set_ylabel("pointing game: peak inside the mask")
    sns.lineplot(d, x="layer", y="ratio", hue=hue, errorbar="sd", marker="o", ax=right)
    right.axhline(1.0, color="0.4", ls="--", lw=1, label="chance = 1.0 (uniform map)")
    right.set_ylim(bottom=0)
    right.set_ylabel("mass in mask / mask share")
    for ax in (left, right):
        ax.set_xticks(sorted(d["layer"].unique()))
        ax.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def token_fractions(rows, title: str = ""):
    """One generated token's attention split per layer, as stacked bars.

    ``rows``: one row per layer with columns layer, image, query_no_bos, bos,
    generated (e.g. ``Recorded.fractions()`` filtered to one step).
    """
    fig, ax = plt.subplots(figsize=(6, 3))
    parts = {"image": "tab:blue", "query_no_bos": "tab:brown", "bos": "tab:orange",
             "generated": "tab:green"}
    bottom = np.zeros(len(rows))
    for col, color in parts.items():
        vals = np.asarray(rows[col], dtype=float)
        ax.bar(np.asarray(rows["layer"]), vals, bottom=bottom, color=color, label=col)
        bottom += vals
    ax.set_ylim(0, 1)
    ax.set_xticks(np.asarray(rows["layer"]))
    ax.set_xlabel("layer")
    ax.set_ylabel("share of attention")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
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
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    colors = {"both": "tab:blue", "query": "tab:orange", "image": "tab:green",
              "full": "0.2", "direct": "0.55"}
    ks = sorted(table.loc[~table.variant.isin(["full", "direct"]), "k_frac"].unique())
    for ax, metric, label in zip(axes, ("acc", "acc_plus"), ("ACC (per question)",
                                                             "ACC+ (all questions of an image)")):
        for variant, d in table.groupby("variant", sort=False):
            d = d.sort_values("k_frac")
            c = colors.get(variant, None)
            if variant in ("full", "direct"):
                ax.axhline(float(d[metric].iloc[0]), color=c, ls="--", lw=1.2, zorder=1,
                           label=f"{variant} ({d.compression.iloc[0]:.0f}x)")
            else:
                lo, hi = d.compression.min(), d.compression.max()
                span = f"{lo:.1f}x" if np.isclose(lo, hi) else f"{lo:.1f}-{hi:.1f}x"
                ax.plot(d.k_frac, d[metric], marker="o", color=c, alpha=0.85, zorder=2,
                        label=f"{variant} ({span})")
        ax.set_xscale("log")
        ax.set_xticks(ks, [f"{k:.0%}" for k in ks])
        ax.minorticks_off()
        ax.set_ylim(-0.02, 1.05)
        ax.set_xlabel("K: share of image tokens kept per layer")
        ax.set_title(label, fontsize=9)
    axes[0].set_ylabel("accuracy")
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False,
                   title="variant (token reduction)", title_fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def heatmap(image, importance, target=None, title: str = "", ax=None):
    """An importance map ``[H, W]`` (high = important) min-max normalised over the image.

    ``target``: optional boolean mask outlined in cyan (the object the question asks about).
    """
    v = np.nan_to_num(np.asarray(importance, dtype=float))
    lo, hi = v.min(), v.max()
    norm = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
    if ax is None:
        _, ax = plt.subplots(figsize=(3.2, 3.2))
    ax.imshow(image)
    ax.imshow(norm, cmap="inferno", alpha=0.6, vmin=0, vmax=1)
    if target is not None:
        ax.contour(np.asarray(target, dtype=float), levels=[0.5], colors="cyan", linewidths=0.9)
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    return ax.figure


def heatmap_panels(image, maps: dict, target=None, title: str = "", scores: dict | None = None):
    """One panel per named map (e.g. iGOS, attention, gradient), target outlined.

    ``scores``: optional per-name text shown under each panel's title.
    """
    fig, axes = plt.subplots(1, len(maps), squeeze=False, figsize=(0.4 + 2.6 * len(maps), 3.0))
    for ax, (name, m) in zip(axes[0], maps.items()):
        label = name if not scores or name not in scores else f"{name}\n{scores[name]}"
        heatmap(image, m, target, title=label, ax=ax)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def faithfulness_curves(curves: dict, title: str = ""):
    """Deletion and insertion curves (normalised score per step), one line per map.

    ``curves``: name -> ``heatmaps.Faithfulness``; the legend gives each mean
    (lower deletion and higher insertion are better).
    """
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 2.8), sharey=True)
    for name, f in curves.items():
        x = np.linspace(0, 1, len(f.deletion_curve))
        axes[0].plot(x, f.deletion_curve, label=f"{name} ({f.deletion:.2f})")
        axes[1].plot(x, f.insertion_curve, label=f"{name} ({f.insertion:.2f})")
    for ax, what in zip(axes, ("deletion: image -> baseline", "insertion: baseline -> image")):
        ax.set_title(what, fontsize=9)
        ax.set_xlabel("share of mask cells changed, most important first")
        ax.axhline(0, color="0.7", lw=0.6)
        ax.axhline(1, color="0.7", lw=0.6)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("normalised score of the selected tokens")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def lens_tokens(image, geometry: TokenGeometry, tokens, highlight=None, title: str = "", ax=None,
                view: int = 0):
    """Each image token's logit-lens top word written on its box; ``highlight`` tokens boxed.

    ``tokens``: one string per image token (e.g. ``LensResult.top_tokens(layer)``);
    ``highlight``: image-token indices to outline (e.g. an object's tokens).
    """
    import matplotlib.patches as mpatches

    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.imshow(image)
    hl = set(np.asarray(highlight if highlight is not None else [], dtype=int).tolist())
    rows, cols = geometry.grids[view]
    size = max(3.0, 60.0 / max(rows, cols))
    for i, (x0, y0, x1, y1) in enumerate(geometry.boxes):
        if geometry.views[i] != view or geometry.cells[i, 0] < 0 or x1 <= x0:
            continue
        ax.text((x0 + x1) / 2, (y0 + y1) / 2, tokens[i].lstrip("▁Ġ"), ha="center", va="center",
                fontsize=size, color="black" if i not in hl else "crimson",
                bbox=dict(boxstyle="square,pad=0.05", fc="white", alpha=0.5, lw=0))
        if i in hl:
            ax.add_patch(mpatches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="crimson", lw=0.8))
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    return ax.figure


# --- notebooks 00-04 ---------------------------------------------------------------------------

def object_word_maps(image, geometry: TokenGeometry, maps, tokens, words, title: str = "",
                     n: int = 4, view: int = 0):
    """``maps_across_layers`` for the object words of one generated description.

    ``maps``: ``[layers, steps, n_image]`` (``Recorded.maps()``); ``tokens``:
    the generated tokens; ``words``: ``(step, object)`` pairs (e.g.
    ``findings.mentioned_objects``), at most ``n`` shown, each row labelled
    with its token and the object's name and outlined with its mask. Without
    object words the first three generated tokens are shown, unoutlined.
    """
    shown = list(words)[:n] or [(s, None) for s in range(min(3, len(tokens)))]
    return maps_across_layers(
        image, geometry, maps, steps=[s for s, _ in shown],
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
    fig, axes = plt.subplots(1, len(panels), squeeze=False, figsize=(2.25 * len(panels), 2.4))
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
    fig, axes = plt.subplots(1, len(panels), squeeze=False, figsize=(0.5 + 2.5 * len(panels), 2.9))
    for ax, (name, (image, importance, target)) in zip(axes[0], panels.items()):
        heatmap(image, importance, target, name, ax=ax)
    fig.tight_layout()
    return fig


def focus_by_correctness(scored, title: str = "focus on the asked object, by correctness"):
    """iGOS+ mass in the asked object (boxes) and pointing hits (bars) per model, by correctness.

    ``scored``: one row per explained answer with columns model, correct (bool),
    igos_mass and igos_pointing (e.g. averaged over noise seeds).
    """
    import seaborn as sns

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    sns.boxplot(data=scored, x="model", y="igos_mass", hue="correct", ax=axes[0])
    axes[0].set_ylabel("iGOS+ mass in the asked object")
    point = scored.groupby(["model", "correct"]).igos_pointing.mean().reset_index()
    sns.barplot(data=point, x="model", y="igos_pointing", hue="correct", ax=axes[1])
    axes[1].set_ylabel("pointing game (share of hits)")
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=20)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def design_vs_scale(tests: dict):
    """Per similarity measure, the model pairs' similarity by relation (same design, same scale...).

    ``tests``: name -> ``stats.design_vs_scale`` result (its ``pairs``, ``observed``, ``p_value``).
    """
    import seaborn as sns

    fig, axes = plt.subplots(1, len(tests), squeeze=False, figsize=(4.5 * len(tests), 3.2))
    for ax, (name, t) in zip(axes[0], tests.items()):
        sns.boxplot(data=t.pairs.dropna(subset=["similarity"]), x="relation", y="similarity", ax=ax)
        ax.set_title(f"{name}: observed difference {t.observed:.3f}, p = {t.p_value:.3g}", fontsize=8)
        ax.tick_params(axis="x", labelrotation=15, labelsize=7)
    fig.tight_layout()
    return fig


def object_tokens(image, geometry: TokenGeometry, rings: dict, name: str = "object", view: int = 0):
    """An object's image tokens shaded over the image, one panel per ring count.

    ``rings``: ring count -> token indices (``geometry.tokens_for_mask(mask, rings=r)``).
    """
    fig, axes = plt.subplots(1, len(rings), squeeze=False, figsize=(2.7 * len(rings), 2.8))
    n = len(geometry.boxes)
    for ax, (r, toks) in zip(axes[0], rings.items()):
        chosen = set(np.asarray(toks, dtype=int).tolist())
        ax.imshow(image)
        ax.imshow(geometry.to_pixels([1.0 if i in chosen else 0.0 for i in range(n)], view=view),
                  cmap="Reds", alpha=0.45, vmin=0, vmax=1)
        ax.set_title(f"{name}: {len(chosen)} tokens (rings {r})", fontsize=8)
        ax.axis("off")
    return fig


def loss_by_count(table, model: str = ""):
    """Share of correct identifications lost against the number of tokens ablated, per rule and task.

    ``table``: ``ablation.loss_table(df, by=("rule", "rings", "task"))`` (n_tokens, lost, rule,
    task); ``model`` names the model in the title.
    """
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    sns.lineplot(data=table, x="n_tokens", y="lost", hue="rule", style="task", markers=True, ax=ax)
    ax.set_xlabel("ablated tokens (mean per object; rings 0, 1, 2)")
    ax.set_ylabel("share of correct identifications lost")
    ax.set_title(_named(model, "accuracy lost against tokens ablated, by selection rule"), fontsize=9)
    fig.tight_layout()
    return fig


def lens_layers(image, geometry: TokenGeometry, tokens_by_layer, highlight=None, title: str = "",
                view: int = 0):
    """``lens_tokens`` for every layer side by side: each patch's top lens word, layer by layer.

    ``tokens_by_layer``: per layer, one string per image token (``LensResult.top_tokens(layer)``).
    """
    L = len(tokens_by_layer)
    fig, axes = plt.subplots(1, L, squeeze=False, figsize=(3.2 * L, 3.4))
    for layer, ax in enumerate(axes[0]):
        lens_tokens(image, geometry, tokens_by_layer[layer], highlight, title=f"layer {layer}",
                    ax=ax, view=view)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def lens_score(df, rings: int = 0, model: str = ""):
    """Per layer, the share of object patches whose top lens word is the object's colour or shape.

    ``df``: the lens finding's rows (object, rings, layer, share, and on synthetic
    scenes share_color, share_shape); lines are means over objects (of ``rings``), with their spread;
    ``model`` names the model in the title.
    """
    import seaborn as sns

    shares = [c for c in ("share", "share_color", "share_shape") if c in df]
    long = df.melt(id_vars=["object", "rings", "layer"], value_vars=shares, var_name="word",
                   value_name="top-1 share")
    fig, ax = plt.subplots(figsize=(6, 3))
    sns.lineplot(data=long[long.rings == rings], x="layer", y="top-1 share", hue="word", marker="o",
                 ax=ax)
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
    import seaborn as sns

    sliding = table[table.window.isin(list(windows))].copy()
    if sliding.empty:
        sliding = pd.DataFrame({"window": pd.Series(dtype=str), "condition": pd.Series(dtype=str),
                                "relative_accuracy": pd.Series(dtype=float),
                                "p_drop": pd.Series(dtype=float)})
    sliding["start"] = [windows[w][0] for w in sliding.window]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    sns.lineplot(data=sliding, x="start", y="relative_accuracy", hue="condition", marker="o",
                 ax=axes[0])
    sns.lineplot(data=sliding, x="start", y="p_drop", hue="condition", marker="o", ax=axes[1],
                 legend=False)
    for ax in axes:
        ax.set_xlabel("first layer of the window")
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
    fig, axes = plt.subplots(1, max(len(truths), 1), squeeze=False, sharey=True,
                             figsize=(0.6 + 2.3 * max(len(truths), 1), 0.8 + 0.32 * lb.method.nunique()))
    if not truths:
        return fig
    first = lb[lb.truth == truths[0]].groupby("method")["mean"].mean().sort_values()
    order = list(first.index) + sorted(set(lb.method) - set(first.index))
    y = {m: i for i, m in enumerate(order)}
    models = list(dict.fromkeys(lb.model)) if "model" in lb else [None]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, truth in zip(axes[0], truths):
        for j, model in enumerate(models):
            d = lb[(lb.truth == truth) & ((lb.model == model) if model is not None else True)]
            off = (j - (len(models) - 1) / 2) * 0.12
            ys = [y[m] + off for m in d.method]
            err = np.vstack([d["mean"] - d.low, d.high - d["mean"]]).clip(0)
            ax.errorbar(d["mean"], ys, xerr=np.nan_to_num(err), fmt="o", ms=3, lw=0.8,
                        color=colours[j % len(colours)], label=model)
        ax.set_title(truth + (" (lower better)" if truth == "deletion" else ""), fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(order)), order, fontsize=8)
    if len(models) > 1:
        axes[0][-1].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=9)
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
