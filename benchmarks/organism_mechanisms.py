"""The variant x mechanism table: the suite's own measurements, one row per model.

For each ``--model`` (a zoo member's name or a trained directory) this runs
``vlmscope.organism.mechanisms.measure``: knockout F1 for the three cuts at
all layers and the start-layer curve, the logit-lens object-word share per
layer, attention fractions, the object-ablation table and held-out accuracy.
Rows are merged into ``--out`` (JSON, keyed by model; a re-run replaces that
model's row), the papers' numbers beside them, and the Markdown table is
printed.

    .venv/bin/python benchmarks/organism_mechanisms.py --model organism-vit-m \
        --model organism-vit-s --n 8 --out mechanisms.json

Experiment parts are stored under ``--store`` (default: next to ``--out``) and
reused by a re-run with the same arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True,
                    help="zoo member or trained directory (repeatable)")
    ap.add_argument("--name", action="append", default=None,
                    help="row name per --model (default: the --model text)")
    ap.add_argument("--n", type=int, default=8, help="scenes per measurement")
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--eval-n", type=int, default=50, help="scenes for held-out accuracy (0: skip)")
    ap.add_argument("--ablation-n", type=int, default=None,
                    help="scenes for the object ablation (default --n; 0: skip)")
    ap.add_argument("--out", required=True, help="JSON file of rows (merged)")
    ap.add_argument("--store", default=None, help="folder for stored experiment parts")
    args = ap.parse_args(argv)
    names = args.name or args.model
    if len(names) != len(args.model):
        ap.error("give one --name per --model, or none")

    import vlmscope
    from vlmscope.organism.mechanisms import PAPER, measure, table_markdown

    out = Path(args.out)
    data = json.loads(out.read_text()) if out.exists() else {}
    rows = data.get("rows", {})
    store = Path(args.store) if args.store else out.with_suffix("").with_name(out.stem + "-store")
    for model, name in zip(args.model, names):
        vlm = vlmscope.load(model)
        rows[name] = measure(vlm, name, n=args.n, seed=args.seed, store=store / name,
                             eval_n=args.eval_n, ablation_n=args.ablation_n)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"paper": PAPER, "rows": rows}, indent=1))
        print(json.dumps({k: rows[name][k] for k in ("model", "knockout_f1_all_layers",
                                                     "lens_best_share", "shows_query_routing",
                                                     "shows_lens_object_words")}), flush=True)
    print(table_markdown(list(rows.values())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
