"""Attention weighted by its gradient: attention x gradient, and the relevancy of Chefer et
al. 2021 ("Generic Attention-model Explainability for Interpreting Bi-Modal and
Encoder-Decoder Transformers", ICCV), for a decoder-only language model.

One teacher-forced pass keeps every layer's softmax weights ``A_l [heads, T, T]`` (the
suite's attention backend) and one backward of the answer's log-probability fills their
gradients ``dA_l``. Both maps read the rows that predict the answer's tokens (mean over
those rows) at the image tokens' columns.
"""

from __future__ import annotations

import numpy as np
import torch

from ._base import forward, from_tokens, per_layer, register


def _weights_and_grads(vlm, prepared, answer, target: str = "logprob"):
    res = forward(vlm, prepared, answer, attentions=True, grad=True, target=target)
    pairs = [(w.detach().double().cpu(), w.grad.double().cpu()) for w in res["attn"]]
    return res, pairs


@register("attention_x_gradient")
def attention_x_gradient(vlm, prepared, answer):
    """Per layer, the head mean of attention times its gradient, ``mean_h(A * dA)``, its positive
    part, at the answer's rows and the image columns; ``tokens`` = the sum over layers,
    every layer's map in ``extra["layers"]``."""
    res, pairs = _weights_and_grads(vlm, prepared, answer)
    ap = res["pass"]
    maps = np.stack([(A * G).mean(0).clamp(min=0)[ap.rows][:, ap.image].mean(0).numpy()
                     for A, G in pairs])
    return from_tokens("attention_x_gradient", prepared, maps.sum(0),
                       extra={"layers": per_layer(prepared, maps)})


def relevancy_matrix(pairs) -> torch.Tensor:
    """Chefer et al.'s self-attention rule: ``R = I``, then for each layer from the first,
    ``R += mean_heads((dA * A).clamp(min=0)) @ R``; ``[T, T]`` float64."""
    T = pairs[0][0].shape[-1]
    R = torch.eye(T, dtype=torch.float64)
    for A, G in pairs:
        R = R + (G * A).clamp(min=0).mean(0) @ R
    return R


@register("relevancy")
def relevancy(vlm, prepared, answer, target: str = "logit"):
    """Relevancy (Chefer et al. 2021, generic attention models): the answer's rows of the
    propagated relevance ``R`` over the image columns (mean over the answer's rows). The
    identity's diagonal never falls on an image column from an answer row, so the map is
    the propagated part only.

    ``target``: what is differentiated. ``"logit"`` (default, as the released code: the
    target's pre-softmax output, ``sum(one_hot * output)``), summed over the answer's
    tokens; ``"logprob"``: the answer's log-probability, the score the other methods explain.
    """
    res, pairs = _weights_and_grads(vlm, prepared, answer, target)
    ap = res["pass"]
    R = relevancy_matrix(pairs)
    return from_tokens("relevancy", prepared, R[ap.rows][:, ap.image].mean(0).numpy(),
                       extra={"target": target})
