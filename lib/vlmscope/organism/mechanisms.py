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
# Added after organism-vit-m-lm (docs/organism.md): what survives the
# image->generated cut must also exceed what survives cutting both edge sets by
# QUERY_ROUTING_F1, since the identity judge scores shapes named without the image
# (a language prior: that model keeps F1 0.37 with image->generated cut, and 0.43
# with both cut, exact-object F1 0.0 for both). The paper: 0.4 against near 0.
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
    if "f1_exact" in ko:  # colour, shape and place all right (the identity judge: shape alone)
        exact = ko.groupby(["config", "start"]).f1_exact.mean()
        row["knockout_exact_f1_all_layers"] = {c: _r(exact[c, 0]) for c in ko.config.unique()}

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
    row["shows_query_routing"] = routes_through_query(f1)
    row["shows_lens_object_words"] = bool(row["lens_best_share"] >= LENS_SHARE)
    if tmp is not None:
        tmp.cleanup()
    return row


def routes_through_query(f1: dict) -> bool:
    """The query-routing verdict from the knockout F1 of the three cuts in every layer:
    image->generated cut keeps F1 >= QUERY_ROUTING_F1, more than both cuts keep by as much
    (not a language prior), and image->query cut leaves <= QUERY_CUT_F1."""
    gen, query, both = f1.get("img->gen", 0), f1.get("img->txt", 1), f1.get("img->txt+gen", 0)
    return bool(gen >= QUERY_ROUTING_F1 and gen - both >= QUERY_ROUTING_F1
                and query <= QUERY_CUT_F1)


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


# ------------------------------------------------------------------ notebook 11
def changes(model: str) -> str:
    """What a row's model changes against the bundled recipe, in words (its name says which)."""
    from . import VARIANTS, ZOO
    from .build import DECODERS

    if "@" in model:  # a checkpoint measured during training, e.g. organism-vit-m-lm@B2400
        base, at = model.split("@", 1)
        return f"{changes(base)}; the checkpoint at {at}"
    if model in ZOO:
        vision, decoder = ZOO[model]
        return (f"the bundled recipe ({vision} tower, {DECODERS[decoder].layers}-layer "
                "decoder)")
    v = VARIANTS.get(model)
    if v is None:
        return "a trained directory (see docs/organism.md)"
    parts = []
    if v.get("decoder", "m") != "m":
        parts.append(f"{DECODERS[v['decoder']].layers} decoder layers")
    if v.get("system"):
        parts.append("a system message")
    if v.get("steps_t"):
        parts.append(f"a text stage ({v['steps_t']} steps)")
    if v.get("steps_p"):
        parts.append(f"an alignment stage ({v['steps_p']} steps)")
    return ", ".join(parts) or "the bundled recipe"


def variants_table(rows: dict) -> "pd.DataFrame":
    """One row per measured model (``rows``: the JSON's model -> row), the paper's row first:
    what it changes, how well it describes and its lowest short-answer accuracy (the bar is
    0.95 on every kind), knockout F1 of the three cuts in every layer (and the exact-object F1
    with image->generated cut, where the row has it: the identity F1 credits shapes named
    without the image), the best lens share and its layer (as a share of depth), and the two verdicts."""
    import pandas as pd

    p = PAPER
    out = [{"model": "paper (LLaVA-1.5-7B)", "changes": "-", "layers": 32, "describe F1": None,
            "lowest kind": None,
            "KO img->gen": p["knockout_f1_all_layers"]["img->gen"],
            "KO img->query": p["knockout_f1_all_layers"]["img->txt"],
            "KO both": p["knockout_f1_all_layers"]["img->txt+gen"],
            "KO img->gen exact": None,
            "lens best share": p["lens_best_share"],
            "lens best depth": p["lens_best_layer_fraction"],
            "query routing": True, "lens object words": True}]
    for name, r in rows.items():
        f1 = r["knockout_f1_all_layers"]
        acc = r.get("accuracy") or {}
        kinds = [acc[k] for k in ("color", "shape", "where", "exists", "count") if k in acc]
        out.append({"model": name, "changes": changes(name), "layers": r["n_layers"],
                    "describe F1": acc.get("describe_f1"),
                    "lowest kind": min(kinds) if kinds else None,
                    "KO img->gen": f1["img->gen"], "KO img->query": f1["img->txt"],
                    "KO both": f1["img->txt+gen"],
                    "KO img->gen exact": (r.get("knockout_exact_f1_all_layers") or {}).get("img->gen"),
                    "lens best share": r["lens_best_share"],
                    "lens best depth": round((r["lens_best_layer"] + 1) / r["n_layers"], 2),
                    "query routing": r["shows_query_routing"],
                    "lens object words": r["shows_lens_object_words"]})
    return pd.DataFrame(out)


def compare_rows(live: dict, recorded: dict | None, tol: float = 1e-3) -> "pd.DataFrame":
    """Each knockout, lens and fractions number of a row measured now beside the recorded one
    (quantity, live, recorded, same: within ``tol``); recorded None: the live numbers alone."""
    import pandas as pd

    def flat(row):
        out = {}
        for k in ("knockout_f1_all_layers", "knockout_start_curve", "lens_share_by_layer",
                  "fractions_by_layer"):
            v = row.get(k)
            items = v.items() if isinstance(v, dict) else [("", v)]
            for sub, vals in items:
                vals = vals if isinstance(vals, list) else [vals]
                for i, x in enumerate(vals):
                    out[f"{k}[{sub}]" + (f"[{i}]" if len(vals) > 1 else "")] = x
        return out

    a, b = flat(live), flat(recorded or {})
    return pd.DataFrame([{"quantity": k, "live": v, "recorded": b.get(k),
                          "same": b.get(k) is not None and abs(v - b[k]) <= tol}
                         for k, v in a.items()])


def vs_paper(rows: dict) -> "pd.DataFrame":
    """The papers' two mechanisms beside every measured model: knockout F1 with image->generated
    and with image->query cut in every layer, and the best lens share."""
    import pandas as pd

    p = PAPER
    quantities = [("KO img->gen, all layers (F1)", p["knockout_f1_all_layers"]["img->gen"],
                   lambda r: r["knockout_f1_all_layers"]["img->gen"]),
                  ("KO img->query, all layers (F1)", p["knockout_f1_all_layers"]["img->txt"],
                   lambda r: r["knockout_f1_all_layers"]["img->txt"]),
                  ("lens: object patches read as their colour or shape (best layer)",
                   p["lens_best_share"], lambda r: r["lens_best_share"])]
    return pd.DataFrame([{"quantity": q, "paper (LLaVA-1.5-7B)": paper,
                          **{name: get(r) for name, r in rows.items()}}
                         for q, paper, get in quantities])


def what_we_found(rows: dict) -> str:
    """Sentences from the rows: which models show query routing and lens object words (the
    criteria above), what the image-reading layers are, and what is left untested."""
    routing = [m for m, r in rows.items() if r["shows_query_routing"]]
    words = [m for m, r in rows.items() if r["shows_lens_object_words"]]
    best = max(rows, key=lambda m: rows[m]["lens_best_share"])
    text = [f"Of {len(rows)} models measured, "
            + (f"{', '.join(routing)} route{'s' if len(routing) == 1 else ''} the image through "
               "the query tokens" if routing else "none routes the image through the query "
               f"tokens (the criterion: F1 >= {QUERY_ROUTING_F1} with image->generated cut in "
               f"every layer while cutting image->query leaves <= {QUERY_CUT_F1})")
            + ", and " + (f"{', '.join(words)} show{'s' if len(words) == 1 else ''} object "
                          "words in the lens" if words else
                          f"none reaches a lens share of {LENS_SHARE} (best: "
                          f"{rows[best]['lens_best_share']:.3f}, `{best}`, against the paper's "
                          f"{PAPER['lens_best_share']})") + "."]
    for m, r in rows.items():
        curve = r["knockout_start_curve"]["img->gen"]
        L = r["n_layers"]
        safe = next((s for s, f in enumerate(curve) if f >= 0.9), L)
        text.append(f"`{m}` ({changes(m)}): description F1 "
                    f"{r['knockout_f1_all_layers']['img->gen']:.2f} with image->generated cut in "
                    f"every layer, {r['knockout_f1_all_layers']['img->txt']:.2f} with "
                    f"image->query cut; the cut is harmless from layer {safe} of {L} on, so the "
                    f"generated tokens read the image in layers 0-{max(safe - 1, 0)}."
                    + _prior_note(r))
    return " ".join(text)


def _prior_note(r: dict) -> str:
    """A sentence when the F1 left by the image->generated cut is a language prior."""
    f1 = r["knockout_f1_all_layers"]
    gen, both = f1["img->gen"], f1.get("img->txt+gen", 0.0)
    if gen < QUERY_ROUTING_F1 or gen - both >= QUERY_ROUTING_F1:
        return ""
    exact = (r.get("knockout_exact_f1_all_layers") or {}).get("img->gen")
    return (f" Its F1 {gen:.2f} with image->generated cut is no more than with both cuts "
            f"({both:.2f}): shapes named without the image, a language prior"
            + (f" (exact-object F1 {exact:.2f})" if exact is not None else "") + ", not routing.")


def finished_rows(data: dict) -> dict:
    """The recorded rows (``benchmarks/organism_mechanisms.py``'s JSON) of finished models: a
    name with "@" is a checkpoint measured during training (e.g. ``organism-vit-m8@C300``)."""
    return {m: r for m, r in data["rows"].items() if "@" not in m}


def write(folder, rows: dict, check) -> dict:
    """``11_summary.json`` in ``folder``: the models, which show each mechanism, the best lens
    share beside the paper's, and whether the live row reproduced the recorded one
    (``check``: ``compare_rows``' table)."""
    import json

    best = max(rows, key=lambda m: rows[m]["lens_best_share"])
    summary = {"models": list(rows),
               "query_routing": [m for m, r in rows.items() if r["shows_query_routing"]],
               "lens_object_words": [m for m, r in rows.items() if r["shows_lens_object_words"]],
               "best_lens_model": best, "best_lens_share": rows[best]["lens_best_share"],
               "paper_lens_share": PAPER["lens_best_share"],
               "paper_ko_img_gen": PAPER["knockout_f1_all_layers"]["img->gen"],
               "live_numbers": int(len(check)),
               "live_same_as_recorded": int(check["same"].sum()), "nonsense": None}
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / "11_summary.json").write_text(json.dumps(summary, indent=1))
    return summary
