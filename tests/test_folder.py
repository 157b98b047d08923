"""Image folders (datasets.folder), the image source of the notebooks, and findings' guards."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlmscope.datasets.folder import (FolderError, ImageRecord, LabelledObject, load_folder,
                                      load_images, write_sample_folder)
from vlmscope.findings import (answer_sense, description_sense, finite, judge_for,
                               mentioned_objects, write_summary)

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "images"


def test_the_shipped_sample_loads_with_its_boxes_and_mask():
    records = load_folder(SAMPLE)
    assert [r.file for r in records] == ["scene0.jpg", "scene1.jpg", "scene2.jpg"]
    assert all(r.image.size == (640, 480) and r.image.mode == "RGB" for r in records)
    listed = json.loads((SAMPLE / "annotations.json").read_text())["images"]
    for rec, entry in zip(records, listed):
        assert [o.name for o in rec.objects] == [o["name"] for o in entry["objects"]]
        for obj, ann in zip(rec.objects, entry["objects"]):
            assert obj.mask.shape == (480, 640) and obj.mask.dtype == bool
            if "box" in ann:  # a box becomes exactly its rectangle
                x0, y0, x1, y1 = ann["box"]
                assert obj.bbox == (x0, y0, x1, y1) and obj.mask.sum() == (x1 - x0) * (y1 - y0)
            else:  # the mask PNG's non-zero pixels
                png = np.asarray(Image.open(SAMPLE / ann["mask"]).convert("L")) > 0
                assert (obj.mask == png).all() and 0 < obj.mask.sum() < obj.mask.size / 4
    assert any("mask" in o for e in listed for o in e["objects"])
    assert records[0].description().startswith(f"a {records[0].objects[0].name} ,")


def test_the_sample_is_what_write_sample_folder_makes(tmp_path):
    """The shipped folder is reproducible: same annotations, same mask, same pictures (to JPEG noise)."""
    made = write_sample_folder(tmp_path / "images")
    assert (made / "annotations.json").read_text() == (SAMPLE / "annotations.json").read_text()
    for png in (SAMPLE / "masks").glob("*.png"):
        assert (np.asarray(Image.open(png)) == np.asarray(Image.open(made / "masks" / png.name))).all()
    for a, b in zip(load_folder(SAMPLE), load_folder(made)):
        diff = np.abs(np.asarray(a.image, float) - np.asarray(b.image, float))
        assert diff.mean() < 2.0
        for oa, ob in zip(a.objects, b.objects):  # the object really is where the box says
            inside = np.asarray(a.image, float)[oa.mask].mean(0)
            background = np.asarray(a.image, float)[:4, :4].reshape(-1, 3).mean(0)
            assert np.abs(inside - background).max() > 30, (a.file, oa.name)


def _folder(tmp_path, objects, size=(40, 30), extra=None):
    Image.new("RGB", size, (200, 200, 200)).save(tmp_path / "a.png")
    entry = {"file": "a.png", "objects": objects, **(extra or {})}
    (tmp_path / "annotations.json").write_text(json.dumps({"images": [entry]}))
    return tmp_path


@pytest.mark.parametrize("objects, message", [
    ([], "lists no objects"),
    ([{"box": [0, 0, 5, 5]}], "has no 'name'"),
    ([{"name": "cup"}], "exactly one of 'box' or 'mask'"),
    ([{"name": "cup", "box": [0, 0, 5, 5], "mask": "m.png"}], "exactly one of 'box' or 'mask'"),
    ([{"name": "cup", "box": [50, 0, 60, 5]}], "covers no pixel of the 40x30 image"),
    ([{"name": "cup", "box": [5, 5, 2, 9]}], "covers no pixel"),
    ([{"name": "cup", "box": [0, 0, 5]}], "must be [x0, y0, x1, y1]"),
    ([{"name": "cup", "mask": "nowhere.png"}], "does not exist"),
])
def test_a_malformed_annotation_is_named(tmp_path, objects, message):
    with pytest.raises(FolderError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_folder(_folder(tmp_path, objects))


def test_a_mask_of_another_size_or_empty_is_refused(tmp_path):
    _folder(tmp_path, [{"name": "cup", "mask": "m.png"}])
    Image.new("L", (20, 30), 255).save(tmp_path / "m.png")
    with pytest.raises(FolderError, match="m.png is 20x30, the image is 40x30"):
        load_folder(tmp_path)
    Image.new("L", (40, 30), 0).save(tmp_path / "m.png")
    with pytest.raises(FolderError, match="empty"):
        load_folder(tmp_path)


def test_missing_folder_file_or_annotations(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_folder(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no annotations.json"):
        load_folder(tmp_path)
    (tmp_path / "annotations.json").write_text('{"images": [{"file": "gone.jpg", "objects": []}]}')
    with pytest.raises(FileNotFoundError, match="gone.jpg"):
        load_folder(tmp_path)
    (tmp_path / "annotations.json").write_text("{not json")
    with pytest.raises(FolderError, match="not valid JSON"):
        load_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="neither annotations.json"):
        load_images(tmp_path / "..", n=1)


def test_load_images_keeps_the_synthetic_world_by_default():
    from vlmscope.datasets.synthetic import World, _mix

    got = load_images("", n=3, seed=5)
    want = [World().scene(_mix(5, i)) for i in range(3)]
    assert [s.seed for s in got] == [s.seed for s in want]
    assert all((np.asarray(a.image) == np.asarray(b.image)).all() for a, b in zip(got, want))
    assert len(load_images(SAMPLE, n=2)) == 2 and len(load_images(SAMPLE, n=10)) == 3


def test_finite_and_write_summary_never_write_nan(tmp_path):
    out = write_summary(tmp_path / "s.json", {"a": float("nan"), "b": {"c": np.float32("inf")},
                                              "d": [np.int64(2), 0.5], "e": np.bool_(True)},
                        "no object word in the answer: nothing to localise")
    text = (tmp_path / "s.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    back = json.loads(text)
    assert back == out == {"a": None, "b": {"c": None}, "d": [2, 0.5], "e": True,
                           "nonsense": "no object word in the answer: nothing to localise"}
    assert write_summary(tmp_path / "t.json", {"x": 1.0})["nonsense"] is None
    assert finite((1.0, math.nan)) == [1.0, None]


def test_answer_sense_is_judged_against_chance():
    assert answer_sense({"color": 0.97, "shape": 1.0, "where": 0.9, "exists": 0.95, "count": 1.0}) is None
    assert "nonsense" in answer_sense({"color": 0.0, "shape": 0.0, "where": 0.0, "exists": 0.0})
    at_chance = {"color": 0.2, "shape": 0.1, "where": 0.0, "exists": 0.5, "count": 0.25}
    assert "better than chance" in answer_sense(at_chance)
    assert answer_sense({**at_chance, "shape": 0.5}) is None  # one kind above chance is sense
    assert "not judged" in answer_sense({"describe_f1": 0.4})


def test_mentioned_objects_on_scenes_and_annotated_images():
    from vlmscope.datasets.synthetic import World

    scene = World().scene(seed=3)
    o = scene.objects[0]
    tokens = ["▁a", f"▁{o.color.capitalize()}", "Ġ" + o.shape + "s", "▁zebra", "."]
    found = mentioned_objects(tokens, scene)
    assert [(s, ob.name) for s, ob in found] == [(1, o.name), (2, o.name)]
    cup = LabelledObject("coffee cup", np.ones((4, 4), bool), aliases=("mugs",))
    rec = ImageRecord(Image.new("RGB", (4, 4)), (cup,), "x.jpg")
    assert [s for s, _ in mentioned_objects(["the", "Ġcups", "▁mug", "on", "table"], rec)] == [1, 2]
    assert mentioned_objects(["blue", "blue", "blue"], rec) == []


def test_judge_for_and_description_sense():
    from vlmscope.judge import ExactJudge

    scenes = load_images("", n=2)
    assert isinstance(judge_for(scenes), ExactJudge)
    records = load_folder(SAMPLE)
    judge = judge_for(records)
    assert judge.objects("I see a blue triangle and a dog") == {"blue triangle"}
    assert description_sense(["I see a blue triangle"], judge) is None
    assert "nothing to compare" in description_sense(["system you many", ""], judge)


def test_load_images_reads_a_coco_copy_through_load_coco(tmp_path):
    from test_coco import make_coco

    from vlmscope.datasets.coco import load_coco

    root = make_coco(tmp_path)
    want = load_coco(root, limit=2, seed=0)
    got = load_images(root, n=2, seed=0)
    assert [r.file for r in got] == [str(it.file) for it in want]
    for rec, item in zip(got, want):
        [obj] = rec.objects
        assert obj.name == item.category and (obj.mask == item.mask()).all()
        assert set(item.words()) <= set(obj.words)  # plurals and synonyms name it too
