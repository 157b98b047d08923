"""Notebooks execute headless on the bundled organism with the smallest settings."""
import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from vlmscope.notebooks import list_notebooks, run_notebooks

from test_pinned import check_pin  # summaries on the organism keep their pinned numbers

CELL_TIMEOUT = 600  # seconds a cell may run: a hung kernel ends its attempt instead of holding CI


def _run_notebooks(**kw):
    """``run_notebooks`` under the cell limit: a cell that never finishes fails its test.

    Explorer cells used to sit with an idle kernel now and then (notebooks 01,
    02, 08): the kernel had sent its reply, but pyzmq's asyncio poll in the
    notebook client missed the wake-up, and the reply was read only when the
    cell's time limit ran out (it then passed, late). ``run_notebooks`` now reads
    replies with ``PollingKernelManager``'s client (``tests/test_notebook_kernel.py``);
    the limit stays as a backstop, without a retry that would hide a real hang.
    """
    return run_notebooks(cell_timeout=CELL_TIMEOUT, **kw)


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
    [done] = _run_notebooks(out=tmp_path, only=["00"], parameters={"n_eval": 4},
                           progress=False)
    for name in ("00_scenes.png", "00_accuracy.png", "00_token_grid.png", "00_accuracy.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    acc = json.loads((tmp_path / "00_accuracy.json").read_text())
    assert acc["n"] == 4 and 0.0 <= acc["color"] <= 1.0
    assert acc["nonsense"] is None  # the organism answers better than chance
    nb = nbformat.read(done, as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    check_pin("notebook-00", acc)


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
    "10": ({"n_scenes": 1, "models": [], "kinds": ["color", "where"], "noise_seeds": 1,
            "methods": ["attention", "attention@best", "gradient", "patching"], "n_resamples": 200},
           ("10_leaderboard.png", "10_leaderboard.parquet", "10_example_0.png", "10_summary.json")),
    "10a": ({"n_objects": 2, "n_reference": 3}, ("10a_attribution.png", "10a_summary.json")),
    "11": ({"n_scenes": 1}, ("11_mechanisms.png", "11_summary.json")),
}


@pytest.mark.slow
@pytest.mark.parametrize("prefix", sorted(SMALLEST))
def test_attention_notebooks_run_and_compute_their_figures(tmp_path, prefix):
    from vlmscope.models import organisms

    if "organism" not in organisms():
        pytest.fail("the bundled organism is missing from data/organism")
    parameters, files = SMALLEST[prefix]
    if prefix in ("06", "07", "08", "09", "10"):  # their resumable runs go to the test's folder
        parameters = {**parameters, "runs_dir": str(tmp_path / "runs")}
    [done] = _run_notebooks(out=tmp_path, only=[prefix], parameters=parameters,
                           progress=False)
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
        assert all(0.0 <= v <= 1.0 for v in lost.values() if v is not None)  # null: 0 of 0
        assert 0.0 <= summary["high_norm_on_objects"] <= 1.0 and summary["noise_filter"] is True
    if prefix == "08":
        assert 0.0 <= summary["best_share"] <= 1.0 and summary["reads_as"]
    if prefix == "09":
        ra = summary["relative_accuracy"]
        assert {"object+1,all", "other image,all", "last row: object+1,all", "last row: rest,all",
                "other image, object only,all", "last row -> last,all"} <= set(ra)
        assert set(summary["p_drop_answer"]) == set(summary["p_drop"])
        assert summary["windows"]["all"] == list(range(summary["n_layers"]))
    if prefix == "10a":  # by hand through sites = the library's functions; patching as 07 and 09 find
        assert summary["lens_agreement"] == 1.0 and summary["norms_agree"]
        assert summary["ablation_by_hand_equals_library"] and summary["n_objects"] == 2
        restored = list(summary["restored_by_site"].values())
        assert restored[0] > 0.9 and restored[-1] < 0.1, restored  # input yes, after the last layer no
        assert summary["agreement"] > 0.8 and summary["attribution_share_on_object"] > 0.5
    if prefix == "10":  # every method scored; the oracle shown, not ranked; patching not on itself
        assert summary["questions"] == 2 and set(summary["leaderboard"]["auroc"]) == {
            "random", "attention", "attention@best", "gradient", "patching"}
        assert "attention@best" not in summary["ranking_causal"]
        assert summary["rank_shift"].get("patching") is None
        assert 0.5 < summary["causal_map_on_object"]["auroc"] <= 1  # the organism uses the object
    if prefix != "08":  # the trained organism's answers make sense: every summary says so
        assert summary["nonsense"] is None, summary["nonsense"]
    nb = nbformat.read(done, as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    check_pin(f"notebook-{prefix}", summary)


# ------------------------------------------------------------ real-model stand-ins
STANDINS = ("standin-llava-1.5", "standin-qwen2-vl")
# notebook 11 is about the organism's training variants and takes no model: not run on stand-ins
SUMMARIES = {"00": "00_accuracy.json", **{p: f"{p}_summary.json" for p in SMALLEST if p != "11"}}


def _no_nan(text):
    def refuse(constant):
        raise AssertionError(f"{constant} in a summary: a figure that could not be computed")
    return json.loads(text, parse_constant=refuse)


def _printed(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", [])
                   if o.get("output_type") == "stream")


@pytest.mark.slow
@pytest.mark.parametrize("prefix", sorted(SUMMARIES))
@pytest.mark.parametrize("name", STANDINS)
def test_notebooks_run_on_random_weight_standins_and_say_so(tmp_path, standin_cache, name, prefix):
    """Every notebook runs end to end on a random-weight stand-in of a real model (its geometry,
    its kind of tokenizer); where the nonsense answers leave nothing to report, the summary
    says why (and the notebook prints it) instead of a NaN or a traceback."""
    from vlmscope.findings import NO_OBJECT_WORDS
    from vlmscope.notebooks import QUICK
    from vlmscope.testing.standins import standin_path

    path = standin_path(name, standin_cache)
    [done] = _run_notebooks(out=tmp_path, only=[prefix], model_id=str(path), quick=True,
                           progress=False)
    nb = nbformat.read(done, as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors[0].get("evalue")
    summary = _no_nan((tmp_path / SUMMARIES[prefix]).read_text())
    reason = summary["nonsense"]
    if reason is not None:
        assert f"Nothing to report: {reason}." in _printed(nb)
    if prefix == "00":  # random weights never beat chance on every kind at once
        assert summary["n"] == QUICK["00"]["n_eval"] and "nonsense" in reason
    if prefix == "01":  # attention is measured whatever the answers; the flag follows the words
        assert 0.0 <= summary["mean_image_attention"] <= 1.0
        assert (reason is None) == (summary["object_words"] > 0)
    if prefix == "02":
        assert (reason == NO_OBJECT_WORDS) == ("pointing_by_layer" not in summary)
        assert (reason is None) == (summary["object_words"] > 0)
    if prefix == "03":
        assert (reason is None) == ("f1_l=-1" in summary)
    if prefix in ("04", "05", "06", "07", "09"):
        assert reason, f"{prefix}: random-weight answers passed for sensible"
    if prefix == "06":
        assert summary["models"] == [str(path)] and summary["design_vs_scale"] == {}
    if prefix == "07":
        assert all(summary["denominators"][k] == 0 and v is None for k, v in summary["lost"].items())
    if prefix == "08":
        assert 0.0 <= summary["best_share"] <= 1.0 and summary["reads_as"]
        assert (reason is None) == (summary["best_share"] > 0)
    if prefix == "09":
        assert summary["relative_accuracy"] == {}


def _photo_folder(root: Path) -> Path:
    """Two 640x480 noisy "photos" in the image-folder layout (written here, not by the library):
    a "cup" given by a box, a "ball" by a mask PNG."""
    import numpy as np
    from PIL import Image

    (root / "masks").mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:480, :640]
    ball = (yy - 330) ** 2 + (xx - 160) ** 2 < 70 ** 2
    entries = []
    for i in range(2):
        pixels = (rng.random((480, 640, 3)) * 60 + 90).astype(np.uint8)
        pixels[100:220, 400:560], pixels[ball] = (200, 30, 30), (30, 30, 200)
        Image.fromarray(pixels).save(root / f"photo{i}.png")
        Image.fromarray(ball.astype(np.uint8) * 255).save(root / "masks" / f"photo{i}_ball.png")
        entries.append({"file": f"photo{i}.png", "objects": [
            {"name": "cup", "box": [400, 100, 560, 220]},
            {"name": "ball", "mask": f"masks/photo{i}_ball.png"}]})
    (root / "annotations.json").write_text(json.dumps({"images": entries}))
    return root


FOLDER_SMALL = {  # the smallest settings that reach every cell
    "04": {"n_images": 1, "k_values": [0.05, 1.0]},
    "05": {"seed": 1, "n_questions": 1, "iterations": 1, "ig_iter": 2, "mask_size": 8,
           "tie_orders": 1},
    "06": {"n_scenes": 1, "iterations": 1, "ig_iter": 2, "mask_size": 8, "noise_seeds": 1,
           "n_permutations": 9},
}


@pytest.mark.slow
def test_notebooks_04_to_06_take_an_image_folder_on_a_standin(tmp_path, standin_cache):
    """Notebooks 04-06 pointed at a random-weight stand-in and a folder of 640x480 images: they
    ask about the folder's annotated objects (not the synthetic world's), say plainly that the
    answers are nonsense, and write summaries with no NaN and no traceback."""
    from vlmscope.testing.standins import standin_path

    folder = _photo_folder(tmp_path / "photos")
    path = standin_path("standin-llava-1.5", standin_cache)
    names = {"is there a cup ?", "is there a ball ?", "where is the cup ?", "where is the ball ?"}
    for prefix, parameters in FOLDER_SMALL.items():
        out = tmp_path / prefix
        [done] = _run_notebooks(out=out, only=[prefix], model_id=str(path), images=str(folder),
                                parameters=parameters, progress=False)
        nb = nbformat.read(done, as_version=4)
        errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, (prefix, errors[0].get("evalue") if errors else None)
        summary = _no_nan((out / f"{prefix}_summary.json").read_text())
        assert summary["nonsense"], f"{prefix}: random-weight answers passed for sensible"
        assert f"Nothing to report: {summary['nonsense']}." in _printed(nb), prefix
        if prefix == "04":
            rows = pd.read_parquet(out / "04_compression.parquet")
            assert set(rows.image_file) == {"photo0.png"} and set(rows.question) <= names
            assert {"exists", "where"} <= set(rows.kind)
            assert summary["differences"][0].startswith("the data differ: your annotated images")
        if prefix == "05":  # "color" needs the world's colours: the folder's image is asked "exists"
            assert summary["question"] in names and summary["question"].startswith("is there")
            assert "asking 'exists' instead" in _printed(nb)
            assert set(pd.read_parquet(out / "05_plausibility.parquet").columns) >= {"mass", "map"}
        if prefix == "06":  # one image x ("where", "exists") x one model
            assert summary["models"] == [str(path)] and summary["answers"] == 2
            assert summary["scored"] + summary["skipped"] == 2 and summary["design_vs_scale"] == {}


def test_notebooks_run_passes_model_images_and_quick_settings(tmp_path, monkeypatch, capsys):
    """What `notebooks run --model --images --quick -p` hands each notebook (papermill stubbed)."""
    import papermill as pm

    from vlmscope.cli import main
    from vlmscope.notebooks import QUICK

    seen = {}
    monkeypatch.setattr(pm, "execute_notebook",
                        lambda src, dst, parameters, **kw: seen.setdefault(Path(src).name[:2],
                                                                           parameters))
    images = Path(__file__).resolve().parents[1] / "data" / "images"
    assert main(["notebooks", "run", "--out", str(tmp_path), "--model", "some/model", "--images",
                 str(images), "--quick", "--only", "01", "04", "06", "10a", "-p",
                 "n_images=5"]) == 0
    out = capsys.readouterr().out
    assert seen["01"] == {"figures_dir": str(tmp_path.resolve()), **QUICK["01"], "n_images": 5,
                          "model_id": "some/model", "images": str(images.resolve()),
                          "runs_dir": str(tmp_path.resolve() / "runs" / "01")}
    assert seen["04"]["model_id"] == "some/model" and seen["04"]["images"] == str(images.resolve())
    assert seen["06"]["images"] == str(images.resolve())
    assert seen["10"]["model_id"] == "some/model" and "images" not in seen["10"]
    assert "10a_playground.ipynb: its questions need the synthetic world" in out
    assert "04_compressed_context.ipynb: its questions" not in out
    assert seen["06"]["runs_dir"] == str(tmp_path.resolve() / "runs" / "06")
    assert seen["06"]["noise_seeds"] == QUICK["06"]["noise_seeds"]
    seen.clear()
    assert main(["notebooks", "run", "--out", str(tmp_path), "--only", "01"]) == 0
    assert seen["01"] == {"figures_dir": str(tmp_path.resolve())}  # the notebook's own defaults


def test_notebooks_run_refuses_a_bad_image_folder_before_starting(tmp_path, capsys):
    from vlmscope.cli import main

    assert main(["notebooks", "run", "--out", str(tmp_path), "--images", str(tmp_path / "none"),
                 "--only", "01"]) == 2
    assert "image source" in capsys.readouterr().err and not (tmp_path / "executed").exists()


def test_every_parameters_cell_parses_for_papermill():
    """papermill silently ignores a parameter line it cannot parse (e.g. a comment holding
    quotes and '='); then `notebooks run` could not pass that parameter."""
    import ast

    import papermill as pm

    for nb_path in list_notebooks():
        nb = nbformat.read(nb_path, as_version=4)
        [cell] = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assigned = [t.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign)
                    for t in node.targets]
        assert list(pm.inspect_notebook(str(nb_path))) == assigned, nb_path.name


@pytest.mark.slow
def test_notebooks_take_their_images_from_a_folder(tmp_path):
    """`--images data/images`: notebooks 00-03 read the sample folder (640x480, boxes and a mask)."""
    from vlmscope.datasets.folder import load_folder

    sample = Path(__file__).resolve().parents[1] / "data" / "images"
    records = load_folder(sample)
    done = _run_notebooks(out=tmp_path, only=["00", "01", "02", "03"], model_id="organism",
                         images=str(sample), quick=True, progress=False)
    assert [p.name[:2] for p in done] == ["00", "01", "02", "03"]
    for path in done:
        nb = nbformat.read(path, as_version=4)
        errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, (path.name, errors[0].get("evalue") if errors else None)
    printed = _printed(nbformat.read(done[2], as_version=4))
    assert f"ground truth: {records[0].description()}" in printed  # the folder's, not a scene's
    s1 = _no_nan((tmp_path / "01_summary.json").read_text())
    s2 = _no_nan((tmp_path / "02_summary.json").read_text())
    assert s1["n_images"] == s2["n_images"] == 2  # --quick: the first two of the three
    assert (s2["nonsense"] is None) == ("pointing_by_layer" in s2) == (s2["object_words"] > 0)
    s3 = _no_nan((tmp_path / "03_summary.json").read_text())
    assert s3["n_images"] == 1 and (s3["nonsense"] is None) == ("f1_l=-1" in s3)
    for prefix, s in (("01", s1), ("02", s2), ("03", s3)):
        check_pin(f"notebook-{prefix}-images", s)


@pytest.mark.slow
def test_notebooks_07_to_09_take_their_images_from_a_folder(tmp_path):
    """`--images data/images`: notebooks 07-09 run their findings on the sample folder's
    annotated objects (04-06 with a folder: the stand-in test above)."""
    sample = Path(__file__).resolve().parents[1] / "data" / "images"
    done = _run_notebooks(out=tmp_path, only=["07", "08", "09"], model_id="organism",
                         images=str(sample), quick=True, progress=False)
    assert [p.name[:2] for p in done] == ["07", "08", "09"]
    for path in done:
        nb = nbformat.read(path, as_version=4)
        errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, (path.name, errors[0].get("evalue") if errors else None)
    s7 = _no_nan((tmp_path / "07_summary.json").read_text())
    tasks = {k.split(",")[2] for k in s7["lost"]}
    assert tasks == {"generative", "polling"}  # an annotated object has no colour question (vqa)
    lens = pd.read_parquet(tmp_path / "08_lens.parquet")
    assert "share" in lens and "share_color" not in lens  # a word of the name, not colour/shape
    s8 = _no_nan((tmp_path / "08_summary.json").read_text())
    assert 0.0 <= s8["best_share"] <= 1.0 and s8["n_scenes"] == 2
    printed = _printed(nbformat.read(done[2], as_version=4))
    assert "what is at the" in printed  # the folder's question, not "what color is the <shape> ?"


def test_run_notebooks_hands_papermill_the_cell_timeout(tmp_path, monkeypatch):
    """A hung kernel must fail its notebook: the per-cell limit reaches papermill (stubbed)."""
    import papermill as pm

    seen = {}
    monkeypatch.setattr(pm, "execute_notebook", lambda src, dst, parameters, **kw: seen.update(kw))
    run_notebooks(out=tmp_path, only=["01"], cell_timeout=7, progress=False)
    assert seen["execution_timeout"] == 7
    run_notebooks(out=tmp_path, only=["01"], progress=False)
    assert seen["execution_timeout"] is None  # users' long cells on real models are not cut


def _tiny_notebook(path, body: str):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('figures_dir = "."')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


def test_run_notebooks_with_jobs_runs_them_at_once_in_order_and_reports_failures(tmp_path,
                                                                               monkeypatch):
    """``jobs=2``: two kernels at a time, each told its share of the CPU threads; the executed
    copies come back in the notebooks' order, a failing notebook is reported through
    ``on_done`` (``keep_going``) or raised, and the others are not lost."""
    import os

    import papermill as pm

    from vlmscope import notebooks

    src = tmp_path / "nb"
    src.mkdir()
    write = ("import os, pathlib, time\n"
             "pathlib.Path(figures_dir, '{name}.txt').write_text("
             "os.environ.get('OMP_NUM_THREADS', 'unset') + ' ' + str(os.getpid()))\n"
             "time.sleep(1)")
    for name in ("00_a", "01_b"):
        _tiny_notebook(src / f"{name}.ipynb", write.format(name=name))
    _tiny_notebook(src / "02_fail.ipynb", "raise ValueError('boom')")
    monkeypatch.setattr(notebooks, "notebook_dir", lambda: src)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    seen = []
    out = tmp_path / "out"
    done = run_notebooks(out=out, jobs=2, keep_going=True, progress=False,
                         on_done=lambda p, s, e: seen.append((p.name, e)))
    assert [p.name for p in done] == ["00_a.ipynb", "01_b.ipynb"]
    errors = {name: e for name, e in seen}
    assert set(errors) == {"00_a.ipynb", "01_b.ipynb", "02_fail.ipynb"}
    assert errors["00_a.ipynb"] is None and errors["02_fail.ipynb"].ename == "ValueError"
    assert "boom" in errors["02_fail.ipynb"].evalue
    share = str(max(1, (os.cpu_count() or 1) // 2))
    records = [(out / f"{n}.txt").read_text().split() for n in ("00_a", "01_b")]
    assert [r[0] for r in records] == [share, share]
    assert "OMP_NUM_THREADS" not in os.environ  # the parent's own threads are left alone
    with pytest.raises(pm.PapermillExecutionError, match="boom"):
        run_notebooks(out=tmp_path / "again", jobs=2, progress=False)
    with pytest.raises(ValueError, match="jobs must be at least 1"):
        run_notebooks(out=tmp_path / "none", jobs=0)
