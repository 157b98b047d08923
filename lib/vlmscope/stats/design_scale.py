"""Finding 2, design versus scale: a within-question permutation test of whether models
sharing a vision design look at the same places more than models sharing a decoder size."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import partial
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as st

from .intervals import _bootstrap_ci, _join
from .similarity import SIMILARITIES, top_iou

SAME_DESIGN = "same design, different scale"
SAME_SCALE = "different design, same scale"
DIFFERENT_BOTH = "different design, different scale"
SAME_BOTH = "same design, same scale"
RELATIONS = (SAME_DESIGN, SAME_SCALE, DIFFERENT_BOTH, SAME_BOTH)
CONTRASTS = {
    # pairs differing in scale only vs pairs differing in design only (the cleanest contrast)
    "one-factor": ((SAME_DESIGN,), (SAME_SCALE,)),
    # every pair sharing the design vs every pair that does not
    "design": ((SAME_DESIGN, SAME_BOTH), (SAME_SCALE, DIFFERENT_BOTH)),
}


def relation(design_a: str, design_b: str, scale_a: str, scale_b: str) -> str:
    """What two models share: one of ``RELATIONS``."""
    same_d, same_s = design_a == design_b, scale_a == scale_b
    if same_d:
        return SAME_BOTH if same_s else SAME_DESIGN
    return SAME_SCALE if same_s else DIFFERENT_BOTH


@dataclass(frozen=True, eq=False)
class DesignScaleTest:
    """Map similarity of model pairs by what they share, and the paired permutation test.

    Attributes
    ----------
    pairs : DataFrame
        One row per (question, model pair): question, model_a, model_b,
        design_a, design_b, scale_a, scale_b, relation, similarity (NaN where
        a map is missing).
    per_question : DataFrame
        Questions used by the test: question, n_a, n_b (pairs in each group),
        similarity_a, similarity_b (mean similarity of the group's pairs),
        difference (``similarity_a - similarity_b``).
    contrast : str
        ``"one-factor"`` or ``"design"`` (see ``design_vs_scale``).
    group_a, group_b : tuple of str
        The relations pooled into each side of the contrast.
    similarity : str
        Name of the similarity function.
    n_questions, n_skipped : int
        Questions used / left out (no finite pair on one side).
    observed : float
        Mean over questions of ``difference`` (> 0: group ``a`` pairs more alike).
    p_value : float
        Permutation p-value for ``alternative``.
    alternative : str
        ``"greater"`` (group a more alike), ``"less"`` or ``"two-sided"``.
    n_permutations : int
        Relabellings evaluated (all of them when ``exact``).
    exact : bool
        Every relabelling was enumerated (else Monte Carlo, p = (1 + hits) / (1 + n)).
    ci_low, ci_high, confidence, ci_method
        Bootstrap interval of ``observed`` over questions (questions resampled).
    note : str
        Why something is NaN, or which fallback was used.
    """

    pairs: pd.DataFrame
    per_question: pd.DataFrame
    contrast: str
    group_a: tuple[str, ...]
    group_b: tuple[str, ...]
    similarity: str
    n_questions: int
    n_skipped: int
    observed: float
    p_value: float
    alternative: str
    n_permutations: int
    exact: bool
    ci_low: float
    ci_high: float
    confidence: float
    ci_method: str
    note: str

    def by_relation(self) -> pd.DataFrame:
        """relation, n_pairs, mean, median, std of the similarity (finite pairs, all questions)."""
        ok = self.pairs.dropna(subset=["similarity"])
        g = ok.groupby("relation")["similarity"]
        present = [r for r in RELATIONS if r in set(ok.relation)]
        out = pd.DataFrame({"n_pairs": g.size(), "mean": g.mean(), "median": g.median(),
                            "std": g.std()}).reindex(present)
        return out.rename_axis("relation").reset_index()

    def by_pair(self) -> pd.DataFrame:
        """model_a, model_b, relation, n_questions, mean, median similarity of each model pair."""
        ok = self.pairs.dropna(subset=["similarity"])
        g = ok.groupby(["model_a", "model_b", "relation"], sort=False)["similarity"]
        return pd.DataFrame({"n_questions": g.size(), "mean": g.mean(),
                             "median": g.median()}).reset_index()

    def summary(self) -> dict:
        """The test's figures as a plain dict (no DataFrames)."""
        return {k: v for k, v in _fields(self).items() if k not in ("pairs", "per_question")}

    def to_frame(self) -> pd.DataFrame:
        """``summary()`` as a tidy one-row DataFrame (relation tuples joined with " | ")."""
        s = self.summary()
        s["group_a"], s["group_b"] = " | ".join(s["group_a"]), " | ".join(s["group_b"])
        return pd.DataFrame([s])


def _fields(obj) -> dict:
    """Fields of a dataclass without deep-copying them (``asdict`` would copy DataFrames)."""
    return {f: getattr(obj, f) for f in obj.__dataclass_fields__}


def _resolve_similarity(similarity) -> tuple[Callable, str]:
    if isinstance(similarity, str):
        if similarity not in SIMILARITIES:
            raise ValueError(f"unknown similarity {similarity!r}: one of {sorted(SIMILARITIES)} "
                             "or a function f(map_a, map_b) -> float")
        return SIMILARITIES[similarity], similarity
    if not callable(similarity):
        raise ValueError("similarity must be a name or a function f(map_a, map_b) -> float")
    if isinstance(similarity, partial):
        args = ", ".join(f"{k}={v!r}" for k, v in similarity.keywords.items())
        return similarity, f"{getattr(similarity.func, '__name__', 'similarity')}({args})"
    return similarity, getattr(similarity, "__name__", "similarity")


def _permutation_p(sims: list[np.ndarray], n_a: list[int], observed: float, alternative: str,
                   n_permutations: int, seed: int) -> tuple[float, int, bool]:
    """Relabel pairs within each question; the statistic is the mean over questions of d_q."""
    q = len(sims)
    sizes = [math.comb(s.size, k) for s, k in zip(sims, n_a)]
    total = math.prod(sizes)
    if total <= n_permutations:  # exact: every relabelling of every question
        dist = np.zeros(1)
        for s, k in zip(sims, n_a):
            d = np.array([s[list(c)].mean() - np.delete(s, list(c)).mean()
                          for c in itertools.combinations(range(s.size), k)])
            dist = np.add.outer(dist, d).ravel()
        dist /= q
        n, exact, plus = dist.size, True, 0
    else:  # Monte Carlo, questions independently relabelled
        rng = np.random.default_rng(seed)
        dist = np.zeros(n_permutations)
        for s, k in zip(sims, n_a):
            order = np.argsort(rng.random((n_permutations, s.size)), axis=1)
            perm = s[order]
            dist += perm[:, :k].mean(1) - perm[:, k:].mean(1)
        dist /= q
        n, exact, plus = n_permutations, False, 1
    tol = 1e-9 * max(1.0, abs(observed))
    greater = (plus + np.count_nonzero(dist >= observed - tol)) / (plus + n)
    less = (plus + np.count_nonzero(dist <= observed + tol)) / (plus + n)
    p = {"greater": greater, "less": less,
         "two-sided": min(1.0, 2 * min(greater, less))}[alternative]
    return float(p), int(n), exact


def design_vs_scale(maps: Mapping[str, Sequence], design: Mapping[str, str],
                    scale: Mapping[str, str], similarity: str | Callable = top_iou, *,
                    questions: Sequence | None = None, contrast: str = "one-factor",
                    alternative: str = "greater", n_permutations: int = 9999,
                    confidence: float = 0.95, n_resamples: int = 9999, ci_method: str = "BCa",
                    seed: int = 0) -> DesignScaleTest:
    """Do models sharing the vision design look at the same places more than models sharing the scale?

    Every pair of models is scored on every question with ``similarity`` and
    labelled by what the two share: ``"same design, different scale"``,
    ``"different design, same scale"``, ``"different design, different
    scale"`` (or ``"same design, same scale"`` for replicates). Then a paired
    permutation test compares group ``a`` with group ``b`` of the contrast:

    - ``contrast="one-factor"`` (default): a = same design, different scale;
      b = different design, same scale. Each side differs from its partner
      in exactly one factor, so "a more alike than b" reads as "the vision
      design moves the focus more than the decoder scale does".
    - ``contrast="design"``: a = every pair sharing the design, b = every
      pair that does not.

    Test statistic: ``T = mean over questions of d_q``, ``d_q`` = mean
    similarity of the question's group-a pairs minus that of its group-b
    pairs. The unit of exchangeability is the question: under the null
    hypothesis (the similarity of two models' maps does not depend on
    whether they share the design) the a/b labels of the pairs *within one
    question* are exchangeable, so the null distribution relabels pairs
    within each question, keeping how many are a and b, independently across
    questions; questions are never mixed, which pairs the comparison by
    question (hard questions with diffuse maps for everyone do not count as
    evidence). Caveat: similarities of pairs that share a model are
    correlated, so the pair labels are exchangeable only approximately; with
    positively correlated pairs (the usual case: a diffuse map is unlike every
    other map) the relabelled statistic is more spread than the true null
    and the test errs on the conservative side. All
    relabellings are enumerated when there are at most ``n_permutations``
    of them (p = share with ``T* >= T``), else ``n_permutations`` random ones
    are drawn (seeded; p = (1 + hits) / (1 + n_permutations)). Two-sided is
    twice the smaller one-sided p (capped at 1). The interval is a bootstrap
    over questions of the mean of ``d_q``.

    Parameters
    ----------
    maps : dict model -> sequence of maps
        For every model, its importance map ``[H, W]`` for each question, in
        the same question order for all models (a list, or an array
        ``[Q, H, W]``). ``None`` marks a missing map (e.g. a skipped sample);
        its pairs get NaN similarity and drop out.
    design, scale : dict model -> str
        Vision design (e.g. "vit", "siglip") and decoder scale (e.g. "s", "m")
        of every model in ``maps``.
    similarity : str or callable
        ``f(map_a, map_b) -> float``, higher = more alike (``top_iou``,
        ``rank_correlation``, ``mass_overlap`` or their names; use
        ``functools.partial(top_iou, fraction=0.2)`` for options).
    questions : sequence, optional
        Question ids (default 0..Q-1).
    contrast : {"one-factor", "design"}
    alternative : {"greater", "less", "two-sided"}
        "greater": group a pairs are more alike.
    n_permutations, seed
        Permutation budget and seed (see above).
    confidence, n_resamples, ci_method
        The bootstrap interval over questions (``scipy.stats.bootstrap``).

    Returns
    -------
    DesignScaleTest
        ``pairs`` and ``per_question`` DataFrames, ``by_relation()``,
        ``by_pair()``, ``summary()`` and ``to_frame()``.

    Raises
    ------
    ValueError
        Fewer than two models, a model without design or scale, models with
        different numbers of questions, maps of different shapes (the
        question and models are named), no pair on one side of the contrast,
        or an unknown option.
    """
    if contrast not in CONTRASTS:
        raise ValueError(f"contrast must be one of {sorted(CONTRASTS)}, not {contrast!r}")
    if alternative not in ("greater", "less", "two-sided"):
        raise ValueError("alternative must be 'greater', 'less' or 'two-sided', "
                         f"not {alternative!r}")
    if n_permutations < 1:
        raise ValueError("n_permutations must be >= 1")
    sim, sim_name = _resolve_similarity(similarity)
    models = list(maps)
    if len(models) < 2:
        raise ValueError(f"need at least two models, got {models}")
    for name, lab in (("design", design), ("scale", scale)):
        missing = [m for m in models if m not in lab]
        if missing:
            raise ValueError(f"no {name} given for models {missing}")
    counts = {m: len(maps[m]) for m in models}
    if len(set(counts.values())) != 1:
        raise ValueError(f"models have different numbers of questions: {counts}")
    n_q = counts[models[0]]
    qids = list(range(n_q)) if questions is None else list(questions)
    if len(qids) != n_q:
        raise ValueError(f"{len(qids)} question ids for {n_q} questions")
    group_a, group_b = CONTRASTS[contrast]
    model_pairs = [(ma, mb, relation(design[ma], design[mb], scale[ma], scale[mb]))
                   for ma, mb in itertools.combinations(models, 2)]
    for side, rels in (("a", group_a), ("b", group_b)):
        if not any(r in rels for *_, r in model_pairs):
            raise ValueError(f"no model pair is {' or '.join(map(repr, rels))} (group {side} of "
                             f"contrast {contrast!r}); check the design and scale labels: "
                             f"design={dict(design)}, scale={dict(scale)}")

    rows = []
    for i, qid in enumerate(qids):
        for ma, mb, rel in model_pairs:
            xa, xb = maps[ma][i], maps[mb][i]
            if xa is None or xb is None:
                value = float("nan")
            else:
                try:
                    value = float(sim(xa, xb))
                except ValueError as err:
                    raise ValueError(f"question {qid!r}, models {ma!r} and {mb!r}: {err}") from err
            rows.append({"question": qid, "model_a": ma, "model_b": mb,
                         "design_a": design[ma], "design_b": design[mb],
                         "scale_a": scale[ma], "scale_b": scale[mb],
                         "relation": rel, "similarity": value})
    pairs = pd.DataFrame(rows, columns=["question", "model_a", "model_b", "design_a", "design_b",
                                        "scale_a", "scale_b", "relation", "similarity"])

    sims, n_a, per_q = [], [], []
    n_pairs = len(model_pairs)
    for i, qid in enumerate(qids):
        block = pairs.iloc[i * n_pairs:(i + 1) * n_pairs]
        block = block[np.isfinite(block.similarity.to_numpy())]
        sa = block.similarity[block.relation.isin(group_a)].to_numpy()
        sb = block.similarity[block.relation.isin(group_b)].to_numpy()
        if sa.size == 0 or sb.size == 0:
            continue
        sims.append(np.concatenate([sa, sb]))
        n_a.append(sa.size)
        per_q.append({"question": qid, "n_a": sa.size, "n_b": sb.size, "similarity_a": sa.mean(),
                      "similarity_b": sb.mean(), "difference": sa.mean() - sb.mean()})
    per_question = pd.DataFrame(per_q, columns=["question", "n_a", "n_b", "similarity_a",
                                                "similarity_b", "difference"])
    n_skipped = n_q - len(per_q)
    notes = [f"{n_skipped} questions without a finite pair on both sides left out"
             if n_skipped else ""]
    nan = float("nan")
    result = dict(pairs=pairs, per_question=per_question, contrast=contrast, group_a=group_a,
                  group_b=group_b, similarity=sim_name, n_questions=len(per_q),
                  n_skipped=n_skipped, alternative=alternative, confidence=float(confidence))
    if not per_q:
        notes.append("no question usable: no test")
        return DesignScaleTest(**result, observed=nan, p_value=nan, n_permutations=0,
                               exact=False, ci_low=nan, ci_high=nan, ci_method=ci_method,
                               note=_join(notes))
    d = per_question.difference.to_numpy(dtype=np.float64)
    observed = float(d.mean())
    if all(np.ptp(s) == 0 for s in sims):
        notes.append("every question's pairs are equally similar: no test")
        p, n_perm, exact = nan, 0, False
    else:
        p, n_perm, exact = _permutation_p(sims, n_a, observed, alternative, n_permutations, seed)
    low, high, used, note = _bootstrap_ci((d,), lambda x, axis=-1: np.mean(x, axis=axis),
                                          confidence=confidence, n_resamples=n_resamples,
                                          method=ci_method, seed=seed)
    notes.append(note.replace("per group", "(questions)"))
    return DesignScaleTest(**result, observed=observed, p_value=p, n_permutations=n_perm,
                           exact=exact, ci_low=low, ci_high=high, ci_method=used,
                           note=_join(notes))
