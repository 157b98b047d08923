"""Activation patching and attribution patching at a named site (``vlmscope.hooks``).

Two runs of the same prompt layout: a *clean* one (e.g. the real image) and a
*corrupt* one (e.g. the object blurred away). ``patch`` runs the corrupt
example with the clean run's activations written at ``positions`` of one
site and returns the teacher-forced log-probabilities of an answer: how much
of the clean answer do those activations carry? Patching every position of
``lm.input`` with the clean run's gives the clean run; with the corrupt run's
own, the corrupt run (the tests check both).

``attribution_patch`` is the first-order approximation of patching each
position alone (Nanda, "Attribution patching", 2023; Syed et al., 2023):
``(clean - corrupt) · d log p(answer) / d activation``, evaluated on the
corrupt run, for every position at once from one backward pass. It is exact
for a model linear in the site, and ranks positions cheaply where patching
each one would take one forward per position.

>>> s = patch(vlm, clean, blurred, "lm.layer.0.out", "image", "red")      # doctest: +SKIP
>>> s.total - vlm.score(blurred, "red").total   # log-prob the clean image tokens restore  # doctest: +SKIP
>>> attribution_patch(vlm, clean, blurred, "lm.input", "red")  # [n_image]  # doctest: +SKIP
"""

from __future__ import annotations

import torch

from .hooks import capture, group_positions, intervene, resolve, set_at


def _check(vlm, clean, corrupt, site: str, answer):
    """The site (one, with positions), the answer ids, and the same token layout in both runs."""
    [s] = resolve(vlm, site) if not any(c in site for c in "*?[") else [None]
    if s is None:
        raise ValueError(f"patch one site at a time, not the pattern {site!r}")
    if not s.has_positions:
        raise ValueError(f"{site!r} has no position axis; patch a language-model site (lm.*) or "
                         "edit vision sites with vlm.intervene")
    if clean.input_ids.shape != corrupt.input_ids.shape:
        raise ValueError(f"the clean and corrupt prompts differ in length ({clean.input_ids.shape[1]} "
                         f"and {corrupt.input_ids.shape[1]} tokens): patching needs the same layout "
                         "(same question, images giving the same number of image tokens)")
    ids = vlm.answer_ids(answer, corrupt).to(vlm.device)
    if ids.numel() == 0:
        raise ValueError("the answer to score has no tokens")
    return s, ids


def _positions(prepared, positions, length: int) -> torch.Tensor:
    pos = group_positions(prepared.groups, positions, prepared.input_ids.shape[1], length)
    if pos.numel() and (pos.min() < 0 or pos.max() >= length):
        raise IndexError(f"positions must lie in 0..{length - 1}")
    return pos


def patch(vlm, clean, corrupt, site: str, positions, answer):
    """The corrupt run with the clean run's ``site`` activations at ``positions``: the answer's
    teacher-forced log-probabilities (a ``models.Score``; ``.logprobs``, ``.total``).

    ``positions``: a token group (``"image"``, ``"query"``, ``"bos"``, ``"last"``,
    ``"answer"``) or absolute positions; ``answer``: text, ids or a ``Generation``.
    Both runs are teacher-forced on the same answer tokens, so answer positions
    can be patched too.
    """
    s, ids = _check(vlm, clean, corrupt, site, answer)
    length = clean.input_ids.shape[1] + ids.numel()
    pos = _positions(clean, positions, length)
    value = capture(vlm, clean, s.name, device=None, answer=ids)[s.name][pos.to(vlm.device)]
    with intervene(vlm, corrupt, {s.name: set_at(pos, value)}):
        return vlm.score(corrupt, ids)


def patch_sweep(vlm, clean, corrupt, positions, answer, sites=("lm.input", "lm.layer.*.out")):
    """``patch`` at each of ``sites`` (names or patterns; the clean run is captured once).

    Returns a DataFrame: site, layer (None for ``lm.input``), logprob (the
    patched answer's total log-probability), restored: (patched - corrupt) /
    (clean - corrupt), the share of the clean run's advantage the patch brings
    back (NaN when the two runs score the answer alike).
    """
    import pandas as pd

    chosen = resolve(vlm, sites)
    for s in chosen:
        _check(vlm, clean, corrupt, s.name, answer)
    ids = vlm.answer_ids(answer, corrupt).to(vlm.device)
    pos = _positions(clean, positions, clean.input_ids.shape[1] + ids.numel())
    cache = capture(vlm, clean, [s.name for s in chosen], device=None, answer=ids)
    lp_clean, lp_corrupt = vlm.score(clean, ids).total, vlm.score(corrupt, ids).total
    gap = lp_clean - lp_corrupt
    rows = []
    for s in chosen:
        with intervene(vlm, corrupt, {s.name: set_at(pos, cache[s.name][pos.to(vlm.device)])}):
            lp = vlm.score(corrupt, ids).total
        rows.append({"site": s.name, "layer": s.layer, "logprob": lp, "clean": lp_clean,
                     "corrupt": lp_corrupt,
                     "restored": (lp - lp_corrupt) / gap if abs(gap) > 1e-6 else float("nan")})
    return pd.DataFrame(rows)


def attribution_patch(vlm, clean, corrupt, site: str, answer, positions="image") -> torch.Tensor:
    """``[len(positions)]`` estimated effect of patching each position alone on the answer's
    total log-probability: ``(clean - corrupt) · gradient`` at ``site``, one backward pass.

    Compare with ``patch(...).total - vlm.score(corrupt, answer).total`` for a position.
    """
    s, ids = _check(vlm, clean, corrupt, site, answer)
    n = clean.input_ids.shape[1]
    length = n + ids.numel()
    pos = _positions(clean, positions, length)
    clean_act = capture(vlm, clean, s.name, device=None, answer=ids)[s.name]
    inputs = vlm.adapter.extend_inputs(corrupt.inputs, ids[None])
    leaf: list[torch.Tensor] = []

    def grad_here(x, call):
        if leaf:  # one forward: a second call would be a different pass
            return None
        leaf.append(x.detach().requires_grad_(True))
        return leaf[0]

    with intervene(vlm, corrupt, {s.name: grad_here}), torch.enable_grad():
        logits = vlm.model(**inputs).logits[0, n - 1:-1]
        total = torch.log_softmax(logits.float(), -1).gather(1, ids[:, None]).sum()
        [grad] = torch.autograd.grad(total, leaf[0])
    p = pos.to(grad.device)
    corrupt_act = leaf[0].detach()[0, p]
    return ((clean_act[p].to(grad.device) - corrupt_act).float() * grad[0, p].float()).sum(-1).cpu()


__all__ = ["patch", "patch_sweep", "attribution_patch"]
