"""Compressed context: how well a model answers from a few image tokens kept per layer, chosen
by the attention of its own description (notebook 04; ``compression.compress_image``).

A synthetic scene is asked the MME-style "exists" pair (one yes, one no); an
annotated image is asked "is there a <name> ?" (yes) for each of its objects,
and its own question when the folder gives one with its answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ._common import DESCRIBE, is_scene, option, stored_config, ours_vs_paper, paper_table

NAME = "compression"


@dataclass(frozen=True)
class Config:
    question: str = option(DESCRIBE, "the prompt whose description ranks the image tokens")
    max_new_tokens: int = option(48, "description length in tokens", minimum=1)


def key(cfg: Config, **extra) -> list:
    """What a stored part's key holds between the model and the item id."""
    return [stored_config(cfg.question, cfg.max_new_tokens)]


def record_questions(record) -> list[tuple[str, str]]:
    """(question, truth) pairs for an annotated image: each object's "is there a ... ?" (yes),
    and the record's own question when it has an answer."""
    out = [(f"is there a {o.name} ?", "yes") for o in record.objects]
    if record.question and record.answer:
        out.append((record.question, record.answer))
    return out


def run(vlm, item, cfg: Config = Config()) -> pd.DataFrame:
    from ..compression import CompressionConfig, compress_image, compress_scene

    ccfg = CompressionConfig(describe=cfg.question, describe_tokens=cfg.max_new_tokens)
    if is_scene(item):
        return compress_scene(vlm, item, ccfg)
    return compress_image(vlm, item.image, record_questions(item), ccfg)


def summarise(df: pd.DataFrame) -> dict:
    from ..compression import scores

    if df.empty:
        return {}
    out = {}
    for r in scores(df, image_col="item").itertuples():
        tag = r.variant if r.variant in ("full", "direct") else f"{r.variant}@{r.k_frac:g}"
        out[f"acc[{tag}]"] = round(float(r.acc), 4)
        out[f"acc_plus[{tag}]"] = round(float(r.acc_plus), 4)
        out[f"compression[{tag}]"] = round(float(r.compression), 2)
    return out


def _paper() -> pd.DataFrame:
    from ..compression import PAPER as P  # the numbers, written once, beside the method

    src = "Kaduri et al., CVPR 2025, MME tables (shared/REFERENCES.md B4)"
    model = f"{P['model']} ({P['benchmark']})"
    return paper_table([
        (f"relative[both@{P['k_frac']:g}]", P["relative_performance"], model, src),
        (f"compression[both@{P['k_frac']:g}]", P["token_reduction"], model, src),
    ])


PAPER = _paper()


def vs_paper(data) -> pd.DataFrame:
    """Kept performance (ACC at K over the full context's ACC) and token reduction at the
    paper's K, beside the paper's."""
    from ..compression import PAPER as P

    s = summarise(data) if isinstance(data, pd.DataFrame) else dict(data)
    tag = f"both@{P['k_frac']:g}"
    acc, full = s.get(f"acc[{tag}]"), s.get("acc[full]")
    ours = {f"relative[{tag}]": round(acc / full, 4) if acc is not None and full else None,
            f"compression[{tag}]": s.get(f"compression[{tag}]")}
    notes = {f"relative[{tag}]": "ACC kept / ACC of the full context (None when the full ACC is 0)",
             f"compression[{tag}]": "full tokens / kept tokens; depends on the model's image "
                                    "token count"}
    return ours_vs_paper(PAPER, ours, notes)
