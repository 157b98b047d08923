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
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..heatmaps import HeatmapConfig
from ._common import is_scene, option, stored_config

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


def key(cfg: Config, **extra) -> list:
    """What a stored part's key holds between the model and the item id: every heatmap field
    but ``batch`` (speed and memory only)."""
    return [stored_config(max_new_tokens=cfg.max_new_tokens, kinds=cfg.kinds),
            cfg.heatmap.result_fields()]


def setup(vlm, store, cfg: Config, seed: int, items=()) -> dict:
    """Where the raw masks go: ``masks/`` in the store."""
    return {"mask_dir": store.root / "masks"}


def part_extra(key: str, extra: dict) -> dict:
    """Per stored part: the part's key names its mask files."""
    return {"tag": key}


def heatmap_row(vlm, image, question: str, target, is_correct, hcfg, max_new_tokens: int = 48,
                mask_path: Path | None = None, seed=0) -> dict:
    """Answer one question, explain it with iGOS, and score the maps on ``target``.

    ``target``: boolean ``[H, W]`` mask of the reference region (None: no
    plausibility figures); ``is_correct(answer_text) -> bool``. Maps: iGOS,
    attention and input-gradient saliency, and a seeded uniform random map (the
    chance level). The raw mask goes to ``mask_path``; a skipped sample keeps
    its reason in ``skipped``. ``hcfg.batch`` sets the batch of the
    optimisation and of the deletion/insertion curves alike.
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
    f = H.faithfulness(vlm, prepared, sel, hm.mask, batch=hcfg.batch, config=hcfg)
    row.update(deletion=f.deletion, insertion=f.insertion)
    if target is not None:
        maps = {"igos": hm.importance(),
                "attention": H.attention_saliency(vlm, prepared, sel),
                "gradient": H.gradient_saliency(vlm, prepared, sel),
                "random": np.random.default_rng(seed).random(np.asarray(target).shape)}
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
        if is_scene(item):
            def ok(answer, truth=truth):
                return answer.strip() == truth
        else:
            from ..judge import words

            def ok(answer, truth=truth):
                w, want = words(answer), words(truth)
                return bool(want) and w[:len(want)] == want
        row = heatmap_row(vlm, item.image, text, target.mask, ok, hcfg, cfg.max_new_tokens,
                          mask_dir / f"{tag}-{kind}.safetensors" if mask_dir else None,
                          seed=[seed, len(rows)])
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
        if len(plaus):
            out[f"mass[{m}]"] = round(float(plaus[f"{m}_mass"].mean()), 4)
            out[f"pointing[{m}]"] = round(float(plaus[f"{m}_pointing"].mean()), 4)
    if len(plaus):
        out["area"] = round(float(plaus.area.mean()), 4)
    faith = ok.dropna(subset=["deletion"]) if "deletion" in ok else ok.iloc[:0]
    if len(faith):
        out["deletion"] = round(float(faith.deletion.mean()), 4)
        out["insertion"] = round(float(faith.insertion.mean()), 4)
    return out
