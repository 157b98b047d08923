"""Last-position attention knockout (Neo et al., Table 2): the one-token answer's probability
when the last prompt position cannot see the object's image tokens, per layer window
(notebook 09; ``lastpos.lastpos_knockout``).

A synthetic object is asked "what color is the <shape> ?" (its colour is the
answer). An annotated image is asked its own question when the folder gives
one with an answer, about its first object; otherwise each object is asked
"what is at the <where> ?" with its name as the answer (the name's first
token is what the last position predicts). That is our choice for images
without a one-token question; the paper's COCO protocol needs an assistant
prefix that chat templates differ on.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..datasets.synthetic import question
from ._common import count, is_scene, item_id, ours_vs_paper, paper_table, stored_config

NAME = "lastpos"


@dataclass(frozen=True)
class Config:
    """No knobs: the windows and conditions are the paper's (``lastpos.CONDITIONS``, ``OURS``)."""


def key(cfg: Config, **extra) -> list:
    """What a stored part's key holds between the model and the item id ("rules-2": the rules a
    part was computed with; parts made under other rules are never reused)."""
    return [stored_config(), "rules-2"]


def record_questions(record) -> list[tuple[object, str, str]]:
    """(object, question, answer) for an annotated image (see the module docstring)."""
    if record.question and record.answer and record.objects:
        return [(record.objects[0], record.question, record.answer)]
    return [(o, f"what is at the {o.where} ?", o.name) for o in record.objects]


def run(vlm, item, cfg: Config = Config()) -> pd.DataFrame:
    """Each object's one-token colour question under last-position knockout (paper + sliding windows).

    Conditions: the released ones (``lastpos.CONDITIONS``) and ours beside (``lastpos.OURS``).
    """
    from ..lastpos import CONDITIONS, OURS, lastpos_knockout, paper_windows, sliding_windows
    from ..words import answer_ids

    L = vlm.adapter.n_layers
    windows = {**paper_windows(L), **sliding_windows(L)}
    if is_scene(item):
        asked = [(o, question("color", o), o.color) for o in item.objects]
    else:
        asked = record_questions(item)
    if not asked:
        return pd.DataFrame()
    frames = []
    for o, q, truth in asked:
        p = vlm.prepare(item.image, q)
        answer = answer_ids(vlm.tokenizer, vlm.chat_text(q), truth)[0]  # predicted at the last position
        frames.append(lastpos_knockout(vlm, p, answer, o.mask, windows, CONDITIONS + OURS)
                      .assign(object=o.name, question=f"{item_id(item)}:{q}"))
    return pd.concat(frames, ignore_index=True)


def summarise(df: pd.DataFrame) -> dict:
    from ..lastpos import summary_table

    if df.empty:
        return {}
    t = summary_table(df).set_index(["condition", "window"])
    out = {f"relative_accuracy[{c},{w}]": round(float(v), 4)
           for (c, w), v in t.relative_accuracy.items() if w == "all"}
    if ("object", "all") in t.index:  # released: the top token's drop; ours: the answer's
        row = t.loc[("object", "all")]
        out["p_drop[object,all]"] = round(float(row.p_drop), 4)
        if "p_drop_answer" in t:
            out["p_drop_answer[object,all]"] = round(float(row.p_drop_answer), 4)
    return out


NEO = "Neo et al., ICLR 2025, Table 2 (2nd-hand; shared/REFERENCES.md C3)"
PAPER = paper_table([
    ("relative_accuracy[object+1,15-24]", 0.82, "LLaVA-1.5-7B", NEO),
    ("relative_accuracy[object+1,all]", 0.67, "LLaVA-1.5-7B", NEO),
    ("relative_accuracy[last row: object+1,all]", "no effect", "LLaVA-1.5-7B", NEO),
    ("relative_accuracy[last row: rest,all]", "no effect", "LLaVA-1.5-7B", NEO),
])


def vs_paper(data) -> pd.DataFrame:
    """Relative accuracy under the paper's cuts (its 15-24 window scaled to the model's depth:
    ``lastpos.paper_windows``). From a summary only the all-layer cuts are known."""
    ours, notes = {}, {}
    if isinstance(data, pd.DataFrame):
        from ..lastpos import summary_table

        if len(data):
            t = summary_table(data)
            for r in t.itertuples():
                q = f"relative_accuracy[{r.condition},{r.window}]"
                ours[q] = round(float(r.relative_accuracy), 4)
                notes[q] = f"n={int(r.n_questions)} questions right without knockout"
    else:
        ours = {q: data.get(q) for q in PAPER.quantity}
    return ours_vs_paper(PAPER, ours, notes)


# --- for notebook 09: one question in detail, the run's table as summary figures ---
def example(vlm, item) -> tuple[str, str, pd.DataFrame]:
    """One question of ``item`` (a scene's first object's colour question, or an annotated
    image's first question as ``run`` asks it) under every cut, in the paper's and the
    sliding windows: ``(question, answer, rows of lastpos.lastpos_knockout)``."""
    from ..lastpos import CONDITIONS, OURS, lastpos_knockout, paper_windows, sliding_windows
    from ..words import answer_ids

    if is_scene(item):
        o = item.objects[0]
        o, q, truth = o, f"what color is the {o.shape} ?", o.color
    else:
        o, q, truth = record_questions(item)[0]
    L = vlm.adapter.n_layers
    p = vlm.prepare(item.image, q)
    answer = answer_ids(vlm.tokenizer, vlm.chat_text(q), truth)[0]
    return q, truth, lastpos_knockout(vlm, p, answer, o.mask, {**paper_windows(L),
                                                               **sliding_windows(L)},
                                      CONDITIONS + OURS)


def table_figures(table: pd.DataFrame) -> dict:
    """``lastpos.summary_table`` rows as the notebook summary's dicts, keyed "condition,window":
    relative_accuracy, p_drop (released) and p_drop_answer (ours)."""
    return {col: {f"{r.condition},{r.window}": getattr(r, col) for r in table.itertuples()}
            for col in ("relative_accuracy", "p_drop", "p_drop_answer")}



def what_we_found(summary: dict, model: str) -> str:
    """Notebook 09's conclusion in words, from the notebook's summary (``table_figures``):
    relative accuracy when the last position is cut from the object + 1 ring in every layer,
    against cutting the rest of the image and the last-row tests, beside Table 2."""
    ra = summary.get("relative_accuracy") or {}
    obj, other = ra.get("object+1,all"), ra.get("other image,all")
    if obj is None:
        return (f"**{model}**: no question is answered right without knockout, so there is "
                "nothing for a cut to lose.")
    out = (f"**{model}** ({count(summary.get('n_scenes'), 'scene')}, {count(summary.get('n_layers'), 'layer')}): "
           f"cutting the last position from the object + 1 ring in every layer leaves a relative "
           f"accuracy of {obj:.2f} (the paper: 0.67 on LLaVA-1.5-7B)")
    if other is not None:
        out += f"; cutting it from the rest of the image leaves {other:.2f}"
    out += ". "
    if other is not None:
        out += ("The answer is read from the object's own tokens, not from a summary elsewhere in "
                "the image, as the paper finds." if obj < other else
                "Cutting the object hurts no more than cutting the rest of the image: unlike the "
                "paper, this does not show a read-out from the object's tokens.")
    rows = {c: ra.get(f"{c},all") for c in ("last row: object+1", "last row: rest")}
    rows = {c: v for c, v in rows.items() if v is not None}
    if rows:
        none = all(v >= 0.95 for v in rows.values())
        out += (" Last-row tests: " + ", ".join(f"{c} {v:.2f}" for c, v in rows.items())
                + (": no effect, as the paper finds (no summary in the last image row)."
                   if none else ": the last row matters here, unlike the paper."))
    return out
