"""benchmarks/bench_attention.py and bench_heatmaps.py run end to end on the tiny model.

Structure only: timings are measured by the script, never asserted here.
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_attention.py"


def _load_script(path: Path):
    """A benchmark script as a module (the benchmarks folder is not a package)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def bench():
    return _load_script(SCRIPT)


@pytest.fixture(scope="module")
def image(bench):
    return bench.organism_image()


def test_generation_benchmark(bench, tiny, image):
    res = bench.bench_generation(tiny, image, repeats=1, warmup=0, new_tokens=8)
    assert res["eager_s"] > 0 and res["record_s"] > 0
    assert res["ratio"] == pytest.approx(res["record_s"] / res["eager_s"])
    assert isinstance(res["met"], bool) and res["target_max"] == 1.3
    assert res["same_tokens"]  # recording does not change the generation
    kept = res["retained_bytes"]
    assert 0 < kept["record"] < kept["output_attentions"]


def test_sweep_benchmark(bench, tiny, image):
    res = bench.bench_sweep(tiny, image, repeats=1, warmup=0, max_new_tokens=4)
    assert res["n_runs"] == 3 * (tiny.adapter.n_layers + 1) == res["batch_size"]
    assert res["batched_s"] > 0 and res["looped_s"] > 0
    assert res["speedup"] == pytest.approx(res["looped_s"] / res["batched_s"])
    assert res["knockouts_only_speedup"] > 0
    assert res["same_texts"]  # batching changes no text


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux peak-RSS reset only")
@pytest.mark.parametrize("mode", ["record", "output_attentions"])
def test_peak_rss_child(bench, tiny_dir, mode):
    res = bench.rss_child(str(tiny_dir), mode, new_tokens=4, threads=None)
    assert res["mode"] == mode and res["peak_rss_delta_bytes"] >= 0


def test_main_writes_the_table_and_json(bench, tiny_dir, tmp_path, capsys):
    out = tmp_path / "bench.json"
    bench.main(["--model", str(tiny_dir), "--device", "cpu", "--repeats", "1", "--sweep-repeats",
                "1", "--warmup", "0", "--new-tokens", "8", "--sweep-tokens", "4", "--no-rss",
                "--llava7b-config", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "record / eager" in printed and "sweep: looped / batched" in printed
    data = json.loads(out.read_text())
    assert {"machine", "device", "models"} <= set(data)
    res = data["models"][str(tiny_dir)]
    assert "ratio" in res["generation"] and "speedup" in res["sweep"]
    if not torch.cuda.is_available():
        assert "skipped" in data["models"]["llava-1.5-7b-config"]


def test_llava7b_config_has_the_published_shape(bench):
    from transformers import AutoModelForImageTextToText

    cfg = bench.llava7b_config()
    t, v = cfg.text_config, cfg.vision_config
    assert (t.num_hidden_layers, t.hidden_size, t.num_attention_heads, t.intermediate_size,
            t.vocab_size) == (32, 4096, 32, 11008, 32064)
    assert (v.num_hidden_layers, v.hidden_size, v.image_size, v.patch_size) == (24, 1024, 336, 14)
    assert (v.image_size // v.patch_size) ** 2 == cfg.image_seq_length == 576
    assert cfg.vision_feature_layer == -2 and cfg.vision_feature_select_strategy == "default"
    with torch.device("meta"):
        net = AutoModelForImageTextToText.from_config(cfg)
    assert 7.0e9 < sum(p.numel() for p in net.parameters()) < 7.1e9


def test_instantiate_from_meta_initialises_buffers_and_weights(bench, tiny_dir):
    from transformers import AutoConfig, AutoModelForImageTextToText

    cfg = AutoConfig.from_pretrained(tiny_dir)
    net = bench.instantiate(cfg, "cpu", torch.bfloat16)
    ref = AutoModelForImageTextToText.from_config(cfg)
    got = dict(net.named_buffers())
    for name, buf in ref.named_buffers():  # rotary inv_freq, position ids: recomputed, not garbage
        torch.testing.assert_close(got[name].float(), buf.float(), atol=1e-2, rtol=1e-2)
    assert all(p.dtype == torch.bfloat16 and torch.isfinite(p).all() for p in net.parameters())
    assert net.config._attn_implementation == "eager"


# ---------------------------------------------------------- bench_heatmaps.py
HEATMAPS = SCRIPT.parent / "bench_heatmaps.py"


@pytest.fixture(scope="module")
def hbench():
    return _load_script(HEATMAPS)


@pytest.mark.parametrize("noise", [0.0, 0.2])
def test_reference_igos_matches_ours(hbench, tiny, noise):
    from vlmscope.heatmaps import HeatmapConfig

    cfg = HeatmapConfig.preset("reference", size=4, iterations=2, ig_iter=3, noise=noise)
    case = hbench.pick_cases(tiny, 1, config=cfg, any_answer=True)[0]
    before = [p.requires_grad for p in tiny.model.parameters()]
    ref = hbench.run_variant(tiny, case, "reference", cfg)
    assert [p.requires_grad for p in tiny.model.parameters()] == before
    assert all(p.grad is None for p in tiny.model.parameters())  # weight gradients cleared
    assert tiny.model.config.text_config._attn_implementation == "eager"  # as loaded
    assert ref.min() < 1
    for batch in (1, 4):  # the same noise draws in the same order: same masks, noise or not
        ours = hbench.run_variant(tiny, case, f"batch={batch}", cfg)
        np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_allocated_peak_sees_transient_memory(hbench):
    def transient():
        x = torch.ones(1 << 20)  # 4 MiB alive while y is made
        y = x * 2
        del x, y

    peak = hbench.allocated_peak(transient)
    if peak is None:
        pytest.skip("this torch's profiler has no memory timeline")
    assert 8 << 20 <= peak < 9 << 20  # both 4 MiB tensors at once, nothing left counted


def test_heatmap_benchmark_main(hbench, tiny_dir, tmp_path, capsys):
    out = tmp_path / "heatmaps.json"
    hbench.main(["--model", str(tiny_dir), "--device", "cpu", "--questions", "1", "--repeats",
                 "1", "--warmup", "0", "--size", "4", "--iterations", "1", "--ig-iter", "2",
                 "--batches", "1", "3", "--no-rss", "--any-answer", "--llava7b-config",
                 "--out", str(out)])
    printed = capsys.readouterr().out
    assert "| variant |" in printed and "reference" in printed
    data = json.loads(out.read_text())
    assert {"machine", "config", "cases", "speed", "memory", "agreement", "met"} <= set(data)
    assert data["variants"] == ["batch=1", "batch=3", "batch=8", "reference"]
    assert data["default_variant"] == "batch=8"  # the HeatmapConfig default is always timed
    assert data["memory"]["target_measure"] in ("allocated_peak_bytes", "autograd_peak_bytes")
    for v in data["variants"]:
        assert data["speed"]["median_s"][v] > 0
        assert data["memory"]["autograd_peak_bytes"][v] > 0
        assert data["memory"][data["memory"]["target_measure"]][v] > 0
    for v in data["variants"][:-1]:
        a = data["agreement"][v]
        assert len(a["spearman_noise0"]) == len(a["spearman_default_noise"]) == 1
        assert isinstance(a["min_spearman"], float)
        assert set(data["met"][v]) == {"speed", "memory", "agreement", "all"}
        assert min(a["spearman_default_noise"]) > 0.99  # same noise draws as the reference
    if not torch.cuda.is_available():
        assert "skipped" in data["llava7b"]


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux peak-RSS reset only")
def test_heatmap_peak_rss_child(hbench, tiny_dir):
    from vlmscope.heatmaps import HeatmapConfig

    cfg = HeatmapConfig(size=4, iterations=1, ig_iter=2)
    res = hbench.rss_child(str(tiny_dir), "batch=1", cfg, threads=None, any_answer=True)
    assert res["variant"] == "batch=1" and res["peak_rss_delta_bytes"] >= 0


def test_autograd_bytes_counts_saved_tensors_and_weight_grads(hbench):
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    x = torch.randn(4, 8, requires_grad=True)
    with hbench.AutogradBytes(net) as acc:
        net(x).sum().backward()
    grads = sum(p.numel() * 4 for p in net.parameters())
    assert acc.grads == grads and acc.peak >= grads
    assert acc.saved_peak >= x.numel() * 4 + 4 * 16 * 4  # x (for W1's gradient), tanh's output
    assert acc.saved == 0 and not acc.live  # everything released after backward
    net.requires_grad_(False)  # frozen: x is no longer saved, no gradients
    with hbench.AutogradBytes(net) as frozen:
        net(x).sum().backward()
    assert frozen.grads == 0 and 0 < frozen.saved_peak < acc.saved_peak
    with hbench.AutogradBytes(net) as unfrozen:  # parameters unfrozen inside the context count
        net.requires_grad_(True)
        net(x).sum().backward()
    assert unfrozen.grads == grads


def _agreement_rows(model, seeds, methods, value):
    rows = []
    for s in seeds:
        for m in methods:
            for t in ("auroc", "causal_spearman"):
                rows.append({"model": model, "scene_seed": s, "kind": "color", "method": m,
                             "truth": t, "value": value(s, m, t), "reference": m == "causal",
                             "oracle": False, "causal": m == "causal", "correct": True,
                             "question": f"q{s}", "answer": "red", "seconds": 0.1,
                             "peak_bytes": 2.0**20, "_key": f"{model}-{s}-{len(methods)}"})
    return pd.DataFrame(rows)


def test_agreement_study_merges_run_groups_and_keeps_one_copy_of_each_reference_row(tmp_path,
                                                                                    capsys):
    study = _load_script(SCRIPT.parent / "agreement_study.py")
    value = lambda s, m, t: (s * 7 + len(m) + len(t)) % 10 / 10  # noqa: E731
    cheap = _agreement_rows("a", [1, 2, 3], ["causal", "attention", "gradient"], value)
    igos = _agreement_rows("a", [1, 2, 3], ["causal", "igos+"], value)
    merged = study.merge([cheap, igos])
    # the causal reference rows of both runs are one copy; every method's rows are kept
    assert len(merged) == 3 * 2 * 4
    assert merged.groupby("method").size().to_dict() == {"attention": 6, "causal": 6,
                                                        "gradient": 6, "igos+": 6}
    assert "_key" not in merged
    pd.testing.assert_frame_equal(merged, study.merge([igos, cheap]))  # the stores' order is moot
    # two runs that disagree on a shared row were made with other settings: refused
    other = igos.copy()
    other.loc[other.method == "causal", "value"] += 0.5
    with pytest.raises(ValueError, match="disagree"):
        study.merge([cheap, other])
    # the report reads the saved rows alone; a method on one member only is not pooled
    b = _agreement_rows("b", [4, 5], ["causal", "attention", "gradient"], value)
    path = tmp_path / "rows.parquet"
    study.merge([cheap, igos, b]).to_parquet(path, index=False)
    assert study.main(["--rows", str(path), "--n-resamples", "50"]) == 0
    text = capsys.readouterr().out
    pooled = text.split("### pooled over 2 members")[1].split("cost per map")[0]
    assert "igos+" in text.split("### `b`")[0] and "igos+" not in pooled
    mean = merged[(merged.method == "attention") & (merged.truth == "auroc")].value.mean()
    assert f"| attention | {mean:.2f} [" in text.split("### `b`")[0]
