"""One row of the variant x mechanism table: the suite's own measurements of a model.

For a trained organism (a zoo member or a training variant's directory) this
runs, on ``n`` fresh synthetic scenes and "describe the image":

- knockout (Kaduri et al. Fig. 2): object F1 of the description with
  image->generated, image->query and both cut in every layer, and the
  start-layer curve (F1 when the cut starts at layer l);
- the logit lens on image tokens (Neo et al.): per layer, the share of an
  object's patches whose top-1 word is its colour or shape word;
- attention fractions (Kaduri et al. Fig. 1): per layer, how the generated
  tokens' attention splits over image, query and generated tokens;
- object-token ablation (Neo et al. Table 1): share of correct
  identifications lost when the object's tokens (and one ring around them)
  or as many random tokens are replaced by the mean visual token;
- held-out accuracy (``organism.evaluate``), since the measurements only mean
  something for a model that answers.

Knockout, lens and fractions go through ``runner.run`` (their
parts are stored under ``store`` and reused on a re-run); the ablation calls
``ablation.ablate_scene`` with the two cheap token rules (the integrated-
gradients and high-norm baselines are left to ``vlmscope run ablation``).
The papers' numbers sit beside ours in ``PAPER``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# The papers' headline numbers (docs/REFERENCES sections B2, B1, C1, C2), LLaVA-1.5-7B.
def _paper() -> dict:
    """The papers' numbers for the table, read from the findings' ``PAPER`` tables (their one place)."""
    from ..findings import ablation, fractions, knockout, lens

    def value(finding, quantity, model="LLaVA-1.5-7B"):
        t = finding.PAPER
        return t[(t.quantity == quantity) & (t.paper_model.str.contains(model, regex=False))
                 ].paper.iloc[0]

    tasks = ("generative", "polling", "vqa")
    return {
        "knockout_f1_all_layers": {c: value(knockout, f"f1[{c},l=-1]")
                                   for c in ("img->gen", "img->txt", "img->txt+gen")},
        "knockout_start_curve": value(knockout, "first_l_with_f1_0.9[img->txt]"),
        "lens_best_share": value(lens, "best_share"),  # object patches read as the name, best layer
        "lens_best_layer_fraction": value(lens, "best_layer_fraction"),  # layer ~26 of 33 hidden states
        "fractions": value(fractions, "peak_image_layer"),
        "ablation_lost": {name: {t: value(ablation, f"lost[{rule},{t}]") for t in tasks}
                          for name, rule in (("object", "object,+0"), ("object+1", "object,+1"),
                                             ("random", "random,+1"))},
    }


PAPER = _paper()

# What "shows the mechanism" means in the table (stated, not tuned): query-token
# routing when cutting image->generated edges everywhere keeps object F1 at or
# above QUERY_ROUTING_F1 while cutting image->query edges drops it to at most
# QUERY_CUT_F1; object words in the lens when some layer's share reaches LENS_SHARE.
QUERY_ROUTING_F1 = 0.2
QUERY_CUT_F1 = 0.5
LENS_SHARE = 0.1


def _r(x) -> float:
    return round(float(x), 4)


def measure(vlm, model_name: str, n: int = 8, seed: int = 4242, store: str | Path | None = None,
            eval_n: int = 50, ablation_n: int | None = None, progress: bool = False) -> dict:
    """Measure one model; return the table row (JSON-ready).

    ``store``: folder for the findings' stored parts (a temporary folder when
    None). ``ablation_n``: scenes for the ablation (default ``n``; 0 skips it).
    """
    import tempfile

    from ..runner import run
    from . import evaluate

    if n < 1:
        raise ValueError(f"n must be at least 1 scene, got {n}")
    tmp = None
    if store is None:
        tmp = tempfile.TemporaryDirectory()
        store = tmp.name
    store = Path(store)
    L = vlm.adapter.n_layers
    row: dict = {"model": model_name, "n_scenes": n, "seed": seed, "n_layers": L}
    row["accuracy"] = evaluate(vlm, n=eval_n, seed=12345) if eval_n else None

    ko = run("knockout", vlm, n=n, seed=seed, out=store, model_name=model_name,
             progress=progress).df
    curve = ko.groupby(["config", "start"]).f1.mean()
    row["knockout_f1_all_layers"] = {c: _r(curve[c, 0]) for c in ko.config.unique()}
    row["knockout_start_curve"] = {c: [_r(curve[c, s]) for s in range(L + 1)]
                                   for c in ko.config.unique()}
    row["knockout_description_f1_none_cut"] = _r(ko[ko.start == L].f1.mean())

    lens = run("lens", vlm, n=n, seed=seed, out=store, model_name=model_name,
               progress=progress).df
    obj = lens[lens.rings == 0].groupby("layer")[["share", "share_color", "share_shape"]].mean()
    row["lens_share_by_layer"] = [_r(v) for v in obj.share]
    row["lens_share_color_by_layer"] = [_r(v) for v in obj.share_color]
    row["lens_share_shape_by_layer"] = [_r(v) for v in obj.share_shape]
    row["lens_best_layer"] = int(obj.share.idxmax())
    row["lens_best_share"] = _r(obj.share.max())

    fr = run("fractions", vlm, n=n, seed=seed, out=store, model_name=model_name,
             progress=progress).df
    by = fr.groupby("layer")[["image", "query", "query_no_bos", "generated"]].mean()
    row["fractions_by_layer"] = {k: [_r(v) for v in by[k]] for k in by.columns}
    row["fractions_peak_image_layer"] = int(by.image.idxmax())

    n_abl = n if ablation_n is None else ablation_n
    row["ablation_lost"] = _ablation(vlm, n_abl, seed, store) if n_abl else None

    f1 = row["knockout_f1_all_layers"]
    row["shows_query_routing"] = bool(f1.get("img->gen", 0) >= QUERY_ROUTING_F1
                                      and f1.get("img->txt", 1) <= QUERY_CUT_F1)
    row["shows_lens_object_words"] = bool(row["lens_best_share"] >= LENS_SHARE)
    if tmp is not None:
        tmp.cleanup()
    return row


def _ablation(vlm, n: int, seed: int, store: Path) -> dict:
    """Share lost per rule ("object", "object+1", "random") and task, with denominators."""
    import pandas as pd

    from ..ablation import ablate_scene, loss_table, mean_vector
    from ..datasets.synthetic import World, _mix

    world = World()
    refs = [world.scene(_mix(10**6 + seed, j)).image for j in range(32)]
    mean = mean_vector(vlm, refs, cache=store / f"mean-{seed}.safetensors")
    frames = [ablate_scene(vlm, world.scene(_mix(seed, i)), mean, rings=(0, 1),
                           rules=("object", "random"), seed=_mix(seed, i)) for i in range(n)]
    t = loss_table(pd.concat(frames, ignore_index=True))
    out: dict = {}
    for r in t.itertuples():
        name = r.rule if r.rule == "random" else f"object{'+1' if r.rings else ''}"
        if r.rule == "random" and r.rings == 0:
            continue  # random at the object's own count; "random" reported at the +1 count
        out.setdefault(name, {})[r.task] = {
            "lost": None if np.isnan(r.lost) else _r(r.lost), "n": int(r.n_correct_before)}
    return out


def table_markdown(rows: list[dict]) -> str:
    """The variant x mechanism table as Markdown, the papers' numbers in the first row."""
    head = ("| model | layers | describe F1 | KO img->gen (all layers) | KO img->query | "
            "KO both | lens best share (layer) | image attention peak layer | "
            "object+1 lost (gen/poll/vqa) | random lost (gen/poll/vqa) |")
    lines = [head, "|" + "---|" * 10]
    p = PAPER
    lines.append(
        f"| paper (LLaVA-1.5-7B) | 32 | - | {p['knockout_f1_all_layers']['img->gen']} | "
        f"{p['knockout_f1_all_layers']['img->txt']} | {p['knockout_f1_all_layers']['img->txt+gen']} | "
        f"{p['lens_best_share']} (~26 of 33) | middle | "
        + "/".join(str(p["ablation_lost"]["object+1"][k]) for k in ("generative", "polling", "vqa"))
        + " | " + "/".join(str(p["ablation_lost"]["random"][k])
                           for k in ("generative", "polling", "vqa")) + " |")

    def lost(row, rule):
        a = (row.get("ablation_lost") or {}).get(rule, {})
        return "/".join(f"{a[k]['lost']}" if k in a else "-" for k in ("generative", "polling", "vqa"))

    for r in rows:  # a field a row lacks (an older or partial row) shows as "-"
        f1 = r.get("knockout_f1_all_layers") or {}
        acc = r.get("accuracy") or {}
        g = lambda k: r.get(k, "-")  # noqa: E731
        lines.append(
            f"| `{r['model']}` | {g('n_layers')} | {acc.get('describe_f1', '-')} | "
            f"{f1.get('img->gen', '-')} | {f1.get('img->txt', '-')} | {f1.get('img->txt+gen', '-')} | "
            f"{g('lens_best_share')} ({g('lens_best_layer')}) | {g('fractions_peak_image_layer')} | "
            f"{lost(r, 'object+1')} | {lost(r, 'random')} |")
    return "\n".join(lines)
