"""Sweep throughput of the Ray executor (``runner.run(..., executor="ray")``) against the local loop.

Measured in one run, on the organism (``--model``), one finding (``--finding``,
default lastpos, about 3 s an item here) over ``--n`` synthetic scenes, one thread per
process (``torch.set_num_threads(1)`` here, ``cpus_per_worker=1`` on the
workers):

- warm throughput: items per second of the analysis alone, the model
  already loaded: the local loop (``runner._analyse`` on each scene in this
  process) against a ``distributed.RayPool`` of 1 and of 2 actors whose
  models are loaded before the clock starts (the rows come back to this
  process, nothing is written). Order local, ray-1, ray-2, local; the local
  figure is the mean of its two passes, so a load change during the run
  shows as a difference between them. Ratios: ray-k / local items per
  second. Target: >= 1.8x at 2 workers.
- end to end: ``runner.run`` into a fresh store, local against
  ``executor="ray"`` with 2 workers, wall seconds including the workers'
  model loading (what a user waits for), and that both stores hold the same
  parts. Ray's own start-up is timed separately (once per process).

    PYTHONPATH=lib .venv/bin/python benchmarks/bench_ray.py --model organism --n 16 --out benchmarks/results/ray.json

Needs the ``ray`` extra. The ratios assume the workers get a core each: on a
machine whose cores are busy with something else they show that instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

TARGET = 1.8  # ray with 2 workers / local loop, items per second, at least


def machine() -> dict:
    import ray
    import transformers

    facts = {"python": platform.python_version(), "torch": torch.__version__,
             "transformers": transformers.__version__, "ray": ray.__version__,
             "platform": platform.platform(), "cpu_count": os.cpu_count()}
    if hasattr(os, "getloadavg"):
        facts["load_average_1m"] = round(os.getloadavg()[0], 2)
    return facts


def scenes(n: int, seed: int):
    from vlmscope.datasets.synthetic import World, _mix

    world = World()
    return [world.scene(_mix(seed, i)) for i in range(n)]


def local_pass(finding, vlm, cfg, items) -> float:
    """Seconds for the analysis of every item in this process."""
    from vlmscope.runner import _analyse

    t = time.perf_counter()
    for it in items:
        _analyse(finding, vlm, it, cfg, {})
    return time.perf_counter() - t


def ray_pass(finding, model: str, cfg, items, workers: int) -> dict:
    """Seconds to start ``workers`` actors (model loaded) and to analyse every item on them."""
    import ray

    from vlmscope.distributed import RayPool
    from vlmscope.runner import _analyse

    t = time.perf_counter()
    pool = RayPool(model, workers=workers, cpus_per_worker=1).start()
    ray.get([a.pid.remote() for a in pool.actors])  # each has loaded the model
    start = time.perf_counter() - t
    rows = []
    todo = [(str(i), i) for i in range(len(items))]
    try:
        t = time.perf_counter()
        with tempfile.TemporaryDirectory() as root:
            pool.map(_analyse, finding, cfg, todo, lambda key, i: (items[i], {}),
                     lambda t, it, df: rows.append(len(df)), Path(root), progress=False)
        seconds = time.perf_counter() - t
    finally:
        pool.close()
    assert len(rows) == len(items)
    return {"workers": workers, "start_s": start, "seconds": seconds,
            "items_per_s": len(items) / seconds}


def end_to_end(name: str, vlm, model: str, n: int, seed: int, workers: int) -> dict:
    from vlmscope import runner

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        local = runner.run(name, vlm, n=n, seed=seed, out=Path(tmp) / "local", model_name=model,
                           progress=False)
        local_s = time.perf_counter() - t
        t = time.perf_counter()
        dist = runner.run(name, model, n=n, seed=seed, out=Path(tmp) / "ray", executor="ray",
                          workers=workers, progress=False)
        ray_s = time.perf_counter() - t
        same = (sorted(p.name for p in (local.store / "parts").glob("*.parquet"))
                == sorted(p.name for p in (dist.store / "parts").glob("*.parquet")))
    return {"local_s": local_s, "ray_s": ray_s, "workers": workers, "ratio": local_s / ray_s,
            "same_parts": same}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="organism")
    ap.add_argument("--finding", default="lastpos")
    ap.add_argument("--n", type=int, default=16, help="scenes per pass")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-end-to-end", action="store_true")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)

    import ray

    from vlmscope import findings, load
    from vlmscope.distributed import start_local

    torch.set_num_threads(1)
    finding = findings.get(args.finding)
    cfg = finding.Config()
    vlm = load(args.model)
    items = scenes(args.n, args.seed)
    local_pass(finding, vlm, cfg, items[:1])  # warm-up
    t = time.perf_counter()
    start_local(attempts=6)  # a busy machine can miss Ray's 30 s start-up wait
    ray_start = time.perf_counter() - t
    res = {"machine": machine(), "model": args.model, "finding": args.finding, "n": args.n,
           "ray_start_s": ray_start}
    first = local_pass(finding, vlm, cfg, items)
    r1 = ray_pass(finding, args.model, cfg, items, 1)
    r2 = ray_pass(finding, args.model, cfg, items, 2)
    second = local_pass(finding, vlm, cfg, items)
    local_ips = args.n / ((first + second) / 2)
    res["local"] = {"seconds": [first, second], "items_per_s": local_ips}
    res["ray"] = [r1, r2]
    for r in res["ray"]:
        r["ratio"] = r["items_per_s"] / local_ips
    res["target_2_workers"] = TARGET
    res["met"] = r2["ratio"] >= TARGET
    if not args.no_end_to_end:
        res["end_to_end"] = end_to_end(args.finding, vlm, args.model, args.n, args.seed, 2)
    ray.shutdown()
    print(f"{args.finding} on {args.model}, {args.n} scenes, 1 thread per process "
          f"(Ray start {ray_start:.1f} s, load average {res['machine'].get('load_average_1m')})")
    print(f"  local loop      {local_ips:6.2f} items/s  (passes {first:.1f} s, {second:.1f} s)")
    for r in res["ray"]:
        print(f"  ray, {r['workers']} worker{'s' if r['workers'] > 1 else ' '}  "
              f"{r['items_per_s']:6.2f} items/s  ratio {r['ratio']:.2f}x  "
              f"(actors ready in {r['start_s']:.1f} s)")
    print(f"  2 workers: target >= {TARGET}x: {'met' if res['met'] else 'not met'}")
    if "end_to_end" in res:
        e = res["end_to_end"]
        print(f"  end to end (runner.run, store written): local {e['local_s']:.1f} s, "
              f"ray x{e['workers']} {e['ray_s']:.1f} s (ratio {e['ratio']:.2f}x, "
              f"same parts: {e['same_parts']})")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
