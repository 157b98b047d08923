"""The findings registry: keys as the batch runs wrote them, vs_paper computed from the data,
annotated images (an image folder) through runner.run, and the run command built from Configs."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from vlmscope import findings
from vlmscope.runs import RunStore


def test_registry_names_and_unknown():
    assert findings.names() == ["fractions", "maps", "knockout", "compression", "heatmaps",
                                "ablation", "lens", "lastpos", "agreement"]
    assert findings.get("lens") is findings.lens and findings.get(findings.lens) is findings.lens
    with pytest.raises(ValueError, match="unknown finding 'nope'; known: fractions, maps"):
        findings.get("nope")
    for m in findings.FINDINGS.values():
        assert list(m.PAPER.columns) == ["quantity", "paper", "paper_model", "source"]
        assert callable(m.vs_paper) and callable(m.summarise)
        assert len(m.PAPER) or m is findings.agreement  # no paper measured method agreement


def test_default_keys_are_the_batch_runs_layout():
    """A part's key spelled out the way the batch runs built it (so their stores are reused)."""
    old = {"question": "describe the image .", "max_new_tokens": 48, "kinds": ["color", "where"]}
    for name, extra in (("fractions", []), ("maps", []), ("compression", []), ("lens", []),
                        ("knockout", ["rules-2"]), ("lastpos", ["rules-2"])):
        m = findings.get(name)
        got = RunStore.key(name, "organism", *m.key(m.Config()), 123)
        assert got == RunStore.key(name, "organism", old, *extra, 123), name
    from vlmscope.heatmaps import HeatmapConfig

    h = findings.heatmaps
    fields = HeatmapConfig().result_fields()
    assert RunStore.key("heatmaps", "m", *h.key(h.Config(max_new_tokens=3)), 5) == RunStore.key(
        "heatmaps", "m", {**old, "max_new_tokens": 3}, fields, 5)

    class Mean:
        images_digest = "abc"

    a = findings.ablation
    assert RunStore.key("ablation", "m", *a.key(a.Config(), mean=Mean()), 7) == RunStore.key(
        "ablation", "m", old, "abc", "rules-2", 7)


def _ours(table, quantity, model=None):
    rows = table[table.quantity == quantity]
    if model:
        rows = rows[rows.paper_model == model]
    return rows.ours.iloc[0]


# ------------------------------------------------------------ vs_paper
def test_vs_paper_fractions_and_maps_follow_the_data():
    df = pd.DataFrame({"layer": [0, 1, 0, 1], "image": [0.2, 0.6, 0.4, 0.8],
                       "query": [0.5] * 4, "query_no_bos": [0.1] * 4, "generated": [0.1] * 4})
    t = findings.fractions.vs_paper(df)
    assert list(t.columns) == ["quantity", "ours", "paper", "paper_model", "source", "note"]
    assert _ours(t, "image_mean") == 0.5 and _ours(t, "peak_image_layer") == 1
    df.loc[df.layer == 0, "image"] = 0.9
    t = findings.fractions.vs_paper(df)
    assert _ours(t, "image_mean") == round((0.9 + 0.7) / 2, 4) and _ours(t, "peak_image_layer") == 0
    assert _ours(findings.fractions.vs_paper({"image_mean": 0.3}), "image_mean") == 0.3

    m = pd.DataFrame({"layer": [0, 1, 2], "pointing": [0.0, 1.0, 0.0], "ratio": [1, 2, 1],
                      "step": [3, 3, 3]})
    assert _ours(findings.maps.vs_paper(m), "best_pointing_layer") == 1
    m["pointing"] = [0.0, 0.0, 1.0]
    assert _ours(findings.maps.vs_paper(m), "best_pointing_layer") == 2
    # a word is an (image, step): two images with a word at the same step are two words
    two = pd.concat([m.assign(item=0), m.assign(item=1), m.assign(item=1, step=5)])
    assert findings.maps.summarise(two)["words"] == 3
    assert "over 3 object words" in findings.maps.vs_paper(two).set_index("quantity").note.iloc[0]


def test_vs_paper_knockout_follows_the_data():
    rows = []
    for config, f1s in (("img->gen", [0.2, 0.6, 1.0]), ("img->txt", [0.0, 0.95, 1.0])):
        for start, f1 in enumerate(f1s):
            rows.append({"config": config, "start": start, "l": start - 1, "f1": f1,
                         "n_layers": 2})
    df = pd.DataFrame(rows)
    t = findings.knockout.vs_paper(df)
    assert _ours(t, "f1[img->gen,l=-1]") == 0.2 and _ours(t, "f1[img->txt,l=-1]") == 0.0
    assert _ours(t, "first_l_with_f1_0.9[img->txt]") == 0
    assert t.set_index("quantity").paper["f1[img->gen,l=-1]"] == 0.4
    df.loc[(df.config == "img->txt") & (df.start == 1), "f1"] = 0.5
    df.loc[(df.config == "img->gen") & (df.start == 0), "f1"] = 0.45
    t = findings.knockout.vs_paper(df)
    assert _ours(t, "f1[img->gen,l=-1]") == 0.45 and _ours(t, "first_l_with_f1_0.9[img->txt]") == 1
    assert _ours(t, "f1[img->txt+gen,l=-1]") is None  # not run: said, not invented


def test_vs_paper_compression_follows_the_data():
    rows = []
    for item, (both_ok, full_ok) in enumerate(((True, True), (False, True))):
        for q in range(2):
            rows.append({"variant": "both", "k_frac": 0.05, "k": 2, "item": item,
                         "correct": both_ok, "kept_tokens": 10, "full_tokens": 100})
            rows.append({"variant": "full", "k_frac": 1.0, "k": 40, "item": item,
                         "correct": full_ok, "kept_tokens": 100, "full_tokens": 100})
    df = pd.DataFrame(rows)
    t = findings.compression.vs_paper(df)
    assert _ours(t, "relative[both@0.05]") == 0.5 and _ours(t, "compression[both@0.05]") == 10.0
    df.loc[df.variant == "both", "correct"] = True
    df.loc[df.variant == "both", "kept_tokens"] = 20
    t = findings.compression.vs_paper(df)
    assert _ours(t, "relative[both@0.05]") == 1.0 and _ours(t, "compression[both@0.05]") == 5.0


def test_vs_paper_heatmaps_follows_the_data():
    df = pd.DataFrame({"skipped": ["", "", ""], "correct": [True, True, False],
                       "igos_mass": [0.8, 0.6, 0.1], "igos_pointing": [1.0, 1.0, 0.0],
                       "random_mass": [0.2, 0.2, 0.2], "random_pointing": [0.0] * 3,
                       "attention_mass": [0.3] * 3, "attention_pointing": [0.0] * 3,
                       "gradient_mass": [0.3] * 3, "gradient_pointing": [0.0] * 3,
                       "area": [0.2] * 3, "deletion": [0.1] * 3, "insertion": [0.5] * 3})
    t = findings.heatmaps.vs_paper(df)
    assert _ours(t, "mass[igos] right vs wrong") == "right 0.70 (n=2); wrong 0.10 (n=1)"
    assert _ours(t, "mass[igos] vs mass[random]") == "0.50 vs 0.20"
    df.loc[2, "correct"] = True
    t = findings.heatmaps.vs_paper(df)
    assert _ours(t, "mass[igos] right vs wrong") == "right 0.50 (n=3)"


def test_vs_paper_ablation_follows_the_data():
    rows = []
    for rule in ("object", "random"):
        for rings in (0, 1):
            for task in ("generative", "polling", "vqa"):
                for i in range(4):  # object loses 3 of 4 at +1, 1 of 4 at +0; random loses none
                    lost = (rule == "object") and i < (3 if rings else 1)
                    rows.append({"_key": "k", "object": f"o{i}", "noise_filter_keep": True,
                                 "rule": rule, "rings": rings, "task": task, "n_tokens": 4,
                                 "correct_before": True, "correct_after": not lost})
    df = pd.DataFrame(rows)
    t = findings.ablation.vs_paper(df)
    assert _ours(t, "lost[object,+1,vqa]") == 0.75 and _ours(t, "lost[object,+0,polling]") == 0.25
    assert _ours(t, "lost[random,+1,generative]") == 0.0
    assert "of 4 correct before" in t.set_index("quantity").note["lost[object,+1,vqa]"]
    df.loc[(df.rule == "object") & (df.rings == 1), "correct_after"] = True
    t = findings.ablation.vs_paper(df)
    assert _ours(t, "lost[object,+1,vqa]") == 0.0
    summary = findings.ablation.summarise(df)
    assert _ours(findings.ablation.vs_paper(summary), "lost[object,+1,vqa]") == 0.0
    assert _ours(findings.ablation.vs_paper(summary), "lost[object,+0,vqa]") is None  # not in a summary


def test_vs_paper_lens_follows_the_data():
    df = pd.DataFrame({"rings": [0] * 4, "layer": [0, 1, 2, 3], "share": [0.0, 0.1, 0.3, 0.2]})
    t = findings.lens.vs_paper(df)
    assert _ours(t, "best_share", "LLaVA-1.5-7B") == 0.3 and _ours(t, "best_share", "Qwen2-VL-2B") == 0.3
    assert _ours(t, "best_layer_fraction") == round(3 / 5, 2)  # hidden state 3 of 5
    df["share"] = [0.5, 0.1, 0.3, 0.2]
    t = findings.lens.vs_paper(df)
    assert _ours(t, "best_share", "LLaVA-1.5-7B") == 0.5 and _ours(t, "best_layer_fraction") == 0.2


def test_vs_paper_lastpos_follows_the_data():
    rows = []
    for q in range(4):
        rows.append({"question": f"q{q}", "condition": "none", "window": "-", "correct": True,
                     "p_drop": 0.0, "p_drop_answer": 0.0, "n_blocked": 0})
        for window in ("15-24", "all"):
            rows.append({"question": f"q{q}", "condition": "object+1", "window": window,
                         "correct": q < (3 if window == "all" else 2), "p_drop": 0.1,
                         "p_drop_answer": 0.1, "n_blocked": 3})
    df = pd.DataFrame(rows)
    t = findings.lastpos.vs_paper(df)
    assert _ours(t, "relative_accuracy[object+1,15-24]") == 0.5
    assert _ours(t, "relative_accuracy[object+1,all]") == 0.75
    df.loc[df.condition == "object+1", "correct"] = True
    t = findings.lastpos.vs_paper(df)
    assert _ours(t, "relative_accuracy[object+1,15-24]") == 1.0


# ---------------------------------------------------- an image folder through the runner
@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from vlmscope.datasets.folder import write_sample_folder

    return write_sample_folder(tmp_path_factory.mktemp("images") / "imgs", n=2, size=(80, 64))


@pytest.mark.parametrize("name", ["fractions", "maps", "knockout", "compression", "lens",
                                  "lastpos"])
def test_a_finding_runs_on_an_image_folder(name, tiny, folder, tmp_path):
    from vlmscope.runner import run

    m = findings.get(name)
    have = {f for f in m.Config.__dataclass_fields__}
    cfg = m.Config(**({"max_new_tokens": 3} if "max_new_tokens" in have else {}))
    res = run(name, tiny, n=2, out=tmp_path, images=folder, config=cfg, model_name="tiny",
              progress=False)
    assert res.summary["n"] == 2 and res.summary["images"] == str(folder)
    assert res.summary["scenes"] + res.summary["skipped_scenes"] == 2
    parts = RunStore(tmp_path / name).load()
    if len(res.df):
        assert set(res.df.image_file) <= {"scene0.jpg", "scene1.jpg"}
    if name in ("fractions", "knockout", "compression", "lastpos"):
        assert len(res.df) > 0
    if name == "knockout":
        assert set(res.df.judge) == {"vocabulary"}  # annotated names; the exact judge is the same
        assert (res.df.f1_exact == res.df.f1).all()
    if name == "compression":
        assert set(res.df.truth) == {"yes"} and res.df.question.str.startswith("is there a ").all()
    if name == "lastpos":
        assert res.df.question.str.startswith("scene").all()
    again = run(name, tiny, n=2, out=tmp_path, images=folder, config=cfg, model_name="tiny",
                progress=False)
    assert again.summary["reused"] == 2 and len(parts) == len(RunStore(tmp_path / name).load())


def test_heatmaps_and_ablation_on_an_image_folder(tiny, folder, tmp_path):
    from vlmscope.heatmaps import HeatmapConfig
    from vlmscope.runner import run

    hcfg = HeatmapConfig(threshold=-1e9, single_token_ratio=1e9, iterations=1, ig_iter=2, size=4)
    res = run("heatmaps", tiny, n=1, out=tmp_path, images=folder, model_name="tiny",
              config=findings.heatmaps.Config(max_new_tokens=3, heatmap=hcfg), progress=False)
    assert list(res.df.kind) == ["where"] and res.df.question.iloc[0].startswith("where is the ")
    assert res.df.igos_mass.between(0, 1).all()
    with pytest.raises(ValueError, match="only where or exists questions"):
        findings.heatmaps.record_questions(res_record(folder), ("color",))
    ab = run("ablation", tiny, n=1, out=tmp_path, images=folder, model_name="tiny",
             config=findings.ablation.Config(max_new_tokens=3), progress=False)
    assert set(ab.df.task) == {"generative", "polling"} and (tmp_path / "ablation" /
                                                               "mean-images-0.safetensors").is_file()


def res_record(folder):
    from vlmscope.datasets.folder import load_folder

    return load_folder(folder, limit=1)[0]


# ------------------------------------------------------------ the command line
def test_run_flags_come_from_the_configs(monkeypatch, tmp_path, capsys):
    import vlmscope.models
    import vlmscope.runner
    from vlmscope.cli import main
    from vlmscope.heatmaps import HeatmapConfig

    seen = {}

    def fake_run(finding, vlm, **kw):
        seen.update(kw, finding=finding)
        return vlmscope.runner.RunResult({"ok": 1}, pd.DataFrame(), pd.DataFrame(), tmp_path)

    monkeypatch.setattr(vlmscope.models, "load", lambda name: object())
    monkeypatch.setattr(vlmscope.runner, "run", fake_run)
    out = str(tmp_path / "runs")
    assert main(["run", "lens", "--question", "what is it ?", "--out", out, "--n", "2"]) == 0
    assert seen["config"] == findings.lens.Config(question="what is it ?") and seen["n"] == 2
    assert main(["run", "heatmaps", "--out", out, "--batch", "2", "--size", "4",
                 "--threshold=-1e9", "--heatmap-seed", "3", "--drop-first", "false",
                 "--tie-seed", "none"]) == 0
    h = seen["config"].heatmap
    assert (h.batch, h.size, h.threshold, h.seed, h.drop_first, h.tie_seed) == (2, 4, -1e9, 3,
                                                                                 False, None)
    assert h.iterations == HeatmapConfig().iterations  # not given: the dataclass's default
    assert main(["run", "heatmaps", "--out", out, "--preset", "reference", "--size", "4"]) == 0
    assert seen["config"].heatmap == HeatmapConfig.preset("reference", size=4)
    assert main(["run", "heatmaps", "--out", out, "--kinds", "where", "exists"]) == 0
    assert seen["config"].kinds == ("where", "exists")
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["run", "lens", "--max-new-tokens", "3", "--out", out])  # lens has no answer length
    assert "unrecognized arguments: --max-new-tokens" in capsys.readouterr().err
    rc = main(["run", "heatmaps", "--out", out, "--lr", "0"])  # HeatmapConfig's own check
    assert rc == 2 and "lr must be > 0" in capsys.readouterr().err


def test_the_iGOS_batch_reaches_the_faithfulness_curves(tiny, monkeypatch):
    from vlmscope import heatmaps as H
    from vlmscope.datasets.synthetic import World

    real, batches = H.faithfulness, []

    def spy(*a, **kw):
        batches.append(kw.get("batch"))
        return real(*a, **kw)

    monkeypatch.setattr(H, "faithfulness", spy)
    hcfg = H.HeatmapConfig(threshold=-1e9, single_token_ratio=1e9, iterations=1, ig_iter=2,
                           size=4, batch=2)
    findings.heatmaps.run(tiny, World().scene(3), findings.heatmaps.Config(max_new_tokens=3,
                                                                            heatmap=hcfg))
    assert batches and set(batches) == {2}
