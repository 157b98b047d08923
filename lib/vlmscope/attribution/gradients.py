"""Gradient attributions: saliency with respect to the image tokens' embeddings at the
language model's input, and integrated gradients in the original image's pixels."""

from __future__ import annotations

import numpy as np

from ._base import forward, from_tokens, register


@register("gradient")
def gradient(vlm, prepared, answer):
    """Saliency: the L2 norm over the hidden dimension of d(answer log-probability) / d(image
    token's embedding at the LM input). ``extra["signed"]``: gradient . embedding per token
    (the first-order change if the token were zeroed, with its sign flipped)."""
    res = forward(vlm, prepared, answer, grad=True)
    img = res["pass"].image.to(res["embeds"].device)
    g = res["embeds"].grad[0, img].double()  # [n_image, d]
    x = res["embeds"].detach()[0, img].double()
    return from_tokens("gradient", prepared, g.norm(dim=-1).cpu().numpy(),
                       extra={"signed": (g * x).sum(-1).cpu().numpy(),
                              "score": float(res["score"])})
