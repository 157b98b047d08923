"""Attention knockout (Kaduri et al.): object F1 of descriptions generated with attention
edges cut from layer l on, per knockout configuration (notebook 03; ``knockout.knockout_sweep``).

Judged by Kaduri et al.'s rule (object identities) in ``f1``; on synthetic
scenes the exact (colour, shape, place) objects beside in ``f1_exact``. On an
annotated image the objects are its annotated names (``judge.judge_for``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ._common import DESCRIBE, is_scene, option, stored_config, ours_vs_paper, paper_table

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


KADURI = "Kaduri et al., CVPR 2025, Sec. 4 (shared/REFERENCES.md B2)"
PAPER = paper_table([
    ("f1[img->gen,l=-1]", 0.4, "LLaVA-1.5-7B", KADURI),
    ("f1[img->txt,l=-1]", "collapses (near 0)", "LLaVA-1.5-7B", KADURI),
    ("f1[img->txt+gen,l=-1]", "near 0", "LLaVA-1.5-7B", KADURI),
    ("first_l_with_f1_0.9[img->txt]", "middle layers (about 4-20 of 32; about 25% of layers)",
     "LLaVA-1.5-7B", KADURI),
])


def recovery(df: pd.DataFrame, config: str, level: float = 0.9) -> int | None:
    """The first l (the paper's numbering) whose mean F1 reaches ``level`` for ``config``."""
    curve = df[df.config == config].groupby("l").f1.mean()
    hit = curve[curve >= level]
    return int(hit.index.min()) if len(hit) else None


def vs_paper(data) -> pd.DataFrame:
    """Our object F1 (the paper's judge: object identities) beside the paper's."""
    s = summarise(data) if isinstance(data, pd.DataFrame) else dict(data)
    ours = {q: s.get(q) for q in PAPER.quantity if q.startswith("f1[")}
    notes = {q: "identities (the paper's rule); exact tuples in f1_exact" for q in ours}
    if isinstance(data, pd.DataFrame) and len(data):
        ours["first_l_with_f1_0.9[img->txt]"] = recovery(data, "img->txt")
        L = int(data.n_layers.iloc[0])
        notes["first_l_with_f1_0.9[img->txt]"] = f"l of -1..{L - 1} (l = -1 cuts every layer)"
    return ours_vs_paper(PAPER, ours, notes)
