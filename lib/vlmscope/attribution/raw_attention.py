"""Attention read as attribution: raw attention per layer (and its mean), the best layer
by a truth (an oracle choice), and attention rollout (Abnar & Zuidema 2020).

Every map reads the rows that PREDICT the answer's tokens (the last prompt
position and the answer's own positions but its last, teacher-forced), averaged
over those rows and over heads, at the image tokens' columns. The language
model runs on the suite's attention backend (``vlmscope.attention``), which
keeps every layer's softmax weights.
"""

from __future__ import annotations

import numpy as np
import torch

from ._base import forward, from_tokens, per_layer, register


def _answer_rows(weights: list[torch.Tensor], rows, image) -> np.ndarray:
    """``[layers, n_image]``: each layer's head-mean weights, mean over the answer rows."""
    out = []
    for w in weights:
        block = w.detach().float()[:, rows.to(w.device)][:, :, image.to(w.device)]  # [H, r, n_image]
        out.append(block.mean((0, 1)).cpu().numpy())
    return np.stack(out)


def attention_layers(vlm, prepared, answer) -> np.ndarray:
    """``[layers, n_image]`` raw attention from the answer's predicting rows to each image token."""
    res = forward(vlm, prepared, answer, attentions=True)
    return _answer_rows(res["attn"], res["pass"].rows, res["pass"].image)


@register("attention")
def raw_attention(vlm, prepared, answer, layer: int | None = None):
    """Raw attention: ``tokens`` = the mean over layers (or one ``layer``); every layer's map in
    ``extra["layers"]`` (``[layers, *tokens layout]``)."""
    maps = attention_layers(vlm, prepared, answer)
    if layer is not None:
        layer = vlm.adapter.layer_index(layer)
        values, name = maps[layer], f"attention@L{layer}"
    else:
        values, name = maps.mean(0), "attention"
    return from_tokens(name, prepared, values, extra={"layers": per_layer(prepared, maps),
                                                     "layer": layer})


def _truth_score(truth, values: np.ndarray) -> float:
    """How well one layer's token map ``values [n_image]`` agrees with ``truth``: a callable
    (``truth(values) -> float``, higher is better) or per-token truth values ``[n_image]``
    (Spearman rank correlation; a 0/1 object mask works as well as a causal map)."""
    if callable(truth):
        return float(truth(values))
    t = np.asarray(truth, dtype=np.float64).reshape(-1)
    if t.size != values.size:
        raise ValueError(f"the truth has {t.size} values for {values.size} image tokens")
    if np.ptp(t) == 0 or np.ptp(values) == 0:
        return float("nan")
    return float(np.corrcoef(_ranks(values), _ranks(t))[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (Spearman's correlation is Pearson's on these)."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return (first + (counts - 1) / 2.0)[inverse]


@register("attention@best")
def best_layer_attention(vlm, prepared, answer, truth=None):
    """Raw attention of the ONE layer that agrees best with ``truth`` (``oracle=True``: the
    choice used the truth). ``truth``: per-token values ``[n_image]`` in sequence order
    (Spearman decides) or a callable scoring a ``[n_image]`` map. The chosen layer and
    every layer's agreement are in ``extra``."""
    if truth is None:
        raise ValueError("attention@best chooses its layer by a truth: pass truth= (per-token "
                         "values [n_image] or a function of a token map)")
    maps = attention_layers(vlm, prepared, answer)
    scores = np.array([_truth_score(truth, m) for m in maps])
    if np.isnan(scores).all():
        best = 0
    else:
        best = int(np.nanargmax(scores))
    return from_tokens("attention@best", prepared, maps[best], oracle=True,
                       extra={"layer": best, "agreement": scores,
                              "layers": per_layer(prepared, maps)})


def rollout_matrices(weights: list[torch.Tensor]):
    """Attention rollout after each layer, ``[T, T]`` float64 each: per layer the head mean plus
    the identity (the residual), rows renormalised, multiplied from the first layer up
    (R_l = A_l R_{l-1}, R_{-1} = I)."""
    T = weights[0].shape[-1]
    R = torch.eye(T, dtype=torch.float64)
    for w in weights:
        A = w.detach().double().mean(0).cpu() + torch.eye(T, dtype=torch.float64)
        A = A / A.sum(-1, keepdim=True)
        R = A @ R
        yield R


@register("rollout")
def rollout(vlm, prepared, answer):
    """Attention rollout (Abnar & Zuidema 2020, residual-added, row-normalised, product over
    layers) read from the answer's predicting rows to the image tokens (mean over the rows).
    ``extra["layers"]``: the rollout up to each layer."""
    res = forward(vlm, prepared, answer, attentions=True)
    ap = res["pass"]
    partial = [R[ap.rows][:, ap.image].mean(0).numpy() for R in rollout_matrices(res["attn"])]
    return from_tokens("rollout", prepared, partial[-1],
                       extra={"layers": per_layer(prepared, np.stack(partial))})
