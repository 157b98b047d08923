"""Attention maps: where each generated object word's attention falls on the image, per layer,
scored on the object's mask (notebook 02; ``maps.localisation``).

A synthetic scene's object words are its colour and shape words; an annotated
image's are the words of its objects' names (``sense.mentioned_objects``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ._common import DESCRIBE, is_scene, option, stored_config, ours_vs_paper, paper_table

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
        notes["best_pointing_layer"] = (f"layer index of {L}; pointing there "
                                        f"{s['best_pointing']:.2f} over {s['words']} object words")
    return ours_vs_paper(PAPER, ours, notes)
