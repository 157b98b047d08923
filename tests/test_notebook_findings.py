"""The headline functions notebooks 01-04 call (their summaries' keys), on hand-made rows."""

import numpy as np
import pandas as pd
import pytest

from vlmscope.findings import compression, fractions, knockout, maps


def test_fractions_report_counts_object_words_once_per_token():
    rows = pd.DataFrame({"item": [0, 0, 0, 0, 1, 1], "layer": [0, 1, 0, 1, 0, 1],
                         "step": [0, 0, 1, 1, 0, 0], "image": [0.1, 0.3, 0.2, 0.4, 0.1, 0.5],
                         "query": 0.5, "query_no_bos": 0.2, "bos": 0.3, "generated": 0.1,
                         "names_object": [True, True, False, False, True, True]})
    s = fractions.report(rows, image_tokens=64, prompt_length=80, n_images=2)
    assert s["object_words"] == 2 and s["image_share_of_prompt_tokens"] == 0.8
    assert s["peak_image_layer"] == 1 and s["mean_image_attention"] == pytest.approx(0.267, abs=1e-3)


def test_knockout_report_finds_the_first_layer_back_at_0_9():
    rows = []
    for config, f1s in (("img->gen", [0.0, 0.5, 1.0]), ("img->txt", [1.0, 1.0, 1.0]),
                        ("img->txt+gen", [0.0, 0.0, 0.95])):
        for l, f1 in zip((-1, 0, 1), f1s):
            rows.append({"config": config, "l": l, "f1": f1, "f1_exact": f1 / 2})
    s = knockout.report(pd.DataFrame(rows), "identity", n_layers=2, n_images=1)
    assert s["first_l_with_f1_0.9"] == {"img->gen": 1, "img->txt": -1, "img->txt+gen": 1}
    assert s["f1_l=-1"] == {"img->gen": 0.0, "img->txt": 1.0, "img->txt+gen": 0.0}
    assert s["f1_exact_l=-1"]["img->txt"] == 0.5
    assert knockout.report(pd.DataFrame(rows), "identity", 2, 1, nonsense="why") == {
        "judge": "identity", "n_layers": 2, "n_images": 1}


def test_maps_report_by_band():
    L = 4  # bands: early [0], middle [1, 2], late [3]
    loc = pd.DataFrame({"item": [0] * L + [1] * L, "layer": list(range(L)) * 2,
                        "pointing": [False, True, True, False] * 2,
                        "mass_in_mask": 0.5, "mask_share": 0.25, "ratio": [1.0, 3.0, 3.0, 1.0] * 2})
    peaks = pd.DataFrame({"item": 0, "layer": np.repeat(range(L), 2), "step": [0, 1] * L,
                          "peak": [7, 7, 1, 2, 3, 4, 7, 7], "peak_share": 0.5,
                          "peak_on_object": [False, False, True, True, True, False, False, False]})
    sinks = pd.DataFrame({"norm rank (1 = largest)": [1, 5, 6, 1]})
    s = maps.report(loc, peaks, sinks, n_layers=L, n_images=2)
    assert s["pointing_by_band"] == {"early": 0.0, "middle": 1.0, "late": 0.0}
    assert s["modal_peak_rate_by_band"] == {"early": 1.0, "middle": 0.5, "late": 1.0}
    assert s["off_object_peak_rate_by_band"] == {"early": 1.0, "middle": 0.25, "late": 1.0}
    assert s["images_scored"] == 2 and s["object_words"] == 2 and s["best_pointing_layer"] == 1
    empty = maps.report(loc.iloc[:0], peaks, sinks, n_layers=L, n_images=2)
    assert "pointing_by_layer" not in empty and empty["object_words"] == 0


def test_compression_main_k_question_sets_and_keys():
    assert compression.main_k([0.02, 0.1, 1.0]) == 0.02
    sets = compression.question_sets(compression.Config(k_frac=(0.05, 1.0)))
    assert list(sets) == ["exists", "kinds", "turn"] and sets["kinds"].k_frac == (0.05, 1.0)
    assert sets["turn"].followup == "turn" and sets["turn"].variants == ("full",)
    assert compression.key(compression.Config()) == compression.key(compression.Config(k_frac=(0.05,)))
    assert compression.key(compression.Config()) != compression.key(sets["kinds"])


def test_a_runs_image_file_column_leaves_the_findings_own_columns_alone(tmp_path):
    """The runner's constant columns for an annotated image must not overwrite a finding's
    column (fractions has one called "image")."""
    from dataclasses import dataclass
    from pathlib import Path
    from types import ModuleType

    from vlmscope import runner

    finding = ModuleType("stub")
    finding.NAME = "stub"

    @dataclass(frozen=True)
    class Config:
        pass

    finding.Config = Config
    finding.key = lambda cfg, **extra: []
    finding.run = lambda vlm, item, cfg: pd.DataFrame({"layer": [0, 1], "image": [0.25, 0.75]})
    finding.summarise = lambda df: {"image_mean": float(df.image.mean())}
    images = Path(__file__).resolve().parents[1] / "data" / "images"
    res = runner.run(finding, object(), n=2, images=str(images), out=tmp_path, model_name="m",
                     progress=False)
    assert res.df.image.tolist() == [0.25, 0.75, 0.25, 0.75] and res.summary["image_mean"] == 0.5
    assert sorted(set(res.df.image_file)) == ["scene0.jpg", "scene1.jpg"]
