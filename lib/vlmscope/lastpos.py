"""Attention knockout at the last position (Neo et al., ICLR 2025, Table 2).

Where is object information READ OUT? On a one-token VQA question ("what
color is the <shape> ?"), the last prompt position (the one that predicts the
answer) is blocked from attending to the object's image tokens (object,
object+1, object+2 rings), or to every other image token, in windows of
layers. If blocking the object in middle layers hurts while blocking it early
or late does not, the answer is read from the object's tokens there.

Windows are the paper's 0-9, 5-14, 11-20, 15-24, 21-31 of a 32-layer
LLaMA, scaled to the model's depth (``paper_windows``), plus "all" and
sliding windows (``sliding_windows``). Every (condition, window) of one
question runs as one batch row of a single forward pass on the vlmscope
attention backend (the cut weights are exactly zero: ``attention.Knockout``).

Conditions, as in the released code (clemneo/llava-interp,
``attention_experiment_curate.py``, its ``experiments`` presets):

- ``object``, ``object+1``, ``object+2``: last position <- the object's tokens
  with 0, 1, 2 rings of buffer;
- ``other image``: last position <- every image token outside object+1 (the
  object and one ring stay visible; "ALL_MINUS_PATCH");
- ``last row: object+1`` and ``last row: rest``: the tokens of the last image
  row are cut from object+1, and from every image token outside the last row
  ("PATCH_PLUS_ONE_TO_LAST_ROW", "PATCH_TO_LAST_ROW"): if the last row held a
  summary of the image, the answer would need those edges.

Our variants, kept as options (``OURS``): ``other image, object only`` (every
image token but the object's own) and ``last row -> last`` (the last position
cut from the last row's tokens). The probability drop is the released one,
on the top token's probability (whatever token is on top, before and under
the cut): ``p_drop``; ``p_drop_answer`` is ours, on the answer token.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from .attention import Edge, Knockout, attention

PAPER_WINDOWS = ((0, 9), (5, 14), (11, 20), (15, 24), (21, 31))  # of 32 layers
CONDITIONS = ("object", "object+1", "object+2", "other image", "last row: object+1",
              "last row: rest")
OURS = ("other image, object only", "last row -> last")


def paper_windows(n_layers: int) -> dict[str, tuple[int, ...]]:
    """The paper's windows scaled to ``n_layers`` (label "a-b of 32" -> layer indices), plus "all"."""
    out = {}
    for a, b in PAPER_WINDOWS:
        lo = math.floor(a * n_layers / 32)
        hi = max(math.ceil((b + 1) * n_layers / 32), lo + 1)
        out[f"{a}-{b}"] = tuple(range(lo, min(hi, n_layers)))
    out["all"] = tuple(range(n_layers))
    return out


def sliding_windows(n_layers: int, width: int | None = None) -> dict[str, tuple[int, ...]]:
    """Every window of ``width`` consecutive layers (default: 10/32 of the depth, at least 1)."""
    w = width or max(1, round(10 * n_layers / 32))
    if not 1 <= w <= n_layers:
        raise ValueError(f"window width {w} out of range 1..{n_layers}")
    return {f"{s}-{s + w - 1}": tuple(range(s, s + w)) for s in range(n_layers - w + 1)}


def condition_tokens(prepared, mask) -> dict[str, np.ndarray]:
    """Image-token indices of the object (0, 1, 2 rings), the other-image sets and the last row."""
    geo = prepared.geometry
    n = prepared.groups.image.numel()
    obj = {r: geo.tokens_for_mask(mask, rings=r) for r in (0, 1, 2)}
    rows = geo.cells[:, 0]
    last_row = np.nonzero((geo.views == 0) & (rows == rows[geo.views == 0].max()))[0]
    return {"object": obj[0], "object+1": obj[1], "object+2": obj[2],
            "other image": np.setdiff1d(np.arange(n), obj[1]),
            "other image, object only": np.setdiff1d(np.arange(n), obj[0]),
            "last row": last_row, "not last row": np.setdiff1d(np.arange(n), last_row)}


def condition_edges(prepared, mask) -> dict[str, tuple]:
    """Per condition, ``(rows, columns)``: who is cut from whom (image-token indices, or
    ``"last"`` for the last prompt position)."""
    t = condition_tokens(prepared, mask)
    out = {c: ("last", t[c]) for c in ("object", "object+1", "object+2", "other image",
                                       "other image, object only")}
    out["last row: object+1"] = (t["last row"], t["object+1"])
    out["last row: rest"] = (t["last row"], t["not last row"])
    out["last row -> last"] = ("last", t["last row"])
    return out


@torch.no_grad()
def lastpos_knockout(vlm, prepared, answer_id: int, mask, windows: dict | None = None,
                     conditions=CONDITIONS, batch_size: int = 32) -> pd.DataFrame:
    """The answer token's and the top token's probability at the last position under each cut.

    Returns one row per (condition, window) plus the baseline (condition
    "none"): p (probability of ``answer_id`` at the last position), p_top (the
    largest probability there, of whatever token), top1 (the argmax token id),
    correct (top1 == answer_id), n_blocked (cut columns), layers; p_drop (the
    released drop: baseline p_top - p_top) and p_drop_answer (ours: baseline
    p - p). ``conditions``: names from ``CONDITIONS`` or ``OURS``.
    """
    L = vlm.adapter.n_layers
    windows = windows or paper_windows(L)
    cuts = condition_edges(prepared, mask)
    unknown = set(conditions) - set(cuts)
    if unknown:
        raise ValueError(f"unknown conditions {sorted(unknown)}; known: {', '.join(cuts)}")
    image = prepared.groups.image

    def where(spec):
        return "prompt_last" if isinstance(spec, str) else tuple(image[spec].tolist())

    rows = [("none", "-", (), None)]
    for c in conditions:
        for wname, layers in windows.items():
            rows.append((c, wname, tuple(layers), cuts[c]))
    out = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i:i + batch_size]
        edges = [(Edge(where(cut[0]), where(cut[1]), layers),)
                 if cut is not None and len(cut[1]) and len(cut[0]) and layers else ()
                 for _, _, layers, cut in chunk]
        ko = Knockout(prepared.groups, edges, L)
        inputs = {k: (torch.cat([v] * len(chunk)) if torch.is_tensor(v) else v)
                  for k, v in prepared.inputs.items()}
        with attention(vlm, knockout=ko):
            logits = vlm.model(**inputs, logits_to_keep=1).logits[:, -1].float()
        probs = torch.softmax(logits, -1)
        for (c, wname, layers, cut), p, p_top, top in zip(
                chunk, probs[:, answer_id].tolist(), probs.max(-1).values.tolist(),
                logits.argmax(-1).tolist()):
            out.append({"condition": c, "window": wname, "layers": list(layers),
                        "n_blocked": int(len(cut[1])) if cut is not None else 0, "p": p,
                        "p_top": p_top, "top1": top, "correct": top == answer_id})
    df = pd.DataFrame(out)
    base = df.iloc[0]
    df["p_drop"] = base.p_top - df.p_top
    df["p_drop_answer"] = base.p - df.p
    df["p_relative"] = df.p / base.p if base.p > 0 else np.nan
    return df


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """The paper's table: relative accuracy and mean probability drops per condition and window.

    ``df`` holds many questions' ``lastpos_knockout`` rows with a ``question``
    column; relative accuracy = accuracy under knockout / baseline accuracy
    over the questions the model answered right without knockout; p_drop is
    the released drop of the top token's probability, p_drop_answer ours (the
    answer token's).
    """
    base = df[df.condition == "none"].set_index("question")
    right = base.index[base.correct.astype(bool)]
    sub = df[(df.condition != "none") & df.question.isin(right)]
    g = sub.groupby(["condition", "window"], sort=False)
    cols = {"n_questions": g.size(), "relative_accuracy": g.correct.mean(), "p_drop": g.p_drop.mean()}
    if "p_drop_answer" in df:
        cols["p_drop_answer"] = g.p_drop_answer.mean()
    return pd.DataFrame({**cols, "n_blocked": g.n_blocked.mean()}).reset_index()
