"""The questions notebooks 04-06 ask of an annotated image (an image folder), on the tiny model."""
import json

import numpy as np
import pytest
from PIL import Image

from vlmscope import findings


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two 96x64 pictures: a "cup" by a box (left half), a "ball" by a mask (bottom right)."""
    root = tmp_path_factory.mktemp("folder")
    (root / "masks").mkdir()
    mask = np.zeros((64, 96), bool)
    mask[40:60, 60:90] = True
    entries = []
    for i in range(2):
        pixels = np.full((64, 96, 3), 120 + 40 * i, np.uint8)
        pixels[5:30, 5:40], pixels[mask] = (200, 20, 20), (20, 20, 200)
        Image.fromarray(pixels).save(root / f"p{i}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / f"p{i}.png")
        entries.append({"file": f"p{i}.png", "objects": [
            {"name": "cup", "box": [5, 5, 40, 30]}, {"name": "ball", "mask": f"masks/p{i}.png"}]})
    (root / "annotations.json").write_text(json.dumps({"images": entries}))
    return root


def _record(folder):
    from vlmscope.datasets.folder import load_folder

    return load_folder(folder, limit=1)[0]


def test_compression_asks_an_annotated_image_exists_and_where(folder):
    rec = _record(folder)
    asked = findings.compression.record_questions(rec, ("exists", "where"))
    assert [(q.kind, q.text, q.answer) for q in asked] == [
        ("exists", "is there a cup ?", "yes"), ("exists", "is there a ball ?", "yes"),
        ("where", "where is the cup ?", "top left"), ("where", "where is the ball ?", "bottom right")]
    assert [q.kind for q in findings.compression.record_questions(rec)] == ["exists", "exists"]
    # notebook 04's "kinds" run (count, color, shape, where): only "where" applies
    kinds = findings.compression.KIND_QUESTIONS
    assert {q.kind for q in findings.compression.record_questions(rec, kinds)} == {"where"}
    with pytest.raises(ValueError, match="only exists or where questions.*'color'"):
        findings.compression.record_questions(rec, ("color",))


def test_compression_run_on_an_annotated_image_reuses_a_description(tiny, folder):
    from dataclasses import replace

    from vlmscope import compression as C

    rec = _record(folder)
    cfg = findings.compression.Config(max_new_tokens=3, k_frac=(0.5,), questions=("exists", "where"),
                                      variants=("both", "direct"))
    ctx = C.describe(tiny, rec.image, findings.compression.compression_config(cfg))
    rows = findings.compression.run(tiny, rec, cfg, ctx)
    assert set(rows.kind) == {"exists", "where"} and len(rows) == 2 * 4  # variants x questions
    assert set(rows.description) == {ctx.generation.text}
    again = findings.compression.run(tiny, rec, replace(cfg, questions=("exists",)), ctx)
    assert set(again.question) == {"is there a cup ?", "is there a ball ?"}


def test_compression_report_names_the_images(tiny, folder, tmp_path):
    import pandas as pd

    from vlmscope import compression as C
    from vlmscope.runner import run

    cfg = findings.compression.Config(max_new_tokens=3, k_frac=(0.5, 1.0))
    sets = {"exists": cfg, "kinds": findings.compression.question_sets(cfg)["kinds"]}
    results = pd.concat([run("compression", tiny, n=1, images=folder, config=c, model_name="tiny",
                             out=tmp_path / name, progress=False).df.assign(set=name)
                         for name, c in sets.items()], ignore_index=True)
    assert findings.compression.on_images(results)
    ctx = C.describe(tiny, _record(folder).image, findings.compression.compression_config(cfg))
    report = findings.compression.report(results, ctx, [0.5, 1.0], "tiny", 2, 1)
    assert report["differences"][0].startswith("the data differ: your annotated images")
    assert not any("yes/no exists pairs" in d for d in report["differences"])  # no pairs here
    assert set(findings.compression.direct_accuracy(findings.compression.tables(results))) == {
        "where", "exists"}


def test_heatmap_worked_example_on_an_annotated_image(tiny, folder, capsys):
    from vlmscope.heatmaps import HeatmapConfig

    config = HeatmapConfig(iterations=1, ig_iter=2, size=4)
    ex = findings.heatmaps.explain(tiny, 1, "color", config, max_new_tokens=3, images=folder)
    assert "p1.png: an annotated image has no 'color' question" in capsys.readouterr().out
    assert ex.question.kind == "exists" and ex.question.text.startswith("is there a ")
    assert ex.scene.file == "p1.png" and ex.target.shape == (64, 96)  # the image's own pixels
    assert ex.scores().loc["iGOS+", "mass"] == pytest.approx(
        ex.maps()["iGOS+"][ex.target].sum() / ex.maps()["iGOS+"].sum(), abs=1e-6)
    where = findings.heatmaps.explain(tiny, 0, "where", config, max_new_tokens=3, images=folder)
    assert where.question.text.startswith("where is the ") and where.scene.file == "p0.png"
    assert where.question.answer in ("top left", "bottom right")


def test_zoo_runs_on_an_image_folder(tiny, folder, tmp_path):
    from vlmscope.heatmaps import HeatmapConfig
    from vlmscope.runner import zoo_runs

    config = HeatmapConfig(threshold=-1e9, single_token_ratio=1e9, iterations=1, ig_iter=2, size=4)
    df = zoo_runs(["a", "b"], 2, 0, config, 2, out=tmp_path, max_new_tokens=3, images=folder,
                  load=lambda name: tiny)
    assert len(df) == 2 * 2 * 2  # models x images x ("where", "exists"), one row per answer
    assert set(df.kind) == {"where", "exists"} and set(df.image_file) == {"p0.png", "p1.png"}
    assert set(df.question_id) == {f"{i}/{k}" for i in range(2) for k in ("where", "exists")}
    scored = df[df.skipped == ""]
    assert len(scored) and all(len(f) == 2 for f in scored.mask_files)  # one mask per noise seed
    assert scored.igos_mass.between(0, 1).all()
    maps, qids, agreement = findings.heatmaps.mean_maps(df, tmp_path / "heatmaps" / "masks")
    shapes = {m.shape for per in maps.values() for m in per if m is not None}
    assert shapes == {(64, 96)} and len(agreement) == len(scored)
