"""Statistics for two findings of Xing et al. (2025), "Where do LVLMs look when answering questions?".

1. *Focus-region plausibility does not always go with answer correctness.*
   ``compare_groups`` compares a per-sample plausibility figure (mass of the
   heatmap inside the ground-truth region, or the 0/1 pointing-game hit of
   ``heatmaps.plausibility``) between correctly and incorrectly answered
   samples: group sizes, means and medians, the two-sided Mann-Whitney U test,
   the rank-biserial correlation as effect size, a seeded bootstrap
   confidence interval for the difference, and for 0/1 outcomes Fisher's
   exact test with the odds ratio. A small effect with a wide interval
   straddling 0 is what "does not always go with" looks like.

2. *The vision architecture changes where models look; LLM scale mostly does not.*
   ``top_iou``, ``rank_correlation`` and ``mass_overlap`` score how alike two
   heatmaps of the same question are. ``design_vs_scale`` scores every model
   pair on every question, labels each pair by what the two models share
   (vision design, decoder scale) and tests, with a permutation test paired
   by question, whether pairs that share the vision design (differ only in
   scale) look at the same places more than pairs that differ in the design.

3. ``wilson``: the Wilson score interval of a proportion (the token-ablation
   finding's share of identifications lost).

Conventions (stated once, used everywhere):

- Group ``a`` is compared against group ``b``; every difference is ``a - b``.
- Rank-biserial correlation ``r = 2 U_a / (n_a n_b) - 1 = P(A > B) - P(A < B)``
  (ties count half), with ``U_a`` the Mann-Whitney U of group ``a``. This is
  Cliff's delta; ``r > 0`` means values in ``a`` tend to be larger. (The
  often-quoted ``1 - 2U / (n_a n_b)`` is the same number with ``U = U_b``.)
- Bootstrap intervals: ``scipy.stats.bootstrap``, BCa by default, seeded with
  ``numpy.random.default_rng(seed)``; where BCa is undefined (a degenerate
  bootstrap distribution, e.g. both groups constant) the percentile interval
  is used and ``ci_method`` says so.
- Nothing here warns or raises on degenerate data: an empty group, fewer than
  two values for a bootstrap or all-identical values give NaN with a
  ``note`` saying why. Malformed input (maps of different shapes, unknown
  models, ...) raises ``ValueError`` naming the problem.

Importance maps follow ``vlmscope.heatmaps``: ``[H, W]`` arrays, HIGH = important.

The package, one concept a module: ``comparisons`` (finding 1),
``similarity`` (map similarity), ``design_scale`` (finding 2),
``intervals`` (bootstrap and Wilson intervals). Every public name is
importable from ``vlmscope.stats`` itself.
"""

from .comparisons import GroupComparison, compare_frame, compare_groups, compare_samples
from .design_scale import (CONTRASTS, DIFFERENT_BOTH, RELATIONS, SAME_BOTH, SAME_DESIGN, SAME_SCALE,
                           DesignScaleTest, design_vs_scale, relation)
from .intervals import wilson
from .similarity import SIMILARITIES, mass_overlap, rank_correlation, top_iou, top_weights

__all__ = ["GroupComparison", "compare_samples", "compare_groups", "compare_frame",
           "SAME_DESIGN", "SAME_SCALE", "DIFFERENT_BOTH", "SAME_BOTH", "RELATIONS", "CONTRASTS",
           "relation", "DesignScaleTest", "design_vs_scale", "SIMILARITIES", "top_weights",
           "top_iou", "rank_correlation", "mass_overlap", "wilson"]
