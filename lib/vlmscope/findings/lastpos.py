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

from ._common import is_scene, item_id, stored_config

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
        asked = [(o, f"what color is the {o.shape} ?", o.color) for o in item.objects]
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
