"""Method agreement: which attribution method finds the evidence the model actually uses? Every
method of ``vlmscope.attribution`` scored against the object's exact mask, the model's causal
dependence on each image token, and its own stability (notebook 10; ``truths``).

Each scene is asked one question of each short-answer kind in ``kinds`` (the
world's ``QUESTIONS``; ``--n 15`` with the four default kinds gives 60
questions); the model's greedy answer is explained by every method, and each
map is scored (one row per question, method and truth):

- geometric, against the asked-about object's tokens: ``pointing``,
  ``mass_in_mask``, ``auroc`` (NaN where the question names no object in the
  scene, e.g. "is there a ...?" answered no);
- causal: ``causal_spearman`` (Spearman of the map with the per-token drop in the
  answer's log-probability under mean-vector replacement at the LM input),
  ``region_hit`` (the object the map puts most mean importance on is the one
  whose replacement costs the answer most; scenes of 2+ objects), ``deletion``
  (lower is better) and ``insertion`` in the reference definition (NaN where
  the blurred baseline barely lowers the answer's probability: ``truths``);
- stability: ``seed_spearman`` (the same method under other noise seeds, for
  methods that take a seed) and ``random_spearman`` (the map on a
  weight-randomised copy of the model: a HIGH value means the map does not
  depend on what the model learned, the sanity check of Adebayo et al. 2018).

Two reference maps come along: ``causal`` (the causal truth itself, scored
geometrically only: how much the model relies on the object) and ``random``
(seeded noise: chance). The ``patching`` method computes the causal truth
(``SELF_TRUTHS``): it is not ranked on the causal truths, nor is an
``oracle`` method (one that chose a setting with the truth's help) ranked at all.

(About 480 lines: the finding and notebook 10's helpers, which read its rows, kept together.)
"""

from __future__ import annotations

import inspect
import zlib
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ._common import is_scene, not_for_images, option, ours_vs_paper, paper_table

NAME = "agreement"

METHODS = ("attention", "attention@best", "rollout", "attention_x_gradient", "gradient", "integrated_gradients",
           "igos+", "igos++", "igos+_ls", "relevancy", "lens", "patching")
KINDS = ("color", "shape", "where", "exists")
GEOMETRIC = ("pointing", "mass_in_mask", "auroc")
CAUSAL = ("causal_spearman", "region_hit", "deletion", "insertion")
STABILITY = ("seed_spearman", "random_spearman")
LOWER_IS_BETTER = ("deletion", "random_spearman")  # a map that survives random weights is suspect
SELF_TRUTHS = {"patching": CAUSAL}  # the method that IS the causal truth (or ``Attribution.causal``)
REFERENCES = ("causal", "random")  # reference maps beside the methods, never ranked as methods


@dataclass(frozen=True)
class Config:
    methods: tuple = option(METHODS, "attribution methods (vlmscope.attribution.names())")
    kinds: tuple = option(KINDS, "short-answer question kinds, one question each per scene",
                          choices=("color", "shape", "where", "exists", "count"))
    noise_seeds: int = option(2, "seeds per method that takes one (seed stability; 1: none)",
                              minimum=1)
    randomised: bool = option(True, "also explain a weight-randomised copy (sanity check)")
    deletion: bool = option(True, "deletion / insertion scores (the reference definition)")
    max_new_tokens: int = option(6, "answer length in tokens", minimum=1)

    def __post_init__(self):  # refused here, before any model loads
        if not self.methods:
            raise ValueError("methods: name at least one attribution method")
        for m in self.methods:
            takes_seed(m)  # an unknown method: ValueError listing the known ones
        bad = [k for k in self.kinds if k not in KINDS + ("count",)]
        if bad or not self.kinds:
            raise ValueError(f"kinds: {bad or 'none given'}; short-answer kinds are "
                             f"{', '.join(KINDS + ('count',))}")


def key(cfg: Config, mean=None, **extra) -> list:
    """What a stored part's key holds between the model and the item id: the configuration,
    the mean vector's images and the rules' version."""
    return [{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
            None if mean is None else mean.images_digest, "rules-2"]


def reference_mean(vlm, seed: int = 0, cache=None):
    """The mean visual-token vector over 32 reference scenes of ``seed`` (none of a run's)."""
    from ..ablation import mean_vector
    from ..datasets.synthetic import World, _mix

    world = World()
    return mean_vector(vlm, [world.scene(_mix(10**6 + seed, j)).image for j in range(32)],
                       cache=cache)


def setup(vlm, store, cfg: Config, seed: int, items=()) -> dict:
    """The mean visual-token vector (``reference_mean``, cached in the store) and the
    weight-randomised copy of the model (``heatmaps.randomised``, seed 0)."""
    if any(not is_scene(it) for it in items):
        not_for_images("agreement", "each question's exact answer and the asked-about object's mask")
    out = {"mean": reference_mean(vlm, seed, cache=store.root / f"mean-{seed}.safetensors")}
    if cfg.randomised:
        from ..heatmaps import randomised

        out["random_vlm"] = randomised(vlm, seed=0)
    return out


def attribute(vlm, prepared, answer, method: str, **options):
    """One method's ``Attribution`` (``vlmscope.attribution.attribute``)."""
    from .. import attribution

    return attribution.attribute(vlm, prepared, answer, method, **options)


def options(method: str, q) -> dict:
    """What a method is told beyond the question: an oracle method (``attention@best``) chooses
    its layer by the causal map (per image token, sequence order); ``patching`` replaces
    tokens with the truth's mean vector (so it computes the causal truth itself)."""
    if method.endswith("@best"):
        return {"truth": q.causal}
    if method == "patching" and q.mean is not None:
        return {"vector": q.mean}
    return {}


def takes_seed(method: str) -> bool:
    """Whether the method draws noise: its function takes a ``seed``, or passes its settings on
    to a ``HeatmapConfig`` (the iGOS methods; ``HeatmapConfig.seed``)."""
    from .. import attribution

    fn = attribution.get(method)
    params = inspect.signature(fn).parameters
    forwards = any(p.kind is p.VAR_KEYWORD for p in params.values())
    return "seed" in params or (forwards and fn.__module__.endswith(".igos"))


def token_values(attr_tokens, geometry) -> np.ndarray:
    """``[n_image]`` a method's token map in the image tokens' sequence order: a grid
    ``(rows, cols)`` is read at each token's cell; a 1-D map is taken as it is."""
    t = np.asarray(attr_tokens, dtype=np.float64)
    if t.ndim == 1:
        if t.size != len(geometry):
            raise ValueError(f"a 1-D token map has {t.size} values for {len(geometry)} image tokens")
        return t
    if len(geometry.grids) != 1 or t.shape != tuple(geometry.grids[0]):
        raise ValueError(f"a token map of shape {t.shape} does not match the grid "
                         f"{geometry.grids}")
    cells = geometry.cells
    out = np.full(len(geometry), np.nan)
    ok = cells[:, 0] >= 0
    out[ok] = t[cells[ok, 0], cells[ok, 1]]
    return out


def _grid(values, geometry):
    """The per-token values on the one token grid (None for several views)."""
    return geometry.to_grid(values) if len(geometry.grids) == 1 else None


@dataclass
class Question:
    """One question asked and answered, with both truths: the answer, the target's tokens
    (``inside``, None without a target), each object's tokens, the causal map and the region
    drops per object (``"target"``: the asked-about one)."""

    scene: object
    kind: str
    text: str
    expected: str
    target: object
    prepared: object
    answer: str
    inside: np.ndarray | None
    objects: dict
    causal: np.ndarray
    regions: dict
    mean: object = None  # the MeanVector the causal truth replaced tokens with


def ask(vlm, scene, kind: str, mean, max_new_tokens: int = 6) -> Question:
    """The scene's question of ``kind`` (``World.questions``' draw), the model's answer and
    both truths for it."""
    from ..datasets.synthetic import World
    from ..truths import causal_map, inside_tokens, region_drops

    [q] = World().questions(scene, seed=scene.seed, kinds=(kind,))
    p = vlm.prepare(scene.image, q.text)
    answer = vlm.generate(p, max_new_tokens=max_new_tokens).text.strip() or q.answer
    objects = {o.name: inside_tokens(p.geometry, o.mask) for o in scene.objects}
    inside = objects[q.target.name] if q.target is not None else None
    causal = causal_map(vlm, p, answer, mean.vector)
    regions = region_drops(vlm, p, answer, mean.vector,
                           {n: np.nonzero(m)[0] for n, m in objects.items()})
    return Question(scene, kind, q.text, q.answer, q.target, p, answer, inside, objects, causal,
                    regions, mean)


def score(q: Question, values: np.ndarray) -> dict:
    """The geometric truths and the two cheap causal ones of a token map (``[n_image]``)."""
    from ..truths import geometric, rank_correlation

    out = (geometric(values, q.inside) if q.inside is not None
           else dict.fromkeys(GEOMETRIC, float("nan")))
    out["causal_spearman"] = rank_correlation(values, q.causal)
    out["region_hit"] = float("nan")
    named = [n for n, m in q.objects.items() if m.any() and np.isfinite(q.regions[n])]
    if len(named) >= 2:
        v = np.nan_to_num(values, nan=0.0)
        by_map = max(named, key=lambda n: v[q.objects[n]].mean())
        by_cause = max(named, key=lambda n: q.regions[n])
        out["region_hit"] = float(by_map == by_cause)
    return out


def stability(vlm, q: Question, method: str, values, cfg: Config, random_vlm=None) -> dict:
    """``seed_spearman`` (mean over seeds 1.. of the map's Spearman with seed 0's; methods that
    take a seed) and ``random_spearman`` (with the map on ``random_vlm``, the trained model's
    answer explained)."""
    from ..truths import rank_correlation

    out = {}
    try:  # a method that refuses the other seed's or the random copy's answer: NaN
        if cfg.noise_seeds > 1 and takes_seed(method):
            others = [token_values(attribute(vlm, q.prepared, q.answer, method, seed=s,
                                             **options(method, q)).tokens, q.prepared.geometry)
                      for s in range(1, cfg.noise_seeds)]
            out["seed_spearman"] = float(np.nanmean([rank_correlation(values, o) for o in others]))
        if random_vlm is not None:
            r = attribute(random_vlm, q.prepared, q.answer, method, **options(method, q)).tokens
            out["random_spearman"] = rank_correlation(values, token_values(r, q.prepared.geometry))
    except ValueError:
        out = {k: out.get(k, float("nan")) for k in ("seed_spearman", "random_spearman")}
    return out


def run(vlm, item, cfg: Config = Config(), mean=None, random_vlm=None) -> pd.DataFrame:
    """Every (question kind, method, truth) of the scene: a tidy row each with ``value``. A
    method that refuses the answer (a ``ValueError``, e.g. the logit lens on an answer of
    several tokens) gets one row, truth "skipped", its reason in ``note``."""
    from ..truths import deletion_insertion

    if mean is None:
        raise ValueError("the agreement finding needs the mean visual-token vector: pass "
                         "mean=ablation.mean_vector(vlm, reference_images) (the runner does)")
    if not is_scene(item):
        not_for_images("agreement", "each question's exact answer and the asked-about object's mask")
    if cfg.randomised and random_vlm is None:
        raise ValueError("randomised=True needs random_vlm=heatmaps.randomised(vlm) (the runner's "
                         "setup makes it)")
    rows = []
    for kind in cfg.kinds:
        q = ask(vlm, item, kind, mean, cfg.max_new_tokens)
        base = {"kind": kind, "question": q.text, "answer": q.answer, "expected": q.expected,
                "correct": q.answer == q.expected, "n_objects": len(item.objects),
                "target": q.target.name if q.target is not None else ""}
        rng = np.random.default_rng([item.seed, zlib.crc32(kind.encode())])  # chance, per question
        maps = {"causal": (q.causal, None), "random": (rng.random(q.causal.size), None)}
        for m in cfg.methods:
            try:
                a = attribute(vlm, q.prepared, q.answer, m, **options(m, q))
            except ValueError as e:  # the method cannot explain this answer: say so, go on
                rows.append({**base, "method": m, "reference": False, "oracle": False,
                             "causal": False, "seconds": float("nan"), "peak_bytes": float("nan"),
                             "truth": "skipped", "value": float("nan"), "note": str(e)})
                continue
            maps[m] = (token_values(a.tokens, q.prepared.geometry), a)
        for name, (values, a) in maps.items():
            truths = score(q, values)
            if name == "causal":
                truths = {t: v for t, v in truths.items() if t in GEOMETRIC}
            grid = _grid(values, q.prepared.geometry)
            if cfg.deletion and name != "causal" and grid is not None:
                truths["deletion"], truths["insertion"] = deletion_insertion(
                    vlm, q.prepared, q.answer, grid)
            meta = {"oracle": False, "causal": name == "causal", "seconds": float("nan"),
                    "peak_bytes": float("nan")}
            if a is not None:
                meta = {"oracle": bool(a.oracle), "causal": bool(getattr(a, "causal", False)),
                        "seconds": float(a.seconds),
                        "peak_bytes": float("nan") if a.peak_bytes is None else float(a.peak_bytes)}
                truths.update(stability(vlm, q, name, values, cfg,
                                             random_vlm if cfg.randomised else None))
            for truth, value in truths.items():
                rows.append({**base, "method": name, "reference": name in REFERENCES,
                             **meta, "truth": truth, "value": float(value), "note": ""})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ the leaderboard
def rankable(df: pd.DataFrame) -> pd.DataFrame:
    """The rows a ranking may use: no reference map but ``random`` (chance), no oracle method,
    and no method scored against the truth it computes (``SELF_TRUTHS``)."""
    d = df[(df.method == "random") | ~df.reference.astype(bool)]
    d = d[~d.oracle.astype(bool) & (d.truth != "skipped")]
    for method, truths in SELF_TRUTHS.items():
        d = d[~((d.method == method) & d.truth.isin(truths))]
    if "causal" in d:  # a method flagged as computing the causal truth
        d = d[~(d.causal.astype(bool) & d.truth.isin(CAUSAL))]
    return d


def leaderboard(df: pd.DataFrame, by=("model", "method", "truth"), confidence: float = 0.95,
                n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Mean of each truth per ``by`` group over questions, with a seeded bootstrap interval
    (``stats.intervals``: BCa, percentile where BCa is undefined) and the count ``n``.
    Columns: ``by``, mean, low, high, n, note."""
    from ..stats.intervals import _bootstrap_ci

    by = [b for b in by if b in df]
    rows = []
    for keys, g in df.dropna(subset=["value"]).groupby(by, sort=False):
        x = g.value.to_numpy(dtype=np.float64)
        low, high, _, note = _bootstrap_ci((x,), lambda v, axis=-1: np.mean(v, axis=axis),
                                           confidence=confidence, n_resamples=n_resamples,
                                           method="BCa", seed=seed)
        rows.append({**dict(zip(by, keys if isinstance(keys, tuple) else (keys,))),
                     "mean": float(x.mean()), "low": low, "high": high, "n": int(x.size),
                     "note": note})
    return pd.DataFrame(rows, columns=[*by, "mean", "low", "high", "n", "note"])


def ranking(df: pd.DataFrame) -> pd.DataFrame:
    """Methods ranked per truth (1 = best; deletion and random_spearman ascending, the rest
    descending) on their mean over every question (and model), from ``rankable`` rows; ``geometric`` and
    ``causal`` are the mean ranks over those truths, and ``shift`` = causal - geometric
    (positive: the method looks better against the mask than against the model's use)."""
    d = rankable(df)
    means = d.pivot_table(index="method", columns="truth", values="value", aggfunc="mean")
    ranks = pd.DataFrame(index=means.index)
    for truth in means:
        ranks[truth] = means[truth].rank(ascending=truth in LOWER_IS_BETTER, method="average")
    for family, truths in (("geometric", GEOMETRIC), ("causal", CAUSAL)):
        cols = [t for t in truths if t in ranks]
        ranks[family] = ranks[cols].mean(axis=1) if cols else np.nan
    ranks["shift"] = ranks["causal"] - ranks["geometric"]
    return ranks.sort_values(["causal", "geometric"])


def disagreements(df: pd.DataFrame, min_shift: float = 2.0) -> pd.DataFrame:
    """Methods whose geometric and causal ranks differ by ``min_shift`` places or more."""
    r = ranking(df)
    return r[r["shift"].abs() >= min_shift][["geometric", "causal", "shift"]]


def summarise(df: pd.DataFrame) -> dict:
    if df.empty:
        return {}
    d = df[(df.method != "causal") & (df.truth != "skipped")]
    means = d.groupby(["truth", "method"]).value.mean()
    r = ranking(df)
    out = {"questions": int(df.drop_duplicates(["_key", "kind"] if "_key" in df else
                                               ["question", "answer"]).shape[0]),
           "accuracy": round(float(df.drop_duplicates(["_key", "kind"] if "_key" in df else
                                                      ["question", "answer"]).correct.mean()), 4),
           "leaderboard": {t: {m: round(float(v), 4) for m, v in means[t].items() if np.isfinite(v)}
                           for t in means.index.get_level_values(0).unique()},
           "ranking_geometric": r["geometric"].dropna().sort_values().index.tolist(),
           "ranking_causal": r["causal"].dropna().sort_values().index.tolist(),
           "rank_shift": {m: round(float(v), 2) for m, v in r["shift"].items() if np.isfinite(v)}}
    causal_geo = df[df.method == "causal"].groupby("truth").value.mean()
    out["causal_map_on_object"] = {t: round(float(v), 4) for t, v in causal_geo.items()
                                   if np.isfinite(v)}
    skipped = df[df.truth == "skipped"]
    if len(skipped):  # methods that could not explain some answers, and how many
        out["skipped"] = {m: int(v) for m, v in skipped.groupby("method").size().items()}
    if "random_spearman" in means:
        out["sanity_suspect"] = sorted(m for m, v in means["random_spearman"].items()
                                       if m not in REFERENCES and v > 0.5)
    seconds = df[~df.reference.astype(bool)].drop_duplicates(["question", "answer", "method"] +
                                                            (["_key"] if "_key" in df else []))
    out["seconds"] = {m: round(float(v), 4) for m, v in  # median wall time of one map
                              seconds.groupby("method").seconds.median().items() if np.isfinite(v)}
    return out


PAPER = paper_table([])  # no paper has this: every figure is ours


def vs_paper(data) -> pd.DataFrame:
    """No paper measured attribution methods against exact masks and causal truth: an empty
    table of the usual columns."""
    return ours_vs_paper(PAPER, {})


# ------------------------------------------------------------------ for notebook 10
@dataclass
class Example:
    """One question in detail: ``question`` (with both truths), each map over the image tokens
    (``tokens``: "causal" and every method, sequence order), each method's pixel map
    (``pixels``) and ``scores`` (a row per map, a column per truth)."""

    question: Question
    tokens: dict
    pixels: dict
    scores: pd.DataFrame


def example(vlm, scene, kind: str, mean, methods=METHODS, max_new_tokens: int = 6) -> Example:
    """Every method's map of the scene's ``kind`` question, scored against both truths (the
    geometric ones, ``causal_spearman`` and ``region_hit``; no deletion: see ``run``)."""
    q = ask(vlm, scene, kind, mean, max_new_tokens)
    tokens, pixels = {"causal": q.causal}, {}
    for m in methods:
        a = attribute(vlm, q.prepared, q.answer, m, **options(m, q))
        tokens[m], pixels[m] = token_values(a.tokens, q.prepared.geometry), np.asarray(a.pixels)
    scores = pd.DataFrame({name: score(q, v) for name, v in tokens.items()}).T
    scores.loc["causal", [c for c in CAUSAL if c in scores]] = np.nan
    return Example(q, tokens, pixels, scores)


def worked_examples(df: pd.DataFrame, k: int = 3) -> pd.DataFrame:
    """The ``k`` questions on which the methods disagree most: the spread (standard deviation
    over ranked methods) of ``auroc`` plus that of ``causal_spearman``, highest first, one
    question per scene. Columns model, scene_seed, kind, question, answer, spread."""
    d = rankable(df)
    d = d[(d.method != "random") & d.truth.isin(["auroc", "causal_spearman"])]
    keys = [c for c in ("model", "scene_seed", "kind", "question", "answer") if c in d]
    spread = d.groupby([*keys, "truth"]).value.std().groupby(keys).sum(min_count=1)
    out = spread.rename("spread").reset_index().sort_values("spread", ascending=False)
    out = out.drop_duplicates([c for c in ("model", "scene_seed") if c in out])
    return out.head(k).reset_index(drop=True)


def table(lb: pd.DataFrame, truths=(*GEOMETRIC, *CAUSAL, *STABILITY)) -> pd.DataFrame:
    """``leaderboard`` rows as "mean [low, high]" text, a row per (model, method), a column
    per truth (the notebook's and the docs' table)."""
    lb = lb[lb.truth.isin(truths)].copy()
    lb["text"] = [f"{m:.2f} [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) else f"{m:.2f}"
                  for m, lo, hi in zip(lb["mean"], lb.low, lb.high)]
    index = [c for c in ("model", "method") if c in lb]
    out = lb.pivot_table(index=index, columns="truth", values="text", aggfunc="first")
    return out[[t for t in truths if t in out]]


# the method each study's conclusions rest on (shared/REFERENCES.md A, B, C)
STUDIES = {"igos+": "Xing et al. 2025: focus vs correctness, design vs scale (notebooks 05-06)",
           "attention": "Kaduri et al. 2025: attention maps and localisation (notebooks 01-02)",
           "lens": "Neo et al. 2025: logit lens on image tokens (notebook 08)",
           "patching": "Neo et al. 2025: object-token ablation (notebook 07; the causal truth)"}


def for_the_papers(df: pd.DataFrame) -> pd.DataFrame:
    """The methods the three studies rest on (``STUDIES``), as this run scores them: mean
    pointing, AUROC and Spearman with the causal map, and their ranks among the ranked methods
    (of ``ranking``'s length)."""
    r = ranking(df)
    means = df.pivot_table(index="method", columns="truth", values="value", aggfunc="mean")
    rows = []
    for method, study in STUDIES.items():
        if method not in means.index:
            continue
        rows.append({"method": method, "study": study,
                     **{t: means.loc[method].get(t, np.nan) for t in
                        ("pointing", "auroc", "causal_spearman")},
                     "geometric rank": r["geometric"].get(method, np.nan),
                     "causal rank": r["causal"].get(method, np.nan), "of": len(r)})
    return pd.DataFrame(rows).set_index("method") if rows else pd.DataFrame()


def accuracy_by_kind(df: pd.DataFrame) -> dict:
    """Exact-match accuracy of the explained answers per question kind (``findings.answer_sense``'s
    input)."""
    one = df.drop_duplicates([c for c in ("model", "_key", "kind", "question") if c in df])
    return {k: float(v) for k, v in one.groupby("kind").correct.mean().items()}


def write(folder, df: pd.DataFrame, lb: pd.DataFrame, models, n_scenes: int,
          nonsense: str | None = None, prefix: str = "10") -> dict:
    """Keep notebook 10's results in ``folder``: the leaderboard (``<prefix>_leaderboard.parquet``)
    and the summary (``summarise`` of every member's rows, the members, the scenes per member,
    accuracy by kind) as ``<prefix>_summary.json``; return it as written."""
    from pathlib import Path

    from .sense import write_summary

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lb.to_parquet(folder / f"{prefix}_leaderboard.parquet")
    return write_summary(folder / f"{prefix}_summary.json", {
        "models": list(models), "n_scenes": n_scenes, "accuracy": accuracy_by_kind(df),
        **{k: v for k, v in summarise(df).items() if k != "accuracy"}}, nonsense)
