"""Attention knockout (Kaduri et al.): object F1 of descriptions generated with attention
edges cut from layer l on, per knockout configuration (notebook 03; ``knockout.knockout_sweep``).

Judged by Kaduri et al.'s rule (object identities) in ``f1``; on synthetic
scenes the exact (colour, shape, place) objects beside in ``f1_exact``. On an
annotated image the objects are its annotated names (``judge.judge_for``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ._common import count, DESCRIBE, is_scene, option, stored_config, ours_vs_paper, paper_table

NAME = "knockout"


@dataclass(frozen=True)
class Config:
    question: str = option(DESCRIBE, "the prompt whose description is knocked out")
    max_new_tokens: int = option(48, "description length in tokens", minimum=1)


def key(cfg: Config, **extra) -> list:
    """What a stored part's key holds between the model and the item id.

    "rules-2": the rules a part was computed with (released by default since
    then); parts made under other rules are never reused.
    """
    return [stored_config(cfg.question, cfg.max_new_tokens), "rules-2"]


def run(vlm, item, cfg: Config = Config()) -> pd.DataFrame:
    """Kaduri et al.'s rule (object identities) in ``f1``, exact tuples beside in ``f1_exact``."""
    from ..judge import ExactJudge, judge_for
    from ..knockout import SweepConfig, knockout_sweep

    judge = judge_for([item], identity=True)  # decided by the data, never the model's name
    also = {"exact": ExactJudge() if is_scene(item) else judge_for([item])}
    return knockout_sweep(vlm, item.image, SweepConfig(question=cfg.question,
                                                       max_new_tokens=cfg.max_new_tokens),
                          judge=judge, also=also)


def summarise(df: pd.DataFrame) -> dict:
    if df.empty:
        return {}
    # the paper's l: cut in layers with index > l; l = -1 is every layer
    full = df[df.start == 0].groupby("config")
    out = {f"f1[{k},l=-1]": round(float(v), 4) for k, v in full.f1.mean().items()}
    if "f1_exact" in df:
        out |= {f"f1_exact[{k},l=-1]": round(float(v), 4)
                for k, v in full.f1_exact.mean().items()}
    return out


def notes(df: pd.DataFrame) -> dict:
    """What the run's summary adds: the judges the rows were judged by."""
    return {"judge": ",".join(sorted(set(df.judge)))} if "judge" in df else {}


KADURI = "Kaduri et al., CVPR 2025, Sec. 4 (shared/REFERENCES.md B2)"
PAPER = paper_table([
    ("f1[img->gen,l=-1]", 0.4, "LLaVA-1.5-7B", KADURI),
    ("f1[img->txt,l=-1]", "collapses (near 0)", "LLaVA-1.5-7B", KADURI),
    ("f1[img->txt+gen,l=-1]", "near 0", "LLaVA-1.5-7B", KADURI),
    ("first_l_with_f1_0.9[img->txt]", "middle layers (about 4-20 of 32; about 25% of layers)",
     "LLaVA-1.5-7B", KADURI),
])


def recovery(df: pd.DataFrame, config: str, level: float = 0.9) -> int | None:
    """The first l (the paper's numbering) whose mean F1 reaches ``level`` for ``config``."""
    curve = df[df.config == config].groupby("l").f1.mean()
    hit = curve[curve >= level]
    return int(hit.index.min()) if len(hit) else None


def vs_paper(data) -> pd.DataFrame:
    """Our object F1 (the paper's judge: object identities) beside the paper's."""
    s = summarise(data) if isinstance(data, pd.DataFrame) else dict(data)
    ours = {q: s.get(q) for q in PAPER.quantity if q.startswith("f1[")}
    notes = {q: "identities (the paper's rule); exact tuples in f1_exact" for q in ours}
    if isinstance(data, pd.DataFrame) and len(data):
        ours["first_l_with_f1_0.9[img->txt]"] = recovery(data, "img->txt")
        L = int(data.n_layers.iloc[0])
        notes["first_l_with_f1_0.9[img->txt]"] = f"l of -1..{L - 1} (l = -1 cuts every layer)"
    return ours_vs_paper(PAPER, ours, notes)


# --- notebook 03: the headline, the probes and the paper's numbers ---------------------------



def report(df: pd.DataFrame, judge: str, n_layers: int, n_images: int,
           nonsense: str | None = None) -> dict:
    """Notebook 03's headline: mean F1 with the cut in every layer (the paper's l = -1), by
    identity (``f1``, the paper's rule) and by exact objects, and the first l whose F1 is
    back to 0.9 per configuration. With ``nonsense`` only the run's facts."""
    from ..knockout import SweepConfig

    out = {"judge": judge, "n_layers": n_layers, "n_images": n_images}
    if nonsense:
        return out
    every = df[df.l == -1].groupby("config")
    curve = df.groupby(["config", "l"]).f1.mean()
    recover = {c: int(next((l for l in range(-1, n_layers) if curve[c][l] >= 0.9), n_layers - 1))
               for c in SweepConfig().configs}
    return {"judge": judge, "f1_l=-1": every.f1.mean().round(3).to_dict(),
            "f1_exact_l=-1": every.f1_exact.mean().round(3).to_dict(),
            "first_l_with_f1_0.9": recover, "n_layers": n_layers, "n_images": n_images}


def probe_report(probes: pd.DataFrame, looks: pd.DataFrame) -> dict:
    """The test of the paper's explanation: best held-out probe accuracy per place
    (``knockout.identity_probes``) and where generated rows look (``looks``: mean attention
    fractions by layer, the fractions finding)."""
    def best(rows):
        return float(rows.balanced_accuracy.max())

    return {"probe_query_best": best(probes[probes.place.isin(["last prompt position",
                                                               "query mean"])]),
            "probe_image_best": best(probes[probes.place == "image mean"]),
            "probe_shuffled_best": best(probes[probes.place.str.contains("shuffled")]),
            "generated_attention_on_query": float(looks["query_no_bos"].mean()),
            "generated_attention_on_image": float(looks["image"].mean())}


def probe_verdict(summary: dict) -> str:
    """What ``report`` + ``probe_report`` say about the paper's explanation, in words."""
    q, img, chance = (summary["probe_query_best"], summary["probe_image_best"],
                      summary["probe_shuffled_best"])
    f1 = summary["f1_l=-1"]
    text = (f"generated rows: {summary['generated_attention_on_image']:.0%} of attention on image "
            f"tokens, {summary['generated_attention_on_query']:.0%} on query tokens without BOS "
            f"(mean over layers)\nprobes, best layer: query positions {q:.2f}, image positions "
            f"{img:.2f}, shuffled labels {chance:.2f}\n")
    if q <= chance + 0.1 < img:
        return text + ("-> the query positions do not hold which objects the scene has (no better "
                       "than shuffled labels) while the image positions do: there is no global "
                       "summary in the query for img->gen to fall back on, which is why it leaves "
                       "nothing here")
    if q > chance + 0.1:
        return text + (f"-> the query positions do hold object identity (probe {q:.2f}), yet "
                       f"img->gen leaves F1 {f1.get('img->gen', float('nan')):.2f} and img->txt "
                       f"{f1.get('img->txt', float('nan')):.2f}: the generated rows read the image "
                       "directly and do not use what the query holds; why training gave this route "
                       "only is not known")
    return text + "-> the probes do not separate the places; not known"


def what_we_found(summary: dict, model: str) -> str:
    """Notebook 03's conclusion in words, from ``report`` (+ ``probe_report``): F1 with each cut
    in every layer beside the paper's (img->gen about 0.4, img->txt near 0), and what the
    probes and attention fractions say about the paper's explanation when they ran."""
    f1 = summary.get("f1_l=-1")
    if not f1:
        return (f"**{model}**: the un-knocked descriptions name no object, so F1 compares empty "
                "sets and there is nothing to set beside the paper.")
    gen, txt = f1.get("img->gen"), f1.get("img->txt")
    head = (f"**{model}** ({count(summary.get('n_images'), 'image')}, {count(summary.get('n_layers'), 'layer')}): "
            f"with the cut in every layer, img->txt keeps F1 {txt:.2f} (the paper: collapses to "
            f"about 0) and img->gen keeps {gen:.2f} (the paper: about 0.4). ")
    if txt >= 0.5 and gen <= 0.2:
        out = head + ("This is the **opposite** of the paper: the description does not need the "
                      "query tokens to see the image, and it cannot do without the generated "
                      "tokens seeing it. This model reads the image directly from the generated "
                      "positions, not through a summary held by the query.")
    elif txt <= 0.2 and gen >= 0.2:
        out = head + ("This **agrees** with the paper: the image reaches the description through "
                      "the query tokens.")
    else:
        out = head + ("This agrees with the paper only in part; the table gives each cut.")
    if "probe_query_best" in summary:
        q, chance = summary["probe_query_best"], summary["probe_shuffled_best"]
        on_q = summary["generated_attention_on_query"]
        held = q > chance + 0.1
        out += (f" The probes find object identity at the query positions "
                f"{'well above' if held else 'no better than'} shuffled labels (best balanced "
                f"accuracy {q:.2f} against {chance:.2f}), and generated tokens give the query "
                f"{on_q:.0%} of their attention (mean over layers, BOS left out)"
                + (": the information is there, but the generated tokens do not read it; why "
                   "training gave this model only the direct route is not known." if held else
                   ": there is no summary in the query for the generated tokens to fall back on."))
    return out

