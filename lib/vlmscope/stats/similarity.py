"""Map similarity: top-fraction IoU, Spearman over pixels, mass overlap."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as st


def _map_pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"maps of different shapes: {x.shape} and {y.shape} (resize them to "
                         "one grid first)")
    if x.size == 0:
        raise ValueError("empty maps")
    return x, y


def _top_k(n: int, fraction: float) -> int:
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], not {fraction}")
    return max(1, min(n, int(math.floor(fraction * n + 0.5))))


def top_weights(importance: np.ndarray, fraction: float = 0.1, ties: str = "split") -> np.ndarray:
    """Membership (0..1, map-shaped) of each pixel in the top ``fraction`` of an importance map.

    ``k = round(fraction * pixels)`` (at least 1). NaN pixels count as least
    important. Pixels tied at the k-th largest value (plateaus are common:
    iGOS masks saturate) are handled by ``ties``:

    - ``"split"`` (default): each tied pixel gets the same fractional
      membership so that the weights sum to exactly ``k``: no position is
      favoured and the top set keeps its size;
    - ``"index"``: the tied pixels with the lowest flat (row-major) index win;
    - ``"include"``: every tied pixel is in (the set may exceed ``k``).
    """
    v = np.asarray(importance, dtype=np.float64)
    if v.size == 0:
        raise ValueError("empty map")
    flat = np.where(np.isnan(v), -np.inf, v).ravel()
    n = flat.size
    k = _top_k(n, fraction)
    if ties == "index":
        w = np.zeros(n)
        w[np.argsort(-flat, kind="stable")[:k]] = 1.0
        return w.reshape(v.shape)
    if ties not in ("split", "include"):
        raise ValueError(f"ties must be 'split', 'index' or 'include', not {ties!r}")
    t = np.partition(flat, n - k)[n - k]  # the k-th largest value
    above, tied = flat > t, flat == t
    w = above.astype(np.float64)
    w[tied] = 1.0 if ties == "include" else (k - above.sum()) / tied.sum()
    return w.reshape(v.shape)


def top_iou(a: np.ndarray, b: np.ndarray, fraction: float = 0.1, ties: str = "split") -> float:
    """IoU of the top-``fraction`` pixels of two importance maps (1 = same places, 0 = disjoint).

    Memberships from ``top_weights`` (ties as described there); the IoU is
    ``sum(min(w_a, w_b)) / sum(max(w_a, w_b))``, the plain set IoU when the
    memberships are 0/1. Maps must have the same shape.
    """
    x, y = _map_pair(a, b)
    wa, wb = top_weights(x, fraction, ties), top_weights(y, fraction, ties)
    return float(np.minimum(wa, wb).sum() / np.maximum(wa, wb).sum())


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two maps over pixels (ties get midranks).

    Pixels that are not finite in either map are left out; NaN (no warning)
    when fewer than two pixels remain or a map is constant on them.
    """
    x, y = _map_pair(a, b)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    rx, ry = st.rankdata(x), st.rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float(np.clip((rx @ ry) / np.sqrt((rx @ rx) * (ry @ ry)), -1.0, 1.0))


def mass_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Shared importance mass: ``sum(min(p, q))`` of the maps normalised to sum 1.

    Negative and NaN pixels count as 0. 1 = identical distributions, 0 =
    disjoint support (it is 1 - total variation distance); NaN when a map
    has no positive mass.
    """
    x, y = _map_pair(a, b)
    p = np.clip(np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0), 0, None)
    q = np.clip(np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0), 0, None)
    sp, sq = p.sum(), q.sum()
    if sp <= 0 or sq <= 0:
        return float("nan")
    return float(np.minimum(p / sp, q / sq).sum())


SIMILARITIES = {"top_iou": top_iou, "rank_correlation": rank_correlation,
                "mass_overlap": mass_overlap}
