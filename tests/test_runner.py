"""runner.run and python -m vlmscope run ...: parquet parts, one-line JSON, reuse on re-run."""

import dataclasses
import json
import subprocess
import sys

import pandas as pd
import pytest

from vlmscope import findings
from vlmscope.runner import run


def config(name, **kw):
    """The finding's Config with those of ``kw`` it has (lens and lastpos have no answer length)."""
    have = {f.name for f in dataclasses.fields(findings.get(name).Config)}
    return findings.get(name).Config(**{k: v for k, v in kw.items() if k in have})


def run_experiment(name, vlm, model_name, n, seed, out, cfg, progress=False):
    return run(name, vlm, model_name=model_name, n=n, seed=seed, out=out, config=cfg,
               progress=progress).summary


@pytest.mark.parametrize("name", ["fractions", "maps", "knockout", "ablation", "lens", "lastpos"])
def test_run_is_resumable(tiny, tiny_dir, tmp_path, name):
    cfg = config(name, max_new_tokens=4)
    first = run_experiment(name, tiny, str(tiny_dir), n=2, seed=3, out=tmp_path, cfg=cfg,
                           progress=False)
    assert first["computed"] == 2
    if name != "maps":  # a random tiny model may name no object, leaving maps empty
        assert first["rows"] > 0
    again = run_experiment(name, tiny, str(tiny_dir), n=3, seed=3, out=tmp_path, cfg=cfg,
                           progress=False)
    assert again["computed"] == 1 and again["reused"] == 2
    parts = list((tmp_path / name / "parts").glob("*.parquet"))
    assert len(parts) == 3
    df = pd.concat(pd.read_parquet(p) for p in parts)
    assert set(df.item) <= {0, 1, 2}


def test_cli_run_prints_one_json_line(tiny_dir, tmp_path):
    out = subprocess.run([sys.executable, "-m", "vlmscope", "run", "fractions", "--model",
                          str(tiny_dir), "--n", "1", "--seed", "0", "--out", str(tmp_path),
                          "--max-new-tokens", "3"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = [l for l in out.stdout.splitlines() if l.strip()]
    assert len(lines) == 1
    s = json.loads(lines[0])
    assert s["experiment"] == "fractions" and s["n"] == 1 and "image_mean" in s


def test_heatmaps_run_scores_maps_saves_masks_and_resumes(tiny, tiny_dir, tmp_path):
    from vlmscope.heatmaps import Heatmap, HeatmapConfig

    # a random tiny model gains little over the baseline: accept every position
    hcfg = HeatmapConfig(threshold=-1e9, single_token_ratio=1e9, iterations=1, ig_iter=2, size=4)
    cfg = findings.heatmaps.Config(max_new_tokens=3, heatmap=hcfg)
    first = run_experiment("heatmaps", tiny, "tiny", n=2, seed=5, out=tmp_path, cfg=cfg,
                           progress=False)
    assert first["computed"] == 2 and first["questions"] == 4 and first["skipped"] == 0
    df = pd.concat(pd.read_parquet(p) for p in (tmp_path / "heatmaps" / "parts").glob("*.parquet"))
    assert sorted(df.kind) == ["color", "color", "where", "where"]
    for m in ("igos", "attention", "gradient", "random"):
        assert df[f"{m}_mass"].between(0, 1).all() and df[f"{m}_pointing"].isin([0.0, 1.0]).all()
    assert df.deletion.notna().all() and df.insertion.notna().all()
    for name in df.mask_file:
        hm = Heatmap.load(tmp_path / "heatmaps" / "masks" / name)
        assert hm.mask.shape == (4, 4) and hm.config == hcfg
    again = run_experiment("heatmaps", tiny, "tiny", n=2, seed=5, out=tmp_path, cfg=cfg,
                           progress=False)
    assert again["computed"] == 0 and again["reused"] == 2
    # resumed with another batch (say, after running out of memory): the same heatmaps, reused
    smaller = run_experiment("heatmaps", tiny, "tiny", n=2, seed=5, out=tmp_path,
                             cfg=dataclasses.replace(cfg, heatmap=dataclasses.replace(hcfg, batch=1)),
                             progress=False)
    assert smaller["computed"] == 0 and smaller["reused"] == 2
    other = run_experiment("heatmaps", tiny, "tiny", n=1, seed=5, out=tmp_path,
                           cfg=dataclasses.replace(cfg, heatmap=HeatmapConfig(iterations=1, ig_iter=2,
                                                                              size=4)),
                           progress=False)
    assert other["computed"] == 1  # another heatmap config is another key
    # default threshold on a random model: samples are skipped with a reason, not dropped
    assert other["questions"] == 2
    rows = pd.concat(pd.read_parquet(p) for p in (tmp_path / "heatmaps" / "parts").glob("*.parquet"))
    skipped = rows[(rows.skipped != "")]
    assert skipped.skipped.str.contains("gain|single-token").all()


def test_heatmaps_run_without_the_other_maps_keeps_the_same_igos_figures(tiny, tmp_path):
    """``others=False`` (notebook 06's sweep) skips deletion/insertion and the attention, gradient
    and random maps, and nothing else: the iGOS mask, its mass and its pointing are the full run's.
    It is a key of its own, so neither store part stands in for the other."""
    from vlmscope.heatmaps import HeatmapConfig

    hcfg = HeatmapConfig(threshold=-1e9, single_token_ratio=1e9, iterations=1, ig_iter=2, size=4)
    full = findings.heatmaps.Config(max_new_tokens=3, heatmap=hcfg)
    lean = dataclasses.replace(full, others=False)
    a = run("heatmaps", tiny, model_name="tiny", n=2, seed=5, out=tmp_path / "a", config=full,
            progress=False)
    b = run("heatmaps", tiny, model_name="tiny", n=2, seed=5, out=tmp_path / "a", config=lean,
            progress=False)
    assert b.summary["computed"] == 2 and b.summary["reused"] == 0
    assert findings.heatmaps.key(lean)[:2] == findings.heatmaps.key(full)
    fa, fb = a.df.sort_values(["item", "kind"]), b.df.sort_values(["item", "kind"])
    for col in ("answer", "igos_mass", "igos_pointing", "positions"):
        assert fa[col].tolist() == fb[col].tolist(), col
    assert not {"deletion", "insertion", "attention_mass", "random_pointing"} & set(fb.columns)
    assert fa.deletion.notna().all() and fa.attention_mass.notna().all()


def test_benchmark_heatmaps_on_a_local_cvbench_copy(tiny, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from test_benchmark_datasets import CV_SCHEMA, cv_rows

    from vlmscope.runner import run_benchmark
    from vlmscope.heatmaps import HeatmapConfig

    root = tmp_path / "CV-Bench"
    root.mkdir()
    rows = cv_rows()
    rows[0]["image"] = {"bytes": b"not an image", "path": None}  # a damaged record
    import io

    import numpy as np
    from PIL import Image

    for r, (w, h) in zip(rows[1:], [(50, 40), (60, 45)]):  # textured: blur must change them
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(w).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            buf, format="PNG")
        r["image"] = {"bytes": buf.getvalue(), "path": None}
    pq.write_table(pa.Table.from_pylist(rows, schema=CV_SCHEMA), root / "test_2d.parquet")
    hcfg = HeatmapConfig(threshold=-1e9, single_token_ratio=1e9, iterations=1, ig_iter=2, size=4)
    summary, df = run_benchmark(tiny, "tiny", "cv-bench", root, tmp_path / "out",
                                heatmap=hcfg, max_new_tokens=3, progress=False)
    assert summary["n"] == 3 and summary["computed"] == 3 and summary["skipped"] == 1
    by = df.set_index("id")
    assert by.loc["cv-bench/0", "skipped"].startswith("image:")  # recorded, the sweep went on
    # Relation and Depth give boxes: plausibility on the enclosing box; all rows get curves
    for i in ("cv-bench/1", "cv-bench/2"):
        assert by.loc[i, "skipped"] == "" and 0 <= by.loc[i, "igos_mass"] <= 1
        assert by.loc[i, "deletion"] == by.loc[i, "deletion"]  # not NaN
    assert by.loc["cv-bench/1", "area"] == pytest.approx((20 - 6) * (30 - 6) / (50 * 40))
    again, _ = run_benchmark(tiny, "tiny", "cv-bench", root, tmp_path / "out",
                             heatmap=hcfg, max_new_tokens=3, progress=False)
    assert again["computed"] == 0 and again["reused"] == 3


def test_cli_benchmark_needs_data_and_heatmaps(tiny_dir):
    out = subprocess.run([sys.executable, "-m", "vlmscope", "run", "heatmaps", "--model",
                          str(tiny_dir), "--benchmark", "mmvp"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0 and "--data" in out.stderr and "Traceback" not in out.stderr


def test_cli_heatmaps_run_resumes_with_another_batch(tiny_dir, tmp_path):
    def run(batch):
        out = subprocess.run([sys.executable, "-m", "vlmscope", "run", "heatmaps", "--model",
                              str(tiny_dir), "--n", "1", "--iterations", "1", "--ig-iter", "2",
                              "--size", "4", "--max-new-tokens", "3", "--batch", str(batch),
                              "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    assert run(3)["computed"] == 1
    again = run(1)
    assert again["computed"] == 0 and again["reused"] == 1


def test_ablation_run_caches_its_mean_vector(tiny, tmp_path):
    cfg = findings.ablation.Config(max_new_tokens=3)
    run_experiment("ablation", tiny, "tiny", n=1, seed=2, out=tmp_path, cfg=cfg, progress=False)
    cache = tmp_path / "ablation" / "mean-2.safetensors"
    assert cache.is_file()
    stamp = cache.stat().st_mtime_ns
    again = run_experiment("ablation", tiny, "tiny", n=2, seed=2, out=tmp_path, cfg=cfg,
                           progress=False)
    assert again["computed"] == 1 and cache.stat().st_mtime_ns == stamp  # reused, not rewritten
    df = pd.concat(pd.read_parquet(p) for p in (tmp_path / "ablation" / "parts").glob("*.parquet"))
    assert set(df.rule) == {"object", "random", "high-norm", "ig"} and set(df.rings) == {0, 1, 2}
    assert (df.groupby(["item", "object", "rings", "task"]).n_tokens.nunique() == 1).all()  # matched


def test_ablation_summary_is_per_task_on_the_noise_filtered_objects():
    rows = []
    # object a passes the filter, object b does not (its rows must not count)
    for obj, keep in (("a", True), ("b", False)):
        for task, before, after in (("generative", True, False), ("polling", True, True),
                                    ("vqa", True, False), ("vqa", False, False)):
            rows.append({"_key": "k", "object": obj, "noise_filter_keep": keep, "rings": 1,
                         "rule": "object", "task": task, "n_tokens": 4,
                         "correct_before": before, "correct_after": after})
    s = findings.ablation.summarise(pd.DataFrame(rows))
    assert s["noise_filter_kept"] == "1 of 2"
    # by hand, object a only: generative 1 of 1 lost, polling 0 of 1, vqa 1 of 1; pooled 2 of 3
    assert (s["lost[object,+1,generative]"], s["lost[object,+1,polling]"],
            s["lost[object,+1,vqa]"]) == (1.0, 0.0, 1.0)
    assert s["n[object,+1,vqa]"] == 1 and s["lost[object,+1,pooled]"] == round(2 / 3, 4)


def test_knockout_summary_uses_the_papers_l():
    df = pd.DataFrame({"config": ["img->gen"] * 3, "start": [0, 0, 1], "l": [-1, -1, 0],
                       "f1": [0.5, 1.0, 0.0], "f1_exact": [0.0, 0.5, 0.0]})
    s = findings.knockout.summarise(df)
    assert s == {"f1[img->gen,l=-1]": 0.75, "f1_exact[img->gen,l=-1]": 0.25}
