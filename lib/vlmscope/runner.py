"""The one resumable loop: a finding over items, one stored part per item.

``run(finding, vlm, n=..., seed=..., out=..., images=...)`` analyses ``n``
items with a finding of ``vlmscope.findings``: the synthetic world's scenes
(``World().scene(_mix(seed, i))``) by default, or the images of a folder
with ``annotations.json`` or of a local COCO copy (``images=``, through
``datasets.folder.load_images``). Each item's rows go to their own
checksummed parquet part in ``RunStore(out/<finding>)``, keyed by the
finding, the model, the finding's configuration and the item's id (a
scene's seed, an image's file name; the rows carry it as ``scene_seed`` or
``image_file``), so a re-run with the same arguments
reuses finished parts and an interrupted run loses at most the item it was
on. The store's lock is held throughout. An item that cannot be analysed
(an empty object mask, an unreadable image, a prompt over the model's
context) is stored as a skip with its reason. A part found damaged when the
run reads it back is recomputed once. The summary (``summarise`` of the
finding, with the run's counts) is written to ``out/<finding>.summary.json``.

``executor="ray"`` runs the same items on Ray actors that each load the
model once (``distributed.RayPool``); the rows come back here and are
written into the same store, so a Ray run and a local run leave the same
parts and summary.

>>> res = run("lens", vlm, n=8, seed=0, out="runs")       # doctest: +SKIP
>>> res.summary["best_layer"], len(res.df), res.skipped   # doctest: +SKIP
>>> summary, df = run("lens", vlm, n=8)                   # doctest: +SKIP

``run_benchmark`` is the same loop over a local benchmark copy (heatmaps);
``zoo_runs`` runs the heatmaps finding over several models and noise seeds
(notebook 06). Both live here, not in ``findings.heatmaps``, because
``runner`` imports the findings and a finding never imports ``runner``.
"""

from __future__ import annotations

import inspect
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import findings as _findings
from .findings._common import item_id, is_scene
from .runs import RunStore

__all__ = ["RunResult", "run", "run_benchmark", "run_benchmark_heatmaps"]


@dataclass
class RunResult:
    """What ``run`` returns: ``summary`` (also written to ``<out>/<name>.summary.json``), ``df``
    (this run's rows, and only this run's), ``skipped`` (item, reason) and ``store`` (the
    store's folder). Unpacks as ``summary, df`` like the batch runs' old return value."""

    summary: dict
    df: pd.DataFrame
    skipped: pd.DataFrame
    store: Path

    def __iter__(self):
        return iter((self.summary, self.df))


def _skippable():
    """Errors that skip one item (recorded with the reason) rather than stop a sweep."""
    from .models import ImageError, PromptTooLongError
    from .tokens import EmptyMaskError

    return (EmptyMaskError, ImageError, PromptTooLongError)


def _part_files(df: pd.DataFrame, folder: Path) -> list[Path]:
    """Files a part's rows name (heatmap masks), so the part's digest covers them."""
    if "mask_file" not in df:
        return []
    return [folder / f for f in df.mask_file if isinstance(f, str) and f]


def _skipped_table(skips: pd.DataFrame) -> pd.DataFrame:
    """(item, reason) of the skipped parts."""
    if "_skipped" not in skips:
        return pd.DataFrame({"item": pd.Series(dtype="int64"), "reason": pd.Series(dtype=str)})
    return pd.DataFrame({"item": skips["item"].tolist(), "reason": skips["_skipped"].tolist()})


def _sweep(store: RunStore, todo: list, compute, desc: str, progress: bool, compute_many=None):
    """Compute every ``(key, *args)`` of ``todo`` whose part is not in ``store``; read all back.

    ``compute(key, *args)`` writes one part; ``compute_many(todos)``, when
    given, writes the parts of a list of them instead (the Ray executor) and
    returns how many. A part that cannot be read back (damaged between the
    check and the load) is recomputed once. Returns ``(computed, rows of
    exactly these keys)``.
    """
    from tqdm.auto import tqdm

    store.clean_temporaries()
    keys = [t[0] for t in todo]
    computed = 0
    if compute_many is not None:
        computed += compute_many([t for t in todo if not store.has(t[0])])
    else:
        for t in tqdm(todo, desc=desc, disable=not progress):
            if not store.has(t[0]):
                compute(*t)
                computed += 1
    df = store.load(keys)
    missing = [t for t in todo if t[0] not in store.loaded]
    if compute_many is not None and missing:  # damaged between the check and the load: once
        computed += compute_many(missing)
    elif missing:
        for t in missing:
            compute(*t)
            computed += 1
    if missing:
        df = store.load(keys)
    if any(k not in store.loaded for k in keys):
        raise RuntimeError(f"{len(keys) - len(store.loaded)} of {len(keys)} parts of {store.root} "
                           "could not be read back after being written; see the warnings above")
    if not df.empty and "_key" in df:
        df = df[df._key.isin(keys)]
    return computed, df


def _config(finding, config):
    if config is None:
        return finding.Config()
    if not isinstance(config, finding.Config):
        raise TypeError(f"config for the {finding.NAME} finding must be a "
                        f"findings.{finding.NAME}.Config, not {type(config).__name__}")
    return config


def _analyse(finding, vlm, it, cfg, kw: dict) -> pd.DataFrame:
    """One item's rows (``finding.run`` with the keywords it takes), or a skip with its reason.
    The same function runs in the local loop and on a Ray worker."""
    takes = inspect.signature(finding.run).parameters
    try:
        return finding.run(vlm, it, cfg, **{k: v for k, v in kw.items() if k in takes})
    except _skippable() as e:
        return pd.DataFrame({"_skipped": [f"{type(e).__name__}: {e}"]})


def run(finding, vlm, *, n: int = 8, seed: int = 0, out=None, config=None, images=None,
        model_name: str | None = None, progress: bool = True, executor: str = "local",
        address: str | None = None, gpus_per_worker: float = 0, workers: int | None = None,
        cpus_per_worker: int = 1, load_kwargs: dict | None = None) -> RunResult:
    """Run ``finding`` (a name of ``findings.names()`` or its module) on ``n`` items.

    ``images``: None for the synthetic scenes from ``seed``, or an image
    folder / local COCO copy (``datasets.folder.load_images``). ``out``: the
    folder holding the store ``<out>/<name>`` and the summary (None: a fresh
    temporary folder). ``config``: the finding's ``Config`` (None: its
    defaults). ``model_name``: the model's name in the keys (default
    ``vlm.name``). A second run on the same store stops with ``StoreBusyError``.
    ``vlm`` may be a model's name or folder: loaded here (``models.load`` with
    ``load_kwargs``), or by each Ray worker.

    ``executor="ray"`` spreads the items over Ray actors (``distributed.RayPool``;
    the ``ray`` extra): ``vlm`` is then the model's name or path (or a loaded
    ``VLM``, whose ``name`` the workers load), each of ``workers`` actors loads it
    once with ``load_kwargs`` (e.g. ``{"device_map": "auto"}``) on
    ``gpus_per_worker`` GPUs and ``cpus_per_worker`` threads; ``address``: a
    Ray cluster (``"auto"``, ``"HOST:6379"``; None starts one on this machine,
    loopback only). The driver writes every part into the same store: the
    parts, summary and resume are those of a local run.
    """
    from .validate import check_run_arguments

    if executor not in ("local", "ray"):
        raise ValueError(f"executor must be 'local' or 'ray', not {executor!r}")
    if executor == "local" and (address is not None or gpus_per_worker or workers is not None):
        raise ValueError("address, gpus_per_worker and workers place Ray workers: they need "
                         "executor='ray'")
    finding = _findings.get(finding)
    name = finding.NAME
    cfg = _config(finding, config)
    out = Path(tempfile.mkdtemp(prefix="vlmscope-run-")) if out is None else Path(out)
    by_name = isinstance(vlm, (str, Path))  # a model's name or folder, loaded here or by workers
    if model_name is None:
        model_name = str(vlm) if by_name else getattr(vlm, "name", type(vlm).__name__)
    check_run_arguments(n=n, seed=seed, out=out, experiment=name)
    pool = None
    if executor == "local" and by_name:
        from .models import load

        vlm = load(vlm, **(load_kwargs or {}))
    elif executor == "ray":
        from .distributed import LazyModel, RayPool

        pool = RayPool(vlm if by_name else getattr(vlm, "name", vlm),
                       address=address, gpus_per_worker=gpus_per_worker, workers=workers,
                       cpus_per_worker=cpus_per_worker, load_kwargs=load_kwargs)
        if by_name:  # the driver loads it only if setup needs it
            vlm = LazyModel(str(vlm), dict(load_kwargs or {}))
    if images:
        from .datasets.folder import load_images

        records = load_images(images, n, seed)
        ids = [item_id(r) for r in records]

        def item(i):
            return records[i]
    else:
        from .datasets.synthetic import World, _mix

        records, world = [], World()
        ids = [_mix(seed, i) for i in range(n)]

        def item(i):
            return world.scene(ids[i])
    store = RunStore(out / name)
    with store.lock():
        extra = finding.setup(vlm, store, cfg, seed, records) if hasattr(finding, "setup") else {}
        key_parts = finding.key(cfg, **extra)
        todo = [(store.key(name, model_name, *key_parts, ids[i]), i) for i in range(len(ids))]

        def prepare(key, i):
            return item(i), {**extra, **(finding.part_extra(key, extra)
                                         if hasattr(finding, "part_extra") else {})}

        def write(key, i, it, df):
            meta = {"scene_seed": ids[i]} if is_scene(it) else {"image_file": str(ids[i])}
            store.put(key, df, files=_part_files(df, store.root / "masks"), model=model_name,
                      **meta, item=i)

        def compute(key, i):
            it, kw = prepare(key, i)
            write(key, i, it, _analyse(finding, vlm, it, cfg, kw))

        def compute_many(todos):  # on the Ray actors; this process writes each part
            return pool.map(_analyse, finding, cfg, todos, prepare,
                            lambda t, it, df: write(*t, it, df), store.root, name, progress)

        try:
            computed, df = _sweep(store, todo, compute, name, progress,
                                  compute_many if pool is not None else None)
        finally:
            if pool is not None:
                pool.close()
    count = len(ids)
    skips = df[df["_skipped"].notna()] if "_skipped" in df else df.iloc[:0]
    if "_skipped" in df:
        df = df[df["_skipped"].isna()].drop(columns="_skipped")
    summary = {"experiment": name, "model": model_name, "n": count, "seed": seed,
               **({"images": str(images)} if images else {}),
               "computed": computed, "reused": count - computed, "rows": int(len(df)),
               "scenes": len(store.loaded) - int(len(skips)),
               "skipped_scenes": int(len(skips)),
               "store": str(store.root), **finding.summarise(df)}
    if len(skips):
        summary["skip_reasons"] = sorted(set(skips["_skipped"]))
    if hasattr(finding, "notes"):
        summary.update(finding.notes(df))
    (out / f"{name}.summary.json").write_text(json.dumps(summary))
    skipped = _skipped_table(skips)
    return RunResult(summary, df.reset_index(drop=True), skipped, store.root)


def run_benchmark(vlm, model_name: str, benchmark: str, path, out, n: int | None = None,
                  heatmap=None, style: str = "choice", split: str | None = None,
                  max_new_tokens: int = 16, progress: bool = True) -> RunResult:
    """Heatmaps over a local benchmark copy (CV-Bench, MMVP, MMStar), one stored part per item.

    Correctness: ``datasets.benchmarks.correct`` (the option's letter or text).
    Plausibility needs a reference region: CV-Bench's boxes (their enclosing
    box) where given; items without one get no plausibility figures. An item
    whose image cannot be decoded is recorded as skipped with the reason, and
    the sweep goes on. Resumable like ``run``; the store is
    ``<out>/heatmaps-<benchmark>``.
    """
    from .datasets.benchmarks import load_benchmark
    from .findings import heatmaps as finding
    from .heatmaps import HeatmapConfig

    hcfg = heatmap or HeatmapConfig()
    items = load_benchmark(benchmark, path, limit=n, split=split)
    name = f"heatmaps-{items[0].benchmark if items else benchmark}"
    store = RunStore(Path(out) / name)
    with store.lock():
        todo = [(store.key(name, model_name, it.id, style, max_new_tokens, hcfg.result_fields()), i, it)
                for i, it in enumerate(items)]

        def compute(key, i, it):
            try:
                row = finding.benchmark_row(vlm, it, i, hcfg, style, max_new_tokens,
                                            store.root / "masks" / f"{key}.safetensors")
                part = pd.DataFrame([row])
            except _skippable() as e:
                part = pd.DataFrame({"_skipped": [f"{type(e).__name__}: {e}"]})
            store.put(key, part, files=_part_files(part, store.root / "masks"), model=model_name,
                      item=i)

        computed, df = _sweep(store, todo, compute, name, progress)
    skips = df[df["_skipped"].notna()] if "_skipped" in df else df.iloc[:0]
    if "_skipped" in df:
        df = df[df["_skipped"].isna()].drop(columns="_skipped")
    df = df.reset_index(drop=True)
    summary = {"experiment": name, "model": model_name, "benchmark": benchmark, "n": len(items),
               "computed": computed, "reused": len(items) - computed, "store": str(store.root),
               **finding.summarise(df)}
    if len(skips):
        summary["skip_reasons"] = sorted(set(skips["_skipped"]))
    skipped = _skipped_table(skips)
    return RunResult(summary, df, skipped, store.root)


def run_benchmark_heatmaps(*args, **kwargs) -> RunResult:
    """``run_benchmark`` under the name the batch runs used."""
    return run_benchmark(*args, **kwargs)


def zoo_runs(models, n: int, seed: int, heatmap, noise_seeds: int, out,
             max_new_tokens: int = 16, images=None, load=None, others: bool = False) -> pd.DataFrame:
    """Notebook 06's sweep: ``run`` of the heatmaps finding for each model and each noise
    seed 0..``noise_seeds``-1 (``heatmap``: a ``HeatmapConfig``, its ``seed`` replaced);
    one row per (model, question): the answer, its correctness, iGOS+ mass and pointing
    averaged over the seeds, and ``mask_files`` (one per seed). Prints one line per run.

    ``images`` (an image folder or a local COCO copy, ``datasets.folder.load_images``): its
    first ``n`` images instead of the synthetic scenes, each asked "where is the <name> ?" and
    "is there a <name> ?" about one annotated object (``findings.heatmaps.record_questions``;
    the synthetic scenes' "color" needs the world's colours).
    ``load``: how a model name becomes a ``VLM`` (default ``vlmscope.load``).
    ``others``: also the deletion/insertion scores and the attention, gradient and random maps
    (the finding's ``Config.others``; off by default: the analysis reads the iGOS masks only).
    """
    from dataclasses import replace

    from .findings import heatmaps as finding
    from .models import load as load_model

    load = load or load_model
    kinds = finding.RECORD_KINDS if images else finding.Config().kinds
    frames = []
    for name in models:
        vlm = load(name)
        for noise_seed in range(noise_seeds):
            s, part = run(finding.NAME, vlm, n=n, seed=seed, out=out, images=images,
                          config=finding.Config(max_new_tokens=max_new_tokens, kinds=kinds,
                                                heatmap=replace(heatmap, seed=noise_seed),
                                                others=others),
                          model_name=name, progress=False)
            print(json.dumps({"noise_seed": noise_seed, **{k: s[k] for k in (
                "model", "computed", "reused", "questions", "skipped", "accuracy")}}))
            frames.append(part.assign(noise_seed=noise_seed))
    runs = pd.concat(frames, ignore_index=True)
    for col in ("igos_mass", "igos_pointing", "mask_file"):  # absent when every answer was skipped
        if col not in runs:
            runs[col] = np.nan
    runs["question_id"] = runs["item"].astype(str) + "/" + runs["kind"]
    answer = ["model", "question_id"]
    df = runs[runs.noise_seed == 0].drop(columns=["igos_mass", "igos_pointing"]).merge(
        runs.groupby(answer)[["igos_mass", "igos_pointing"]].mean().reset_index(), on=answer)
    df["mask_files"] = df[answer].apply(tuple, axis=1).map(runs.groupby(answer)["mask_file"]
                                                           .agg(list))
    return df
