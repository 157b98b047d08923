"""The finding modules' helpers for notebooks 05-09: tables and summaries from known rows."""

import numpy as np
import pandas as pd
import pytest

from vlmscope import organism
from vlmscope.findings import ablation, heatmaps, lastpos, lens


def test_lastpos_table_figures_key_each_cell_by_condition_and_window():
    table = pd.DataFrame({"condition": ["object+1", "object+1", "last row: rest"],
                          "window": ["15-24", "all", "all"], "relative_accuracy": [0.5, 0.25, 1.0],
                          "n_questions": [4, 4, 4], "p_drop": 0.1, "p_drop_answer": 0.2})
    figs = lastpos.table_figures(table)
    assert figs["relative_accuracy"] == {"object+1,15-24": 0.5, "object+1,all": 0.25,
                                         "last row: rest,all": 1.0}
    assert figs["p_drop_answer"]["object+1,all"] == 0.2


def test_lens_per_layer_averages_the_shares_a_run_has():
    df = pd.DataFrame({"object": "a", "rings": [0, 0, 0, 1, 1, 1], "layer": [0, 1, 2] * 2,
                       "share": [0.1, 0.4, 0.2, 0.9, 0.9, 0.9], "share_color": 0.0,
                       "share_shape": 0.0})
    np.testing.assert_allclose(lens.per_layer(df).loc[0].share, [0.1, 0.4, 0.2])
    assert list(lens.per_layer(df.drop(columns=["share_color", "share_shape"]))) == ["share"]


def test_ablation_summary_figures_and_paper_shape_follow_the_loss_table():
    table = pd.DataFrame({"rule": ["object", "random"], "rings": [1, 1], "task": ["vqa", "vqa"],
                          "lost": [0.75, 0.0], "n_correct_before": [4, 4], "n_tokens": [9.0, 9.0]})
    figs = ablation.table_figures(table)
    assert figs == {"lost": {"object,1,vqa": 0.75, "random,1,vqa": 0.0},
                    "denominators": {"object,1,vqa": 4, "random,1,vqa": 4}}
    shaped = ablation.paper_shape(table)
    assert shaped.loc[("object", 1), "vqa"] == 0.75 and shaped.loc[("object", 1), "tokens"] == 9.0


def test_heatmaps_questions_table_scores_right_answers_and_gives_reasons_for_the_rest():
    row = {f"{m}_{k}": v for m in ("igos", "attention", "gradient", "random")
           for k, v in (("pointing", 1.0), ("mass", 0.5))}
    df = pd.DataFrame([
        {"item": 0, "question": "q0", "answer": "red", "truth": "red", "correct": True,
         "skipped": "", "area": 0.1, **row},
        {"item": 1, "question": "q1", "answer": "blue", "truth": "red", "correct": False,
         "skipped": "", "area": 0.1, **row},
        {"item": 2, "question": "q2", "answer": "red", "truth": "red", "correct": True,
         "skipped": "no token selected", "area": 0.1}])
    table, skipped = heatmaps.questions_table(df)
    assert table["item"].unique().tolist() == [0]
    assert sorted(table["map"]) == ["attention", "gradient", "iGOS+", "random"]
    assert skipped.reason.tolist() == ["answered 'blue', truth 'red'", "no token selected"]
    empty, none = heatmaps.questions_table(df.iloc[:0])
    assert empty.empty and none.empty and "map" in empty


def test_heatmaps_zoo_vs_paper_says_when_there_is_nothing_to_compare():
    t = heatmaps.zoo_vs_paper(pd.DataFrame(columns=["value"]), {}, nonsense="answers are nonsense")
    assert t.ours.tolist() == ["nothing to compare: answers are nonsense",
                               "nothing to compare: one design or one scale only"]
    focus = pd.DataFrame([{"value": "igos_mass", "model": "m", "n_a": 3, "n_b": 0, "mean_a": 0.5,
                           "mean_b": np.nan, "p_mannwhitney": np.nan}])
    assert heatmaps.zoo_vs_paper(focus, {}).ours[0] == "m: no incorrect answers"


@pytest.mark.parametrize("summary,want", [
    ({"deletion": {"iGOS+": 0.1, "attention": 0.3}, "n_scored": 2, "area": 0.05},
     "iGOS+ 0.10; attention 0.30"),
    ({}, "-")])
def test_heatmaps_example_vs_paper_lists_every_maps_score(summary, want):
    t = heatmaps.example_vs_paper(summary).set_index("quantity")
    assert t.loc["deletion (lower: more faithful)", "ours"] == want
    assert pd.isna(t.loc["pointing game on the asked object", "paper"])


def test_heatmaps_designs_reads_the_zoo_and_marks_other_models_unknown():
    design, scale = heatmaps.designs(["organism-vit-s", "organism-siglip-m", "other"], organism.ZOO)
    assert design == {"organism-vit-s": "vit", "organism-siglip-m": "siglip", "other": "unknown"}
    assert scale == {"organism-vit-s": "s", "organism-siglip-m": "m", "other": "unknown"}


def test_heatmaps_scored_answers_keeps_explained_rows_and_says_when_none_is_right(capsys):
    df = pd.DataFrame({"skipped": ["", "no token", ""], "correct": [1, 1, 0]})
    scored, nonsense = heatmaps.scored_answers(df)
    assert nonsense is None and scored.correct.tolist() == [True, False]
    assert capsys.readouterr().out == ""
    scored, nonsense = heatmaps.scored_answers(df.assign(correct=0))
    assert "nonsense" in nonsense and "Nothing to report" in capsys.readouterr().out


def test_heatmaps_focus_table_compares_right_and_wrong_answers_per_model():
    scored = pd.DataFrame({"model": ["m"] * 6, "correct": [True] * 3 + [False] * 3,
                           "igos_mass": [0.9, 0.8, 0.7, 0.1, 0.2, 0.3],
                           "igos_pointing": [1.0, 1.0, 1.0, 0.0, 0.0, 1.0]})
    t = heatmaps.focus_table(scored, seed=0).set_index("value")
    assert t.loc["igos_mass", "mean_a"] == pytest.approx(0.8)
    assert t.loc["igos_mass", "difference"] == pytest.approx(0.6)
    assert set(heatmaps.FOCUS_COLUMNS) <= set(t.reset_index())
    empty = heatmaps.focus_table(scored, nonsense="answers are nonsense")
    assert empty.empty and list(empty) == heatmaps.FOCUS_COLUMNS


def test_heatmaps_seed_agreement_text_gives_median_min_and_count():
    assert heatmaps.seed_agreement_text([0.2, 0.5, 0.9], 3) == (
        "maps of one answer across 3 noise seeds: median Spearman 0.50 (min 0.20, 3 pairs)")
    assert "no answer" in heatmaps.seed_agreement_text([], 1)


def test_heatmaps_tests_table_is_empty_with_its_columns_without_tests():
    assert heatmaps.tests_table({}).empty and "p_value" in heatmaps.tests_table({})


def test_heatmaps_write_zoo_writes_the_focus_table_and_the_summary(tmp_path):
    import json

    focus = pd.DataFrame({"model": ["m"], "value": ["igos_mass"], "mean_a": [0.5]})
    out = heatmaps.write_zoo(tmp_path / "new", focus, {}, {"answers": 4, "x": float("nan")},
                             nonsense="why")
    assert out == {"answers": 4, "x": None, "nonsense": "why"}
    assert json.loads((tmp_path / "new" / "06_summary.json").read_text()) == out
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "new" / "06_focus_vs_correctness"
                                                  ".parquet"), focus)
    assert not (tmp_path / "new" / "06_pairs.parquet").exists()


def test_heatmaps_per_map_averages_each_maps_scores():
    t = pd.DataFrame({"map": ["a", "a", "b"], "pointing": [1.0, 0.0, 1.0], "mass": [0.2, 0.4, 0.6],
                      "area": 0.1})
    m = heatmaps.per_map(t)
    assert m.loc["a"].tolist() == pytest.approx([0.5, 0.3, 0.1])
    assert m.loc["b", "mass"] == 0.6


def test_heatmaps_worked_example_trace_and_write(tmp_path):
    import json

    class FakeHeatmap:
        trace = [{"deletion": -1.0, "insertion": -2.0}, {"deletion": -3.0, "insertion": -0.5}]

        def save(self, path):
            path.write_text("mask")

    ex = heatmaps.WorkedExample(vlm=None, scene=None, question=None, prepared=None, answer=None,
                                config=None, baselines={}, selection=None, nonsense=None,
                                heatmap=FakeHeatmap())
    trace = ex.trace()
    assert trace.index.name == "iteration" and trace.deletion.tolist() == [-1.0, -3.0]
    ex.summary = lambda model, preset, questions, n_skipped, sanity: {
        "model": model, "preset": preset, "n_skipped": n_skipped}
    questions = pd.DataFrame({"item": [1], "map": ["iGOS+"], "mass": [0.5]})
    out = ex.write(tmp_path, "organism", "reference", questions, 2, sanity=None)
    assert out == {"model": "organism", "preset": "reference", "n_skipped": 2, "nonsense": None}
    assert json.loads((tmp_path / "05_summary.json").read_text()) == out
    assert (tmp_path / "05_mask.safetensors").read_text() == "mask"
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "05_plausibility.parquet"), questions)


def test_nothing_to_report_prints_a_reason_and_stays_silent_without_one(capsys):
    from vlmscope.findings import nothing_to_report

    assert nothing_to_report(None, "goes on") is None and nothing_to_report("") is None
    assert capsys.readouterr().out == ""
    assert nothing_to_report("no answer", "Goes on.") == "no answer"
    assert capsys.readouterr().out == "Nothing to report: no answer. Goes on.\n"


def test_maps_write_keeps_rows_in_item_order_the_peaks_and_the_report(tmp_path, monkeypatch):
    import json

    from vlmscope.findings import maps

    seen = {}

    def fake_report(df, peaks, sinks, n_layers, n_images):
        seen.update(n_layers=n_layers, n_images=n_images, sinks=sinks)
        return {"n_layers": n_layers, "pointing": float("nan")}

    monkeypatch.setattr(maps, "report", fake_report)
    loc = pd.DataFrame({"item": [2, 0, 1, 0], "word": ["a", "b", "c", "d"]})
    peaks = pd.DataFrame({"item": [0, 1], "peak": [3, 4]})
    out = maps.write(tmp_path / "f", loc, peaks, "sinks", n_layers=4, n_images=3, nonsense=None)
    assert out == {"n_layers": 4, "pointing": None, "nonsense": None}
    assert seen == {"n_layers": 4, "n_images": 3, "sinks": "sinks"}
    assert json.loads((tmp_path / "f" / "02_summary.json").read_text()) == out
    assert pd.read_parquet(tmp_path / "f" / "02_localisation.parquet").word.tolist() == [
        "b", "d", "c", "a"]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "f" / "02_peaks.parquet"), peaks)


def test_ablation_write_keeps_the_table_and_a_summary_of_settings_and_losses(tmp_path):
    import json

    class Mean:
        def provenance(self):
            return {"model": "m", "n_images": 2}

    table = pd.DataFrame({"rule": ["object"], "rings": [1], "task": ["vqa"], "lost": [0.5],
                          "n_correct_before": [4]})
    out = ablation.write(tmp_path, table, "m", 12, Mean(), True, 0.25, nonsense=None)
    assert out == {"model": "m", "n_scenes": 12, "mean_vector": {"model": "m", "n_images": 2},
                   "noise_filter": True, "high_norm_on_objects": 0.25,
                   "lost": {"object,1,vqa": 0.5}, "denominators": {"object,1,vqa": 4},
                   "nonsense": None}
    assert json.loads((tmp_path / "07_summary.json").read_text()) == out
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "07_ablation.parquet"), table)
