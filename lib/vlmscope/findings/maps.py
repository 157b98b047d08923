"""Attention maps: where each generated object word's attention falls on the image, per layer,
scored on the object's mask (notebook 02; ``maps.localisation``).

A synthetic scene's object words are its colour and shape words; an annotated
image's are the words of its objects' names (``sense.mentioned_objects``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ._common import count, DescribeConfig, describe_key, is_scene, ours_vs_paper, paper_table

NAME = "maps"


@dataclass(frozen=True)
class Config(DescribeConfig):
    """Describe each image once (``DescribeConfig``'s settings)."""


key = describe_key


def run(vlm, item, cfg: Config = Config()) -> pd.DataFrame:
    from ..maps import localisation, organism_object_words, record_generation

    rec = record_generation(vlm, item.image, cfg.question, cfg.max_new_tokens)
    if is_scene(item):
        found = organism_object_words(rec.generation.tokens, item)
    else:
        from .sense import mentioned_objects

        found = mentioned_objects(rec.generation.tokens, item)
    words = [(step, obj.mask) for step, obj in found]
    return localisation(rec, words)


def summarise(df: pd.DataFrame) -> dict:
    if df.empty:
        return {}
    by = df.groupby("layer")[["pointing", "ratio"]].mean()  # pooled: each object word once
    word = [c for c in ("item", "image_id") if c in df][:1] + ["step"]  # a word: (image, step)
    return {"best_pointing_layer": int(by.pointing.idxmax()),
            "best_pointing": round(float(by.pointing.max()), 4),
            "words": int(df.groupby(word).ngroups)}


PAPER = paper_table([
    ("best_pointing_layer", "middle layers: the attention peak of an object word falls inside "
     "its mask; early and late layers are dominated by outlier tokens", "LLaVA-1.5-7B",
     "Kaduri et al., CVPR 2025, Fig. 4 (shared/REFERENCES.md B3)"),
])


def vs_paper(data) -> pd.DataFrame:
    """Our best pointing layer beside the paper's qualitative finding (no numbers given)."""
    s = summarise(data) if isinstance(data, pd.DataFrame) else dict(data)
    ours = {"best_pointing_layer": s.get("best_pointing_layer")}
    notes = {}
    if isinstance(data, pd.DataFrame) and len(data):
        L = int(data.layer.max()) + 1
        notes["best_pointing_layer"] = (
            f"layer index of {L}; pointing there {s['best_pointing']:.2f} pooled over "
            f"{s['words']} object words (each word once; a per-image mean weights each image "
            "once instead). The paper reports no number, only where the peak falls")
    return ours_vs_paper(PAPER, ours, notes)


# --- notebook 02: the headline and the paper's claims ----------------------------------------



def by_layer(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(per_image, by_layer)``: the rows' means per (item, layer), then their mean and sd per
    layer, so the spread is over images, not over the words of one image."""
    cols = ["pointing", "mass_in_mask", "mask_share", "ratio"]
    if df.empty:
        empty = pd.DataFrame(columns=["item", "layer", *cols])
        return empty, empty.groupby("layer")[["ratio"]].mean()
    d = df.sort_values("item", kind="stable")
    per_image = (d.assign(pointing=d.pointing.astype(float))
                 .groupby(["item", "layer"])[cols].mean().reset_index())
    return per_image, per_image.groupby("layer")[["pointing", "ratio", "mask_share"]].agg(
        ["mean", "std"])


def write(folder, df: pd.DataFrame, peaks: pd.DataFrame, sinks: pd.DataFrame, n_layers: int,
          n_images: int, nonsense: str | None = None, prefix: str = "02") -> dict:
    """Keep notebook 02's results in ``folder``: this finding's rows in item order
    (``<prefix>_localisation.parquet``), the outliers finding's ``peaks``
    (``<prefix>_peaks.parquet``) and ``report`` as ``<prefix>_summary.json``
    (``write_summary``); return the summary as written."""
    from pathlib import Path

    from .sense import write_summary

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    df.sort_values("item", kind="stable").to_parquet(folder / f"{prefix}_localisation.parquet")
    peaks.to_parquet(folder / f"{prefix}_peaks.parquet")
    return write_summary(folder / f"{prefix}_summary.json",
                         report(df, peaks, sinks, n_layers=n_layers, n_images=n_images), nonsense)


def report(df: pd.DataFrame, peaks: pd.DataFrame, sinks: pd.DataFrame, n_layers: int,
           n_images: int) -> dict:
    """Notebook 02's headline: localisation by layer and by band (early / middle / late) from
    this finding's rows, and the outlier signs by band from the outliers finding's ``peaks``
    (``maps.outlier_table``) and the first image's ``maps.sink_norms``."""
    from ..maps import layer_bands, outlier_table

    layers = layer_bands(n_layers)
    band = {name: ls for name, ls in layers.items() if ls}
    out_t = outlier_table(peaks)

    def by_band(series, flip=False):
        return {k: round((1 - float(series.loc[v].mean())) if flip else float(series.loc[v].mean()), 3)
                for k, v in band.items()}

    summary = {"n_layers": n_layers, "n_images": n_images,
               "images_scored": int(df.item.nunique()) if len(df) else 0,
               "object_words": int(len(df) // n_layers) if len(df) else 0, "layers": layers,
               "peak_share_by_band": by_band(out_t.peak_share),
               "modal_peak_rate_by_band": by_band(out_t.modal_peak),
               "first_scene_sink_norm_rank_by_layer": sinks["norm rank (1 = largest)"].tolist(),
               "off_object_peak_rate_by_band": by_band(out_t.peak_on_object, flip=True)}
    if len(df):
        per_image, table = by_layer(df)
        point, ratio = table[("pointing", "mean")], table[("ratio", "mean")]
        summary.update({
            "pointing_by_layer": point.round(3).tolist(),
            "pointing_sd_by_layer": table[("pointing", "std")].round(3).tolist(),
            "ratio_by_layer": ratio.round(3).tolist(),
            "ratio_sd_by_layer": table[("ratio", "std")].round(3).tolist(),
            "pointing_chance": round(float(per_image.mask_share.mean()), 3),
            "best_pointing_layer": int(point.idxmax()), "best_ratio_layer": int(ratio.idxmax()),
            "pointing_by_band": by_band(point), "ratio_by_band": by_band(ratio)})
    return summary


def what_we_found(summary: dict, model: str) -> str:
    """Notebook 02's conclusion in words, from ``report``'s summary: which band of layers
    points at the named object best (against the pointing chance), and where the outlier
    sign (the same peak token whatever the word) is strongest, beside the paper's claims."""
    point = summary.get("pointing_by_band")
    if not point:
        return (f"**{model}**: no description names an object of its image, so no map can be "
                "scored against the paper's claim.")
    chance, modal = summary.get("pointing_chance"), summary.get("modal_peak_rate_by_band", {})
    top = max(point.values())
    best = [b for b, v in point.items() if v == top]
    bands = ", ".join(f"{b} {v:.2f}" for b, v in point.items())
    out = (f"**{model}** ({count(summary.get('n_images'), 'image')}): an object word's attention "
           f"peak is on its object most often in the **{' and '.join(best)}** layers (pointing by "
           f"band: {bands}; chance, the object's share of the image tokens: {chance:.2f}). The "
           "paper finds localisation in the middle layers: "
           + ("this model agrees." if best == ["middle"] else "this model does not."))
    if modal:
        edge = max((modal[b] for b in ("early", "late") if b in modal), default=None)
        mid = modal.get("middle")
        rates = ", ".join(f"{b} {v:.2f}" for b, v in modal.items())
        if edge is not None and mid is not None:
            out += (f" The layer's most common peak token takes the peak in a share of all maps "
                    f"of {rates}: " + ("outliers weigh more in the early or late layers than in "
                                       "the middle, as the paper finds." if edge > mid else
                                       "the middle layers have outliers as often as the early and "
                                       "late ones, unlike the paper."))
    return out
