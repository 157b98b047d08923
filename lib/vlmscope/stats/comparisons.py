"""Finding 1, focus vs correctness: a per-sample figure compared between two groups
(Mann-Whitney U, rank-biserial effect size, bootstrap interval, Fisher's exact test for 0/1)."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats as st

from .intervals import _bootstrap_ci, _join


def _stat(x: np.ndarray, how: str) -> float:
    """Mean or median of ``x``; NaN (silently) when empty."""
    if x.size == 0:
        return float("nan")
    return float(np.mean(x) if how == "mean" else np.median(x))


def _mean_diff(x, y, axis=-1):
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def _median_diff(x, y, axis=-1):
    return np.median(x, axis=axis) - np.median(y, axis=axis)


@dataclass(frozen=True)
class GroupComparison:
    """Group ``a`` against group ``b`` (e.g. correct vs incorrect answers) on one figure.

    Every difference and effect size is ``a - b`` / "a larger than b".

    Attributes
    ----------
    label_a, label_b : str
        Names of the groups.
    n_a, n_b : int
        Values per group (NaN values dropped; ``n_dropped`` counts them).
    mean_a, mean_b, median_a, median_b : float
        Per-group summaries (for 0/1 outcomes the means are the proportions).
    statistic : str
        What ``difference`` and its interval compare: ``"mean"`` or ``"median"``.
    difference : float
        ``statistic(a) - statistic(b)`` (for 0/1 outcomes: difference in proportions).
    ci_low, ci_high : float
        Bootstrap interval for ``difference`` (groups resampled independently).
    confidence : float
        Level of the interval.
    ci_method : str
        ``"BCa"`` or ``"percentile"`` (the method actually used).
    u : float
        Mann-Whitney U of group ``a``: #(a > b) + 0.5 #(a == b) over all pairs.
    p_mannwhitney : float
        Two-sided Mann-Whitney p-value (``scipy.stats.mannwhitneyu``).
    mw_method : str
        ``"exact"`` or ``"asymptotic"`` (scipy's ``"auto"`` rule: exact when a
        group has <= 8 values and there are no ties).
    rank_biserial : float
        ``2 u / (n_a n_b) - 1`` = P(A > B) - P(A < B) = Cliff's delta, in [-1, 1].
    binary : bool
        The values are 0/1 outcomes (e.g. pointing-game hits).
    odds_ratio, p_fisher : float
        Binary only (else NaN): sample odds ratio ``(hits_a misses_b) / (misses_a hits_b)``
        (may be 0 or inf) and the two-sided Fisher exact p-value.
    n_dropped : int
        NaN values dropped from the two groups.
    note : str
        Why something is NaN or which fallback was used; ``""`` when nothing happened.
    """

    label_a: str
    label_b: str
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    median_a: float
    median_b: float
    statistic: str
    difference: float
    ci_low: float
    ci_high: float
    confidence: float
    ci_method: str
    u: float
    p_mannwhitney: float
    mw_method: str
    rank_biserial: float
    binary: bool
    odds_ratio: float
    p_fisher: float
    n_dropped: int
    note: str

    def to_dict(self) -> dict:
        """The fields as a plain dict."""
        return asdict(self)

    def to_frame(self) -> pd.DataFrame:
        """A tidy one-row DataFrame (one column per field)."""
        return pd.DataFrame([self.to_dict()])


def _u_statistic(x: np.ndarray, y: np.ndarray) -> float:
    """Mann-Whitney U of ``x`` from midranks of the pooled sample."""
    ranks = st.rankdata(np.concatenate([x, y]))
    return float(ranks[:x.size].sum() - x.size * (x.size + 1) / 2)


def compare_samples(a: Sequence[float], b: Sequence[float], *, labels: tuple[str, str] = ("a", "b"),
                    statistic: str = "mean", binary: bool | None = None,
                    confidence: float = 0.95, n_resamples: int = 9999, ci_method: str = "BCa",
                    mw_method: str = "auto", seed: int = 0) -> GroupComparison:
    """Compare two samples; see ``compare_groups`` (which splits one column by group first)."""
    if statistic not in ("mean", "median"):
        raise ValueError(f"statistic must be 'mean' or 'median', not {statistic!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), not {confidence}")
    if mw_method not in ("auto", "exact", "asymptotic"):
        raise ValueError(f"mw_method must be 'auto', 'exact' or 'asymptotic', not {mw_method!r}")
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    n_dropped = int(np.isnan(x).sum() + np.isnan(y).sum())
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    pooled = np.concatenate([x, y])
    if np.isinf(pooled).any():
        raise ValueError("values contain +-inf; pass finite numbers (NaN values are dropped)")
    if binary is None:
        binary = pooled.size > 0 and bool(np.isin(pooled, (0.0, 1.0)).all())
    elif binary and not np.isin(pooled, (0.0, 1.0)).all():
        raise ValueError("binary=True but the values are not all 0/1 (or True/False)")
    if binary and statistic == "median":
        raise ValueError("medians of 0/1 outcomes are 0 or 1; compare proportions with "
                         "statistic='mean'")
    label_a, label_b = (str(v) for v in labels)
    notes = [f"{n_dropped} NaN values dropped" if n_dropped else ""]
    nan = float("nan")
    out = dict(label_a=label_a, label_b=label_b, n_a=int(x.size), n_b=int(y.size),
               mean_a=_stat(x, "mean"), mean_b=_stat(y, "mean"),
               median_a=_stat(x, "median"), median_b=_stat(y, "median"),
               statistic=statistic, difference=_stat(x, statistic) - _stat(y, statistic),
               ci_low=nan, ci_high=nan, confidence=float(confidence), ci_method=ci_method,
               u=nan, p_mannwhitney=nan, mw_method="", rank_biserial=nan, binary=bool(binary),
               odds_ratio=nan, p_fisher=nan, n_dropped=n_dropped)

    empty = [lab for lab, v in ((label_a, x), (label_b, y)) if v.size == 0]
    if empty:
        notes.append(" and ".join(f"group {lab!r}" for lab in empty)
                     + (" is" if len(empty) == 1 else " are") + " empty: no test")
        return GroupComparison(**out, note=_join(notes))

    u = _u_statistic(x, y)
    out["u"] = u
    out["rank_biserial"] = 2 * u / (x.size * y.size) - 1
    if np.ptp(pooled) == 0:
        notes.append(f"all values identical ({pooled[0]:g}): no test, no interval")
        return GroupComparison(**out, note=_join(notes))

    ties = np.unique(pooled).size < pooled.size
    resolved = mw_method if mw_method != "auto" else (
        "exact" if min(x.size, y.size) <= 8 and not ties else "asymptotic")
    out["mw_method"] = resolved
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["p_mannwhitney"] = float(st.mannwhitneyu(x, y, alternative="two-sided",
                                                     method=resolved).pvalue)
    if binary:
        ha, hb = int(x.sum()), int(y.sum())
        table = [[ha, x.size - ha], [hb, y.size - hb]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fisher = st.fisher_exact(table, alternative="two-sided")
        out["odds_ratio"], out["p_fisher"] = float(fisher.statistic), float(fisher.pvalue)

    low, high, used, note = _bootstrap_ci(
        (x, y), _mean_diff if statistic == "mean" else _median_diff, confidence=confidence,
        n_resamples=n_resamples, method=ci_method, seed=seed)
    out.update(ci_low=low, ci_high=high, ci_method=used)
    notes.append(note)
    return GroupComparison(**out, note=_join(notes))


def _is_boolean(groups: np.ndarray) -> bool:
    if groups.dtype == bool:
        return True
    try:
        return bool(np.isin(groups.astype(np.float64), (0.0, 1.0)).all())
    except (TypeError, ValueError):
        return False


def compare_groups(values: Sequence[float], groups: Sequence, a=None, b=None, *,
                   labels: tuple[str, str] | None = None, statistic: str = "mean",
                   binary: bool | None = None, confidence: float = 0.95,
                   n_resamples: int = 9999, ci_method: str = "BCa", mw_method: str = "auto",
                   seed: int = 0) -> GroupComparison:
    """Compare ``values`` between two groups, e.g. heatmap mass in the target for correct vs wrong.

    Parameters
    ----------
    values : sequence of float or bool
        One figure per sample (``plausibility(...)["mass"]``, or ``["pointing"]``
        hits). NaN values (a flat map has no mass) are dropped and counted.
    groups : sequence
        Same length as ``values``: the group of each sample. With ``a`` and
        ``b`` left out it must be boolean (or 0/1), and ``a=True`` is compared
        with ``b=False`` (e.g. ``groups = correct``).
    a, b : hashable, optional
        The two group values to compare (samples in other groups are ignored).
    labels : (str, str), optional
        Names for the two groups in the result (default ``str(a), str(b)``).
    statistic : {"mean", "median"}
        What ``difference`` and its bootstrap interval compare. 0/1 outcomes
        always compare proportions (``"mean"``).
    binary : bool, optional
        Treat values as 0/1 outcomes (adds Fisher's exact test and the odds
        ratio). Default: detected (every value is 0 or 1).
    confidence, n_resamples, ci_method, seed
        The bootstrap interval (``scipy.stats.bootstrap``; ``ci_method`` "BCa"
        or "percentile"; groups resampled independently, seeded).
    mw_method : {"auto", "exact", "asymptotic"}
        Passed to ``scipy.stats.mannwhitneyu`` (the method used is reported).

    Returns
    -------
    GroupComparison
        ``.to_frame()`` gives one tidy row. Effect sizes are ``a`` versus ``b``:
        ``rank_biserial = P(A > B) - P(A < B)`` (Cliff's delta).

    Raises
    ------
    ValueError
        Lengths differ, non-boolean groups without ``a`` and ``b``, infinite
        values, or an unknown option. Degenerate data (an empty group,
        identical values) gives NaN results with a ``note`` instead.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    g = np.asarray(groups).ravel()
    if v.size != g.size:
        raise ValueError(f"values ({v.size}) and groups ({g.size}) differ in length")
    if (a is None) != (b is None):
        raise ValueError("give both a and b (the two groups to compare), or neither")
    if a is None:
        if not _is_boolean(g):
            raise ValueError("groups are not boolean: name the two groups to compare with a= "
                             f"and b= (values seen: {list(pd.unique(g))[:6]})")
        g = g.astype(np.float64) == 1.0
        a, b = True, False
    if labels is None:
        labels = (str(a), str(b))
    return compare_samples(v[g == a], v[g == b], labels=labels, statistic=statistic,
                           binary=binary, confidence=confidence, n_resamples=n_resamples,
                           ci_method=ci_method, mw_method=mw_method, seed=seed)


def compare_frame(frame: pd.DataFrame, value: str | Sequence[str], by: str, a=None, b=None, *,
                  per: str | Sequence[str] | None = None, **kwargs) -> pd.DataFrame:
    """``compare_groups`` over columns of a tidy frame: one row per value column (and ``per`` group).

    E.g. ``compare_frame(df, ["mass", "pointing"], by="correct", per="model")``
    gives, for every model and figure, the correct-vs-incorrect comparison.
    The result has columns ``value`` (the figure), the ``per`` columns, then
    the fields of ``GroupComparison``. ``kwargs`` go to ``compare_groups``.
    """
    cols = [value] if isinstance(value, str) else list(value)
    per_cols = [] if per is None else ([per] if isinstance(per, str) else list(per))
    missing = [c for c in cols + [by] + per_cols if c not in frame.columns]
    if missing:
        raise ValueError(f"columns {missing} not in the frame (it has {list(frame.columns)})")
    parts = frame.groupby(per_cols, sort=True, dropna=False) if per_cols else [((), frame)]
    rows = []
    for key, sub in parts:
        key = key if isinstance(key, tuple) else (key,)
        for col in cols:
            res = compare_groups(sub[col].to_numpy(), sub[by].to_numpy(), a, b, **kwargs)
            rows.append({"value": col, **dict(zip(per_cols, key)), **res.to_dict()})
    return pd.DataFrame(rows)
