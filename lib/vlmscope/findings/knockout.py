"""Attention knockout (Kaduri et al.): object F1 of descriptions generated with attention
edges cut from layer l on, per knockout configuration (notebook 03; ``knockout.knockout_sweep``).

Judged by Kaduri et al.'s rule (object identities) in ``f1``; on synthetic
scenes the exact (colour, shape, place) objects beside in ``f1_exact``. On an
annotated image the objects are its annotated names (``judge.judge_for``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ._common import DESCRIBE, is_scene, option, stored_config

NAME = "knockout"


@dataclass(frozen=True)
class Config:
    question: str = option(DESCRIBE, "the prompt whose description is knocked out")
    max_new_tokens: int = option(48, "description length in tokens", minimum=1)


def key(cfg: Config, **extra) -> list:
    """What a stored part's key holds between the model and the item id.

    "rules-2": the rules a part was computed with (released by default since
    then); parts made under other rules are never reused.
    """
    return [stored_config(cfg.question, cfg.max_new_tokens), "rules-2"]


def run(vlm, item, cfg: Config = Config()) -> pd.DataFrame:
    """Kaduri et al.'s rule (object identities) in ``f1``, exact tuples beside in ``f1_exact``."""
    from ..judge import ExactJudge, judge_for
    from ..knockout import SweepConfig, knockout_sweep

    judge = judge_for([item], identity=True)  # decided by the data, never the model's name
    also = {"exact": ExactJudge()} if is_scene(item) else {}
    return knockout_sweep(vlm, item.image, SweepConfig(question=cfg.question,
                                                       max_new_tokens=cfg.max_new_tokens),
                          judge=judge, also=also)


def summarise(df: pd.DataFrame) -> dict:
    if df.empty:
        return {}
    # the paper's l: cut in layers with index > l; l = -1 is every layer
    full = df[df.start == 0].groupby("config")
    out = {f"f1[{k},l=-1]": round(float(v), 4) for k, v in full.f1.mean().items()}
    if "f1_exact" in df:
        out |= {f"f1_exact[{k},l=-1]": round(float(v), 4)
                for k, v in full.f1_exact.mean().items()}
    return out


def notes(df: pd.DataFrame) -> dict:
    """What the run's summary adds: the judges the rows were judged by."""
    return {"judge": ",".join(sorted(set(df.judge)))} if "judge" in df else {}
