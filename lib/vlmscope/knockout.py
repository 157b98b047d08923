"""Knockout layer curves (Kaduri et al., Fig. 2): cut image edges from layer l on.

For one image, every (configuration, start layer) pair regenerates the
description with the edges cut, and the judge compares its objects with the
same model's un-knocked description. Pairs run as one batch: each batch row
carries its own knockout (``attention.Knockout``), so the sweep costs a few
batched generations instead of ``3 x (L + 1)`` single ones. Never reuse a
baseline KV cache: a prefill knockout changes the cached keys and values.

Layer numbering as in the paper: edges are cut in the layers with index > l,
so l = -1 cuts every layer and l = L - 1 none. Rows carry ``l`` and the
internal ``start = l + 1`` (the first cut layer).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from .attention import KNOCKOUTS, Knockout, attention, from_layer
from .judge import default_judge


@dataclass(frozen=True)
class SweepConfig:
    """Which knockouts, from which start layers (None = every layer 0..L), how long."""

    configs: tuple[str, ...] = ("img->gen", "img->txt", "img->txt+gen")
    starts: tuple[int, ...] | None = None
    question: str = "describe the image ."
    max_new_tokens: int = 48
    batch_size: int = 32


def _repeat(inputs: dict, n: int) -> dict:
    return {k: (torch.cat([v] * n) if torch.is_tensor(v) else v) for k, v in inputs.items()}


def generate_with_knockouts(vlm, prepared, edge_sets, max_new_tokens: int = 48,
                            batch_size: int = 32) -> list[str]:
    """Greedy texts for ``prepared`` under each edge set (one batch row per set)."""
    L = vlm.adapter.n_layers
    texts: list[str] = []
    tok = vlm.tokenizer
    for i in range(0, len(edge_sets), batch_size):
        chunk = edge_sets[i:i + batch_size]
        ko = Knockout(prepared.groups, chunk, L)
        with attention(vlm, knockout=ko), torch.no_grad():
            out = vlm.model.generate(**_repeat(prepared.inputs, len(chunk)), do_sample=False,
                                     max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id)
        new = out[:, prepared.input_ids.shape[1]:]
        texts += [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
    return texts


def knockout_sweep(vlm, image, cfg: SweepConfig = SweepConfig(), judge=None,
                   also: dict | None = None) -> pd.DataFrame:
    """One row per (config, start): the knocked-out text and its object P/R/F1.

    ``l`` is the paper's layer number (cut in layers with index > l: -1 cuts
    every layer, L - 1 none); ``start = l + 1`` is the first cut layer.
    ``judge`` gives the precision/recall/f1 columns (default
    ``judge.default_judge``; where Kaduri et al.'s figure is reproduced pass
    ``judge.paper_judge(...)``); ``also`` maps a name to further judges whose
    figures are added beside as ``precision_<name>``, ``recall_<name>``,
    ``f1_<name>`` (e.g. ``{"exact": ExactJudge()}``).
    """
    judge = judge or default_judge(vlm)
    also = dict(also or {})
    prepared = vlm.prepare(image, cfg.question)
    L = vlm.adapter.n_layers
    starts = tuple(range(L + 1)) if cfg.starts is None else cfg.starts
    for s in starts:
        if not 0 <= s <= L:
            raise IndexError(f"start layer {s} out of range 0..{L}")
    unknown = [c for c in cfg.configs if c not in KNOCKOUTS]
    if unknown:
        raise ValueError(f"unknown knockout {unknown}; known: {', '.join(KNOCKOUTS)}")
    baseline = vlm.generate(prepared, max_new_tokens=cfg.max_new_tokens).text
    pairs = [(c, s) for c in cfg.configs for s in starts]
    edges = [from_layer(KNOCKOUTS[c], s, L) for c, s in pairs]
    texts = generate_with_knockouts(vlm, prepared, edges, cfg.max_new_tokens, cfg.batch_size)
    rows = []
    for (c, s), text in zip(pairs, texts):
        row = {"config": c, "l": s - 1, "start": s, "n_layers": L, "text": text,
               "baseline": baseline, "judge": getattr(judge, "name", type(judge).__name__),
               **judge.compare(text, baseline)}
        for name, other in also.items():
            res = other.compare(text, baseline)
            row.update({f"{k}_{name}": res[k] for k in ("precision", "recall", "f1")})
        rows.append(row)
    return pd.DataFrame(rows)
