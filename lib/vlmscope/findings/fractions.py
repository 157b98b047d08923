"""Attention fractions: the share of each generated token's attention on image, query and
generated tokens, per layer (notebook 01; ``maps.record_generation``).

Works on synthetic scenes and on annotated images alike (it needs only the image).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ._common import DESCRIBE, option, stored_config, ours_vs_paper, paper_table

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

    rec = record_generation(vlm, item.image, cfg.question, cfg.max_new_tokens, maps="none")
    return rec.fractions()


def summarise(df: pd.DataFrame) -> dict:
    if df.empty:
        return {}
    by = df.groupby("layer")[["image", "query", "query_no_bos", "generated"]].mean()
    return {"image_mean": round(float(by.image.mean()), 4),
            "query_mean": round(float(by["query"].mean()), 4),
            "peak_image_layer": int(by.image.idxmax())}


KADURI = "Kaduri et al., CVPR 2025, Fig. 1 (shared/REFERENCES.md B)"
PAPER = paper_table([
    ("image_mean", "small: below the image's share of the sequence", "InternVL2-76B, LLaVA-1.5-7B",
     KADURI),
    ("peak_image_layer", "middle layers", "InternVL2-76B, LLaVA-1.5-7B", KADURI),
])


def vs_paper(data) -> pd.DataFrame:
    """Our figures beside the paper's (a run's rows or its summary). The paper gives curves,
    not numbers: the note says what to compare."""
    s = summarise(data) if isinstance(data, pd.DataFrame) else dict(data)
    ours = {"image_mean": s.get("image_mean"), "peak_image_layer": s.get("peak_image_layer")}
    notes = {"image_mean": "mean share of generated tokens' attention on the image, over layers"}
    if isinstance(data, pd.DataFrame) and len(data):
        L = int(data.layer.max()) + 1
        notes["peak_image_layer"] = f"layer index of {L} layers"
    return ours_vs_paper(PAPER, ours, notes)
