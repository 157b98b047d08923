"""Per-item cost of each ``run`` command on the organism, and where the time goes (cProfile).

For every finding of the registry (or ``--findings``), ``runner.run`` with
the finding's default Config (what ``python -m vlmscope run FINDING`` does)
over ``--n`` synthetic scenes into a fresh store, one thread, the model
loaded before the clock starts, under ``cProfile``:

- wall seconds of the run and per item (setup, such as the ablation's mean
  vector, included; reported apart where the finding has one);
- the functions with the most self time (``tottime``), and the library's
  own functions with the most cumulative time, so the figure says which
  step (generation, the forward passes of a sweep, iGOS's backward passes,
  the store) an item's time goes to.

    PYTHONPATH=lib .venv/bin/python benchmarks/profile_runs.py --model organism --n 2 --out benchmarks/results/profile-runs.json

cProfile adds overhead to Python-heavy code (tens of percent); the ranking is
what this is for, the seconds are indicative.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import tempfile
import time
from pathlib import Path

import torch


def _name(key) -> str:
    file, line, func = key
    if file == "~":
        return func  # a builtin, e.g. <built-in method torch._C._nn.linear>
    parts = Path(file).parts
    for anchor in ("vlmscope", "transformers", "torch", "pyarrow", "pandas", "PIL"):
        if anchor in parts:
            parts = parts[len(parts) - parts[::-1].index(anchor) - 1:]
            break
    return f"{'/'.join(parts[-3:])}:{func}"


def summarise(prof: cProfile.Profile, top: int) -> dict:
    st = pstats.Stats(prof).stats
    rows = [(_name(k), tt, ct, k[0]) for k, (cc, nc, tt, ct, callers) in st.items()]
    self_time = sorted(rows, key=lambda r: -r[1])[:top]
    wrappers = ("runner.py", "distributed.py")  # the loop itself: everything is under it
    ours = sorted((r for r in rows if "vlmscope" in r[3] and not r[3].endswith(wrappers)),
                  key=lambda r: -r[2])[:top]
    return {"self": [(n, round(tt, 3)) for n, tt, _, _ in self_time],
            "vlmscope_cumulative": [(n, round(ct, 3)) for n, _, ct, _ in ours]}


def profile_finding(name: str, vlm, model: str, n: int, seed: int, top: int) -> dict:
    from vlmscope import findings, runner

    finding = findings.get(name)
    with tempfile.TemporaryDirectory() as tmp:
        setup_s = None
        if hasattr(finding, "setup"):  # timed once on its own: the run reuses its cache
            from vlmscope.runs import RunStore

            t = time.perf_counter()
            finding.setup(vlm, RunStore(Path(tmp) / name), finding.Config(), seed, [])
            setup_s = time.perf_counter() - t
        prof = cProfile.Profile()
        t = time.perf_counter()
        prof.enable()
        res = runner.run(name, vlm, n=n, seed=seed, out=tmp, model_name=model, progress=False)
        prof.disable()
        wall = time.perf_counter() - t
    return {"finding": name, "n": n, "wall_s": wall, "per_item_s": wall / n, "setup_s": setup_s,
            "rows": res.summary.get("rows"), "skipped": res.summary.get("skipped_scenes"),
            **summarise(prof, top)}


def main(argv=None) -> int:
    from vlmscope import findings, load

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="organism")
    ap.add_argument("--findings", nargs="*", default=None, help="default: every finding")
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--top", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    vlm = load(args.model)
    out = {"model": args.model, "threads": args.threads, "cpu_count": os.cpu_count(),
           "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
           "runs": []}
    for name in args.findings or findings.names():
        r = profile_finding(name, vlm, args.model, args.n, args.seed, args.top)
        out["runs"].append(r)
        setup = f", setup {r['setup_s']:.1f} s" if r["setup_s"] is not None else ""
        print(f"\n{name}: {r['per_item_s']:.2f} s per item ({r['n']} items, {r['wall_s']:.1f} s"
              f"{setup})", flush=True)
        print("  self time:  " + "; ".join(f"{n} {s:.2f}" for n, s in r["self"]))
        print("  vlmscope:   " + "; ".join(f"{n} {s:.2f}" for n, s in r["vlmscope_cumulative"]))
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
