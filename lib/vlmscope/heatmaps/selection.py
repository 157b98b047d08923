"""Visually relevant token selection: which answer positions a heatmap explains, and why."""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass

import numpy as np
import torch

from ..pixels import image_tensor
from .baselines import config_baseline
from .config import HeatmapConfig
from .objective import Objective

STOP_WORDS = ("the", "and", "of", "a", "an", "this", "that", "is", "with")


def stop_token_mask(tokenizer, ids) -> list[bool]:
    """Whether each answer token is a stop token, decided from the tokenizer in use.

    Stop: special tokens, tokens that decode to whitespace or punctuation only,
    and the words in ``STOP_WORDS`` (whatever their ids in this vocabulary).
    """
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    out = []
    for i in [int(t) for t in ids]:
        text = tokenizer.decode([i]).strip().lower()
        punct = all(unicodedata.category(c)[0] in "PSZC" for c in text)
        out.append(i in special or not text or punct or text in STOP_WORDS)
    return out


@dataclass
class Selection:
    """Which answer positions a heatmap explains, and why."""

    tokens: list[str]
    answer_ids: list[int]
    logp_image: list[float]
    logp_baseline: list[float]
    stop: list[bool]
    positions: list[int]
    rule: str  # "gain > threshold" | "single token" | "given"
    skipped: str | None = None  # the reason when no position was selected

    def table(self):
        import pandas as pd

        return pd.DataFrame({"token": self.tokens, "logp_image": self.logp_image,
                             "logp_baseline": self.logp_baseline,
                             "gain": np.subtract(self.logp_image, self.logp_baseline),
                             "stop": self.stop,
                             "selected": [i in self.positions for i in range(len(self.tokens))]})


def _answer_ids(vlm, prepared, answer) -> torch.Tensor:
    if answer is None:
        answer = vlm.generate(prepared)
    ids = vlm.answer_ids(answer, prepared).cpu()
    if ids.numel() == 0:
        raise ValueError("the answer has no tokens (the model generated nothing to explain)")
    return ids


@torch.no_grad()
def select_tokens(vlm, prepared, answer=None, baseline: torch.Tensor | None = None,
                  config: HeatmapConfig = HeatmapConfig(), positions=None) -> Selection:
    """Visually relevant positions of ``answer`` (the model's greedy answer if None).

    ``positions`` overrides the rule (``rule="given"``); the log-probabilities
    are still recorded for them.
    """
    ids = _answer_ids(vlm, prepared, answer)
    image = image_tensor(prepared.image, vlm.device)
    if baseline is None:
        baseline = config_baseline(image, config)
    obj = Objective(vlm, prepared, ids, range(len(ids)))
    lp = obj.logprobs(torch.stack([image, baseline.to(image)])).cpu()
    lp_i, lp_b = lp[0].tolist(), lp[1].tolist()
    stop = stop_token_mask(vlm.tokenizer, ids)
    toks = vlm.tokenizer.convert_ids_to_tokens(ids.tolist())
    common = dict(tokens=toks, answer_ids=ids.tolist(), logp_image=lp_i, logp_baseline=lp_b, stop=stop)
    if positions is not None:
        pos = sorted({int(t) for t in positions})
        if not pos or pos[0] < 0 or pos[-1] >= len(ids):
            raise IndexError(f"positions {pos} outside an answer of {len(ids)} tokens")
        return Selection(**common, positions=pos, rule="given")
    if len(ids) == 1:
        keep = math.exp(lp_b[0]) <= config.single_token_ratio * math.exp(lp_i[0])
        return Selection(**common, positions=[0] if keep else [], rule="single token",
                         skipped=None if keep else
                         f"single-token answer: p(y|baseline) = {math.exp(lp_b[0]):.3g} > "
                         f"{config.single_token_ratio} x p(y|image) = {math.exp(lp_i[0]):.3g}")
    pos = [t for t in range(len(ids))
           if not (config.drop_first and t == 0) and not stop[t]
           and lp_i[t] - lp_b[t] > config.threshold]
    reason = None
    if not pos:
        best = max(range(len(ids)), key=lambda t: lp_i[t] - lp_b[t])
        reason = (f"no token gains more than {config.threshold} in log-probability over the "
                  f"baseline (largest: {lp_i[best] - lp_b[best]:.3g} at {toks[best]!r})")
    return Selection(**common, positions=pos, rule="gain > threshold", skipped=reason)
