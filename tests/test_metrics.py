"""vlmscope.metrics: the one pointing game and mass in mask (maps.localisation, heatmaps.plausibility)."""

import numpy as np
import pytest

from vlmscope.metrics import mass_in_mask, pointing


def test_mass_in_mask_is_the_share_inside():
    values = np.array([[1.0, 3.0], [0.0, 4.0]])
    inside = np.array([[False, True], [False, True]])
    assert mass_in_mask(values, inside) == pytest.approx(7 / 8)
    assert mass_in_mask(values.ravel(), np.array([1, 3])) == pytest.approx(7 / 8)  # indices
    assert np.isnan(mass_in_mask(np.zeros((2, 2)), inside))


def test_pointing_ties():
    inside = np.array([True, False, False, False])
    tied = np.array([5.0, 1.0, 5.0, 0.0])  # two peaks, one outside
    assert pointing(tied, inside, ties="first")  # np.argmax takes the first
    assert not pointing(tied, inside, ties="all")
    assert pointing(np.array([5.0, 1.0, 2.0, 0.0]), inside, ties="all")
    flat = np.zeros(4)
    assert not pointing(flat, np.ones(4, bool), ties="all")  # a flat map points nowhere
    assert pointing(flat, inside, ties="first")  # argmax of a flat map is position 0
    with pytest.raises(ValueError, match="differ in shape"):
        pointing(tied, inside[:3])
    with pytest.raises(ValueError, match="ties"):
        pointing(tied, inside, ties="any")
