"""iGOS+ and iGOS++ (Xing et al. 2025) as attribution methods, through the suite's
``heatmaps`` package with its ``"reference"`` preset (the released code's definitions),
and the line-search variant (the same preset with Armijo steps).

The pixel map is native: the heatmap's importance ``1 - up(mask)`` in the original
image; the tokens are its mean over each token's box. The coarse mask(s) and the
optimisation trace are in ``extra``.

What is explained: by default every answer position (the score every method here
explains, the answer's log-probability); ``selection="reference"`` uses the released
token rule (visually relevant positions), falling back to every position, with the
reason in ``extra["selection"]``, when that rule selects none.
"""

from __future__ import annotations


from ..heatmaps import HeatmapConfig, config_baseline, igos, select_tokens
from ..pixels import image_tensor
from ._base import from_pixels, register

SELECTIONS = ("answer", "reference")


def _run(vlm, prepared, answer, name: str, method: str, step: str, selection: str = "answer",
         preset: str = "reference", **settings):
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, not {selection!r}")
    config = HeatmapConfig.preset(preset, method=method, step=step, **settings)
    ids = vlm.answer_ids(answer, prepared).cpu()
    image = image_tensor(prepared.image, vlm.input_device)
    baseline = config_baseline(image, config)
    how = "every answer position"
    sel = None
    if selection == "reference":
        sel = select_tokens(vlm, prepared, ids, baseline, config)
        if not sel.positions:
            how = f"every answer position (the reference rule selected none: {sel.skipped})"
            sel = None
        else:
            how = f"reference rule ({sel.rule})"
    if sel is None:
        sel = select_tokens(vlm, prepared, ids, baseline, config, positions=range(len(ids)))
    heat = igos(vlm, prepared, ids, config, selection=sel, baseline=baseline)
    return from_pixels(name, prepared, heat.importance(),
                       extra={"native_pixels": True, "mask": heat.mask, "masks": heat.masks,
                              "trace": heat.trace, "config": config, "selection": how,
                              "positions": list(sel.positions), "forwards": heat.forwards})


@register("igos+")
def igos_plus(vlm, prepared, answer, selection: str = "answer", **settings):
    """iGOS+ with the ``"reference"`` preset (``settings`` override its fields, e.g. iterations)."""
    return _run(vlm, prepared, answer, "igos+", "igos+", "nesterov", selection, **settings)


@register("igos++")
def igos_plus_plus(vlm, prepared, answer, selection: str = "answer", **settings):
    """iGOS++ (deletion and insertion masks) with the ``"reference"`` preset."""
    return _run(vlm, prepared, answer, "igos++", "igos++", "nesterov", selection, **settings)


@register("igos+_ls")
def igos_plus_line_search(vlm, prepared, answer, selection: str = "answer", **settings):
    """iGOS+ with the ``"reference"`` preset but Armijo line-search steps (``step="armijo"``)."""
    return _run(vlm, prepared, answer, "igos+_ls", "igos+", "armijo", selection, **settings)
