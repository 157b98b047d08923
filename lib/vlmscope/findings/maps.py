"""Attention maps: where each generated object word's attention falls on the image, per layer,
scored on the object's mask (notebook 02; ``maps.localisation``).

A synthetic scene's object words are its colour and shape words; an annotated
image's are the words of its objects' names (``sense.mentioned_objects``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ._common import ours_vs_paper, paper_table, DESCRIBE, is_scene, option, stored_config

NAME = "maps"


@dataclass(frozen=True)
class Config:
    question: str = option(DESCRIBE, "the prompt whose answer is generated")
    max_new_tokens: int = option(48, "answer length in tokens", minimum=1)


def key(cfg: Config, **extra) -> list:
    """What a stored part's key holds between the model and the item id."""
    return [stored_config(cfg.question, cfg.max_new_tokens)]


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
    by = df.groupby("layer")[["pointing", "ratio"]].mean()
    return {"best_pointing_layer": int(by.pointing.idxmax()),
            "best_pointing": round(float(by.pointing.max()), 4), "words": int(df.step.nunique())}


# --- notebook 02: the headline and the paper's claims ----------------------------------------

PAPER = paper_table([
    ("middle layers point inside the object", "yes: the peak falls in the object's mask",
     "LLaVA-1.5-7B", "Kaduri et al. 2025, Fig. 4 (qualitative)"),
    ("object words attend to their object (mass in mask / mask share)", "above 1.0",
     "LLaVA-1.5-7B", "Kaduri et al. 2025, Fig. 4 (qualitative)"),
    ("early and late layers dominated by outlier tokens", "yes", "LLaVA-1.5-7B",
     "Kaduri et al. 2025, Fig. 4 (qualitative)"),
])


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


def vs_paper(summary: dict) -> pd.DataFrame:
    """Notebook 02's ``report`` beside the paper's (qualitative) claims, each with its verdict.

    Outliers: a band "agrees" when its maps peak on the layer's most common token more than
    5 points more often than the middle band's.
    """
    pb, rb = summary.get("pointing_by_band", {}), summary.get("ratio_by_band", {})
    mb, ob = summary["modal_peak_rate_by_band"], summary["off_object_peak_rate_by_band"]
    ours, notes = {}, {}
    q1, q2, q3 = PAPER.quantity
    if "middle" in pb:
        ends = [b for b in ("early", "late") if b in pb]
        best = all(pb["middle"] > pb[b] for b in ends)
        ours[q1] = ", ".join(f"{b} {v:.0%}" for b, v in pb.items())
        notes[q1] = (f"chance {summary['pointing_chance']:.0%}; best layer "
                     f"{summary['best_pointing_layer']}: "
                     + ("agrees, the middle band localises best" if best else "differs"))
        ours[q2] = f"middle {rb['middle']:.2f}"
        notes[q2] = "agrees" if rb["middle"] > 1.0 else "differs: no more than a uniform map"
    if "middle" in mb:
        ours[q3] = "most common peak: " + ", ".join(f"{b} {v:.0%}" for b, v in mb.items())
        verdicts = [f"{b}: " + ("agrees" if mb[b] > mb["middle"] + 0.05 else "not clearly"
                                if mb[b] > mb["middle"] else "differs")
                    for b in ("early", "late") if b in mb]
        notes[q3] = "; ".join(verdicts) + " (off-object peaks: " + ", ".join(
            f"{b} {v:.0%}" for b, v in ob.items()) + ")"
    if summary.get("nonsense"):
        notes = {**notes, q1: summary["nonsense"], q2: summary["nonsense"]}
    return ours_vs_paper(PAPER, ours, notes)
