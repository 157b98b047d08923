"""Gradient attributions: saliency with respect to the image tokens' embeddings at the
language model's input, and integrated gradients in the original image's pixels."""

from __future__ import annotations

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


INTEGRATION = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right",
               "riemann_middle")


@register("integrated_gradients")
def integrated_gradients(vlm, prepared, answer, steps: int = 32, baseline: str = "black",
                         method: str = "gausslegendre", batch: int = 8):
    """Integrated gradients (Sundararajan et al. 2017) in the ORIGINAL image's pixels, by
    Captum's ``IntegratedGradients``: the answer's log-probability as a function of the image
    through the family's differentiable preprocessing (``heatmaps.Objective``, as iGOS uses),
    from ``baseline`` ("black", or "blur": the heatmaps' blurred image) in ``steps`` points
    (``method``: Captum's rule; Gauss-Legendre by default), ``batch`` images per forward.

    ``pixels``: the attribution summed over the colour channels (signed; the pixels add up to
    f(image) - f(baseline) up to the integration error, ``extra["delta"]``).
    """
    from captum.attr import IntegratedGradients

    from ..heatmaps import Objective, make_baseline
    from ..pixels import image_tensor
    from ._base import frozen, from_pixels

    if method not in INTEGRATION:
        raise ValueError(f"unknown integration rule {method!r}; known: {', '.join(INTEGRATION)}")
    if baseline not in ("black", "blur"):
        raise ValueError(f"baseline must be 'black' or 'blur', not {baseline!r}")
    if steps < 1 or batch < 1:
        raise ValueError(f"steps and batch must be >= 1 (steps={steps}, batch={batch})")
    ids = vlm.answer_ids(answer, prepared).cpu()
    obj = Objective(vlm, prepared, ids, range(len(ids)))
    image = image_tensor(prepared.image, vlm.input_device)
    base = make_baseline(image, baseline)
    ig = IntegratedGradients(lambda x: obj.score(x))
    with frozen(vlm):
        attr, delta = ig.attribute(image[None], baselines=base[None], n_steps=steps, method=method,
                                   internal_batch_size=batch, return_convergence_delta=True)
    pixels = attr[0].detach().double().sum(0).cpu().numpy()
    return from_pixels("integrated_gradients", prepared, pixels,
                       extra={"native_pixels": True, "delta": float(delta.reshape(-1)[0]),
                              "baseline": baseline, "steps": steps, "forwards": obj.forwards})
