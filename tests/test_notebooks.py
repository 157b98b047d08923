"""Notebooks execute headless on the bundled organism with the smallest settings."""

import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from vlmscope.notebooks import list_notebooks, run_notebooks

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def test_every_notebook_has_a_parameters_cell_and_a_paired_script():
    import jupytext

    for nb_path in list_notebooks():
        nb = nbformat.read(nb_path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{nb_path.name} needs one papermill parameters cell"
        assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
            f"{nb_path.name} is committed with outputs"
        script = nb_path.with_suffix(".py")
        assert script.exists(), f"{nb_path.name} has no paired .py"
        paired = jupytext.read(script)
        assert [c.source for c in paired.cells] == [c.source for c in nb.cells], \
            f"{nb_path.name} and {script.name} differ: run `jupytext --sync {script}`"


@pytest.mark.slow
def test_notebook_00_runs_and_computes_its_figures(tmp_path):
    from vlmscope.models import organisms

    if "organism" not in organisms():
        pytest.fail("the bundled organism is missing from data/organism")
    [done] = run_notebooks(out=tmp_path, only=["00"], parameters={"n_eval": 4}, progress=False)
    for name in ("00_scenes.png", "00_accuracy.png", "00_token_grid.png", "00_accuracy.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    acc = json.loads((tmp_path / "00_accuracy.json").read_text())
    assert acc["n"] == 4 and 0.0 <= acc["color"] <= 1.0
    nb = nbformat.read(done, as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


SMALLEST = {
    "01": ({"n_images": 2, "max_new_tokens": 16},
           ("01_fractions.png", "01_fractions.parquet", "01_summary.json")),
    "02": ({"n_images": 2, "max_new_tokens": 24},
           ("02_maps_across_layers.png", "02_localisation.png", "02_localisation.parquet",
            "02_peaks.parquet", "02_summary.json")),
    "03": ({"n_images": 1, "max_new_tokens": 16, "n_probe_scenes": 16},
           ("03_knockout.png", "03_knockout.parquet", "03_summary.json")),
    "04": ({"n_images": 2, "k_values": [0.05, 1.0]},
           ("04_compression.png", "04_compression_kinds.png", "04_compression.parquet",
            "04_summary.json")),
    "05": ({"n_questions": 2, "iterations": 2, "ig_iter": 3, "mask_size": 16},
           ("05_baselines.png", "05_iterations.png", "05_maps.png", "05_faithfulness.png",
            "05_plausibility.parquet", "05_mask.safetensors", "05_sanity.png", "05_summary.json")),
    "06": ({"n_scenes": 2, "iterations": 1, "ig_iter": 2, "mask_size": 8, "n_permutations": 99,
            "noise_seeds": 2,
            "models": ["organism-vit-s", "organism-vit-m", "organism-siglip-s"]},
           ("06_focus_vs_correctness.png", "06_design_vs_scale.png",
            "06_focus_vs_correctness.parquet", "06_pairs.parquet", "06_summary.json")),
    "07": ({"n_scenes": 2, "n_reference": 3, "max_new_tokens": 24, "use_noise_filter": True},
           ("07_object_tokens.png", "07_loss_by_count.png", "07_ablation.parquet", "07_summary.json")),
    "08": ({"n_scenes": 2}, ("08_lens_layers.png", "08_lens_score.png", "08_lens.parquet",
                             "08_summary.json")),
    "09": ({"n_scenes": 2}, ("09_windows.png", "09_lastpos.parquet", "09_summary.json")),
}


@pytest.mark.slow
@pytest.mark.parametrize("prefix", sorted(SMALLEST))
def test_attention_notebooks_run_and_compute_their_figures(tmp_path, prefix):
    from vlmscope.models import organisms

    if "organism" not in organisms():
        pytest.fail("the bundled organism is missing from data/organism")
    parameters, files = SMALLEST[prefix]
    if prefix in ("06", "07", "08", "09"):  # their resumable runs go to the test's folder
        parameters = {**parameters, "runs_dir": str(tmp_path / "runs")}
    [done] = run_notebooks(out=tmp_path, only=[prefix], parameters=parameters, progress=False)
    for name in files:
        assert (tmp_path / name).stat().st_size > 0, name
    summary = json.loads((tmp_path / f"{prefix}_summary.json").read_text())
    if prefix == "02":
        L = summary["n_layers"]
        assert summary["n_images"] == 2 and len(summary["pointing_by_layer"]) == L
        assert all(0.0 <= p <= 1.0 for p in summary["pointing_by_layer"])
        assert 0.0 < summary["pointing_chance"] < 1.0
    if prefix == "03":
        assert summary["n_images"] == 1
        assert set(summary["f1_l=-1"]) == set(summary["f1_exact_l=-1"]) == {
            "img->gen", "img->txt", "img->txt+gen"}
        assert 0.0 <= summary["probe_query_best"] <= 1.0 and 0.0 <= summary["probe_image_best"] <= 1.0
    if prefix == "05":
        assert summary["selected"] and summary["n_scored"] + summary["n_skipped"] == 2
        assert set(summary["deletion"]) == {"iGOS+", "attention", "gradient", "random"}
        assert -1 <= summary["sanity"]["rank_correlation_random_weights"] <= 1
        from vlmscope.heatmaps import Heatmap

        assert Heatmap.load(tmp_path / "05_mask.safetensors").mask.shape == (16, 16)
    if prefix == "06":
        assert summary["answers"] == 2 * 2 * 3  # scenes x kinds x models, each run by 2 seeds
        assert summary["noise_seeds"] == 2 and (summary["seed_agreement_median"] is None
                                                or -1 <= summary["seed_agreement_median"] <= 1)
        assert summary["scored"] + summary["skipped"] == summary["answers"]
        pairs = pd.read_parquet(tmp_path / "06_pairs.parquet")
        assert set(pairs.relation) >= {"same design, different scale", "different design, same scale"}
        assert (tmp_path / "runs" / "heatmaps" / "parts").is_dir()
    if prefix == "07":
        lost = summary["lost"]
        assert {"object,1,vqa", "random,1,vqa", "high-norm,1,vqa", "ig,1,vqa"} <= set(lost)
        assert all(0.0 <= v <= 1.0 for v in lost.values() if v == v)
        assert 0.0 <= summary["high_norm_on_objects"] <= 1.0 and summary["noise_filter"] is True
    if prefix == "08":
        assert 0.0 <= summary["best_share"] <= 1.0 and summary["reads_as"]
    if prefix == "09":
        ra = summary["relative_accuracy"]
        assert {"object+1,all", "other image,all", "last row: object+1,all", "last row: rest,all",
                "other image, object only,all", "last row -> last,all"} <= set(ra)
        assert set(summary["p_drop_answer"]) == set(summary["p_drop"])
        assert summary["windows"]["all"] == list(range(summary["n_layers"]))
    nb = nbformat.read(done, as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
