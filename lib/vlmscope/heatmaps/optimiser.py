"""``igos``: the iGOS+ / iGOS++ optimisation (integrated-gradient deletion and insertion
terms in balanced batches of path images, out-of-memory retries, Nesterov steps or an
Armijo line search)."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ..attention import attention_implementation
from ..models import out_of_memory
from ..pixels import image_tensor
from .baselines import config_baseline
from .config import HeatmapConfig
from .objective import Objective
from .penalties import edge_image, regulariser, upsample
from .result import Heatmap
from .selection import Selection, select_tokens


def noise_seed(seed: int, iteration: int, term: int, k: int) -> int:
    """The seed of one path image's noise: a hash of (config seed, iteration, term, path point).

    Every path image draws from its own generator, so the mask is the same
    whatever ``batch`` splits the images into (and after an out-of-memory
    retry); ``term`` indexes ``_terms``.
    """
    return int(np.random.SeedSequence([seed, iteration, term, k]).generate_state(1, np.uint64)[0] >> 1)


def _combined(masks: dict) -> torch.Tensor:
    """The coarse explaining mask: iGOS+'s single mask, or iGOS++'s deletion x insertion product
    (what the regulariser sees and what the released code returns)."""
    return masks["single"] if "single" in masks else masks["deletion"] * masks["insertion"]


def _terms(masks: dict) -> list[tuple[str, str, float]]:
    """(kind, mask, weight) of each integrated-gradient term, in the released code's order:
    iGOS+ deletion then insertion; iGOS++ the product's deletion and insertion, then each
    mask's own (the product's terms and the masks' own each weigh 1/2)."""
    if "single" in masks:
        return [("deletion", "single", 1.0), ("insertion", "single", 1.0)]
    return [("deletion", "both", 0.5), ("insertion", "both", 0.5),
            ("deletion", "deletion", 0.5), ("insertion", "insertion", 0.5)]


def _balanced(remaining: int, batch: int) -> int:
    """Size of the next batch: as many calls as ``batch`` needs, sizes differing by at most one."""
    calls = -(-remaining // batch)
    return -(-remaining // calls)


def path_gradient(obj: Objective, image: torch.Tensor, baseline: torch.Tensor, masks: dict,
                  config: HeatmapConfig, iteration: int = 0, state: dict | None = None,
                  backward: bool = True) -> dict:
    """Accumulate the gradient of the integrated deletion-minus-insertion term into ``masks``.

    ``masks``: {"single": M} (iGOS+) or {"deletion": Md, "insertion": Mi}
    (iGOS++), leaf tensors ``[size, size]`` with ``requires_grad``. The
    ``ig_iter`` path images of every term (2 terms for iGOS+, 4 for iGOS++)
    run at most ``config.batch`` at a time in balanced batches, with a
    ``backward`` per batch. Noise: one seed per path image
    (``noise_seed(config.seed, iteration, term, k)``), or with
    ``noise_seeds="shared"`` the generator ``state["generator"]`` drawn image
    after image in path order. A batch that runs out of memory is rerun in
    halves (the gradients it had added and the generator are restored first)
    and the smaller size is kept in ``state["batch"]`` for later calls.
    ``backward=False``: values only (no graph; the line search's trials).
    Returns the terms' values ``{"deletion": D, "insertion": I}``.
    """
    n = config.ig_iter
    h, w = image.shape[-2:]
    terms = _terms(masks)
    todo = [(t, k) for t in range(len(terms)) for k in range(1, n + 1)]  # the released order
    state = state if state is not None else {}
    batch = state.setdefault("batch", config.batch)
    gen = state.get("generator")
    totals = {"deletion": 0.0, "insertion": 0.0}
    pos = 0
    while pos < len(todo):
        size = _balanced(len(todo) - pos, batch)
        part = todo[pos:pos + size]
        before = {key: None if m.grad is None else m.grad.clone() for key, m in masks.items()}
        gen_state = gen.get_state() if gen is not None else None
        forwards = obj.forwards
        try:
            with torch.set_grad_enabled(backward):
                values = _path_batch(obj, image, baseline, masks, terms, part, config, iteration,
                                     (h, w), gen, backward)
        except Exception as e:  # noqa: BLE001 - only memory errors are handled; the rest re-raised
            if not out_of_memory(e) or size == 1:
                raise
            for key, m in masks.items():
                m.grad = before[key]
            if gen is not None:
                gen.set_state(gen_state)
            obj.forwards = forwards
            batch = state["batch"] = max(1, size // 2)
            del e
            _free_memory(image.device)
            warnings.warn(f"out of memory with {size} path images in a batch: continuing with "
                          f"{batch} (the mask does not change)", RuntimeWarning, stacklevel=2)
            continue
        for (t, _), v in zip(part, values):
            totals[terms[t][0]] += terms[t][2] * v / n
        pos += size
    return totals


def _up_masks(masks: dict, keys, hw, combine: str) -> dict:
    """Upsampled masks ``[1, H, W]`` for ``keys``; "both" per ``combine``."""
    ups = {}
    for key in keys:
        if key == "both":
            m = (upsample(masks["deletion"], *hw) * upsample(masks["insertion"], *hw)
                 if combine == "upsampled" else upsample(masks["deletion"] * masks["insertion"], *hw))
        else:
            m = upsample(masks[key], *hw)
        ups[key] = m[None]
    return ups


def _path_batch(obj, image, baseline, masks, terms, part, config, iteration, hw, gen=None,
                backward=True) -> list[float]:
    """Forward (and backward) of one batch of path images ``part`` [(term, k)]; their scores."""
    n = config.ig_iter
    ups = _up_masks(masks, {terms[t][1] for t, _ in part}, hw, config.combine)
    images, coefs = [], []
    for t, k in part:
        kind, key, weight = terms[t]
        wgt = (k / n) * ups[key]
        if kind == "deletion":
            images.append(image * wgt + baseline * (1 - wgt))
            coefs.append(weight / n)
        else:
            images.append(baseline * wgt + image * (1 - wgt))
            coefs.append(-weight / n)
    if config.noise_seeds == "shared":
        s = obj.score(torch.stack(images), noise=config.noise, generator=gen)
    else:
        seeds = [noise_seed(config.seed, iteration, t, k) for t, k in part]
        s = obj.score(torch.stack(images), noise=config.noise, seeds=seeds)  # [b]
    if backward:
        (s * torch.tensor(coefs, dtype=s.dtype, device=s.device)).sum().backward()
    return s.detach().double().cpu().tolist()


def line_search(obj, image, baseline, masks: dict, grads: dict, loss: float, config: HeatmapConfig,
                iteration: int, state: dict, edges: torch.Tensor) -> tuple[float, int]:
    """Backtracking (Armijo) step along ``-grads``: ``(step, trials)``.

    Starting at ``config.lr``, a trial ``M' = clip(M - step * g, 0, 1)`` is
    accepted when ``loss(M') <= loss(M) - ls_beta * step * |g|^2`` (the released
    ``line_search``'s condition, with its constants as defaults); otherwise
    ``step *= ls_decay``, down to ``ls_min`` (then the smallest step is taken).
    ``loss`` is deletion - insertion + regulariser at ``M``, evaluated with the
    same noise draws as the gradient (so the test compares like with like).
    """
    sq = sum(float((g.double() ** 2).sum()) for g in grads.values())
    step, trials = float(config.lr), 0
    gen = state.get("generator")
    start = state.get("iteration_generator_state")
    with torch.no_grad():
        while True:
            trial = {k: (m - step * grads[k]).clamp(0, 1) for k, m in masks.items()}
            if gen is not None and start is not None:
                gen.set_state(start)
            terms = path_gradient(obj, image, baseline, trial, config, iteration, state, backward=False)
            l1, btv, l2 = regulariser(_combined(trial), edges, config, iteration)
            value = terms["deletion"] - terms["insertion"] + float(l1 + btv + l2)
            trials += 1
            if value <= loss - config.ls_beta * step * sq or step * config.ls_decay < config.ls_min:
                return step, trials
            step *= config.ls_decay


def _free_memory(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def igos(vlm, prepared, answer=None, config: HeatmapConfig = HeatmapConfig(), *,
         selection: Selection | None = None, baseline: torch.Tensor | None = None,
         progress: bool = False, keep_history: bool = False) -> Heatmap:
    """iGOS+ (or iGOS++ with ``config.method``) heatmap of ``answer`` to ``prepared``.

    ``answer``: text, a ``Generation`` or ids; None = the model's greedy answer.
    ``selection``: positions to explain (default: ``select_tokens``). A sample
    with no selected position returns a ``Heatmap`` whose ``mask`` is None and
    whose ``skipped`` says why. ``keep_history``: keep the (combined) mask after
    every iteration in ``Heatmap.history`` (for watching the optimisation).
    """
    image = image_tensor(prepared.image, vlm.device)
    if baseline is None:
        baseline = config_baseline(image, config)
    baseline = baseline.to(image)
    if selection is None:
        selection = select_tokens(vlm, prepared, answer, baseline, config)
    size = prepared.image.size
    if not selection.positions:
        return Heatmap(None, selection, config, size)
    obj = Objective(vlm, prepared, torch.tensor(selection.answer_ids), selection.positions)
    edges = edge_image(vlm, image, config)
    names = ("single",) if config.method == "igos+" else ("deletion", "insertion")
    masks = {k: torch.ones(config.size, config.size, device=image.device, requires_grad=True)
             for k in names}
    theta_prev = {k: m.detach().clone() for k, m in masks.items()}
    trace, history, state = [], [], {"batch": config.batch}
    if config.noise_seeds == "shared":
        state["generator"] = torch.Generator(device=image.device).manual_seed(config.seed)
    params = [p for p in vlm.model.parameters() if p.requires_grad]
    for p in params:  # only the mask needs gradients: no weight-gradient work or memory
        p.requires_grad_(False)
    try:
        from tqdm.auto import tqdm

        with attention_implementation(vlm.model, config.attn_implementation):
            for it in tqdm(range(config.iterations), desc="iGOS", disable=not progress):
                if "generator" in state:
                    state["iteration_generator_state"] = state["generator"].get_state()
                terms = path_gradient(obj, image, baseline, masks, config, it, state)
                l1, btv, l2 = regulariser(_combined(masks), edges, config, it)
                (l1 + btv + l2).backward()
                row = {**terms, "l1": l1.item(), "btv": btv.item(), "l2": l2.item(),
                       "batch": state["batch"]}
                grads = {k: m.grad.detach().clone() for k, m in masks.items()}
                if config.step == "armijo":
                    loss = terms["deletion"] - terms["insertion"] + row["l1"] + row["btv"] + row["l2"]
                    after = state["generator"].get_state() if "generator" in state else None
                    step, trials = line_search(obj, image, baseline, masks, grads, loss, config,
                                               it, state, edges)
                    if after is not None:  # the next iteration draws as without the search
                        state["generator"].set_state(after)
                    row.update(step=step, trials=trials)
                    with torch.no_grad():
                        for k, m in masks.items():
                            m.copy_((m - step * grads[k]).clamp(0, 1))
                            m.grad = None
                else:
                    e = it / (it + config.momentum)
                    with torch.no_grad():
                        for k, m in masks.items():
                            theta = m - config.lr * grads[k]
                            m.copy_((theta + e * (theta - theta_prev[k])).clamp(0, 1))
                            theta_prev[k] = theta
                            m.grad = None
                trace.append(row)
                if keep_history:
                    history.append(_combined(masks).detach().cpu().numpy().copy())
    finally:
        for p in params:
            p.requires_grad_(True)
    raw = {k: m.detach().cpu().numpy().copy() for k, m in masks.items()}
    mask = raw["single"] if "single" in raw else raw["deletion"] * raw["insertion"]
    return Heatmap(mask, selection, config, size, masks={} if "single" in raw else raw,
                   trace=trace, forwards=obj.forwards, history=history)
