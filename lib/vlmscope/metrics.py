"""Pointing game and mass in mask: how well a map (attention, heatmap) falls on a region.

One implementation for every finding that scores a map against a region:
``maps.localisation`` (attention over image tokens, the region an object's
tokens) and ``heatmaps.plausibility`` (an importance map over pixels, the
region an object's mask).
"""

from __future__ import annotations

import numpy as np


def mass_in_mask(values: np.ndarray, inside: np.ndarray) -> float:
    """Share of the map's total that lies ``inside`` (a boolean array of the map's shape, or
    indices into it); NaN when the total is not positive. ``values`` are used as given (clip
    negative ones first where they mean nothing)."""
    values = np.asarray(values)
    total = values.sum()
    return float(values[inside].sum() / total) if total > 0 else float("nan")


def pointing(values: np.ndarray, inside: np.ndarray, ties: str = "all") -> bool:
    """The pointing game: does the map's peak lie ``inside`` (a boolean array of the map's shape)?

    ``ties="all"``: every position where the map is maximal must lie inside, and a map
    with a non-positive total points nowhere (a flat map fails); ``ties="first"``: the first
    maximal position in row-major order (``numpy.argmax``) decides.
    """
    values = np.asarray(values)
    inside = np.asarray(inside, dtype=bool)
    if inside.shape != values.shape:
        raise ValueError(f"map {values.shape} and region {inside.shape} differ in shape")
    if ties == "first":
        return bool(inside.ravel()[int(np.argmax(values))])
    if ties == "all":
        return bool(values.sum() > 0 and inside[values == values.max()].all())
    raise ValueError(f"ties must be 'all' or 'first', not {ties!r}")
