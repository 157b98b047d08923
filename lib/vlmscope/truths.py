"""Truths an attribution map is scored against: the object's exact mask, the model's own causal
dependence on each image token, and the map's stability (notebook 10, ``findings.agreement``).

Geometric (the target object's mask, at token level; a token is inside when its box
overlaps the mask, ``TokenGeometry.tokens_for_mask`` with no rings):

- ``pointing``: every token where the map is maximal lies inside (``metrics.pointing``,
  ties "all": a flat map fails);
- ``mass_in_mask``: share of the map's (non-negative part's) total inside;
- ``auroc``: the probability that a random inside token scores higher than a random
  outside one (ties count one half), the Mann-Whitney form, computed here by hand.

Causal (mean-vector replacement at the language model's input, prefill only, as
``ablation.ablated`` does):

- ``causal_map``: per image token, the drop in the answer's teacher-forced
  log-probability (summed over its tokens) when that token's LM-input embedding is
  replaced by the mean visual-token vector (positive: the model used it);
- ``region_drops``: the same drop for a whole region (each object's tokens) at once;
- ``deletion_insertion``: the deletion and insertion scores of a token map in the
  reference definition (``heatmaps.faithfulness`` with ``HeatmapConfig.preset("reference")``:
  the blurred baseline, the released step rule), token cells ordered from the map's highest
  value down.

Stability: ``rank_correlation`` (Spearman) of two maps of one question, across noise seeds
or between the trained model and a weight-randomised copy (``heatmaps.randomised``).
"""

from __future__ import annotations

import numpy as np
import torch

from .ablation import ablated
from .metrics import mass_in_mask, pointing
from .stats.similarity import rank_correlation

__all__ = ["auroc", "causal_map", "deletion_insertion", "geometric", "inside_tokens",
           "rank_correlation", "region_drops"]


def inside_tokens(geometry, mask) -> np.ndarray:
    """``[n_image]`` boolean: the image tokens whose boxes overlap ``mask`` (an object's)."""
    inside = np.zeros(len(geometry), dtype=bool)
    inside[geometry.tokens_for_mask(mask, rings=0, allow_empty=True)] = True
    return inside


def auroc(scores, inside) -> float:
    """Area under the ROC curve of ``scores`` separating ``inside`` from the rest.

    The Mann-Whitney form: the share of (inside, outside) pairs where the inside
    score is higher, ties counting one half. NaN when either side is empty or a
    score is not finite.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    inside = np.asarray(inside, dtype=bool).ravel()
    if s.shape != inside.shape:
        raise ValueError(f"scores {s.shape} and membership {inside.shape} differ in shape")
    pos, neg = s[inside], s[~inside]
    if not pos.size or not neg.size or not np.isfinite(s).all():
        return float("nan")
    order = np.sort(neg)
    below = np.searchsorted(order, pos, side="left")
    ties = np.searchsorted(order, pos, side="right") - below
    return float((below + 0.5 * ties).sum() / (pos.size * neg.size))


def geometric(values, inside) -> dict:
    """``pointing``, ``mass_in_mask`` and ``auroc`` of a token map against ``inside``
    (boolean, the map's shape). Negative values count as 0 for pointing and mass; NaN
    values as 0 everywhere. An empty region gives NaN for all three."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float64).ravel(), nan=0.0)
    inside = np.asarray(inside, dtype=bool).ravel()
    if not inside.any():
        return {"pointing": float("nan"), "mass_in_mask": float("nan"), "auroc": float("nan")}
    pos = np.clip(v, 0, None)
    return {"pointing": float(pointing(pos, inside, ties="all")),
            "mass_in_mask": mass_in_mask(pos, inside), "auroc": auroc(v, inside)}


def _total_logprob(vlm, prepared, ids) -> float:
    return float(vlm.score(prepared, ids).logprobs.sum())


@torch.no_grad()
def region_drops(vlm, prepared, answer, vector: torch.Tensor, regions: dict) -> dict:
    """``{name: drop}``: the answer's log-probability without minus with each region's image
    tokens (``regions``: name -> token indices) replaced by ``vector`` at the LM input."""
    ids = vlm.answer_ids(answer, prepared)
    clean = _total_logprob(vlm, prepared, ids)
    out = {}
    for name, toks in regions.items():
        toks = np.asarray(toks, dtype=np.int64).reshape(-1)
        if not toks.size:
            out[name] = float("nan")
            continue
        with ablated(vlm, prepared, toks, vector=vector):
            out[name] = clean - _total_logprob(vlm, prepared, ids)
    return out


@torch.no_grad()
def causal_map(vlm, prepared, answer, vector: torch.Tensor) -> np.ndarray:
    """``[n_image]`` per image token (sequence order): the drop in the answer's log-probability
    when that one token's LM-input embedding is replaced by ``vector`` (one forward a token)."""
    n = int(prepared.groups.image.numel())
    drops = region_drops(vlm, prepared, answer, vector, {i: [i] for i in range(n)})
    return np.array([drops[i] for i in range(n)], dtype=np.float64)


def deletion_insertion(vlm, prepared, answer, grid, config=None,
                       min_gap: float = 0.05) -> tuple[float, float]:
    """``(deletion, insertion)`` of a token map on the image-token grid ``[rows, cols]`` (high =
    important), in the reference definition: ``heatmaps.faithfulness`` under
    ``HeatmapConfig.preset("reference")`` (or ``config``), every answer position scored.
    Deletion: lower is better; insertion: higher is better.

    Both curves are normalised by the answer's probability on the image minus that on the
    blurred baseline; when the baseline lowers it by less than ``min_gap`` (the blur does not
    remove what the answer rests on, e.g. "no" to "is there a ...?") the normalised scores
    are meaningless (they run to hundreds) and both are NaN."""
    from .heatmaps import HeatmapConfig, faithfulness, select_tokens

    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim != 2:
        raise ValueError(f"deletion needs a map on one token grid [rows, cols], not {grid.shape}")
    config = config or HeatmapConfig.preset("reference")
    ids = vlm.answer_ids(answer, prepared)
    sel = select_tokens(vlm, prepared, ids, config=config, positions=range(len(ids)))
    # faithfulness deletes the LOWEST mask values first (an iGOS mask: low = important)
    f = faithfulness(vlm, prepared, sel, -np.nan_to_num(grid, nan=-np.inf), config=config)
    if not f.original - f.baseline >= min_gap:
        return float("nan"), float("nan")
    return f.deletion, f.insertion
