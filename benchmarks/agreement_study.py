"""The method-agreement study's tables, from finished run stores or from the saved rows.

``python -m vlmscope run agreement`` writes one run store per member and method
group (docs/method-agreement.md). This script merges them into one tidy table
(``--rows``, parquet; kept in ``benchmarks/results`` so the docs' numbers can be
rebuilt without re-running anything), and prints the Markdown tables of the
docs: every member's leaderboard with 95% BCa intervals, the members pooled,
the rankings (geometric vs causal truth) and the sanity check per method.

    .venv/bin/python benchmarks/agreement_study.py \\
        --store runs/agreement/organism-vit-m/agreement --store runs/agreement-igos/organism-vit-m/agreement \\
        --rows benchmarks/results/agreement-study.parquet
    .venv/bin/python benchmarks/agreement_study.py --rows benchmarks/results/agreement-study.parquet

A method's rows do not depend on the other methods of its run, and a question's
reference maps (``causal``, ``random``) are the same in every run, so one copy
of each reference row is kept.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

KEYS = ["model", "scene_seed", "kind", "method", "truth"]


def merge(frames) -> pd.DataFrame:
    """Rows of several run stores as one table: a (model, scene, kind, method, truth) once.

    Two runs that both computed a method's row for the same question (always
    so for the reference maps) must agree on its value; the first is kept.
    """
    df = pd.concat([f for f in frames if len(f)], ignore_index=True)
    if df.empty:
        return df
    df = df.drop(columns=[c for c in ("_key", "item") if c in df])
    dup = df.duplicated(KEYS, keep=False)
    if dup.any():
        spread = df[dup].groupby(KEYS).value.agg(lambda v: np.nanmax(v) - np.nanmin(v)
                                                 if v.notna().any() else 0.0)
        if (spread > 1e-6).any():
            bad = spread[spread > 1e-6].index[0]
            raise ValueError(f"two runs disagree on the row {dict(zip(KEYS, bad))}: "
                             "were they made with the same settings?")
    # one order whatever the order of the stores, so the bootstrap intervals are too
    return (df.drop_duplicates(KEYS, keep="first")
            .sort_values(KEYS, kind="stable", key=lambda c: c.astype(str)).reset_index(drop=True))


def markdown(frame: pd.DataFrame) -> str:
    frame = frame.reset_index()
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join("" if (isinstance(v, float) and np.isnan(v)) else
                                       (f"{v:.2f}" if isinstance(v, float) else str(v))
                                       for v in row) + " |")
    return "\n".join(lines)


def report(df: pd.DataFrame, n_resamples: int = 2000) -> str:
    from vlmscope.findings import agreement as AG

    out = []
    one = df.drop_duplicates(["model", "scene_seed", "kind"])
    out.append(f"questions per member: {one.groupby('model').size().to_dict()}; "
               f"exact-match accuracy: {one.groupby('model').correct.mean().round(3).to_dict()}")
    lb = AG.leaderboard(df, n_resamples=n_resamples)
    for model, g in lb.groupby("model", sort=False):
        out.append(f"\n### `{model}`\n")
        out.append(markdown(AG.table(g.drop(columns="model"))))
        w = g[g.truth.isin(["auroc", "causal_spearman"])].assign(width=lambda x: x.high - x.low)
        out.append("\nmedian interval width: "
                   + str(w.groupby("truth").width.median().round(2).to_dict()))
        out.append("\nranking:\n\n" + markdown(AG.ranking(df[df.model == model]).round(2)
                                              [["geometric", "causal", "shift"]]))
    glance = df[df.truth.isin(["auroc", "causal_spearman"]) & (df.method != "causal")]
    glance = glance.pivot_table(index="method", columns=["model", "truth"], values="value",
                                aggfunc="mean")
    out.append("\n### every member at a glance: AUROC against the mask / Spearman with the "
               "causal map\n")
    out.append(markdown(pd.DataFrame(
        {m: [f"{glance.loc[i, (m, 'auroc')]:.2f} / {glance.loc[i, (m, 'causal_spearman')]:.2f}"
             if np.isfinite(glance.loc[i, (m, "auroc")]) else "" for i in glance.index]
         for m in dict.fromkeys(glance.columns.get_level_values(0))}, index=glance.index)))
    everywhere = df.groupby("method").model.nunique()
    common = everywhere[everywhere == df.model.nunique()].index
    pooled = df[df.method.isin(common)]
    out.append(f"\n### pooled over {df.model.nunique()} members (methods run on all of them)\n")
    out.append(markdown(AG.table(AG.leaderboard(pooled, by=("method", "truth"),
                                                n_resamples=n_resamples))))
    out.append("\nranking:\n\n" + markdown(AG.ranking(pooled).round(2)[["geometric", "causal",
                                                                        "shift"]]))
    sec = df[~df.reference.astype(bool)].drop_duplicates(["model", "scene_seed", "kind", "method"])
    cost = sec.groupby(["method"]).agg(seconds=("seconds", "median"),
                                       peak_mib=("peak_bytes", lambda b: np.nanmedian(b) / 2**20))
    out.append("\ncost per map (median over maps):\n\n" + markdown(cost.round(3)))
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", action="append", default=[],
                    help="a run store (<out>/agreement) to merge; repeatable")
    ap.add_argument("--rows", required=True,
                    help="parquet of the merged rows: written when --store is given, else read")
    ap.add_argument("--n-resamples", type=int, default=2000)
    args = ap.parse_args(argv)
    rows = Path(args.rows)
    if args.store:
        from vlmscope.runs import RunStore

        frames = []
        for s in args.store:
            if not (Path(s) / "parts").is_dir():
                ap.error(f"{s}: not a run store (no parts/ folder)")
            frames.append(RunStore(s).load())
        df = merge(frames)
        rows.parent.mkdir(parents=True, exist_ok=True)
        df.to_parquet(rows, index=False)
    elif rows.exists():
        df = pd.read_parquet(rows)
    else:
        ap.error(f"{rows} does not exist and no --store was given")
    print(report(df, args.n_resamples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
