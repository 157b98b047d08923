"""How far each of vlmscope's heatmap choices moves the mask from the released code's, on the organism.

For a fixed set of organism questions (``igos_reference.organism_questions``:
the first ``--per-kind`` questions of each of color / shape / where that the
model answers right, scenes from ``--seed``), every measure the rows of
docs/fidelity.md ("Heatmaps") quote:

1. agreement with the independent reference (``igos_reference.igos``),
   noise off: Spearman rho of the 32x32 masks for the preset "reference"
   (target: >= 0.99 on every question) and for the preset "vlmscope";
2. each switch alone, from the preset "reference" (noise on, seed 0): rho of
   the mask with the reference preset's, mass on the target object, pointing
   game, deletion and insertion (the released metric, index tie order);
3. the Armijo line search against Nesterov, for ``--seeds`` noise seeds: mass,
   pointing, deletion, insertion, and the seed-to-seed rho of each update;
4. the tie order of the deletion/insertion metric: the spread of the scores
   of the reference preset's masks over ``--tie-orders`` random tie orders,
   and the share of cells tied at the mask's most common value.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/heatmap_fidelity.py --threads 2 --out fidelity.json

Not a test: tests/test_heatmaps.py checks the agreement (1) on its own.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import igos_reference as R  # noqa: E402

SWITCHES = {  # name -> fields changed from the preset "reference" (the line search: part 3;
    # batch: no effect on the mask, tested; drop_first: the positions are fixed here)
    "bilateral TV: ours": dict(btv="ours"),
    "blur: float": dict(blur_uint8=False),
    "noise: per-image seeds": dict(noise_seeds="per-image"),
    "attention: SDPA": dict(attn_implementation="sdpa"),
    "all of vlmscope's": "vlmscope",
}


def _selection(H, vlm, q, cfg):
    return H.select_tokens(vlm, q["prepared"], torch.tensor(q["answer_ids"]), config=cfg,
                           positions=q["positions"])


def _summary(values) -> dict:
    v = [x for x in values if x == x]
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)} if v else {}


def run(per_kind: int = 3, seed: int = 0, seeds=(0, 1, 2), tie_orders: int = 8,
        threads: int | None = None, parts=("agreement", "switches", "line_search", "ties"),
        partial=None) -> dict:
    """Every measure of ``parts``; ``partial(dict)`` is called with the rows so far after each
    question (a long run on a busy machine leaves what it finished)."""
    import vlmscope
    from vlmscope import heatmaps as H

    if threads:
        torch.set_num_threads(threads)
    vlm = vlmscope.load("organism", device="cpu")
    qs = R.organism_questions(vlm, per_kind, seed=seed)
    ref_cfg = H.HeatmapConfig.preset("reference")
    out = {"questions": [{k: q[k] for k in ("kind", "question", "answer", "positions")} for q in qs],
           "threads": torch.get_num_threads()}
    t0 = time.perf_counter()
    if "agreement" in parts:
        rows = []
        for q in qs:
            sel = _selection(H, vlm, q, ref_cfg)
            ref = R.igos(vlm, q["prepared"], q["answer_ids"], q["positions"], noise=0.0)
            row = {"question": q["question"]}
            for preset in ("reference", "vlmscope"):
                cfg = H.HeatmapConfig.preset(preset, noise=0.0)
                m = H.igos(vlm, q["prepared"], None, cfg, selection=sel).mask
                row[preset] = H.rank_agreement(m, ref)
            rows.append(row)
        out["agreement_noise0"] = {"rows": rows,
                                   **{p: _summary([r[p] for r in rows]) for p in ("reference", "vlmscope")}}
    if "switches" in parts:
        per = {name: [] for name in ["reference"] + list(SWITCHES)}
        for q in qs:
            sel = _selection(H, vlm, q, ref_cfg)
            configs = {"reference": ref_cfg}
            for name, change in SWITCHES.items():
                configs[name] = (H.HeatmapConfig.preset(change) if isinstance(change, str)
                                 else H.HeatmapConfig.preset("reference", **change))
            df = H.compare_configs(vlm, q["prepared"], sel, configs, target=q["target"])
            for name in per:
                per[name].append({"question": q["question"], **df.loc[name].to_dict()})
            if partial:
                partial({"switches_rows": per})
        out["switches"] = {name: {"rows": rows, **{m: _summary([r[m] for r in rows]) for m in
                                                   ("rho", "mass", "deletion", "insertion")},
                                  "pointing": float(np.mean([r["pointing"] for r in rows]))}
                           for name, rows in per.items()}
    if "line_search" in parts:
        steps = ("nesterov", "armijo")
        rows = {st: [] for st in steps}
        masks = {st: [] for st in steps}
        for q in qs:  # question by question, both updates, so a partial run compares like with like
            sel = _selection(H, vlm, q, ref_cfg)
            for step in steps:
                per_seed = []
                for s in seeds:
                    cfg = H.HeatmapConfig.preset("reference", step=step, seed=s)
                    hm = H.igos(vlm, q["prepared"], None, cfg, selection=sel)
                    f = H.faithfulness(vlm, q["prepared"], sel, hm.mask, config=ref_cfg)
                    p = H.plausibility(hm.importance(), q["target"])
                    rows[step].append({"question": q["question"], "seed": s, "mass": p["mass"],
                                       "pointing": p["pointing"], "deletion": f.deletion,
                                       "insertion": f.insertion,
                                       "trials": sum(t.get("trials", 1) for t in hm.trace)})
                    per_seed.append(hm.mask)
                masks[step].append(per_seed)
            if partial:
                partial({"line_search_rows": rows})
        res = {}
        for step in steps:
            rho = [H.rank_agreement(a[i], a[j]) for a in masks[step] for i in range(len(a))
                   for j in range(i + 1, len(a))]
            res[step] = {"rows": rows[step], "seed_to_seed_rho": _summary(rho),
                         **{m: _summary([r[m] for r in rows[step]])
                            for m in ("mass", "deletion", "insertion")},
                         "pointing": float(np.mean([r["pointing"] for r in rows[step]]))}
        res["armijo_vs_nesterov_rho_same_seed"] = _summary(
            [H.rank_agreement(a, b) for qa, qb in zip(masks["nesterov"], masks["armijo"])
             for a, b in zip(qa, qb)])
        out["line_search"] = res
    if "ties" in parts:
        rows = []
        for q in qs:
            sel = _selection(H, vlm, q, ref_cfg)
            m = H.igos(vlm, q["prepared"], None, ref_cfg, selection=sel).mask
            _, counts = np.unique(m, return_counts=True)
            scores = {}
            for definition in ("released", "ours"):
                d, i = [], []
                for t in [None] + list(range(tie_orders)):
                    f = H.faithfulness(vlm, q["prepared"], sel, m, config=ref_cfg,
                                       definition=definition, tie_seed=t)
                    d.append(f.deletion)
                    i.append(f.insertion)
                scores[definition] = {"deletion": d, "insertion": i,
                                      "deletion_range": max(d) - min(d),
                                      "insertion_range": max(i) - min(i)}
            rows.append({"question": q["question"], "tied_share": float(counts.max() / m.size),
                         **scores})
            if partial:
                partial({"ties_rows": rows})
        out["ties"] = {"rows": rows, "tie_orders": tie_orders,
                       **{f"{d}_{k}_range": _summary([r[d][f"{k}_range"] for r in rows])
                          for d in ("released", "ours") for k in ("deletion", "insertion")},
                       "tied_share": _summary([r["tied_share"] for r in rows])}
    out["seconds"] = time.perf_counter() - t0
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-kind", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0, help="synthetic-world seed of the questions")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="noise seeds (line search)")
    ap.add_argument("--tie-orders", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--parts", nargs="+", default=["agreement", "switches", "line_search", "ties"])
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    def partial(d):
        if args.out:
            Path(args.out + ".partial").write_text(json.dumps(d, indent=1, default=float))

    res = run(args.per_kind, args.seed, tuple(args.seeds), args.tie_orders, args.threads,
              tuple(args.parts), partial)
    brief = {k: ({kk: vv for kk, vv in v.items() if kk != "rows"} if isinstance(v, dict) else v)
             for k, v in res.items() if k != "questions"}
    for k in ("switches", "line_search"):
        if k in brief:
            brief[k] = {n: ({kk: vv for kk, vv in v.items() if kk != "rows"} if "rows" in v else v)
                        for n, v in res[k].items()}
    print(json.dumps(brief, indent=1, default=float))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1, default=float))
    return res


if __name__ == "__main__":
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
