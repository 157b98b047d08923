"""Activation patching per image token and per object region: the causal map.

Each image token's embedding at the language model's INPUT is replaced by the mean
visual-token vector (as ``ablation.ablated`` does, prefill only, positions unchanged)
and the answer's teacher-forced log-probability is scored again; the map is the drop,
``log p(answer) - log p(answer | token replaced)`` (positive = the answer needed the
token). This is also the study's causal truth, so its ``Attribution`` says
``causal=True``: a leaderboard must not rank it against itself.

Many replacements run as one batch: the processor prepares the same image and prompt
``batch`` times (the family's own batching, as ``VLM.answer`` does), and the edit at
``lm.input`` writes a different token set into each batch row.
"""

from __future__ import annotations

import numpy as np
import torch

from ._base import answer_pass, from_tokens, register


def _vector(vlm, prepared, vector) -> torch.Tensor:
    """``[d]``: the replacement (a tensor or ``ablation.MeanVector``); default: the mean of this
    image's own visual tokens at the LM input."""
    if vector is None:
        emb = vlm.capture(prepared, "lm.input", device=None).at("lm.input", "image")
        return emb.double().mean(0).to(vlm.dtype)
    vector = getattr(vector, "vector", vector)
    return torch.as_tensor(vector).reshape(-1)


@torch.no_grad()
def patch_drops(vlm, prepared, answer, token_sets, vector=None, batch: int = 16) -> np.ndarray:
    """``[len(token_sets)]``: the drop of the answer's log-probability when each set of image
    tokens (indices into the image tokens) is replaced by ``vector`` at the LM input.

    ``vector``: a ``[d]`` tensor or an ``ablation.MeanVector``; default the mean of this
    image's visual tokens. ``batch``: replacements per forward.
    """
    sets = [np.asarray(s, dtype=np.int64).reshape(-1) for s in token_sets]
    n_image = prepared.groups.image.numel()
    for s in sets:
        if s.size and (s.min() < 0 or s.max() >= n_image):
            raise IndexError(f"token indices must lie in 0..{n_image - 1}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, not {batch}")
    vec = _vector(vlm, prepared, vector).to(vlm.input_device)
    ap = answer_pass(vlm, prepared, answer)
    image = prepared.groups.image.to(vlm.input_device)
    clean = float(ap.score(vlm.model(**ap.inputs).logits)[0])
    drops = np.zeros(len(sets))
    size = min(batch, len(sets))
    base = vlm.repeated_inputs(prepared, size) if size > 1 else None
    if base is None:
        size = 1
    for start in range(0, len(sets), size):
        chunk = sets[start:start + size]
        if size == 1:
            inputs = ap.inputs
        else:
            inputs = vlm.adapter.extend_inputs(base, ap.ids[None].expand(size, -1))

        def edit(x, call, chunk=chunk):
            if call.prefill is False:
                return None
            x = x.clone()
            for row, s in enumerate(chunk):
                if s.size:
                    x[row, image[torch.as_tensor(s, device=image.device)]] = vec.to(x.dtype)
            return x

        with vlm.intervene(prepared, {"lm.input": edit}):
            scores = ap.score(vlm.model(**inputs).logits)
        drops[start:start + len(chunk)] = clean - scores[:len(chunk)].double().cpu().numpy()
    return drops


@register("patching")
def patching(vlm, prepared, answer, vector=None, regions: dict | None = None, batch: int = 16):
    """Per image token, the answer's log-probability drop under mean-vector replacement at the
    LM input (``causal=True``). ``regions``: name -> image-token indices, or name -> an
    ``[H, W]`` boolean mask (its tokens: any overlap, ``TokenGeometry.tokens_for_mask``);
    each region's drop (all its tokens replaced at once) in ``extra["regions"]``."""
    n_image = prepared.groups.image.numel()
    sets = [[i] for i in range(n_image)]
    named = {}
    for name, r in (regions or {}).items():
        r = np.asarray(r)
        named[name] = (prepared.geometry.tokens_for_mask(r, view=None)
                       if r.dtype == bool and r.ndim == 2 else r.astype(np.int64).reshape(-1))
    drops = patch_drops(vlm, prepared, answer, sets + list(named.values()), vector, batch)
    extra = {"regions": dict(zip(named, drops[n_image:].tolist())),
             "region_tokens": named} if named else {}
    return from_tokens("patching", prepared, drops[:n_image], causal=True, extra=extra)
