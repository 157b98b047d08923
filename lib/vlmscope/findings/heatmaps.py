"""Heatmaps (iGOS+ / iGOS++): explain an answer with a mask over the image, then score the mask
on the object (plausibility: pointing game, mass in mask) and on the answer (faithfulness:
deletion, insertion) beside attention, input-gradient and random maps (notebooks 05, 06).

A synthetic scene is asked one question of each kind in ``Config.kinds``
about a target object; an annotated image "where is the <name> ?" (truth:
the object's 3x3 grid cell, ``LabelledObject.where``) for "where" and "is
there a <name> ?" (truth: yes) for "exists"; other kinds need the synthetic
world's attributes. Benchmark items (CV-Bench, MMVP, MMStar) go through
``benchmark_row`` (``runner.run_benchmark``).

``Config.heatmap`` is a ``heatmaps.HeatmapConfig``: its defaults are the
only ones (the command line's iGOS flags are made from its fields).

Over 450 lines because the finding's code stays in one module: below the run,
notebook 05's worked example (``explain``, ``WorkedExample``, ``sanity_checks``,
``questions_table``) and notebook 06's comparison of models (``mean_maps``,
``design_scale_tests``; its sweep, ``runner.zoo_runs``, sits in ``runner``,
which imports the findings) build on it, and both notebooks' closing
sentences (``what_we_found``, ``zoo_found``) read its figures.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..heatmaps import HeatmapConfig
from ._common import is_scene, option, stored_config, ours_vs_paper, paper_table

NAME = "heatmaps"


# The command line's help and bounds for HeatmapConfig's fields (their defaults stay in
# HeatmapConfig). Fields not named here get a flag with HeatmapConfig's own validation.
HEATMAP_FLAGS = {
    "method": {"help": "igos+ (one mask) or igos++ (deletion and insertion masks)",
               "choices": ("igos+", "igos++")},
    "iterations": {"help": "optimisation steps", "min": 0},
    "ig_iter": {"help": "path points of the integrated-gradient terms", "min": 1},
    "size": {"help": "mask grid (size x size)", "min": 1},
    "baseline": {"help": "what a masked-out pixel becomes", "choices": ("blur", "black", "noise")},
    "batch": {"help": "path images per forward + backward, also in the deletion/insertion "
                      "curves: speed and memory only, the masks do not depend on it (a batch "
                      "that runs out of memory is halved)", "min": 1},
    "seed": {"help": "the heatmap's own seed (noise on path images)", "min": 0,
             "flag": "heatmap-seed"},
}


@dataclass(frozen=True)
class Config:
    max_new_tokens: int = option(48, "answer length in tokens", minimum=1)
    kinds: tuple = option(("color", "where"), "question kinds with a target object")
    heatmap: HeatmapConfig = field(default_factory=HeatmapConfig,
                                   metadata={"help": "the iGOS settings", "flags": HEATMAP_FLAGS})
    others: bool = option(True, "also the iGOS mask's deletion/insertion scores and the "
                                "attention, gradient and random maps beside it (off: the iGOS "
                                "mask's mass and pointing only, what notebook 06 reads; about "
                                "a third less time)")


def key(cfg: Config, **extra) -> list:
    """What a stored part's key holds between the model and the item id: every heatmap field
    but ``batch`` (speed and memory only); ``others`` only when off, so that stores made before
    it existed keep their keys."""
    out = [stored_config(max_new_tokens=cfg.max_new_tokens, kinds=cfg.kinds),
           cfg.heatmap.result_fields()]
    return out if cfg.others else [*out, {"others": False}]


def setup(vlm, store, cfg: Config, seed: int, items=()) -> dict:
    """Where the raw masks go: ``masks/`` in the store."""
    return {"mask_dir": store.root / "masks"}


def part_extra(key: str, extra: dict) -> dict:
    """Per stored part: the part's key names its mask files."""
    return {"tag": key}


def heatmap_row(vlm, image, question: str, target, is_correct, hcfg, max_new_tokens: int = 48,
                mask_path: Path | None = None, seed=0, others: bool = True) -> dict:
    """Answer one question, explain it with iGOS, and score the maps on ``target``.

    ``target``: boolean ``[H, W]`` mask of the reference region (None: no
    plausibility figures); ``is_correct(answer_text) -> bool``. Maps: iGOS,
    attention and input-gradient saliency, and a seeded uniform random map (the
    chance level). The raw mask goes to ``mask_path``; a skipped sample keeps
    its reason in ``skipped``. ``hcfg.batch`` sets the batch of the
    optimisation and of the deletion/insertion curves alike. ``others`` False: only the iGOS
    mask's plausibility (no deletion/insertion, no attention, gradient or random map).
    """
    import time

    from .. import heatmaps as H

    prepared = vlm.prepare(image, question)
    gen = vlm.generate(prepared, max_new_tokens=max_new_tokens)
    row = {"question": question, "answer": gen.text, "correct": bool(is_correct(gen.text))}
    if target is not None:
        row["area"] = float(np.asarray(target).mean())
    t0 = time.perf_counter()
    hm = H.igos(vlm, prepared, gen, hcfg)
    row.update(seconds=time.perf_counter() - t0, positions=json.dumps(hm.selection.positions),
               selected=" ".join(hm.selection.tokens[i] for i in hm.selection.positions),
               skipped=hm.skipped or "")
    if hm.mask is None:
        return row
    if mask_path is not None:
        from ..integrity import write_atomic

        mask_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(mask_path, hm.save)
        row["mask_file"] = mask_path.name
    sel = hm.selection
    if others:
        f = H.faithfulness(vlm, prepared, sel, hm.mask, batch=hcfg.batch, config=hcfg)
        row.update(deletion=f.deletion, insertion=f.insertion)
    if target is not None:
        maps = {"igos": hm.importance()}
        if others:
            maps.update(attention=H.attention_saliency(vlm, prepared, sel),
                        gradient=H.gradient_saliency(vlm, prepared, sel),
                        random=np.random.default_rng(seed).random(np.asarray(target).shape))
        for name, m in maps.items():
            pl = H.plausibility(m, target)
            row[f"{name}_pointing"] = float(pl["pointing"])
            row[f"{name}_mass"] = pl["mass"]
    return row


RECORD_KINDS = ("where", "exists")


def record_questions(record, kinds) -> list[tuple[str, str, str, object]]:
    """(kind, question, truth, object) for an annotated image: one per kind of ``RECORD_KINDS``
    in ``kinds``, about an object chosen by the file name (stable across runs)."""
    usable = [k for k in kinds if k in RECORD_KINDS]
    if not usable:
        raise ValueError(f"the heatmaps finding asks an annotated image only {' or '.join(RECORD_KINDS)}"
                         f" questions (the other kinds need the synthetic world's colours and "
                         f"shapes); got kinds {tuple(kinds)}")
    if not record.objects:
        return []
    o = record.objects[zlib.crc32(str(record.file).encode()) % len(record.objects)]
    asked = {"where": (f"where is the {o.name} ?", o.where), "exists": (f"is there a {o.name} ?", "yes")}
    return [(k, *asked[k], o) for k in usable]


def judge(item, truth: str):
    """``answer text -> right?``: a synthetic scene's exact answer, or for an annotated image an
    answer that starts with the truth's words ("Yes, there is..." is right for "yes")."""
    if is_scene(item):
        return lambda answer: answer.strip() == truth

    from ..judge import words

    want = words(truth)
    return lambda answer: bool(want) and words(answer)[:len(want)] == want


def run(vlm, item, cfg: Config = Config(), mask_dir: Path | None = None,
        tag: str = "") -> pd.DataFrame:
    """Per question with a target object: ``heatmap_row`` on the object's mask."""
    from ..datasets.synthetic import World

    hcfg = cfg.heatmap
    if is_scene(item):
        asked = [(q.kind, q.text, q.answer, q.target)
                 for q in World().questions(item, seed=item.seed, kinds=cfg.kinds)
                 if q.target is not None]
        seed = item.seed
    else:
        asked = record_questions(item, cfg.kinds)
        seed = zlib.crc32(str(item.file).encode())
    rows = []
    for kind, text, truth, target in asked:
        row = heatmap_row(vlm, item.image, text, target.mask, judge(item, truth), hcfg,
                          cfg.max_new_tokens,
                          mask_dir / f"{tag}-{kind}.safetensors" if mask_dir else None,
                          seed=[seed, len(rows)], others=cfg.others)
        rows.append({"kind": kind, "truth": truth, "target": target.name, **row})
    return pd.DataFrame(rows)


def benchmark_row(vlm, item, index: int, hcfg: HeatmapConfig, style: str, max_new_tokens: int,
                  mask_path: Path | None) -> dict:
    """One benchmark item (``datasets.benchmarks``): its prompt in ``style``, judged by
    ``benchmarks.correct``; plausibility on its region's enclosing box where it gives one.
    An image that cannot be decoded is a row with the reason in ``skipped``."""
    from ..datasets.benchmarks import correct
    from ..models import ImageError

    base = {"id": item.id, "category": item.category or "", "truth": item.answer_letter}
    try:
        image = item.image()
    except ImageError as e:
        return {**base, "question": item.question, "skipped": f"image: {e}"}
    target = None
    if item.region is not None:
        x0, y0, x1, y1 = (int(round(v)) for v in item.region)
        target = np.zeros((image.height, image.width), bool)
        target[max(y0, 0):y1, max(x0, 0):x1] = True
    return {**base, **heatmap_row(vlm, image, item.prompt(style), target,
                                  lambda text, item=item: correct(item, text), hcfg,
                                  max_new_tokens, mask_path, seed=index)}


def summarise(df: pd.DataFrame) -> dict:
    if df.empty:
        return {}
    ok = df[df.skipped == ""]
    answered = df.correct.dropna() if "correct" in df else pd.Series(dtype=float)
    out = {"questions": int(len(df)), "skipped": int((df.skipped != "").sum()),
           "accuracy": round(float(answered.astype(float).mean()), 4) if len(answered) else None}
    plaus = ok.dropna(subset=["igos_mass"]) if "igos_mass" in ok else ok.iloc[:0]
    for m in ("igos", "attention", "gradient", "random"):
        if len(plaus) and f"{m}_mass" in plaus:  # ``others`` off: iGOS's only
            out[f"mass[{m}]"] = round(float(plaus[f"{m}_mass"].mean()), 4)
            out[f"pointing[{m}]"] = round(float(plaus[f"{m}_pointing"].mean()), 4)
    if len(plaus):
        out["area"] = round(float(plaus.area.mean()), 4)
    faith = ok.dropna(subset=["deletion"]) if "deletion" in ok else ok.iloc[:0]
    if len(faith):
        out["deletion"] = round(float(faith.deletion.mean()), 4)
        out["insertion"] = round(float(faith.insertion.mean()), 4)
    return out


XING = "Xing et al. 2025, arXiv 2503.13891 (shared/REFERENCES.md A4)"
PAPER = paper_table([
    ("mass[igos] right vs wrong", "focus plausibility does not always go with correctness",
     "LLaVA-1.5, LLaVA-OneVision, Cambrian, Mini-Gemini", XING),
    ("mass[igos] vs mass[random]", "iGOS+ maps focus on the relevant region",
     "LLaVA-1.5, LLaVA-OneVision, Cambrian, Mini-Gemini", XING),
])


def vs_paper(data) -> pd.DataFrame:
    """Mass in the object's mask for right and wrong answers, and against the random map."""
    ours, notes = {}, {}
    if isinstance(data, pd.DataFrame):
        ok = data[(data.skipped == "")] if "skipped" in data else data
        ok = ok.dropna(subset=["igos_mass"]) if "igos_mass" in ok else ok.iloc[:0]
        if len(ok):
            by = ok.groupby("correct").igos_mass
            mean, n = by.mean(), by.size()
            part = [f"{'right' if k else 'wrong'} {mean[k]:.2f} (n={n[k]})" for k in (True, False)
                    if k in mean.index]
            ours["mass[igos] right vs wrong"] = "; ".join(part)
        s = summarise(data)
    else:
        s = dict(data)
        notes["mass[igos] right vs wrong"] = "needs the run's rows, not its summary"
    if s.get("mass[igos]") is not None:
        ours["mass[igos] vs mass[random]"] = (f"{s['mass[igos]']:.2f} vs "
                                              f"{s.get('mass[random]', float('nan')):.2f}")
    return ours_vs_paper(PAPER, ours, notes)


# --- for notebook 06 (after ``runner.zoo_runs``): maps averaged over noise seeds ---
def designs(models, zoo: dict) -> tuple[dict, dict]:
    """Each model's vision design and decoder size from ``zoo`` (``organism.ZOO``: name ->
    (design, size)); "unknown" for a model not in it. The zoo is passed in: the organism
    package sits above the findings (docs/architecture.md's layers)."""
    ZOO = zoo
    return ({m: ZOO.get(m, ("unknown", "unknown"))[0] for m in models},
            {m: ZOO.get(m, ("unknown", "unknown"))[1] for m in models})


def scored_answers(df: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """``zoo_runs`` rows with a heatmap (``correct`` as bool), and why there is nothing to
    compare (printed; None when some question is answered right)."""
    from .sense import nothing_to_report

    scored = df[df.skipped == ""].assign(correct=lambda d: d.correct.astype(bool))
    nonsense = None if df.correct.astype(bool).any() else nothing_to_report(
        "no question is answered right: the answers are nonsense",
        "Focus cannot be split by correctness; the heatmaps are listed but compared with nothing.")
    return scored, nonsense


FOCUS_COLUMNS = ["model", "value", "n_a", "n_b", "mean_a", "mean_b", "difference", "ci_low",
                 "ci_high", "rank_biserial", "p_mannwhitney", "p_fisher", "note"]


def focus_table(scored: pd.DataFrame, seed: int = 0, nonsense: str | None = None) -> pd.DataFrame:
    """iGOS+ mass and pointing, correct against incorrect answers, per model
    (``stats.compare_frame``); empty (``FOCUS_COLUMNS``) when the answers are nonsense."""
    from .. import stats

    if nonsense:
        return pd.DataFrame(columns=FOCUS_COLUMNS)
    return stats.compare_frame(scored, ["igos_mass", "igos_pointing"], by="correct", a=True,
                               b=False, per="model", seed=seed)


def seed_agreement_text(agreement, noise_seeds: int) -> str:
    """One line on how alike one answer's maps are across noise seeds (``mean_maps``)."""
    if not agreement:
        return "no answer has maps of two noise seeds to compare"
    return (f"maps of one answer across {noise_seeds} noise seeds: median Spearman "
            f"{np.median(agreement):.2f} (min {np.min(agreement):.2f}, {len(agreement)} pairs)")


def tests_table(tests: dict) -> pd.DataFrame:
    """``design_scale_tests``' results, one row per similarity."""
    cols = ["n_questions", "n_skipped", "observed", "ci_low", "ci_high", "p_value", "exact", "note"]
    if not tests:
        return pd.DataFrame(columns=cols)
    return pd.concat({k: t.to_frame() for k, t in tests.items()})[cols]


def write_zoo(folder, focus: pd.DataFrame, tests: dict, summary: dict,
              nonsense: str | None = None, prefix: str = "06") -> dict:
    """Keep notebook 06's results in ``folder``: the focus table
    (``<prefix>_focus_vs_correctness.parquet``), the top-IoU test's model pairs
    (``<prefix>_pairs.parquet``, when tested) and ``summary`` (``zoo_summary``) as
    ``<prefix>_summary.json``; return the summary as written."""
    from .sense import write_summary

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    focus.to_parquet(folder / f"{prefix}_focus_vs_correctness.parquet")
    if tests:
        tests["top-IoU"].pairs.to_parquet(folder / f"{prefix}_pairs.parquet")
    return write_summary(folder / f"{prefix}_summary.json", summary, nonsense)


def mean_maps(df: pd.DataFrame, masks_dir) -> tuple[dict, list, list]:
    """Per model, each question's importance map averaged over its noise seeds (None where the
    answer was skipped), from ``zoo_runs`` rows and the store's ``masks`` folder.

    Returns ``(maps: model -> list per question, question ids, seed agreement)``: the last is
    the Spearman correlation of every pair of one answer's per-seed maps.
    """
    from itertools import combinations

    from ..heatmaps import Heatmap
    from ..stats import rank_correlation

    qids = sorted(set(df.question_id))
    maps = {m: [None] * len(qids) for m in dict.fromkeys(df.model)}
    agreement = []
    for row in df.itertuples():
        files = [f for f in row.mask_files if isinstance(f, str) and f]
        per_seed = [Heatmap.load(Path(masks_dir) / f).importance() for f in files]
        if per_seed:
            maps[row.model][qids.index(row.question_id)] = np.mean(per_seed, axis=0)
        agreement += [rank_correlation(a, b) for a, b in combinations(per_seed, 2)]
    return maps, qids, agreement


def design_scale_tests(maps: dict, design: dict, scale: dict, questions, top_fraction: float = 0.1,
                       n_permutations: int = 9999, seed: int = 0) -> dict:
    """``stats.design_vs_scale`` with two similarities (top-``top_fraction`` IoU and Spearman),
    or {} (said so) when the models do not span two designs and two scales."""
    from functools import partial

    from .. import stats
    from .sense import nothing_to_report

    if "unknown" in design.values() or len(set(design.values())) < 2 or len(set(scale.values())) < 2:
        nothing_to_report(f"design versus scale needs zoo members of two designs and two scales; "
                          f"this run has {', '.join(maps)}")
        return {}
    return {name: stats.design_vs_scale(maps, design, scale, similarity=fn, questions=questions,
                                        n_permutations=n_permutations, seed=seed)
            for name, fn in {"top-IoU": partial(stats.top_iou, fraction=top_fraction),
                             "Spearman": stats.rank_correlation}.items()}


def zoo_summary(models, n_scenes: int, noise_seeds: int, df: pd.DataFrame, agreement,
                tests: dict) -> dict:
    """Notebook 06's summary figures (before ``write_summary``)."""
    scored = df[df.skipped == ""]
    return {"models": list(models), "n_scenes": n_scenes, "noise_seeds": noise_seeds,
            "seed_agreement_median": float(np.median(agreement)) if agreement else None,
            "answers": int(len(df)), "scored": int(len(scored)),
            "skipped": int((df.skipped != "").sum()),
            "accuracy": {m: float(g.correct.mean()) for m, g in df.groupby("model")},
            "design_vs_scale": {k: {kk: (vv if not isinstance(vv, float) or np.isfinite(vv) else None)
                                    for kk, vv in v.summary().items() if not isinstance(vv, tuple)}
                                for k, v in tests.items()}}


ZOO_PAPER = (
    ("focus plausibility does not always go with correctness",
     "yes (qualitative and statistical; tests not named)"),
    ("vision design changes the focus more than LLM scale", "yes"),
)


def zoo_vs_paper(focus: pd.DataFrame, tests: dict, nonsense: str | None = None) -> pd.DataFrame:
    """Notebook 06's two findings beside the paper's (Xing et al. 2025), one row each: columns
    quantity, ours, paper, paper_model, note.

    ``focus``: ``stats.compare_frame`` rows (igos_mass by correctness, per model);
    ``tests``: ``design_scale_tests`` (its "top-IoU" test is reported).
    """
    parts = []
    for r in focus[focus.value == "igos_mass"].itertuples() if not nonsense else ():
        if r.n_b == 0 or r.n_a == 0:
            parts.append(f"{r.model}: no {'incorrect' if r.n_b == 0 else 'correct'} answers")
        else:
            parts.append(f"{r.model}: mass {r.mean_a:.2f} (right, n={r.n_a}) vs {r.mean_b:.2f} "
                         f"(wrong, n={r.n_b}), p = {r.p_mannwhitney:.2g}")
    t = tests.get("top-IoU")
    rel = t.by_relation().set_index("relation")["mean"].round(3).to_dict() if t else {}
    ours = ["; ".join(parts) if not nonsense else f"nothing to compare: {nonsense}",
            f"top-IoU by relation {rel}; same design - same scale difference {t.observed:.3f} "
            f"[{t.ci_low:.3f}, {t.ci_high:.3f}], p = {t.p_value:.3g}" if t
            else "nothing to compare: one design or one scale only"]
    notes = ["mean iGOS+ mass in the asked object, right vs wrong answers (Mann-Whitney U)",
             "within-question permutation test on the top-IoU of model pairs' maps"]
    return pd.DataFrame([{"quantity": q, "ours": o, "paper": p,
                          "paper_model": "several VLMs on CV-Bench, MMVP, MMStar", "note": n}
                         for (q, p), o, n in zip(ZOO_PAPER, ours, notes)],
                        columns=["quantity", "ours", "paper", "paper_model", "note"])


# --- for notebook 05: one question explained step by step, its checks, and many questions ---
BASELINE_KINDS = ("blur", "black", "noise")


@dataclass
class WorkedExample:
    """One question explained with iGOS+ (``explain``), and the notebook's checks on it.

    Holds the scene, question, prepared input, answer, the baselines (blur, black,
    noise), the token selection (``nonsense``: why it is not a finding, or None)
    and the heatmap with its per-iteration history. Each check's result is kept
    in ``results`` for ``summary``.
    """

    vlm: object = field(repr=False)
    scene: object
    question: object
    prepared: object = field(repr=False)
    answer: object
    config: HeatmapConfig
    baselines: dict = field(repr=False)
    selection: object
    nonsense: str | None
    heatmap: object = field(repr=False)
    seed: int = 0  # the scene's seed; also the random map's
    results: dict = field(default_factory=dict, repr=False)

    @property
    def image(self):
        """The scene's picture."""
        return self.scene.image

    def trace(self) -> pd.DataFrame:
        """The optimisation's terms (deletion, insertion, regularisers), one row per iteration,
        numbered from 1 as ``plots.igos_iterations`` numbers its panels."""
        trace = pd.DataFrame(self.heatmap.trace)
        trace.index = range(1, len(trace) + 1)
        return trace.rename_axis("iteration")

    @property
    def target(self) -> np.ndarray:
        """The asked object's mask."""
        return self.question.target.mask

    def maps(self) -> dict:
        """iGOS+, attention, input gradient and a uniform random map (seeded by ``seed``), as
        importance."""
        from .. import heatmaps as H

        if "maps" not in self.results:
            rng = np.random.default_rng(self.seed)
            self.results["maps"] = {
                "iGOS+": self.heatmap.importance(),
                "attention": H.attention_saliency(self.vlm, self.prepared, self.selection),
                "gradient": H.gradient_saliency(self.vlm, self.prepared, self.selection),
                "random": rng.random(self.target.shape)}
        return self.results["maps"]

    def scores(self) -> pd.DataFrame:
        """Pointing game and mass in the asked object of each map (rows: maps)."""
        from ..heatmaps import plausibility

        return pd.DataFrame({k: plausibility(m, self.target) for k, m in self.maps().items()}).T

    def score_captions(self) -> dict:
        """Per map, "mass M, pointing P" (a caption under each heatmap panel)."""
        return {k: f"mass {s.mass:.2f}, pointing {s.pointing}" for k, s in self.scores().iterrows()}

    def faithfulness_table(self) -> pd.DataFrame:
        """Deletion and insertion score of each map (rows: maps)."""
        return pd.DataFrame({k: {"deletion": f.deletion, "insertion": f.insertion}
                             for k, f in self.faithfulness().items()}).T

    def faithfulness(self) -> dict:
        """Deletion and insertion curves of each map (iGOS+ its own mask; the others pooled
        to the mask grid): name -> ``heatmaps.Faithfulness``."""
        from .. import heatmaps as H

        def cells(m):  # any importance map -> a coarse "mask" (low = important)
            import torch

            t = torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32))[None, None]
            return 1 - torch.nn.functional.adaptive_avg_pool2d(t, self.config.size)[0, 0].numpy()

        if "curves" not in self.results:
            self.results["curves"] = {
                k: H.faithfulness(self.vlm, self.prepared, self.selection,
                                  self.heatmap.mask if k == "iGOS+" else cells(m), config=self.config)
                for k, m in self.maps().items()}
        return self.results["curves"]

    def tie_orders(self, n: int = 5) -> tuple[float, pd.DataFrame, pd.DataFrame]:
        """How much the deletion/insertion scores move over ``n`` random orders of tied mask
        cells, per definition (released, ours): ``(share of cells sharing the commonest value,
        score range per definition, every score)``."""
        from ..heatmaps import faithfulness

        mask = self.heatmap.mask
        tied = float(np.unique(mask, return_counts=True)[1].max() / mask.size)
        rows = []
        for definition in ("released", "ours"):
            for t in [None] + list(range(n)):
                f = faithfulness(self.vlm, self.prepared, self.selection, mask, config=self.config,
                                 definition=definition, tie_seed=t)
                rows.append({"definition": definition,
                             "tie order": "index" if t is None else f"random {t}",
                             "deletion": f.deletion, "insertion": f.insertion})
        ties = pd.DataFrame(rows)
        spread = ties.groupby("definition")[["deletion", "insertion"]].agg(lambda v: v.max() - v.min())
        self.results["ties"] = (tied, spread)
        return tied, spread, ties.pivot(index="tie order", columns="definition",
                                        values=["deletion", "insertion"])

    def switches(self) -> pd.DataFrame:
        """Each of vlmscope's choices, one at a time away from the reference preset, and the
        whole "vlmscope" preset, on this question (``heatmaps.compare_configs``)."""
        from dataclasses import replace

        from ..heatmaps import compare_configs

        c = self.config
        ref = HeatmapConfig.preset("reference", iterations=c.iterations, ig_iter=c.ig_iter,
                                   size=c.size)
        variants = {"reference": ref,
                    "line search (Armijo)": replace(ref, step="armijo"),
                    "noise seed per path image": replace(ref, noise_seeds="per-image"),
                    "SDPA attention": replace(ref, attn_implementation="sdpa"),
                    "vlmscope bilateral TV": replace(ref, btv="ours"),
                    "vlmscope preset": HeatmapConfig.preset("vlmscope", iterations=c.iterations,
                                                            ig_iter=c.ig_iter, size=c.size)}
        table = compare_configs(self.vlm, self.prepared, self.selection, variants,
                                target=self.target)
        self.results["switches"] = table
        return table

    def noise_seeds(self, seeds=(0, 1, 2)) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The same question under other noise seeds: plausibility per seed, and the Spearman
        correlation of every pair of masks."""
        from dataclasses import replace
        from itertools import combinations

        from ..heatmaps import igos, plausibility
        from ..stats import rank_correlation

        runs = {0: self.heatmap} if self.config.seed == 0 else {}
        for s in seeds:
            if s not in runs:
                runs[s] = igos(self.vlm, self.prepared, self.answer, replace(self.config, seed=s),
                               selection=self.selection)
        per_seed = pd.DataFrame([{"seed": s, **plausibility(r.importance(), self.target)}
                                 for s, r in runs.items()]).set_index("seed")
        pairs = pd.DataFrame([{"seeds": f"{a} vs {b}",
                               "spearman": rank_correlation(runs[a].mask, runs[b].mask)}
                              for a, b in combinations(runs, 2)])
        self.results["noise"] = (per_seed, pairs)
        return per_seed, pairs

    def summary(self, model: str, preset: str, questions: pd.DataFrame, n_skipped: int,
                sanity: "Sanity") -> dict:
        """Notebook 05's summary (before ``write_summary``): this question's figures, the
        checks run on it, ``sanity`` and the many-questions table (``questions_table``)."""
        by_map = per_map(questions)
        curves = self.faithfulness()
        tied, spread = self.results["ties"]
        per_seed, pairs = self.results["noise"]
        switch_table = self.results["switches"]
        sel = self.selection
        return {"model": model, "question": self.question.text, "answer": self.answer.text,
                "selected": [sel.tokens[i] for i in sel.positions],
                "n_scored": int(questions["item"].nunique()) if len(questions) else 0,
                "n_skipped": n_skipped,
                "mass": {k: float(v) for k, v in by_map["mass"].items()},
                "pointing": {k: float(v) for k, v in by_map["pointing"].items()},
                "area": float(by_map["area"].mean()) if len(questions) else None,
                "deletion": {k: f.deletion for k, f in curves.items()},
                "insertion": {k: f.insertion for k, f in curves.items()},
                "sanity": sanity.figures(),
                "noise_seeds": {"mass": {int(k): float(v) for k, v in per_seed["mass"].items()},
                                "spearman_min": float(pairs["spearman"].min())},
                "preset": preset, "tied_share": tied,
                "tie_order_range": {d: {k: float(v) for k, v in r.items()}
                                    for d, r in spread.to_dict("index").items()},
                "switches": {k: {c: (None if pd.isna(v) else v.item() if isinstance(v, np.generic)
                                     else v) for c, v in r.items()}
                             for k, r in switch_table.to_dict("index").items()}}


    def write(self, folder, model: str, preset: str, questions: pd.DataFrame, n_skipped: int,
              sanity: "Sanity", prefix: str = "05") -> dict:
        """Keep notebook 05's results in ``folder``: the many-questions table
        (``<prefix>_plausibility.parquet``), this question's mask (``<prefix>_mask.safetensors``)
        and ``summary`` as ``<prefix>_summary.json`` (``write_summary``); return the summary."""
        from .sense import write_summary

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        questions.to_parquet(folder / f"{prefix}_plausibility.parquet")
        self.heatmap.save(folder / f"{prefix}_mask.safetensors")
        return write_summary(folder / f"{prefix}_summary.json",
                             self.summary(model, preset, questions, n_skipped, sanity), self.nonsense)


def explain(vlm, seed: int, kind: str = "color", config: HeatmapConfig = HeatmapConfig(),
            max_new_tokens: int = 64, images=None) -> WorkedExample:
    """Answer the synthetic world's ``kind`` question (about one object) on the scene of
    ``World().samples(1, seed)``, select the visually relevant tokens against the blurred
    baseline and optimise iGOS+ keeping each iteration's mask. A model whose answer the
    image does not move, or a wrong answer, gets ``nonsense`` (every token explained, for a
    demonstration; said so, printed).

    ``images`` (an image folder or a local COCO copy, ``datasets.folder.load_images``): the
    question is asked of its image number ``seed`` (counted round the images there are)
    instead, about one annotated object (``record_questions``); a ``kind`` an annotated image
    cannot be asked ("color", "shape") becomes "exists" ("is there a <name> ?"), said so.
    """
    from ..datasets.synthetic import Question, World
    from ..heatmaps import igos, make_baseline
    from ..pixels import image_tensor
    from .sense import explainable_selection, nothing_to_report

    if images:
        from ..datasets.folder import load_images

        items = load_images(images, n=seed + 1, seed=seed)
        scene = items[seed % len(items)]
        if kind not in RECORD_KINDS:
            print(f"{scene.file}: an annotated image has no {kind!r} question (it needs the "
                  "synthetic world's colours and shapes); asking 'exists' instead")
            kind = "exists"
        question = Question(*record_questions(scene, (kind,))[0])
    else:
        scene, [question] = next(World().samples(1, seed=seed, kinds=(kind,)))
    if question.target is None:
        raise ValueError(f"question kind {kind!r} asks about no single object; use 'color', "
                         "'shape', 'where' or 'exists'")
    prepared = vlm.prepare(scene.image, question.text)
    answer = vlm.generate(prepared, max_new_tokens=max_new_tokens)
    image = image_tensor(scene.image)
    baselines = {k: make_baseline(image, k, seed=0, uint8=config.blur_uint8) for k in BASELINE_KINDS}
    selection, nonsense = explainable_selection(vlm, prepared, answer, baselines["blur"], config)
    if not judge(scene, question.answer)(answer.text):
        nonsense = nonsense or f"the answer {answer.text!r} is wrong (truth {question.answer!r})"
    if nonsense:  # e.g. a random-weight model: the checks run, but explain nonsense
        nothing_to_report(nonsense, "Every answer token is explained so each check runs; read the "
                          "maps as a demonstration, not as a finding.")
    hm = igos(vlm, prepared, answer, config, selection=selection, keep_history=True)
    if hm.mask is None:
        raise ValueError(f"this sample was skipped: {hm.skipped}; try another seed")
    return WorkedExample(vlm, scene, question, prepared, answer, config, baselines, selection,
                         nonsense, hm, seed)


@dataclass
class Sanity:
    """Adebayo et al.'s two checks on one one-object scene (``sanity_checks``)."""

    table: pd.DataFrame  # scene, answer, mass on the original place, mass on the new place
    panels: dict  # title -> (image, importance, target) for ``plots.heatmap_checks``
    rho: float  # Spearman of the trained and the random-weight maps
    area: float  # the object's share of the image

    def figures(self) -> dict:
        return {"mass_original_place": float(self.table.iloc[0, 2]),
                "mass_moved_to": float(self.table.iloc[1, 3]),
                "mass_moved_from": float(self.table.iloc[1, 2]),
                "rank_correlation_random_weights": float(self.rho)}


def sanity_checks(vlm, seed: int, config: HeatmapConfig = HeatmapConfig()) -> Sanity:
    """Move the object (the map must follow) and randomise the weights (the map must change)
    on a one-object synthetic scene seeded ``seed``, asked for its colour."""
    import torch

    from ..datasets.synthetic import World, move_object
    from ..heatmaps import igos, plausibility, randomised
    from ..stats import rank_correlation
    from .sense import explainable_selection

    lone = World().scene(seed=seed, n_objects=1)
    obj = lone.objects[0]
    ys, xs = np.nonzero(obj.mask)
    moved = move_object(lone, 0, 21 if xs.mean() < 32 else -21, 21 if ys.mean() < 32 else -21)
    question = f"what color is the {obj.shape} ?"
    rows, shown = [], {}
    for name, sc in (("original", lone), ("object moved", moved)):
        p = vlm.prepare(sc.image, question)
        g = vlm.generate(p)
        r = igos(vlm, p, g, config, selection=explainable_selection(vlm, p, g, config=config)[0])
        if r.mask is None:
            raise ValueError(f"the sanity check's {name} scene was skipped: {r.skipped}")
        shown[name] = r.importance()
        rows.append({"scene": name, "answer": "".join(r.selection.tokens),
                     "mass on the original place": plausibility(r.importance(), obj.mask)["mass"],
                     "mass on the new place": plausibility(r.importance(),
                                                           moved.objects[0].mask)["mass"]})
        if name == "original":
            sel, p_lone = r.selection, p
    r_rand = igos(randomised(vlm, seed=0), p_lone, torch.tensor(sel.answer_ids), config,
                  selection=sel)
    rho = rank_correlation(shown["original"], r_rand.importance())
    rows.append({"scene": "original, random weights", "answer": "".join(sel.tokens),
                 "mass on the original place": plausibility(r_rand.importance(), obj.mask)["mass"],
                 "mass on the new place": float("nan")})
    panels = {"trained": (lone.image, shown["original"], obj.mask),
              "object moved": (moved.image, shown["object moved"], moved.objects[0].mask),
              f"random weights (Spearman {rho:.2f} with trained)":
                  (lone.image, r_rand.importance(), obj.mask)}
    return Sanity(pd.DataFrame(rows), panels, float(rho), float(obj.mask.mean()))


MAP_NAMES = {"igos": "iGOS+", "attention": "attention", "gradient": "gradient", "random": "random"}


def questions_table(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """This finding's rows as notebook 05's tables: one row per (question answered right and
    explained, map) with pointing, mass and area; and the other questions with the reason."""
    cols = ["item", "question", "map", "pointing", "mass", "area"]
    if df.empty:
        return pd.DataFrame(columns=cols), pd.DataFrame(columns=["item", "question", "reason"])
    right = df.correct.astype(bool)
    explained = right & (df.skipped == "")
    rows = [{"item": r["item"], "question": r["question"], "map": label,
             "pointing": r[f"{m}_pointing"], "mass": r[f"{m}_mass"], "area": r["area"]}
            for _, r in df[explained].iterrows() for m, label in MAP_NAMES.items()]
    reasons = np.where(right, df.skipped, "answered " + df.answer.map(repr) + ", truth "
                       + df.truth.map(repr))
    skipped = pd.DataFrame({"item": df["item"], "question": df.question, "reason": reasons})[~explained]
    return pd.DataFrame(rows, columns=cols), skipped.reset_index(drop=True)


def per_map(questions: pd.DataFrame) -> pd.DataFrame:
    """Mean pointing, mass and area per map over ``questions_table``'s rows."""
    return questions.groupby("map")[["pointing", "mass", "area"]].mean()


def example_vs_paper(summary: dict) -> pd.DataFrame:
    """Notebook 05's comparison with Xing et al. (2025), from its summary: faithfulness of
    iGOS+ against attention and gradient maps on the worked question (the paper finds iGOS+
    more faithful; qualitative here), and plausibility on the asked object over the scored
    questions (the paper has no ground-truth region). Columns quantity, ours, paper,
    paper_model, note."""
    def per_map(d):
        return "; ".join(f"{k} {v:.2f}" for k, v in d.items() if v is not None) or "-"

    rows = [("deletion (lower: more faithful)", per_map(summary.get("deletion", {})),
             "iGOS+ lower than attention and gradient", "this question's selected tokens"),
            ("insertion (higher: more faithful)", per_map(summary.get("insertion", {})),
             "iGOS+ higher than attention and gradient", "this question's selected tokens"),
            ("pointing game on the asked object", per_map(summary.get("pointing", {})),
             None, f"over {summary.get('n_scored', 0)} questions answered right; no region "
                   "in the paper"),
            ("mass in the asked object", per_map(summary.get("mass", {})), None,
             f"a uniform map gets the object's area ({summary.get('area') or 0:.2f})")]
    return pd.DataFrame([{"quantity": q, "ours": o, "paper": p,
                          "paper_model": "LLaVA-1.5 and other VLMs" if p else "", "note": n}
                         for q, o, p, n in rows],
                        columns=["quantity", "ours", "paper", "paper_model", "note"])


def per_map_table(questions: pd.DataFrame) -> pd.DataFrame:
    """``per_map`` for reading: the share of questions whose map peaks on the asked object, the
    map's mass there, and the chance level of both (the object's share of the image: where a
    uniformly random peak lands, what a uniform map puts on it), rounded."""
    t = per_map(questions)
    return pd.DataFrame({"points at the object": t.pointing, "mass in the object": t.mass,
                         "chance (object's area)": t.area}).round(3)


def what_we_found(summary: dict, model: str) -> str:
    """Notebook 05's conclusion in words, from ``WorkedExample.summary``: faithfulness on the
    worked question beside the paper's claim, the worked question's own iGOS+ map, and over
    the scored questions whether iGOS+ points at the object more often than attention, with
    the chance level and what one question weighs."""
    def known(d):  # a summary writes null for a figure that could not be computed
        return {k: v for k, v in (d or {}).items() if isinstance(v, (int, float))}

    dele, point, mass = (known(summary.get(k)) for k in ("deletion", "pointing", "mass"))
    n, area = summary.get("n_scored", 0), summary.get("area")
    out = head = (f"**{model}**, the worked question ({summary.get('question')!r} -> "
                  f"{summary.get('answer')!r})")
    if {"iGOS+", "attention", "gradient"} <= set(dele):
        others = min(dele["attention"], dele["gradient"])
        out += (f": iGOS+ deletion score {dele['iGOS+']:.3f} against attention "
                f"{dele['attention']:.3f} and gradient {dele['gradient']:.3f} (lower is more "
                "faithful); ")
        if abs(others - dele["iGOS+"]) < 0.01:
            out += ("the three are within 0.01 of each other, so no map is clearly more faithful "
                    "on this question (the paper finds iGOS+ more faithful).")
        elif dele["iGOS+"] < others:
            out += "iGOS+ is the most faithful of the three, as the paper finds."
        else:
            out += "iGOS+ is not the most faithful of the three here, unlike the paper."
    own = (summary.get("switches") or {}).get("reference" if summary.get("preset") == "reference"
                                              else "vlmscope preset")
    if own and isinstance(own.get("mass"), (int, float)):
        out += (f" Its iGOS+ map {'peaks on' if own['pointing'] else 'misses'} the asked object "
                f"and puts {own['mass']:.2f} of its mass there.")
    if n and area is not None and {"iGOS+", "attention"} <= set(point):
        p_i, p_a = point["iGOS+"], point["attention"]
        out += (f"\n\nOver the {n} questions answered right, iGOS+ peaks on the asked object "
                f"{p_i:.2f} of the time and attention {p_a:.2f} (a random peak: {area:.2f}, the "
                f"object's share of the image); mass in the object {mass.get('iGOS+', 0):.2f} "
                f"against attention {mass.get('attention', 0):.2f} and chance {area:.2f}. ")
        if p_i < p_a:
            out += ("So over these questions iGOS+ points at the object **less often than "
                    "attention**, which the worked question does not show: one question is an "
                    "illustration, not a sample.")
            if mass.get("iGOS+", 0) > mass.get("attention", 0):
                out += (" By mass in the object the order is the other way round: pointing "
                        "looks at one pixel, the map's maximum; mass at the whole map.")
        elif p_i > p_a:
            out += "So over these questions iGOS+ points at the object more often than attention."
        else:
            out += "iGOS+ and attention point at the object equally often."
        if p_i != p_a:
            gap = round(abs(p_i - p_a) * n)
            out += (f" With {n} questions one question moves a rate by {1 / n:.2f}: the gap is "
                    f"{gap} question{'s' if gap != 1 else ''}"
                    + (", too few to rank the maps." if n < 30 else "."))
    if out == head:
        out += ": none of its figures could be computed, so there is nothing to set beside the paper."
    return out


def zoo_found(focus: pd.DataFrame, tests: dict, nonsense: str | None = None) -> str:
    """Notebook 06's conclusion in words: per model, whether right answers have more iGOS+ mass
    on the asked object than wrong ones (the paper: focus does not always go with correctness),
    and whether same-design pairs are more alike than same-scale pairs (the paper: yes)."""
    if nonsense:
        return f"Nothing to compare: {nonsense}."
    lines = []
    for r in focus[focus.value == "igos_mass"].itertuples():
        if r.n_a == 0 or r.n_b == 0:
            lines.append(f"- **{r.model}**: no {'wrong' if r.n_b == 0 else 'right'} answers, so "
                         "no comparison (the paper's first finding cannot be tested on it).")
            continue
        clear = r.p_mannwhitney < 0.05 and r.difference > 0
        lines.append(f"- **{r.model}**: mass on the asked object {r.mean_a:.2f} for right answers "
                     f"(n={r.n_a}) against {r.mean_b:.2f} for wrong ones (n={r.n_b}), "
                     f"p = {r.p_mannwhitney:.2g}: " + (
                         "clearly higher when right, the opposite of the paper's finding."
                         if clear else "no clear difference, as the paper finds (focus does "
                         "not decide correctness)."))
    t = tests.get("top-IoU") if tests else None
    if t is None:
        lines.append("- design versus scale: not tested (the run does not span two designs and "
                     "two scales).")
    else:
        agree = t.observed > 0 and t.p_value < 0.05
        lines.append(f"- design versus scale: same-design pairs minus same-scale pairs, top-IoU "
                     f"{t.observed:.3f} [{t.ci_low:.3f}, {t.ci_high:.3f}], p = {t.p_value:.3g}: "
                     + ("the vision design shapes the maps more than the decoder's size, as the "
                        "paper finds." if agree else "no evidence that the vision design shapes "
                        "the maps more than the decoder's size (the paper finds it does)."))
    return "\n".join(lines)
