"""What a notebook may claim: summaries that say plainly when there is nothing to report.

A model with random weights (a stand-in, or a checkpoint that loaded wrong)
answers nonsense: no object word in a description, no question right. The
analyses still run (attention is still measured, a heatmap is still
optimised), but a finding that needs sensible answers (where an object word
looks, how much accuracy a cut costs) has nothing to stand on. The notebooks
ask the functions here whether the answers make sense, print the reason when
they do not, and write every summary through ``write_summary``: it records
``"nonsense"`` (``None`` or the reason) and writes ``null``, never ``NaN``, for
a figure that could not be computed.

>>> answer_sense({"color": 0.0, "shape": 0.0, "where": 0.0, "exists": 0.5, "count": 0.0})
'no question kind is answered better than chance: the answers are nonsense'
>>> finite({"a": float("nan"), "b": [1.0, float("inf")]})
{'a': None, 'b': [1.0, None]}
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

__all__ = ["CHANCE", "NO_OBJECT_WORDS", "answer_sense", "finite", "mentioned_objects",
           "naming_sense", "nothing_to_report", "write_summary"]

NO_OBJECT_WORDS = "no object word in the answer: nothing to localise"

# the share a guess gets right on each synthetic question kind (datasets.synthetic)
CHANCE = {"color": 1 / 5, "shape": 1 / 5, "where": 1 / 9, "exists": 1 / 2, "count": 1 / 4}


def finite(value):
    """``value`` with every NaN or infinite float (also inside dicts, lists, numpy scalars) as None."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, np.ndarray):
        return finite(value.tolist())
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def nothing_to_report(reason: str | None, goes_on: str = "") -> str | None:
    """Print the reason plainly (and what the notebook does instead); return it for the summary.

    A ``reason`` of None (or "") means there is something to report: nothing is printed and
    None comes back, so ``nonsense = nothing_to_report(answer_sense(...), "...")`` reads in
    one statement.
    """
    if not reason:
        return None
    print(f"Nothing to report: {reason}." + (f" {goes_on}" if goes_on else ""))
    return reason


def write_summary(path, summary: dict, nonsense: str | None = None) -> dict:
    """Write ``summary`` as JSON with ``"nonsense"`` (None or the reason) and no NaN; return it."""
    out = finite({**summary, "nonsense": nonsense or None})
    Path(path).write_text(json.dumps(out, indent=1, allow_nan=False, default=str))
    return out


def answer_sense(scores: dict, chance: dict | None = None) -> str | None:
    """None when some question kind is answered better than chance, else the reason.

    ``scores`` maps a question kind to its accuracy (``organism.evaluate``'s
    keys; kinds without a chance level are ignored).
    """
    chance = CHANCE if chance is None else chance
    judged = {k: v for k, v in scores.items() if k in chance and v is not None}
    if not judged:
        return "no question with a known answer was asked: answers not judged"
    if all(v == 0 for v in judged.values()):
        return "no question is answered right: the answers are nonsense"
    if all(v <= chance[k] for k, v in judged.items()):
        return "no question kind is answered better than chance: the answers are nonsense"
    return None


def _norm(token: str) -> str:
    from ..judge import singular

    return singular(token.strip().lstrip("\u2581\u0120").strip().lower().strip(".,;:!?"))


def mentioned_objects(tokens, scene) -> list[tuple[int, object]]:
    """(step, object) for every generated token that names an object of ``scene``.

    A synthetic scene's objects are named by their colour or shape word; an
    annotated image's (``datasets.folder``) by a word of their name (plural or
    singular, any case, with or without a tokenizer's word-start mark). Words
    naming nothing in the scene are skipped.
    """
    out = []
    for step, t in enumerate(tokens):
        w = _norm(t)
        if not w:
            continue
        if hasattr(scene, "object_by"):
            obj = scene.object_by(color=w) or scene.object_by(shape=w)
        else:
            obj = next((o for o in scene.objects if w in {_norm(x) for x in o.words}), None)
        if obj is not None:
            out.append((step, obj))
    return out


def description_sense(texts, judge) -> str | None:
    """None when some text names an object ``judge`` knows, else the reason (nothing to compare)."""
    if any(judge.objects(t) for t in texts):
        return None
    return ("no object word in the un-knocked descriptions: their object F1 would compare two "
            "empty sets, so there is nothing to compare")


def naming_sense(vlm, items, question: str = "describe the image .") -> str | None:
    """None when the description of some annotated image names one of its objects, else the
    reason (the answers on these images are nonsense). One greedy description per item."""
    described = [vlm.answer([it.image], [question])[0] for it in items]
    if any(mentioned_objects(d.split(), it) for d, it in zip(described, items)):
        return None
    return "no description of your images names an annotated object"


def explainable_selection(vlm, prepared, answer=None, baseline=None, config=None):
    """``(selection, reason)``: the answer tokens a heatmap explains, and why the rule found none.

    ``heatmaps.select_tokens`` keeps the tokens the image makes more likely than
    the baseline does. A model that ignores the image (random weights) has no
    such token, and its heatmap would be skipped; here every answer token is
    selected instead (rule "given") so the analysis still runs, and ``reason``
    (None when the rule found tokens) says why it is not a finding.
    """
    from ..heatmaps import HeatmapConfig, select_tokens

    config = config or HeatmapConfig()
    selection = select_tokens(vlm, prepared, answer, baseline, config)
    if not selection.skipped:
        return selection, None
    reason = f"the image does not move the answer: {selection.skipped}"
    every = select_tokens(vlm, prepared, answer, baseline, config,
                          positions=range(len(selection.tokens)))
    return every, reason


def accuracy_vs_chance(scores: dict, bar: float = 0.95, chance: dict | None = None):
    """``organism.evaluate``'s scores as a table: per question kind (and the descriptions'
    object F1) the accuracy, the chance level (a guess; ``CHANCE``), the bar and whether the
    score reaches it."""
    import pandas as pd

    chance = CHANCE if chance is None else chance
    kinds = [k for k in scores if k in chance or k == "describe_f1"]
    return pd.DataFrame([{"question kind": k, "score": round(float(scores[k]), 3),
                          "chance": round(chance[k], 3) if k in chance else None, "bar": bar,
                          "reaches the bar": bool(scores[k] >= bar)} for k in kinds])


def accuracy_found(scores: dict, model: str, bar: float = 0.95, chance: dict | None = None) -> str:
    """Notebook 00's conclusion in words: which kinds reach ``bar``, and whether every kind is
    above chance (what the later notebooks stand on)."""
    table = accuracy_vs_chance(scores, bar, chance)
    below = table[~table["reaches the bar"]]["question kind"].tolist()
    guess = table[table.chance.notna() & (table.score <= table.chance)]["question kind"].tolist()
    out = (f"**{model}** on {scores.get('n')} fresh scene{'' if scores.get('n') == 1 else 's'}: "
           + ("every question kind and the descriptions reach the bar of "
              f"{bar:.2f}." if not below else
              f"{', '.join(below)} {'is' if len(below) == 1 else 'are'} below the bar of {bar:.2f}."))
    out += (" Every kind is answered better than chance, so the later notebooks measure a model "
            "that works." if not guess else
            f" {', '.join(guess)} {'is' if len(guess) == 1 else 'are'} answered no better than "
            "chance: read the later notebooks' findings on this model with that in mind.")
    return out
