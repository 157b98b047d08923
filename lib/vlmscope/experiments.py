"""Batch runs behind ``python -m vlmscope run ...``: one stored part per scene, resumable.

Each experiment maps one scene to a tidy DataFrame; ``run_experiment`` skips
scenes whose part is already in the store, so a re-run with the same
arguments reuses finished rows and an interrupted run loses at most the scene
it was on.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .datasets.synthetic import DESCRIBE, World, _mix, question
from .runs import RunStore


@dataclass(frozen=True)
class RunConfig:
    question: str = DESCRIBE
    max_new_tokens: int = 48
    kinds: tuple = ("color", "where")  # heatmaps: question kinds with a target object


def _fractions(vlm, scene, cfg: RunConfig) -> pd.DataFrame:
    from .maps import record_generation

    rec = record_generation(vlm, scene.image, cfg.question, cfg.max_new_tokens, maps="none")
    return rec.fractions()


def _maps(vlm, scene, cfg: RunConfig) -> pd.DataFrame:
    from .maps import localisation, organism_object_words, record_generation

    rec = record_generation(vlm, scene.image, cfg.question, cfg.max_new_tokens)
    words = [(step, obj.mask) for step, obj in organism_object_words(rec.generation.tokens, scene)]
    return localisation(rec, words)


def _knockout(vlm, scene, cfg: RunConfig) -> pd.DataFrame:
    """Kaduri et al.'s rule (object identities) in ``f1``, exact tuples beside in ``f1_exact``."""
    from .datasets.synthetic import is_synthetic
    from .judge import ExactJudge, paper_judge
    from .knockout import SweepConfig, knockout_sweep

    judge = paper_judge(synthetic=is_synthetic(scene))  # decided by the data, never the model's name
    return knockout_sweep(vlm, scene.image, SweepConfig(question=cfg.question,
                                                        max_new_tokens=cfg.max_new_tokens),
                          judge=judge, also={"exact": ExactJudge()})


def _compression(vlm, scene, cfg: RunConfig) -> pd.DataFrame:
    from .compression import CompressionConfig, compress_scene

    return compress_scene(vlm, scene, CompressionConfig(describe=cfg.question,
                                                        describe_tokens=cfg.max_new_tokens))


def heatmap_row(vlm, image, question: str, target, is_correct, hcfg, max_new_tokens: int = 48,
                mask_path: Path | None = None, seed=0) -> dict:
    """Answer one question, explain it with iGOS, and score the maps on ``target``.

    ``target``: boolean ``[H, W]`` mask of the reference region (None: no
    plausibility figures); ``is_correct(answer_text) -> bool``. Maps: iGOS,
    attention and input-gradient saliency, and a seeded uniform random map (the
    chance level). The raw mask goes to ``mask_path``; a skipped sample keeps
    its reason in ``skipped``.
    """
    import time

    from . import heatmaps as H

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
        from .integrity import write_atomic

        mask_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(mask_path, hm.save)
        row["mask_file"] = mask_path.name
    sel = hm.selection
    f = H.faithfulness(vlm, prepared, sel, hm.mask, config=hcfg)
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


def _heatmaps(vlm, scene, cfg: RunConfig, heatmap=None, mask_dir: Path | None = None,
              tag: str = "") -> pd.DataFrame:
    """Per question with a target object: ``heatmap_row`` on the object's exact mask."""
    from .datasets.synthetic import World
    from .heatmaps import HeatmapConfig

    hcfg = heatmap or HeatmapConfig()
    rows = []
    for q in World().questions(scene, seed=scene.seed, kinds=cfg.kinds):
        if q.target is None:
            continue
        row = heatmap_row(vlm, scene.image, q.text, q.target.mask,
                          lambda text, q=q: text.strip() == q.answer, hcfg, cfg.max_new_tokens,
                          mask_dir / f"{tag}-{q.kind}.safetensors" if mask_dir else None,
                          seed=[scene.seed, len(rows)])
        rows.append({"kind": q.kind, "truth": q.answer, "target": q.target.name, **row})
    return pd.DataFrame(rows)


def run_benchmark_heatmaps(vlm, model_name: str, benchmark: str, path: str | Path, out: str | Path,
                           n: int | None = None, heatmap=None, style: str = "choice",
                           split: str | None = None, max_new_tokens: int = 16,
                           progress: bool = True) -> tuple[dict, pd.DataFrame]:
    """Heatmaps over a local benchmark copy (CV-Bench, MMVP, MMStar), one stored part per item.

    Correctness: ``datasets.benchmarks.correct`` (the option's letter or text).
    Plausibility needs a reference region: CV-Bench's boxes (their enclosing
    box) where given; items without one get no plausibility figures. An item
    whose image cannot be decoded is recorded as skipped with the reason, and
    the sweep goes on. Resumable like ``run_experiment``.
    """
    from .datasets.benchmarks import load_benchmark
    from .heatmaps import HeatmapConfig

    hcfg = heatmap or HeatmapConfig()
    items = load_benchmark(benchmark, path, limit=n, split=split)
    name = f"heatmaps-{items[0].benchmark if items else benchmark}"
    store = RunStore(Path(out) / name)
    with store.lock():
        summary, df = _benchmark_sweep(store, vlm, model_name, benchmark, items, name, hcfg, style,
                                       max_new_tokens, progress)
    return summary, df


def _benchmark_sweep(store, vlm, model_name, benchmark, items, name, hcfg, style, max_new_tokens,
                     progress):
    from tqdm.auto import tqdm

    from .datasets.benchmarks import correct
    from .models import ImageError

    store.clean_temporaries()
    keys, computed = [], 0
    for i, item in enumerate(tqdm(items, desc=name, disable=not progress)):
        key = store.key(name, model_name, item.id, style, max_new_tokens, hcfg.result_fields())
        keys.append(key)
        if store.has(key):
            continue
        base = {"id": item.id, "category": item.category or "", "truth": item.answer_letter}
        try:
            image = item.image()
        except ImageError as e:
            row = {**base, "question": item.question, "skipped": f"image: {e}"}
        else:
            target = None
            if item.region is not None:
                x0, y0, x1, y1 = (int(round(v)) for v in item.region)
                target = np.zeros((image.height, image.width), bool)
                target[max(y0, 0):y1, max(x0, 0):x1] = True
            row = {**base, **heatmap_row(vlm, image, item.prompt(style), target,
                                         lambda text, item=item: correct(item, text), hcfg,
                                         max_new_tokens, store.root / "masks" / f"{key}.safetensors",
                                         seed=i)}
        part = pd.DataFrame([row])
        store.put(key, part, files=_part_files(part, store.root / "masks"), model=model_name, item=i)
        computed += 1
    df = store.load(keys)
    if not df.empty:
        df = df[df._key.isin(keys)].reset_index(drop=True)
    summary = {"experiment": name, "model": model_name, "benchmark": benchmark, "n": len(items),
               "computed": computed, "reused": len(items) - computed, "store": str(store.root),
               **summarise("heatmaps", df)}
    return summary, df


def _ablation(vlm, scene, cfg: RunConfig, mean=None) -> pd.DataFrame:
    """Every (object, rings, rule, task) of the scene, correct before and after ablation."""
    from .ablation import ablate_scene

    return ablate_scene(vlm, scene, mean, max_new_tokens=cfg.max_new_tokens, seed=scene.seed)


def _lens(vlm, scene, cfg: RunConfig) -> pd.DataFrame:
    """Per object and layer: share of its patches whose lens top-1 is its colour or shape word."""
    from .lens import image_lens

    p = vlm.prepare(scene.image, cfg.question)
    res = image_lens(vlm, p, k=1)
    rows = []
    for o in scene.objects:
        for r in (0, 1):
            toks = p.geometry.tokens_for_mask(o.mask, rings=r)
            for layer, (both, col, shp) in enumerate(zip(res.share(toks, [o.color, o.shape]),
                                                         res.share(toks, [o.color]),
                                                         res.share(toks, [o.shape]))):
                rows.append({"object": o.name, "rings": r, "layer": layer, "n_tokens": len(toks),
                             "share": both, "share_color": col, "share_shape": shp})
    return pd.DataFrame(rows)


def _lastpos(vlm, scene, cfg: RunConfig) -> pd.DataFrame:
    """Each object's one-token colour question under last-position knockout (paper + sliding windows).

    Conditions: the released ones (``lastpos.CONDITIONS``) and ours beside (``lastpos.OURS``).
    """
    from .lastpos import CONDITIONS, OURS, lastpos_knockout, paper_windows, sliding_windows
    from .words import answer_ids

    L = vlm.adapter.n_layers
    windows = {**paper_windows(L), **sliding_windows(L)}
    frames = []
    for o in scene.objects:
        q = question("color", o)
        p = vlm.prepare(scene.image, q)
        answer = answer_ids(vlm.tokenizer, vlm.chat_text(q), o.color)[0]  # predicted at the last position
        frames.append(lastpos_knockout(vlm, p, answer, o.mask, windows, CONDITIONS + OURS)
                      .assign(object=o.name, question=f"{scene.seed}:{q}"))
    return pd.concat(frames, ignore_index=True)


EXPERIMENTS = {"fractions": _fractions, "maps": _maps, "knockout": _knockout,
               "compression": _compression, "heatmaps": _heatmaps, "ablation": _ablation,
               "lens": _lens, "lastpos": _lastpos}


def summarise(name: str, df: pd.DataFrame) -> dict:
    """A few headline numbers of a finished run."""
    if df.empty:
        return {}
    if name == "fractions":
        by = df.groupby("layer")[["image", "query", "query_no_bos", "generated"]].mean()
        return {"image_mean": round(float(by.image.mean()), 4),
                "query_mean": round(float(by["query"].mean()), 4),
                "peak_image_layer": int(by.image.idxmax())}
    if name == "maps":
        by = df.groupby("layer")[["pointing", "ratio"]].mean()
        return {"best_pointing_layer": int(by.pointing.idxmax()),
                "best_pointing": round(float(by.pointing.max()), 4), "words": int(df.step.nunique())}
    if name == "knockout":
        # the paper's l: cut in layers with index > l; l = -1 is every layer
        full = df[df.start == 0].groupby("config")
        out = {f"f1[{k},l=-1]": round(float(v), 4) for k, v in full.f1.mean().items()}
        if "f1_exact" in df:
            out |= {f"f1_exact[{k},l=-1]": round(float(v), 4)
                    for k, v in full.f1_exact.mean().items()}
        return out
    if name == "heatmaps":
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
    if name == "ablation":
        from .ablation import loss_table

        # Table 1's protocol: objects that pass the noise filter, one table per task
        # (generative / polling / VQA); the pooled figure is an extra
        d = df[df.rings == 1]
        out = {}
        if "noise_filter_keep" in d:
            objs = d.drop_duplicates(["_key", "object"]) if "_key" in d else d.drop_duplicates("object")
            out["noise_filter_kept"] = f"{int(objs.noise_filter_keep.sum())} of {len(objs)}"
            d = d[d.noise_filter_keep.astype(bool)]
        for r in loss_table(d, by=("rule", "task")).itertuples():
            out[f"lost[{r.rule},+1,{r.task}]"] = round(float(r.lost), 4)
            out[f"n[{r.rule},+1,{r.task}]"] = int(r.n_correct_before)
        for r in loss_table(d, by=("rule",)).itertuples():
            out[f"lost[{r.rule},+1,pooled]"] = round(float(r.lost), 4)
        return out
    if name == "lens":
        by = df[df.rings == 0].groupby("layer").share.mean()
        return {"best_layer": int(by.idxmax()), "best_share": round(float(by.max()), 4)}
    if name == "lastpos":
        from .lastpos import summary_table

        t = summary_table(df).set_index(["condition", "window"])
        out = {f"relative_accuracy[{c},{w}]": round(float(v), 4)
               for (c, w), v in t.relative_accuracy.items() if w == "all"}
        if ("object", "all") in t.index:  # released: the top token's drop; ours: the answer's
            row = t.loc[("object", "all")]
            out["p_drop[object,all]"] = round(float(row.p_drop), 4)
            if "p_drop_answer" in t:
                out["p_drop_answer[object,all]"] = round(float(row.p_drop_answer), 4)
        return out
    if name == "compression":
        from .compression import scores

        out = {}
        for r in scores(df, image_col="item").itertuples():
            tag = r.variant if r.variant in ("full", "direct") else f"{r.variant}@{r.k_frac:g}"
            out[f"acc[{tag}]"] = round(float(r.acc), 4)
            out[f"acc_plus[{tag}]"] = round(float(r.acc_plus), 4)
            out[f"compression[{tag}]"] = round(float(r.compression), 2)
        return out
    return {}


def _setup(name: str, vlm, store: RunStore, world: World, seed: int, heatmap=None):
    """What one experiment adds to every part's key, and its extra arguments per part.

    Returns ``(key_parts, extra_for)``: ``key_parts`` go into each part's key
    between the run configuration and the scene seed; ``extra_for(key)`` gives
    the experiment's keyword arguments for the part with that key.
    """
    # the rules a part was computed with (released by default since "rules-2"): parts made under
    # other rules are never reused
    rules = {"knockout": ["rules-2"], "lastpos": ["rules-2"]}.get(name, [])
    if name == "heatmaps":
        from .heatmaps import HeatmapConfig

        hcfg = heatmap or HeatmapConfig()
        masks = store.root / "masks"
        return [hcfg.result_fields()], lambda key: {"heatmap": hcfg, "mask_dir": masks, "tag": key}
    if name == "ablation":  # the mean visual-token vector, computed once (and cached) per run
        from .ablation import mean_vector

        refs = [world.scene(_mix(10**6 + seed, j)).image for j in range(32)]
        mean = mean_vector(vlm, refs, cache=store.root / f"mean-{seed}.safetensors")
        return [mean.images_digest, "rules-2"], lambda key: {"mean": mean}
    return rules, lambda key: {}


def run_experiment(name: str, vlm, model_name: str, n: int, seed: int, out: str | Path,
                   cfg: RunConfig = RunConfig(), progress: bool = True, heatmap=None) -> dict:
    """Run ``name`` on ``n`` synthetic scenes from ``seed``; store parts; return a summary.

    ``heatmap``: the ``HeatmapConfig`` of the "heatmaps" experiment (part of its key).
    """
    return run_and_load(name, vlm, model_name, n, seed, out, cfg, progress, heatmap)[0]


def _skippable():
    """Errors that skip one scene (recorded with the reason) rather than stop a sweep."""
    from .models import ImageError, PromptTooLongError
    from .tokens import EmptyMaskError

    return (EmptyMaskError, ImageError, PromptTooLongError)


def _part_files(df: pd.DataFrame, folder: Path) -> list[Path]:
    """Files a part's rows name (heatmap masks), so the part's digest covers them."""
    if "mask_file" not in df:
        return []
    return [folder / f for f in df.mask_file if isinstance(f, str) and f]


def run_and_load(name: str, vlm, model_name: str, n: int, seed: int, out: str | Path,
                 cfg: RunConfig = RunConfig(), progress: bool = True,
                 heatmap=None) -> tuple[dict, pd.DataFrame]:
    """``run_experiment``, also returning this run's rows (and only this run's).

    The store's lock is held throughout (a second run on the same ``out``
    stops with ``StoreBusyError``). A scene that cannot be analysed (an empty
    object mask, an unreadable image, a prompt over the model's context) is
    stored as a skip with its reason: the summary counts it under
    ``skipped_scenes`` and lists the reasons; its rows are absent.
    """
    from tqdm.auto import tqdm

    from .validate import check_run_arguments

    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    check_run_arguments(n=n, seed=seed, out=out, experiment=name)
    store = RunStore(Path(out) / name)
    with store.lock():
        store.clean_temporaries()
        world = World()
        computed = 0
        keys: list[str] = []
        key_parts, extra_for = _setup(name, vlm, store, world, seed, heatmap)
        todo = []
        for i in range(n):
            scene_seed = _mix(seed, i)
            key = store.key(name, model_name, asdict(cfg), *key_parts, scene_seed)
            keys.append(key)
            todo.append((i, scene_seed, key))

        def compute(i, scene_seed, key):
            scene = world.scene(scene_seed)
            try:
                df = EXPERIMENTS[name](vlm, scene, cfg, **extra_for(key))
            except _skippable() as e:
                df = pd.DataFrame({"_skipped": [f"{type(e).__name__}: {e}"]})
            store.put(key, df, files=_part_files(df, store.root / "masks"), model=model_name,
                      scene_seed=scene_seed, item=i)

        for i, scene_seed, key in tqdm(todo, desc=name, disable=not progress):
            if not store.has(key):
                compute(i, scene_seed, key)
                computed += 1
        df = store.load(keys)
        missing = [t for t in todo if t[2] not in store.loaded]
        for t in missing:  # damaged between the check and the load: recompute once
            compute(*t)
            computed += 1
        if missing:
            df = store.load(keys)
        if any(k not in store.loaded for k in keys):
            raise RuntimeError(f"{n - len(store.loaded)} of {n} parts of {store.root} could not be "
                               "read back after being written; see the warnings above")
    skips = df[df["_skipped"].notna()] if "_skipped" in df else df.iloc[:0]
    if "_skipped" in df:
        df = df[df["_skipped"].isna()].drop(columns="_skipped")
    summary = {"experiment": name, "model": model_name, "n": n, "seed": seed,
               "computed": computed, "reused": n - computed, "rows": int(len(df)),
               "scenes": len(store.loaded) - int(len(skips)),
               "skipped_scenes": int(len(skips)),
               "store": str(store.root), **summarise(name, df)}
    if len(skips):
        summary["skip_reasons"] = sorted(set(skips["_skipped"]))
    if name == "knockout" and "judge" in df:
        summary["judge"] = ",".join(sorted(set(df.judge)))
    (Path(out) / f"{name}.summary.json").write_text(json.dumps(summary))
    return summary, df.reset_index(drop=True)
