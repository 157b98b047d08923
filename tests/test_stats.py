"""vlmscope.stats: group comparisons, map similarity and the design-vs-scale test, against hand counts."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from vlmscope import stats as S

# any warning (scipy's included) is a failure: degenerate data must come back as NaN + note
pytestmark = pytest.mark.filterwarnings("error")

FAST = dict(n_resamples=499)


# ------------------------------------------------------------ compare_groups
def test_mann_whitney_and_rank_biserial_by_hand():
    a, b = [3, 5, 7], [1, 2, 4, 6]
    # direct pair count: 3>1,2 ; 5>1,2,4 ; 7>all -> 2 + 3 + 4
    assert sum((x > y) + 0.5 * (x == y) for x in a for y in b) == 9
    r = S.compare_groups(a + b, [True] * 3 + [False] * 4, **FAST)
    assert (r.n_a, r.n_b, r.u) == (3, 4, 9.0)
    assert r.rank_biserial == pytest.approx(2 * 9 / 12 - 1) == 0.5
    # exact null of U for n=(3,4): C(7,3)=35 orderings, #(U<=3) = 1+1+2+3 = 7 -> p = 2*7/35
    assert r.mw_method == "exact"
    assert r.p_mannwhitney == pytest.approx(0.4)
    assert r.p_mannwhitney == pytest.approx(st.mannwhitneyu(a, b).pvalue)
    assert (r.mean_a, r.mean_b, r.median_a, r.median_b) == (5.0, 3.25, 5.0, 3.0)
    assert r.difference == pytest.approx(1.75)
    assert not r.binary and math.isnan(r.p_fisher) and r.note == ""


def test_rank_biserial_ties_and_sign():
    # pairs (a, b): 1<2, 1<3, 2=2 (x2), 2<3 (x2) -> U_a = 0.5 + 0.5 = 1 of 6
    r = S.compare_samples([1, 2, 2], [2, 3], **FAST)
    assert r.u == 1.0
    assert r.rank_biserial == pytest.approx(-2 / 3)
    assert r.mw_method == "asymptotic"  # ties -> scipy's auto rule goes asymptotic
    swapped = S.compare_samples([2, 3], [1, 2, 2], **FAST)
    assert swapped.rank_biserial == pytest.approx(2 / 3)
    assert swapped.p_mannwhitney == pytest.approx(r.p_mannwhitney)


def test_fisher_and_proportions_by_hand():
    hits_a, hits_b = [1, 1, 1, 1, 0], [1, 0, 0, 0, 0]  # table [[4, 1], [1, 4]]
    r = S.compare_groups(hits_a + hits_b, ["correct"] * 5 + ["wrong"] * 5, "correct", "wrong",
                         **FAST)
    assert r.binary and (r.label_a, r.label_b) == ("correct", "wrong")
    assert r.odds_ratio == pytest.approx(4 * 4 / (1 * 1))
    # hypergeometric, N=10, 5 hits, 5 in group a: P(k) = C(5,k)^2 / 252 -> 1,25,100,100,25,1
    # two-sided: every table no more likely than the observed k=4 -> (1 + 25 + 25 + 1) / 252
    assert r.p_fisher == pytest.approx(52 / 252)
    assert (r.mean_a, r.mean_b) == (0.8, 0.2)
    assert r.difference == pytest.approx(0.6)
    assert -1 <= r.ci_low <= r.difference <= r.ci_high <= 1


def test_perfect_separation_uses_percentile_interval():
    r = S.compare_groups([1, 1, 1, 0, 0, 0], [True] * 3 + [False] * 3, **FAST)
    assert r.odds_ratio == math.inf
    assert r.p_fisher == pytest.approx(2 / 20)  # the two extreme tables, 1/C(6,3) each
    assert r.rank_biserial == 1.0
    # every resample gives 1 - 0: BCa is undefined, the percentile interval is [1, 1]
    assert (r.ci_low, r.ci_high, r.ci_method) == (1.0, 1.0, "percentile")
    assert "degenerate" in r.note


def test_degenerate_groups_give_nan_and_a_note():
    empty = S.compare_groups([0.2, 0.4, 0.6], [True, True, True], **FAST)
    assert (empty.n_a, empty.n_b) == (3, 0)
    assert math.isnan(empty.p_mannwhitney) and math.isnan(empty.ci_low)
    assert math.isnan(empty.rank_biserial) and math.isnan(empty.difference)
    assert "'False' is empty" in empty.note

    both = S.compare_samples([], [], **FAST)
    assert "are empty" in both.note and math.isnan(both.mean_a)

    const = S.compare_groups([0.5] * 6, [True, False] * 3, **FAST)
    assert math.isnan(const.p_mannwhitney) and math.isnan(const.ci_low)
    assert const.rank_biserial == 0.0 and const.difference == 0.0
    assert "identical" in const.note

    all_hits = S.compare_groups([True] * 6, [True, False] * 3, **FAST)
    assert all_hits.binary and math.isnan(all_hits.p_fisher) and math.isnan(all_hits.odds_ratio)

    single = S.compare_samples([1.0], [2.0, 3.0, 4.0], **FAST)
    assert single.p_mannwhitney == pytest.approx(0.5)  # U=0: 1 of 4 orderings, two-sided
    assert math.isnan(single.ci_low) and ">= 2 values" in single.note


def test_nan_values_are_dropped_and_counted():
    r = S.compare_groups([0.1, np.nan, 0.3, 0.5, np.nan, 0.9],
                         [True, True, True, False, False, False], **FAST)
    assert (r.n_a, r.n_b, r.n_dropped) == (2, 2, 2)
    assert r.mean_a == pytest.approx(0.2) and r.mean_b == pytest.approx(0.7)
    assert "2 NaN values dropped" in r.note


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(1)
    values = np.r_[rng.normal(1.0, 1.0, 30), rng.normal(0.0, 1.0, 40)]
    groups = np.r_[np.ones(30, bool), np.zeros(40, bool)]
    one = S.compare_groups(values, groups, seed=3, **FAST)
    again = S.compare_groups(values, groups, seed=3, **FAST)
    other = S.compare_groups(values, groups, seed=4, **FAST)
    assert (one.ci_low, one.ci_high) == (again.ci_low, again.ci_high)
    assert (one.ci_low, one.ci_high) != (other.ci_low, other.ci_high)
    assert one.ci_method == "BCa" and one.ci_low < one.difference < one.ci_high
    assert one.difference == pytest.approx(values[:30].mean() - values[30:].mean())
    med = S.compare_groups(values, groups, statistic="median", ci_method="percentile", **FAST)
    assert med.ci_method == "percentile"
    assert med.difference == pytest.approx(np.median(values[:30]) - np.median(values[30:]))
    assert med.ci_low < med.difference < med.ci_high


def test_bad_input_raises():
    with pytest.raises(ValueError, match="differ in length"):
        S.compare_groups([1, 2, 3], [True, False])
    with pytest.raises(ValueError, match="not boolean"):
        S.compare_groups([1, 2, 3, 4], ["x", "y", "x", "y"])
    with pytest.raises(ValueError, match="both a and b"):
        S.compare_groups([1, 2], ["x", "y"], a="x")
    with pytest.raises(ValueError, match="proportions"):
        S.compare_groups([1, 0, 1, 0], [True, True, False, False], statistic="median")
    with pytest.raises(ValueError, match="inf"):
        S.compare_groups([1, np.inf, 1, 0], [True, True, False, False])


def test_frames_are_tidy():
    r = S.compare_groups([3, 5, 7, 1, 2, 4, 6], [1, 1, 1, 0, 0, 0, 0], **FAST)
    frame = r.to_frame()
    assert frame.shape == (1, len(r.to_dict()))
    assert frame.loc[0, "rank_biserial"] == 0.5 and frame.loc[0, "u"] == 9.0

    df = pd.DataFrame({"model": ["m1"] * 7 + ["m2"] * 6,
                       "mass": [3, 5, 7, 1, 2, 4, 6] + [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
                       "pointing": [1, 1, 1, 0, 0, 0, 0] + [1, 0, 1, 0, 1, 0],
                       "correct": [True] * 3 + [False] * 4 + [True, False] * 3})
    out = S.compare_frame(df, ["mass", "pointing"], by="correct", per="model", **FAST)
    assert list(out[["value", "model"]].itertuples(index=False, name=None)) == [
        ("mass", "m1"), ("pointing", "m1"), ("mass", "m2"), ("pointing", "m2")]
    assert out.loc[0, "u"] == 9.0 and out.loc[1, "binary"] and out.loc[1, "odds_ratio"] == math.inf
    with pytest.raises(ValueError, match="not in the frame"):
        S.compare_frame(df, "nope", by="correct")


# ------------------------------------------------------------ map similarity
def test_top_iou_hand_built_maps():
    a = np.zeros((10, 10))
    a[0] = 1.0  # top 10% = row 0
    b = np.zeros((10, 10))
    b[0, :5] = 1.0
    b[1, :5] = 1.0  # top 10% = half of row 0 + half of row 1
    far = np.zeros((10, 10))
    far[9] = 1.0
    assert S.top_iou(a, a) == 1.0
    assert S.top_iou(a, far) == 0.0
    assert S.top_iou(a, b) == pytest.approx(5 / 15)  # |A & B| = 5, |A | B| = 15
    a2, b2 = a.copy(), np.zeros((10, 10))
    a2[1] = 0.5  # top 20% = rows 0-1
    b2[0], b2[2] = 0.3, 0.2  # top 20% = rows 0 and 2
    assert S.top_iou(a2, b2, fraction=0.2) == pytest.approx(10 / 30)
    # a plateau at the cut: top 20% of ``a`` = row 0 + 1/9 of each of the 90 zero pixels;
    # of ``b`` = its 10 ones + 1/9 of its 90 zeros. min: 5 + 10 * 1/9 + 85 * 1/9 ; max: 15 + 85/9
    assert S.top_iou(a, b, fraction=0.2) == pytest.approx((5 + 95 / 9) / (15 + 85 / 9))
    with pytest.raises(ValueError, match="different shapes"):
        S.top_iou(a, np.zeros((10, 11)))
    with pytest.raises(ValueError, match="fraction"):
        S.top_iou(a, b, fraction=0.0)


def test_top_iou_ties():
    flat = np.ones((10, 10))
    row = np.zeros((10, 10))
    row[0] = 1.0
    w = S.top_weights(flat, 0.1)
    assert w.sum() == pytest.approx(10) and np.allclose(w, 0.1)
    assert S.top_iou(flat, flat) == 1.0
    # split: min = 10 * 0.1, max = 10 * 1 + 90 * 0.1
    assert S.top_iou(flat, row) == pytest.approx(1 / 19)
    assert S.top_iou(flat, row, ties="index") == 1.0  # first 10 flat indices = row 0
    assert S.top_iou(flat, row, ties="include") == pytest.approx(10 / 100)
    x = np.array([[3.0, np.nan], [1.0, 2.0]])  # NaN = least important
    assert S.top_weights(x, 0.5).tolist() == [[1.0, 0.0], [0.0, 1.0]]
    with pytest.raises(ValueError, match="ties"):
        S.top_weights(x, ties="random")


def test_rank_correlation_matches_scipy():
    rng = np.random.default_rng(0)
    a = np.round(rng.normal(size=(12, 12)), 1)  # rounded: ties
    b = np.round(a + rng.normal(size=(12, 12)), 1)
    a[0, 0] = np.nan
    b[3, 4] = np.nan
    ok = ~(np.isnan(a) | np.isnan(b))
    expected = st.spearmanr(a[ok], b[ok]).statistic
    assert S.rank_correlation(a, b) == pytest.approx(expected, abs=1e-12)
    grid = np.arange(16.0).reshape(4, 4)
    assert S.rank_correlation(grid, grid ** 3) == pytest.approx(1.0)
    assert S.rank_correlation(grid, -grid) == pytest.approx(-1.0)
    assert math.isnan(S.rank_correlation(grid, np.ones((4, 4))))  # constant: NaN, no warning
    assert math.isnan(S.rank_correlation(np.full((2, 2), np.nan), grid[:2, :2]))


def test_mass_overlap():
    p = np.array([[2.0, 2.0], [0.0, 0.0]])
    q = np.array([[1.0, 1.0], [2.0, 0.0]])
    assert S.mass_overlap(p, p) == pytest.approx(1.0)
    assert S.mass_overlap(p, p[::-1]) == 0.0
    # normalised: [.5, .5, 0, 0] and [.25, .25, .5, 0] -> min sums to .5
    assert S.mass_overlap(p, q) == pytest.approx(0.5)
    assert math.isnan(S.mass_overlap(np.zeros((2, 2)), q))


# ------------------------------------------------------------ design vs scale
MODELS = {"vit-s": ("vit", "s"), "vit-m": ("vit", "m"),
          "siglip-s": ("siglip", "s"), "siglip-m": ("siglip", "m")}
DESIGN = {m: d for m, (d, _) in MODELS.items()}
SCALE = {m: s for m, (_, s) in MODELS.items()}


def _lookup_case():
    """Maps that are just (model index, question); the similarity is read from a table."""
    names = list(MODELS)
    table = {  # question -> {(i, j): similarity}; 0-1 and 2-3 share the design, 0-2 and 1-3 the scale
        0: {(0, 1): 0.9, (2, 3): 0.8, (0, 2): 0.1, (1, 3): 0.2, (0, 3): 0.3, (1, 2): 0.4},
        1: {(0, 1): 0.6, (2, 3): 0.5, (0, 2): 0.4, (1, 3): 0.3, (0, 3): 0.2, (1, 2): 0.1},
    }
    maps = {m: [np.array([[i, q]]) for q in table] for i, m in enumerate(names)}

    def lookup(x, y):
        i, j, q = int(x[0, 0]), int(y[0, 0]), int(x[0, 1])
        return table[q][(min(i, j), max(i, j))]

    return maps, lookup


def test_exact_permutation_test_by_hand():
    maps, lookup = _lookup_case()
    r = S.design_vs_scale(maps, DESIGN, SCALE, lookup, questions=["q0", "q1"], **FAST)
    # d_q0 = (0.9+0.8)/2 - (0.1+0.2)/2 = 0.7 ; d_q1 = 0.55 - 0.35 = 0.2 ; T = 0.45
    assert r.per_question.difference.tolist() == pytest.approx([0.7, 0.2])
    assert r.observed == pytest.approx(0.45)
    # C(4,2)^2 = 36 relabellings; d_q0 takes 0.7,0,.1,-.1,0,-.7 and d_q1 .2,.1,0,0,-.1,-.2:
    # only the observed labelling reaches a sum of 0.9
    assert r.exact and r.n_permutations == 36
    assert r.p_value == pytest.approx(1 / 36)
    assert S.design_vs_scale(maps, DESIGN, SCALE, lookup, alternative="less",
                             **FAST).p_value == pytest.approx(1.0)
    assert S.design_vs_scale(maps, DESIGN, SCALE, lookup, alternative="two-sided",
                             **FAST).p_value == pytest.approx(2 / 36)
    # the pairs table: 2 questions x 6 pairs, labelled by what they share
    assert len(r.pairs) == 12
    rel = dict(zip(zip(r.pairs.model_a, r.pairs.model_b), r.pairs.relation))
    assert rel[("vit-s", "vit-m")] == S.SAME_DESIGN
    assert rel[("vit-s", "siglip-s")] == S.SAME_SCALE
    assert rel[("vit-s", "siglip-m")] == S.DIFFERENT_BOTH
    assert r.by_relation().set_index("relation").loc[S.SAME_DESIGN, "mean"] == pytest.approx(0.7)
    assert r.to_frame().loc[0, "group_a"] == S.SAME_DESIGN
    # contrast "design": all 4 different-design pairs on side b
    # q0: 0.85 - (0.1+0.2+0.3+0.4)/4 = 0.6 ; q1: 0.55 - 0.25 = 0.3
    d = S.design_vs_scale(maps, DESIGN, SCALE, lookup, contrast="design", **FAST)
    assert d.per_question.difference.tolist() == pytest.approx([0.6, 0.3])
    assert d.exact and d.n_permutations == math.comb(6, 2) ** 2


def _smooth(rng, n=12, cell=3):
    return np.kron(rng.normal(size=(n // cell, n // cell)), np.ones((cell, cell)))


def _design_maps(rng, q=12, noise=0.5):
    """Per question one pattern per vision design; each model = its design's pattern + noise."""
    pattern = [{d: _smooth(rng) for d in ("vit", "siglip")} for _ in range(q)]
    return {m: [pattern[i][DESIGN[m]] + noise * rng.normal(size=(12, 12)) for i in range(q)]
            for m in MODELS}


def _null_maps(rng, q=12):
    """Per question one shared pattern; every model = pattern + its own noise (no design effect)."""
    pattern = [_smooth(rng) for _ in range(q)]
    return {m: [pattern[i] + rng.normal(size=(12, 12)) for i in range(q)] for m in MODELS}


def test_planted_design_effect_is_found():
    maps = _design_maps(np.random.default_rng(0))
    r = S.design_vs_scale(maps, DESIGN, SCALE, n_permutations=999, **FAST)
    assert not r.exact and r.n_permutations == 999
    assert r.p_value == pytest.approx(1 / 1000)  # no relabelling reaches the observed mean
    assert r.observed > 0.2 and r.ci_low > 0.1
    by = r.by_relation().set_index("relation")["mean"]
    assert by[S.SAME_DESIGN] > 0.3 > 0.15 > by[S.SAME_SCALE]
    rc = S.design_vs_scale(maps, DESIGN, SCALE, "rank_correlation", n_permutations=999, **FAST)
    assert rc.p_value < 0.01 and rc.similarity == "rank_correlation"
    named = S.design_vs_scale(maps, DESIGN, SCALE, partial(S.top_iou, fraction=0.2), **FAST)
    assert named.similarity == "top_iou(fraction=0.2)"


def test_no_design_effect_is_not_found_and_is_seeded():
    maps = _null_maps(np.random.default_rng(7))
    r = S.design_vs_scale(maps, DESIGN, SCALE, "rank_correlation", n_permutations=999, seed=1,
                          **FAST)
    again = S.design_vs_scale(maps, DESIGN, SCALE, "rank_correlation", n_permutations=999,
                              seed=1, **FAST)
    assert r.p_value == again.p_value and (r.ci_low, r.ci_high) == (again.ci_low, again.ci_high)
    assert r.p_value > 0.2
    assert round(r.p_value * 1000) == pytest.approx(r.p_value * 1000)  # (1 + hits) / (1 + 999)
    assert r.ci_low < 0 < r.ci_high


def test_null_p_values_are_not_anticonservative():
    rng = np.random.default_rng(11)
    ps = [S.design_vs_scale(_null_maps(rng, q=6), DESIGN, SCALE, "rank_correlation",
                            n_permutations=199, seed=i, n_resamples=99).p_value
          for i in range(40)]
    assert np.mean(np.array(ps) <= 0.05) <= 0.1
    assert 0.2 < np.median(ps) < 0.8


def test_missing_maps_and_skipped_questions():
    maps = _design_maps(np.random.default_rng(2), q=4)
    maps["vit-m"][1] = None  # vit pair missing on q1: side a keeps siglip-s/siglip-m
    maps["vit-s"][2] = None
    maps["siglip-s"][2] = None  # q2: no same-design pair left, and no same-scale one
    r = S.design_vs_scale(maps, DESIGN, SCALE, **FAST)
    assert r.pairs.similarity.isna().sum() == 3 + 5
    assert r.n_questions == 3 and r.n_skipped == 1 and r.per_question.question.tolist() == [0, 1, 3]
    assert r.per_question.n_a.tolist() == [2, 1, 2]
    assert "1 questions" in r.note


def test_design_vs_scale_validation():
    maps = _design_maps(np.random.default_rng(3), q=2)
    with pytest.raises(ValueError, match=r"no design given for models \['siglip-m'\]"):
        S.design_vs_scale(maps, {m: DESIGN[m] for m in list(MODELS)[:3]}, SCALE)
    uneven = {**maps, "vit-s": maps["vit-s"][:1]}
    with pytest.raises(ValueError, match="different numbers of questions"):
        S.design_vs_scale(uneven, DESIGN, SCALE)
    odd = {**maps, "siglip-m": [maps["siglip-m"][0], np.zeros((12, 13))]}
    with pytest.raises(ValueError, match="question 1, models 'vit-s' and 'siglip-m'.*shapes"):
        S.design_vs_scale(odd, DESIGN, SCALE)
    with pytest.raises(ValueError, match="no model pair"):
        S.design_vs_scale(maps, {m: "vit" for m in MODELS}, SCALE)
    with pytest.raises(ValueError, match="at least two models"):
        S.design_vs_scale({"vit-s": maps["vit-s"]}, DESIGN, SCALE)
    with pytest.raises(ValueError, match="unknown similarity"):
        S.design_vs_scale(maps, DESIGN, SCALE, "cosine")
    with pytest.raises(ValueError, match="contrast"):
        S.design_vs_scale(maps, DESIGN, SCALE, contrast="scale")


# ------------------------------------------------------------------ Wilson interval
def test_wilson_matches_the_formula():
    z = st.norm.ppf(0.975)
    for k, n in [(0, 5), (3, 7), (7, 7), (12, 40)]:
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        low, high = S.wilson(k, n)
        assert low == pytest.approx(max(0.0, centre - half), abs=1e-12)
        assert high == pytest.approx(min(1.0, centre + half), abs=1e-12)
    assert all(np.isnan(S.wilson(0, 0)))
