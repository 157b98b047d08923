"""Faithfulness: deletion and insertion curves and scores (ours or the released definition;
ties by ``cell_order``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..pixels import image_tensor
from .baselines import config_baseline
from .config import HeatmapConfig
from .objective import Objective
from .selection import Selection


@dataclass
class Faithfulness:
    """Deletion and insertion curves (normalised per step) and their weighted means."""

    deletion_curve: np.ndarray  # at each count of cells changed (``counts``), 0 first
    insertion_curve: np.ndarray
    deletion_raw: np.ndarray  # mean probability of the selected tokens per step
    insertion_raw: np.ndarray
    original: float
    baseline: float
    cells_per_step: int
    counts: np.ndarray | None = None  # cells changed at each curve point
    weights: np.ndarray | None = None  # each point's weight in the score (sums to 1)
    definition: str = "ours"
    tie_seed: int | None = None

    def _mean(self, curve) -> float:
        if self.weights is None:
            return float(np.mean(curve))
        return float(np.sum(np.asarray(curve) * self.weights))

    @property
    def deletion(self) -> float:
        """Normalised deletion score (lower = better)."""
        return self._mean(self.deletion_curve)

    @property
    def insertion(self) -> float:
        """Normalised insertion score (higher = better)."""
        return self._mean(self.insertion_curve)


def cell_order(mask: np.ndarray, tie_seed: int | None = None) -> np.ndarray:
    """Mask cells from most to least important (lowest mask value first).

    Equal values: by cell index (row-major) when ``tie_seed`` is None, else in
    a random order drawn from ``numpy.random.default_rng(tie_seed)``. (The
    released code sorts with ``torch.argsort``, whose order among equal values
    is not defined.)
    """
    values = np.asarray(mask, dtype=np.float64).ravel()
    if tie_seed is None:
        return np.argsort(values, kind="stable")
    key = np.random.default_rng(tie_seed).permutation(values.size)
    return np.lexsort((key, values))


def metric_steps(n_cells: int, cells_per_step: int, definition: str) -> tuple[np.ndarray, np.ndarray]:
    """``(counts, weights)``: cells changed at each curve point and the point's weight in the score.

    "ours": 0, s, 2s, ..., n cells (``s = cells_per_step``), every point
    weighing the same. "released" (the released ``metric``): step
    ``s = max(1, n // 50)``; the points after each step score with the number
    of cells that step changed, divided by n (the released code adds
    ``n - pixels`` instead of the last step's score times its cells, an
    operator-precedence slip, fixed here); the point at 0 (nothing changed)
    is drawn but weighs nothing.
    """
    if definition == "ours":
        counts = np.array(list(range(0, n_cells, cells_per_step)) + [n_cells])
        return counts, np.full(len(counts), 1.0 / len(counts))
    if definition == "released":
        step = max(1, n_cells // 50)
        counts = np.array([0] + [min(c, n_cells) for c in range(step, n_cells + step, step)])
        return counts, np.r_[0.0, np.diff(counts) / n_cells]
    raise ValueError(f"deletion_metric must be 'ours' or 'released', not {definition!r}")


@torch.no_grad()
def faithfulness(vlm, prepared, selection: Selection, mask: np.ndarray,
                 baseline: torch.Tensor | None = None, cells_per_step: int = 20,
                 batch: int | None = None, config: HeatmapConfig = HeatmapConfig(), *,
                 definition: str | None = None, tie_seed: int | None = -1) -> Faithfulness:
    """Deletion (image -> baseline) and insertion (baseline -> image), cell by cell.

    Each step scores the mean probability of the selected tokens and is
    normalised as ``(s - s_baseline) / (s_original - s_baseline)``.
    ``definition`` (default ``config.deletion_metric``): "ours" changes
    ``cells_per_step`` cells a step, cells become pixels by nearest-neighbour
    upsampling, and the score is the mean over all steps, first (nothing
    changed) and last (all cells) included; "released" follows the released
    code (bilinear cells, step ``n // 50``, steps weighted by cells changed;
    see ``metric_steps``). ``tie_seed`` (default ``config.tie_seed``): order of
    equal mask values (``cell_order``). ``batch`` (default ``config.batch``, the
    same knob as the optimisation's): images per forward, speed and memory only.
    """
    if not selection.positions:
        raise ValueError(f"nothing to score: the sample was skipped ({selection.skipped})")
    definition = config.deletion_metric if definition is None else definition
    tie_seed = config.tie_seed if tie_seed == -1 else tie_seed
    batch = config.batch if batch is None else batch
    if batch < 1:
        raise ValueError(f"batch must be >= 1, not {batch}")
    image = image_tensor(prepared.image, vlm.device)
    if baseline is None:
        baseline = config_baseline(image, config)
    baseline = baseline.to(image)
    obj = Objective(vlm, prepared, torch.tensor(selection.answer_ids), selection.positions)
    mask = np.asarray(mask)
    s_rows, s_cols = mask.shape
    order = cell_order(mask, tie_seed)
    counts, weights = metric_steps(order.size, cells_per_step, definition)
    h, w = image.shape[-2:]
    cells = torch.zeros(len(counts), s_rows * s_cols, device=image.device)
    for j, c in enumerate(counts):
        cells[j, torch.as_tensor(order[:c], device=image.device)] = 1.0
    cells = cells.reshape(-1, 1, s_rows, s_cols)
    if definition == "released":
        changed = F.interpolate(cells, size=(h, w), mode="bilinear", align_corners=True)
    else:
        changed = F.interpolate(cells, size=(h, w), mode="nearest")

    def probs(images):
        out = [obj.logprobs(images[i:i + batch]).exp().mean(-1) for i in range(0, len(images), batch)]
        return torch.cat(out).cpu().numpy().astype(np.float64)

    ends = probs(torch.stack([image, baseline]))
    s_orig, s_base = float(ends[0]), float(ends[1])
    deleted = probs(image * (1 - changed) + baseline * changed)
    inserted = probs(baseline * (1 - changed) + image * changed)
    denom = s_orig - s_base
    norm = (lambda s: (s - s_base) / denom) if abs(denom) > 1e-12 else (lambda s: s * np.nan)
    return Faithfulness(norm(deleted), norm(inserted), deleted, inserted, s_orig, s_base,
                        cells_per_step, counts, weights, definition, tie_seed)
