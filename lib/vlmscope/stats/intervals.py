"""Confidence intervals: seeded bootstrap (BCa, percentile where BCa is undefined) and the
Wilson score interval of a proportion."""

from __future__ import annotations

import warnings
from typing import Callable, Iterable

import numpy as np
from scipy import stats as st


def _join(notes: Iterable[str]) -> str:
    return "; ".join(n for n in notes if n)


def _bootstrap_ci(samples: tuple[np.ndarray, ...], statistic: Callable, *, confidence: float,
                  n_resamples: int, method: str, seed: int) -> tuple[float, float, str, str]:
    """``(low, high, method_used, note)`` of ``scipy.stats.bootstrap``, never warning.

    BCa falls back to the percentile interval where it is undefined; fewer
    than two values in a sample gives NaN.
    """
    if any(len(s) < 2 for s in samples):
        return float("nan"), float("nan"), method, "bootstrap needs >= 2 values per group"
    methods = [method] + (["percentile"] if method.lower() == "bca" else [])
    notes = []
    for m in methods:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = st.bootstrap(samples, statistic, vectorized=True, n_resamples=n_resamples,
                               confidence_level=confidence, method=m,
                               rng=np.random.default_rng(seed))
        low, high = (float(v) for v in res.confidence_interval)
        if np.isfinite(low) and np.isfinite(high):
            return low, high, m, _join(notes)
        degenerate = [w for w in caught if "Degenerate" in w.category.__name__]
        why = ("degenerate bootstrap distribution" if degenerate
               else str(caught[0].message).split(".")[0] if caught else "not finite")
        notes.append(f"{m} interval undefined ({why})")
    return float("nan"), float("nan"), method, _join(notes)


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """``(low, high)``: the Wilson score interval of ``successes`` out of ``n``
    (``scipy.stats.binomtest(...).proportion_ci(method="wilson")``); NaN for ``n == 0``."""
    if n == 0:
        return float("nan"), float("nan")
    ci = st.binomtest(int(successes), int(n)).proportion_ci(confidence, method="wilson")
    return float(ci.low), float(ci.high)
