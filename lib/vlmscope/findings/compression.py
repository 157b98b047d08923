"""Compressed context: how well a model answers from a few image tokens kept per layer, chosen
by the attention of its own description (notebook 04; ``compression.compress_image``).

A synthetic scene is asked the MME-style "exists" pair (one yes, one no); an
annotated image (an image folder or a COCO copy, ``datasets.folder``) is asked
"is there a <name> ?" (yes) for each of its objects, and its own question when
the folder gives one with its answer; with "where" in ``Config.questions``
also "where is the <name> ?" (its 3x3 grid cell). An annotated image has no
hard negative (nothing says what is absent), so its "exists" questions are
all yes: a model that always says yes scores 1 on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ._common import count, DESCRIBE, is_scene, option, stored_config, ours_vs_paper, paper_table

NAME = "compression"


@dataclass(frozen=True)
class Config:
    question: str = option(DESCRIBE, "the prompt whose description ranks the image tokens")
    max_new_tokens: int = option(48, "description length in tokens", minimum=1)
    k_frac: float | tuple = option(0.05, "share of the image tokens kept per layer, in (0, 1] "
                                   "(from Python, a tuple of values sweeps K)")
    questions: tuple = option(("exists",), "synthetic question kinds: 'exists' gives the yes/no "
                              "pair, every other kind one question")
    followup: str = option("replace", "how the new question follows the cached prompt",
                           choices=("replace", "turn"))
    variants: tuple = option(("both", "query", "image", "full", "direct"), "what is kept")


_DEFAULT_PLAN = {"k_frac": 0.05, "questions": ("exists",), "followup": "replace",
                 "variants": ("both", "query", "image", "full", "direct")}


def key(cfg: Config, **extra) -> list:
    """What a stored part's key holds between the model and the item id (the K sweep, question
    kinds, follow-up and variants only where they differ from the defaults, so the parts of
    default runs keep their keys)."""
    plan = {f: getattr(cfg, f) for f, v in _DEFAULT_PLAN.items()
            if getattr(cfg, f) != v and not (f == "k_frac" and getattr(cfg, f) == (v,))}
    return [stored_config(cfg.question, cfg.max_new_tokens)] + ([plan] if plan else [])


RECORD_KINDS = ("exists", "where")  # the question kinds an annotated image can be asked


def record_questions(record, kinds=("exists",)) -> list:
    """Questions (``datasets.synthetic.Question``: kind, text, truth, object) for an annotated
    image: for "exists" each object's "is there a ... ?" (yes) and the record's own question
    when it has an answer (kind "annotated"); for "where" each object's "where is the ... ?"
    (``LabelledObject.where``). The other kinds need the synthetic world's colours, shapes and
    counts; asking only those is an error naming them."""
    from ..datasets.synthetic import Question

    if not any(k in RECORD_KINDS for k in kinds):
        raise ValueError(f"an annotated image is asked only {' or '.join(RECORD_KINDS)} questions "
                         f"(the other kinds need the synthetic world's colours, shapes and "
                         f"counts); got questions {tuple(kinds)}")
    out = []
    if "exists" in kinds:
        out += [Question("exists", f"is there a {o.name} ?", "yes", o) for o in record.objects]
        if record.question and record.answer:
            out.append(Question("annotated", record.question, record.answer))
    if "where" in kinds:
        out += [Question("where", f"where is the {o.name} ?", o.where, o) for o in record.objects]
    return out


def run(vlm, item, cfg: Config = Config(), ctx=None) -> pd.DataFrame:
    """One row per (variant, K, question) on ``item`` (``ctx``: a ``compression.describe`` of
    it to reuse, as notebook 04's step-by-step cell does)."""
    from ..compression import compress_image, compress_scene

    ccfg = compression_config(cfg)
    if is_scene(item):
        return compress_scene(vlm, item, ccfg, ctx)
    return compress_image(vlm, item.image, record_questions(item, ccfg.questions), ccfg, ctx)


def summarise(df: pd.DataFrame) -> dict:
    from ..compression import scores

    if df.empty:
        return {}
    out = {}
    for r in scores(df, image_col="item").itertuples():
        tag = r.variant if r.variant in ("full", "direct") else f"{r.variant}@{r.k_frac:g}"
        out[f"acc[{tag}]"] = round(float(r.acc), 4)
        out[f"acc_plus[{tag}]"] = round(float(r.acc_plus), 4)
        out[f"compression[{tag}]"] = round(float(r.compression), 2)
    return out


def _paper() -> pd.DataFrame:
    from ..compression import PAPER as P  # the numbers, written once, beside the method

    src = "Kaduri et al., CVPR 2025, MME tables (shared/REFERENCES.md B4)"
    model = f"{P['model']} ({P['benchmark']})"
    return paper_table([
        (f"relative[both@{P['k_frac']:g}]", P["relative_performance"], model, src),
        (f"compression[both@{P['k_frac']:g}]", P["token_reduction"], model, src),
    ])


PAPER = _paper()


def vs_paper(data) -> pd.DataFrame:
    """Kept performance (ACC at K over the full context's ACC) and token reduction at the
    paper's K, beside the paper's."""
    from ..compression import PAPER as P

    s = summarise(data) if isinstance(data, pd.DataFrame) else dict(data)
    tag = f"both@{P['k_frac']:g}"
    acc, full = s.get(f"acc[{tag}]"), s.get("acc[full]")
    ours = {f"relative[{tag}]": round(acc / full, 4) if acc is not None and full else None,
            f"compression[{tag}]": s.get(f"compression[{tag}]")}
    notes = {f"relative[{tag}]": "ACC kept / ACC of the full context (None when the full ACC is 0)",
             f"compression[{tag}]": "full tokens / kept tokens; depends on the model's image "
                                    "token count"}
    return ours_vs_paper(PAPER, ours, notes)


# --- notebook 04: the sets of questions, the headline and the paper's numbers ----------------

KIND_QUESTIONS = ("count", "color", "shape", "where")  # one question per kind, beside "exists"


def compression_config(cfg: Config):
    """The ``compression.CompressionConfig`` this finding's ``cfg`` stands for."""
    from ..compression import CompressionConfig

    return CompressionConfig(describe=cfg.question, describe_tokens=cfg.max_new_tokens,
                             k_frac=cfg.k_frac, questions=cfg.questions, followup=cfg.followup,
                             variants=cfg.variants)


def question_sets(cfg: Config, vlm=None, ctx=None) -> dict[str, Config]:
    """Notebook 04's three runs: the yes/no "exists" pairs (``cfg``), one question of each other
    kind, and the chat template's next turn as the follow-up, uncompressed. Given a model and a
    describe run (``ctx``), the "turn" run is left out, saying why, where the model's template
    has no next turn after the cached prompt (``compression.followup_works``)."""
    from dataclasses import replace

    from ..compression import KINDS, followup_works
    from .sense import nothing_to_report

    sets = {"exists": cfg, "kinds": replace(cfg, questions=KIND_QUESTIONS)}
    no_turn = followup_works(vlm, ctx, "turn") if ctx is not None else None
    if no_turn:  # e.g. LLaVA-1.5's template: the cached prompt is not the start of a next turn
        nothing_to_report(f"no 'turn' follow-up with this model: {no_turn}",
                          "The 'turn' comparison is left out.")
    else:
        sets["turn"] = replace(cfg, followup="turn", variants=("full",), k_frac=1.0, questions=KINDS)
    return sets


def on_images(results: pd.DataFrame) -> bool:
    """Whether ``results`` (``runner.run`` rows) come from annotated images, not synthetic scenes."""
    return "image_file" in results and bool(results["image_file"].notna().any())


def main_k(k_values) -> float:
    """The K of ``k_values`` nearest the paper's 5%."""
    from ..compression import PAPER as HEADLINE

    return min(k_values, key=lambda k: abs(k - HEADLINE["k_frac"]))


def tables(results: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Scores of notebook 04's runs (``results``: the runs' rows, each with its ``set``): "exists" and "kinds" (ACC, ACC+ per variant and K), "by_kind" (per question
    kind) and "followups" (the uncompressed cache asked as a prompt suffix, as the next turn,
    and the question asked directly, per kind)."""
    from ..compression import scores

    exists, kinds = results[results.set == "exists"], results[results.set == "kinds"]
    both = results[results.set.isin(["exists", "kinds"])]
    turn = results[results.set == "turn"]
    def score(rows, **kw):
        return scores(rows, image_col="item", **kw)

    followups = pd.concat(
        [score(both[both.variant == "full"], by=("kind",)).assign(followup="replace")]
        + ([score(turn, by=("kind",)).assign(followup="turn")] if len(turn) else [])
        + [score(both[both.variant == "direct"], by=("kind",)).assign(followup="direct")])
    return {"exists": score(exists), "kinds": score(kinds), "by_kind": score(kinds, by=("kind",)),
            "followups": followups}


def direct_accuracy(t: dict) -> dict:
    """ACC per question kind when asked directly (for ``findings.answer_sense``)."""
    by_kind, exists = t["by_kind"], t["exists"]
    return {**by_kind[by_kind.variant == "direct"].set_index("kind").acc.to_dict(),
            "exists": float(exists[exists.variant == "direct"].acc.iloc[0])}


def report(results: pd.DataFrame, ctx, k_values, model: str, n_layers: int, n_images: int,
           followup: str = "replace") -> dict:
    """Notebook 04's headline and where it differs from the paper, in words.

    ``ctx``: the first image's ``compression.describe`` (its token counts).
    When every "exists" question gets the same answer even asked directly,
    the comparison uses the other question kinds ("basis").
    """
    t = tables(results)
    table, kinds_table = t["exists"], t["kinds"]
    exists = results[results.set == "exists"]
    direct_answers = exists[exists.variant == "direct"].answer.value_counts()
    degenerate = len(direct_answers) == 1
    k = main_k(k_values)
    n_image, n_query = len(ctx.prepared.groups.image), len(ctx.prepared.groups.query)
    basis, basis_table = ("count/colour/shape/where", kinds_table) if degenerate else ("exists", table)
    bt = basis_table.set_index(["variant", "k_frac"])
    main, full, direct = bt.loc[("both", k)], bt.loc[("full", 1.0)], bt.loc[("direct", 1.0)]
    from ..compression import PAPER as HEADLINE  # the paper's headline, recorded in the summary

    rel, red = HEADLINE["relative_performance"], HEADLINE["token_reduction"]
    images = on_images(results)
    data = ("your annotated images, asked whether each named object is there (always yes) and "
            "where it is" if images else "synthetic scenes and short-answer questions")
    differences = [f"the data differ: {data}, not MME perception; the model is "
                   + ("the small organism, not LLaVA-1.5-7B" if model.startswith("organism")
                      else model)]
    if degenerate:
        asked = ("the exists questions (all yes here)" if images
                 else "the yes/no exists pairs (the MME-like metric)")
        differences.append(f"on {asked} this model answers "
                           f"{direct_answers.index[0]!r} every time, even directly: ACC "
                           f"{table.acc.min():.2f}-{table.acc.max():.2f} and ACC+ "
                           f"{table.acc_plus.min():.2f}-{table.acc_plus.max():.2f} for every variant "
                           "and K, so the comparison above uses the other question kinds")
    if pd.notna(main.relative) and abs(main.relative - rel) > 0.05:
        differences.append(f"relative performance {main.relative:.0%} is "
                           f"{'below' if main.relative < rel else 'above'} the paper's {rel:.0%}")
    if abs(main.compression - red) > 2:
        differences.append(f"the token reduction is {main.compression:.1f}x, not {red:.0f}x: this "
                           f"model has {n_image} image tokens, and its {n_query} query tokens "
                           f"({n_query / ctx.prompt_length:.0%} of the prompt) all stay in the cache")
    if full.acc < direct.acc - 0.05:
        differences.append(f"the uncompressed describe cache already answers worse than the direct "
                           f"question (ACC {full.acc:.3f} vs {direct.acc:.3f}): part of the loss is "
                           "the follow-up format, not the compression")
    if n_images < 20:
        differences.append(f"only {n_images} images: one answer moves ACC by "
                           f"{1 / basis_table.n_questions.max():.3f}")
    f = t["followups"]
    full_acc = f[f.kind != "exists"].groupby("followup").apply(
        lambda d: float((d.acc * d.n_questions).sum() / d.n_questions.sum()), include_groups=False)
    return {"model": model, "n_images": n_images, "followup": followup,
            "k_values": list(k_values), "k_main": k, "n_image_tokens": n_image,
            "n_query_tokens": n_query, "n_layers": n_layers, "basis": basis,
            "exists_degenerate": bool(degenerate), "exists_direct_answers": direct_answers.to_dict(),
            "exists": table.round(4).to_dict(orient="records"),
            "kinds": kinds_table.round(4).to_dict(orient="records"),
            "full_acc_by_followup_non_exists": full_acc.round(4).to_dict(),
            "paper": HEADLINE, "differences": differences}


def what_we_found(summary: dict) -> str:
    """Notebook 04's conclusion in words, from ``report``'s summary: ACC kept at the main K
    (of the basis question set) and the token reduction beside the paper's, the query-only
    cache as the control (yes/no chance 0.5), then ``report``'s list of differences."""
    from ..compression import PAPER as HEADLINE

    rows = pd.DataFrame(summary["kinds"] if summary.get("basis") != "exists" else summary["exists"])
    k = summary["k_main"]
    main = rows[(rows.variant == "both") & (rows.k_frac == k)]
    query = rows[rows.variant == "query"]
    if main.empty:
        return f"**{summary['model']}**: the run has no 'both' row at K = {k:g}."
    main = main.iloc[0]
    rel = main.relative
    out = (f"**{summary['model']}** ({count(summary['n_images'], 'image')}, {summary['basis']} questions): "
           f"answering from the top {k:.0%} of the image tokens per layer plus the query tokens "
           f"keeps " + (f"{rel:.0%} of the full context's ACC" if pd.notna(rel) else
                        "an ACC the full context cannot be compared with (its ACC is 0)")
           + f" ({main.acc:.2f}) with {main.compression:.1f}x fewer tokens; the paper keeps about "
           f"{HEADLINE['relative_performance']:.0%} with about {HEADLINE['token_reduction']:.0f}x "
           f"fewer ({HEADLINE['model']}, {HEADLINE['benchmark']}).")
    paper = HEADLINE["relative_performance"]
    if pd.notna(rel):
        out += (" As in the paper, a few image tokens per layer keep nearly all of it."
                if rel >= paper - 0.05 else " Less survives the cut than in the paper.")
    if len(query):
        q = float(query.acc.iloc[0])
        yes_no = summary.get("basis") == "exists"
        out += (f" The query tokens alone (no image token) give ACC {q:.2f}"
                + (" (chance on yes/no questions: 0.50)" if yes_no else "")
                + (": they hold no answer of their own, so what the pruned cache keeps comes "
                   "from the image tokens chosen." if yes_no and q <= 0.55 else "."))
    diffs = summary.get("differences") or []
    if diffs:
        out += "\n\nWhere this run differs from the paper's setting:\n\n" + "\n".join(
            f"- {d}" for d in diffs)
    return out
