"""Attention fractions: the share of each generated token's attention on image, query and
generated tokens, per layer (notebook 01; ``maps.record_generation``).

Works on synthetic scenes and on annotated images alike (it needs only the image).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ._common import ours_vs_paper, paper_table, DESCRIBE, option, stored_config

NAME = "fractions"


@dataclass(frozen=True)
class Config:
    question: str = option(DESCRIBE, "the prompt whose answer is generated")
    max_new_tokens: int = option(48, "answer length in tokens", minimum=1)


def key(cfg: Config, **extra) -> list:
    """What a stored part's key holds between the model and the item id."""
    return [stored_config(cfg.question, cfg.max_new_tokens)]


def run(vlm, item, cfg: Config = Config()) -> pd.DataFrame:
    from ..maps import record_generation

    from .sense import mentioned_objects

    rec = record_generation(vlm, item.image, cfg.question, cfg.max_new_tokens, maps="none")
    df = rec.fractions()
    named = {step for step, _ in mentioned_objects(rec.generation.tokens, item)}
    df["names_object"] = df.step.isin(named)  # the token written at this step names an object
    return df


def summarise(df: pd.DataFrame) -> dict:
    if df.empty:
        return {}
    by = df.groupby("layer")[["image", "query", "query_no_bos", "generated"]].mean()
    return {"image_mean": round(float(by.image.mean()), 4),
            "query_mean": round(float(by["query"].mean()), 4),
            "peak_image_layer": int(by.image.idxmax())}


# --- notebook 01: the headline and the paper's claims ----------------------------------------

PAPER = paper_table([
    ("mean image attention", "below the image's share of the prompt", "InternVL2-76B, LLaVA-1.5-7B",
     "Kaduri et al. 2025, Fig. 1 and appendix"),
    ("mean BOS attention", "a large part of the query's share (the attention sink)",
     "InternVL2-76B, LLaVA-1.5-7B", "Kaduri et al. 2025, Fig. 1 and appendix"),
])


def report(df: pd.DataFrame, image_tokens: int, prompt_length: int, n_images: int) -> dict:
    """Notebook 01's headline numbers from this finding's rows (all items of a run).

    ``image_tokens`` / ``prompt_length``: the first item's image tokens and
    prompt length (the image's share of the prompt); ``object_words`` counts the
    generated tokens naming an object of their image (column ``names_object``).
    """
    by_layer = df.groupby("layer")[["image", "query", "query_no_bos", "bos", "generated"]].mean()
    named = df[df.layer == df.layer.min()] if len(df) else df
    return {"image_share_of_prompt_tokens": round(image_tokens / prompt_length, 3),
            "mean_image_attention": round(float(by_layer.image.mean()), 3),
            "peak_image_layer": int(by_layer.image.idxmax()),
            "mean_bos_attention": round(float(by_layer.bos.mean()), 3),
            "n_images": n_images, "object_words": int(named.names_object.sum()) if len(df) else 0}


def vs_paper(summary: dict) -> pd.DataFrame:
    """Notebook 01's ``report`` beside the paper's claims (qualitative: the paper gives curves)."""
    share, image = summary["image_share_of_prompt_tokens"], summary["mean_image_attention"]
    verdict = "below: agrees" if image < share else "not below: differs"
    return ours_vs_paper(PAPER, {
        "mean image attention": f"{image:.2f} (image share of the prompt {share:.2f}: {verdict})",
        "mean BOS attention": f"{summary['mean_bos_attention']:.2f}"},
        notes={"mean image attention": f"image attention peaks in layer "
                                       f"{summary['peak_image_layer']}"})
