"""Plausibility against a ground-truth mask, rank agreement of two maps, and heatmaps of one
question under several configs side by side."""

from __future__ import annotations

import numpy as np

from ..metrics import mass_in_mask, pointing
from .deletion import faithfulness
from .optimiser import igos
from .selection import Selection


def plausibility(importance: np.ndarray, target: np.ndarray) -> dict:
    """Pointing game and mass-in-mask of an importance map against a boolean target mask.

    ``pointing``: every pixel where the map is maximal lies in the target (a
    flat map points nowhere in particular and fails); ``mass``: share of the (non-negative)
    importance inside the target (both from ``vlmscope.metrics``); ``area``: the target's share of the image
    (the mass a uniform map would get).
    """
    imp = np.clip(np.nan_to_num(np.asarray(importance, dtype=np.float64)), 0, None)
    target = np.asarray(target, dtype=bool)
    if imp.shape != target.shape:
        raise ValueError(f"map {imp.shape} and mask {target.shape} differ in shape")
    if not target.any():
        from ..tokens import EmptyMaskError

        raise EmptyMaskError("the target mask is empty (no pixel set): plausibility needs a region")
    return {"pointing": pointing(imp, target, ties="all"), "mass": mass_in_mask(imp, target),
            "area": float(target.mean())}


def rank_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two masks or maps (NaN when either is constant)."""
    from scipy.stats import spearmanr

    a, b = np.ravel(a), np.ravel(b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b)[0])


def compare_configs(vlm, prepared, selection: Selection, configs: dict, target=None,
                    baseline_name: str | None = None, faithful: bool = True) -> "pd.DataFrame":
    """One heatmap per named config of the same question and positions, side by side.

    Columns: the config's ``switches()`` (how it differs from the "reference"
    preset), ``rho`` (Spearman of its coarse mask with that of
    ``baseline_name``, default the first config), and with a boolean ``target``
    mask the ``mass`` and ``pointing`` of its importance map; with ``faithful``
    the deletion and insertion scores, all measured alike (the metric, tie rule and
    baseline of the ``baseline_name`` config).
    """
    import pandas as pd

    names = list(configs)
    base = baseline_name or names[0]
    maps = {k: igos(vlm, prepared, None, c, selection=selection) for k, c in configs.items()}
    rows = []
    for k, c in configs.items():
        hm = maps[k]
        row = {"config": k, "switches": ", ".join(f"{a}={b}" for a, b in c.switches().items()) or "—",
               "rho": rank_agreement(hm.mask, maps[base].mask)}
        if target is not None:
            row.update({f"{m}": v for m, v in plausibility(hm.importance(), target).items()
                        if m != "area"})
        if faithful:
            f = faithfulness(vlm, prepared, selection, hm.mask, config=configs[base])
            row.update(deletion=f.deletion, insertion=f.insertion)
        rows.append(row)
    return pd.DataFrame(rows).set_index("config")
