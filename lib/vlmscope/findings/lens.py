"""Logit lens on image tokens (Neo et al.): per object and layer, the share of its patches whose
lens top-1 word names it (notebook 08; ``lens.image_lens``).

A synthetic object is named by its colour or shape word (``share``; each
alone in ``share_color`` and ``share_shape``); an annotated object by any
single-token word of its name (``share``; the words in ``words``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ._common import DESCRIBE, is_scene, option, stored_config

NAME = "lens"


@dataclass(frozen=True)
class Config:
    question: str = option(DESCRIBE, "the prompt the image is read with")


def key(cfg: Config, **extra) -> list:
    """What a stored part's key holds between the model and the item id."""
    return [stored_config(cfg.question)]


def _single_token_words(res, words) -> list[str]:
    from ..words import lens_ids

    out = []
    for w in words:
        try:
            lens_ids(res.tokenizer, w)
        except ValueError:  # several pieces: the lens reads single-token words only
            continue
        out.append(w)
    return out


def run(vlm, item, cfg: Config = Config()) -> pd.DataFrame:
    """Per object and layer: share of its patches whose lens top-1 is its colour or shape word."""
    from ..lens import image_lens

    p = vlm.prepare(item.image, cfg.question)
    res = image_lens(vlm, p, k=1)
    rows = []
    if not is_scene(item):
        for o in item.objects:
            words = _single_token_words(res, o.words)
            if not words:
                continue
            for r in (0, 1):
                toks = p.geometry.tokens_for_mask(o.mask, rings=r)
                for layer, share in enumerate(res.share(toks, words)):
                    rows.append({"object": o.name, "rings": r, "layer": layer,
                                 "n_tokens": len(toks), "share": share, "words": " ".join(words)})
        return pd.DataFrame(rows)
    for o in item.objects:
        for r in (0, 1):
            toks = p.geometry.tokens_for_mask(o.mask, rings=r)
            for layer, (both, col, shp) in enumerate(zip(res.share(toks, [o.color, o.shape]),
                                                         res.share(toks, [o.color]),
                                                         res.share(toks, [o.shape]))):
                rows.append({"object": o.name, "rings": r, "layer": layer, "n_tokens": len(toks),
                             "share": both, "share_color": col, "share_shape": shp})
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame) -> dict:
    if df.empty:
        return {}
    by = df[df.rings == 0].groupby("layer").share.mean()
    return {"best_layer": int(by.idxmax()), "best_share": round(float(by.max()), 4)}
