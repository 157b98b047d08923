"""Bad input and interruption: a clear error naming the problem, or a recorded skip, never a
plausible wrong result.

The parametrised tables below (``CLI_CASES``, ``IMAGE_CASES``,
``CONFIG_CASES``, ``PART_DAMAGE``, ``MASK_DAMAGE``, ``MEAN_DAMAGE``,
``JUDGE_CASES``) and the single cases between them form the matrix: every
CLI command, every image and mask kind, every stored file damaged in body
and in header. An error case asserts the exception class and a phrase of its
message; a recorded case asserts what was recorded (a quarantine and a
recomputation, a skip with its reason). CLI cases run with
``vlmscope.models.load`` replaced by a function that fails the test: each
must be refused before any model loads. Then a kill -9 test and a
determinism test (marked slow).
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from vlmscope.cli import main as cli_main
from vlmscope.datasets.synthetic import Scene, SceneObject, World
from vlmscope.heatmaps import HeatmapConfig, plausibility
from vlmscope.integrity import DamagedFileError, load_checked, save_checked
from vlmscope.judge import ExactJudge, LLMJudge, VocabularyJudge, default_judge
from vlmscope.models import ImageError, ModelLoadError, PromptTooLongError, to_rgb
from vlmscope.runs import DamagedPartWarning, RunStore, StoreBusyError
from vlmscope.tokens import EmptyMaskError

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ helpers
def _png(size=(16, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


def _flip(path: Path, at: float | int):
    """Flip one byte of ``path`` (at a fraction of its length, or an absolute offset; negative: from the end)."""
    b = bytearray(path.read_bytes())
    i = int(len(b) * at) if isinstance(at, float) else (at if at >= 0 else len(b) + at)
    b[i] ^= 0xFF
    path.write_bytes(bytes(b))


def _cli(argv, capsys):
    """Run the CLI in-process; return (exit code, stderr)."""
    try:
        rc = cli_main(argv)
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 2
        if not isinstance(e.code, int) and e.code:
            print(e.code, file=sys.stderr)
    return rc, capsys.readouterr().err


# ----------------------------------------------------------- the CLI cases
EXPERIMENTS = ["fractions", "maps", "knockout", "compression", "heatmaps", "ablation", "lens",
               "lastpos", "agreement"]

CLI_CASES = [
    *[(f"cli-run-{e}-n0", ["run", e, "--n", "0"], "argument --n: must be >= 1, not 0")
      for e in EXPERIMENTS],
    ("cli-run-n-negative", ["run", "knockout", "--n", "-1"], "argument --n: must be >= 1, not -1"),
    ("cli-run-n-not-a-number", ["run", "ablation", "--n", "abc"], "argument --n: expected a whole number"),
    ("cli-run-seed-negative", ["run", "fractions", "--seed", "-5"], "argument --seed: must be >= 0"),
    ("cli-run-max-new-tokens-0", ["run", "maps", "--max-new-tokens", "0"], "argument --max-new-tokens"),
    ("cli-agreement-unknown-method", ["run", "agreement", "--methods", "gradient", "nope"],
     "unknown attribution method 'nope'"),
    ("cli-heatmaps-iterations-negative", ["run", "heatmaps", "--iterations", "-1"], "argument --iterations"),
    ("cli-heatmaps-batch-0", ["run", "heatmaps", "--batch", "0"], "argument --batch: must be >= 1"),
    ("cli-heatmaps-ig-iter-0", ["run", "heatmaps", "--ig-iter", "0"], "argument --ig-iter"),
    ("cli-heatmaps-size-0", ["run", "heatmaps", "--size", "0"], "argument --size"),
    ("cli-heatmaps-benchmark-without-data", ["run", "heatmaps", "--benchmark", "mmvp"], "--benchmark needs --data"),
    ("cli-organism-evaluate-n0", ["organism", "evaluate", "--n", "0"], "argument --n: must be >= 1, not 0"),
    ("cli-organism-evaluate-seed-negative", ["organism", "evaluate", "--seed", "-1"], "argument --seed"),
    ("cli-organism-train-batch-0", ["organism", "train", "--batch", "0"], "argument --batch"),
    ("cli-models-unknown-family", ["models", "--selftest", "--family", "nope"], "no family 'nope'"),
    ("cli-notebooks-unknown", ["notebooks", "run", "--only", "99"], "no notebook matches"),
]


@pytest.fixture
def no_model_load(monkeypatch):
    """Any model load fails the test: arguments must be refused before loading."""
    import vlmscope.models

    def refuse(*a, **k):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(vlmscope.models, "load", refuse)


@pytest.mark.parametrize("argv,phrase", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_refuses_bad_arguments_before_loading(argv, phrase, no_model_load, capsys, tmp_path,
                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written into the repository
    if argv[0] == "run":
        argv = [*argv, "--out", str(tmp_path / "runs")]
    if argv[:2] == ["organism", "train"]:
        argv = [*argv, "--out", str(tmp_path / "org")]
    if argv[0] == "notebooks":
        argv = [*argv, "--out", str(tmp_path / "fig")]
    rc, err = _cli(argv, capsys)
    assert rc == 2, err
    assert phrase in err
    assert "Traceback" not in err


def _out_under_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    return str(tmp_path / "afile" / "runs"), "afile is a file, not a folder"


def _out_parts_is_a_file(tmp_path):
    (tmp_path / "runs" / "lens").mkdir(parents=True)
    (tmp_path / "runs" / "lens" / "parts").write_text("x")
    return str(tmp_path / "runs"), "parts is a file, but the run needs a folder there"


def _out_unwritable(tmp_path):
    return "/proc/vlmscope-out", "cannot create the folder"


@pytest.mark.parametrize("make", [_out_under_a_file, _out_parts_is_a_file, _out_unwritable],
                         ids=["cli-out-under-a-file", "cli-out-parts-is-a-file", "cli-out-unwritable"])
def test_cli_refuses_an_unusable_out_before_loading(make, no_model_load, capsys, tmp_path):
    out, phrase = make(tmp_path)
    rc, err = _cli(["run", "lens", "--n", "1", "--out", out], capsys)
    assert rc == 2 and phrase in err and "Traceback" not in err


def test_cli_organism_evaluate_an_unknown_member(capsys):
    rc, err = _cli(["organism", "evaluate", "--model", "organism-nope"], capsys)
    assert rc == 2 and "no bundled organism named 'organism-nope'" in err and "Traceback" not in err


def test_cli_organism_train_out_under_a_file(capsys, tmp_path):
    (tmp_path / "afile").write_text("x")
    rc, err = _cli(["organism", "train", "--out", str(tmp_path / "afile" / "m")], capsys)
    assert rc == 2 and "is a file, not a folder" in err


# ------------------------------------------------------- the matrix proper
def _bomb_path(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    p = tmp_path / "big.png"
    p.write_bytes(_png((64, 64)))  # 4096 pixels: over twice the limit
    return p


def _bomb_warning_range(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)
    return _png((16, 16))  # 256 pixels: PIL only warns; we refuse


def _truncated_png(tmp_path, monkeypatch):
    p = tmp_path / "cut.png"
    p.write_bytes(_png((32, 32))[:60])
    return p


def _text_file(tmp_path, monkeypatch):
    p = tmp_path / "notes.png"
    p.write_text("not an image")
    return p


def _empty_file(tmp_path, monkeypatch):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    return p


def _big_pil(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    return Image.new("RGB", (20, 20))


def _big_array(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    return np.zeros((20, 20, 3), np.uint8)


def _nan_array(*_):
    a = np.full((8, 8, 3), 0.5)
    a[2, 3, 1] = np.nan
    return a


IMAGE_CASES = [
    ("image-array-nan", _nan_array, "NaN or infinite"),
    ("image-array-all-nan", lambda *_: np.full((8, 8, 3), np.nan), "NaN or infinite"),
    ("image-array-inf", lambda *_: np.full((8, 8), np.inf, np.float32), "NaN or infinite"),
    ("image-array-minus-inf", lambda *_: np.full((8, 8, 3), -np.inf), "NaN or infinite"),
    ("image-array-two-channels", lambda *_: np.zeros((8, 8, 2), np.uint8), "[H, W, 1|3|4]"),
    ("image-array-4d", lambda *_: np.zeros((1, 8, 8, 3), np.uint8), "[H, W, 1|3|4]"),
    ("image-array-empty", lambda *_: np.zeros((0, 8, 3), np.uint8), "is empty"),
    ("image-array-objects", lambda *_: np.array([[None, 1], [2, 3]], dtype=object), "must hold numbers"),
    ("image-array-bool", lambda *_: np.ones((8, 8), bool), "must hold numbers"),
    ("image-bomb-path", _bomb_path, "decompression bomb"),
    ("image-bomb-bytes-warning-range", _bomb_warning_range, "decompression bomb"),
    ("image-too-large-pil", _big_pil, "decompression-bomb limit"),
    ("image-too-large-array", _big_array, "decompression-bomb limit"),
    ("image-truncated-png", _truncated_png, "could not decode"),
    ("image-text-file", _text_file, "could not decode"),
    ("image-empty-file", _empty_file, "could not decode"),
    ("image-missing-file", lambda tmp_path, mp: tmp_path / "nope.png", "no image file at"),
    ("image-garbage-bytes", lambda *_: b"\x89PNG\r\n\x1a\nrubbish", "could not decode the image bytes"),
    ("image-wrong-type", lambda *_: 42, "expected a PIL image"),
    ("image-zero-size-pil", lambda *_: Image.new("RGB", (0, 5)), "is empty"),
]


@pytest.mark.parametrize("make,phrase", [c[1:] for c in IMAGE_CASES], ids=[c[0] for c in IMAGE_CASES])
def test_bad_images_are_image_errors(make, phrase, tmp_path, monkeypatch):
    image = make(tmp_path, monkeypatch)
    with pytest.raises(ImageError, match=None) as e:
        to_rgb(image)
    assert phrase in str(e.value)


def test_a_nan_image_reaches_no_model(tiny):
    with pytest.raises(ImageError, match="NaN"):
        tiny.prepare(np.full((32, 32, 3), np.nan), "what color is the circle ?")


# ----------------------------------------------------------- model inputs
def test_prompt_longer_than_the_context_names_both_lengths(tiny):
    question = " ".join(["red"] * 2500)  # ~10,000 characters
    with pytest.raises(PromptTooLongError) as e:
        tiny.prepare(World().scene(seed=0).image, question)
    msg = str(e.value)
    assert f"context is {tiny.context_length} tokens" in msg and "tokens long" in msg
    n = int(msg.split("the prompt is ")[1].split()[0])
    assert n > tiny.context_length


@pytest.mark.parametrize("ids", [[10**6], [-1], [3, 10**5]], ids=["score-id-too-large", "score-id-negative",
                                                                    "score-one-id-out-of-range"])
def test_score_refuses_ids_outside_the_vocabulary(tiny, ids):
    p = tiny.prepare(World().scene(seed=0).image, "what color is the circle ?")
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        tiny.score(p, ids)


def test_score_refuses_an_empty_answer(tiny):
    p = tiny.prepare(World().scene(seed=0).image, "what color is the circle ?")
    with pytest.raises(ValueError, match="has no tokens"):
        tiny.score(p, [])


def test_truncated_weights_are_a_model_load_error(tmp_path):
    import shutil

    import vlmscope

    src = ROOT / "data" / "organism" / "organism-vit-s"
    if not (src / "model.safetensors").exists():
        pytest.skip("the bundled organism is missing")
    dst = tmp_path / "cut"
    shutil.copytree(src, dst)
    w = dst / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match="could not load"):
        vlmscope.load(dst, device="cpu")


# -------------------------------------------------------------- configs
CONFIG_CASES = [
    ("heatmap-lr-negative", dict(lr=-1), "lr must be > 0"),
    ("heatmap-lr-zero", dict(lr=0), "lr must be > 0"),
    ("heatmap-noise-negative", dict(noise=-1), "noise must be >= 0"),
    ("heatmap-l1-negative", dict(l1=-0.5), "l1 must be >= 0"),
    ("heatmap-l3-nan", dict(l3=float("nan")), "l3 must be >= 0"),
    ("heatmap-momentum-negative", dict(momentum=-1), "momentum must be >= 0"),
    ("heatmap-btv-sigma-zero", dict(btv_sigma=0), "btv_sigma must be > 0"),
    ("heatmap-seed-negative", dict(seed=-1), "seed must be >= 0"),
    ("heatmap-size-zero", dict(size=0), "size must be >= 1"),
    ("heatmap-method-unknown", dict(method="igos"), "method must be"),
]


@pytest.mark.parametrize("kw,phrase", [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_heatmap_config_values_out_of_range(kw, phrase):
    with pytest.raises(ValueError) as e:
        HeatmapConfig(**kw)
    assert phrase in str(e.value)


def test_library_run_refuses_n_and_seed(tiny, tmp_path):
    from vlmscope.runner import run

    with pytest.raises(ValueError, match="--n must be >= 1, not -1"):
        run("fractions", tiny, model_name="tiny", n=-1, seed=0, out=tmp_path, progress=False)
    with pytest.raises(ValueError, match="--seed must be >= 0, not -3"):
        run("fractions", tiny, model_name="tiny", n=1, seed=-3, out=tmp_path, progress=False)
    assert not (tmp_path / "fractions.summary.json").exists()


def test_organism_evaluate_refuses_n0(tiny):
    from vlmscope import organism

    with pytest.raises(ValueError, match="n must be >= 1, not 0"):
        organism.evaluate(tiny, n=0)


# ---------------------------------------------------------------- masks
def _wide_scene_prepared(tiny):
    """A 128x64 image: the processor's centre crop drops its left and right quarters."""
    return tiny.prepare(Image.new("RGB", (128, 64), (200, 200, 200)), "describe the image .")


def test_empty_mask_selects_no_tokens(tiny):
    p = tiny.prepare(World().scene(seed=0).image, "describe the image .")
    with pytest.raises(EmptyMaskError, match="the object mask is empty"):
        p.geometry.tokens_for_mask(np.zeros((64, 64), bool))


def test_mask_outside_what_the_model_sees(tiny):
    p = _wide_scene_prepared(tiny)
    mask = np.zeros((64, 128), bool)
    mask[20:30, 0:6] = True  # in the cropped-away strip
    with pytest.raises(EmptyMaskError, match="covers no image token"):
        p.geometry.tokens_for_mask(mask)
    assert len(p.geometry.tokens_for_mask(mask, allow_empty=True)) == 0  # counting, asked for


def test_mask_of_the_wrong_shape(tiny):
    p = tiny.prepare(World().scene(seed=0).image, "describe the image .")
    with pytest.raises(ValueError, match="mask has shape"):
        p.geometry.tokens_for_mask(np.ones((10, 10), bool))


def test_plausibility_on_an_empty_target():
    with pytest.raises(EmptyMaskError, match="target mask is empty"):
        plausibility(np.random.default_rng(0).random((8, 8)), np.zeros((8, 8), bool))


def test_lastpos_with_an_empty_object_mask(tiny):
    from vlmscope.lastpos import lastpos_knockout

    scene = World().scene(seed=0)
    p = tiny.prepare(scene.image, "what color is the circle ?")
    with pytest.raises(EmptyMaskError):
        lastpos_knockout(tiny, p, 5, np.zeros((64, 64), bool), {"all": (0, 2)})


def test_ablation_with_an_empty_object_mask(tiny):
    from vlmscope.ablation import ablate_object

    with pytest.raises(EmptyMaskError):
        ablate_object(tiny, World().scene(seed=0).image, np.zeros((64, 64), bool),
                      {"generative": ("describe the image .", lambda t: "red" in t)}, None, rings=(0,),
                      rules=("object",), mode="zeros", max_new_tokens=2)


def test_sweep_records_a_scene_with_an_empty_mask_as_skipped(tiny, tmp_path, monkeypatch):
    from vlmscope.datasets.synthetic import _mix
    from vlmscope.runner import run

    real = World.scene

    def scene(self, seed):
        s = real(self, seed)
        if seed == _mix(7, 1):  # the second scene: its first object's mask is lost
            o = s.objects[0]
            empty = SceneObject(o.shape, o.color, o.row, o.col, np.zeros_like(o.mask))
            s = Scene(s.image, (empty, *s.objects[1:]), s.seed)
        return s

    monkeypatch.setattr(World, "scene", scene)
    res = run("lens", tiny, model_name="tiny", n=3, seed=7, out=tmp_path, progress=False)
    summary, df = res
    assert list(res.skipped.item) == [1] and "mask is empty" in res.skipped.reason[0]
    assert summary["skipped_scenes"] == 1 and summary["computed"] == 3
    assert summary["scenes"] == 2 and summary["rows"] == len(df)
    assert any("EmptyMaskError" in r and "mask is empty" in r for r in summary["skip_reasons"])
    assert "_skipped" not in df and df.item.nunique() == 2 and 1 not in set(df.item)
    again, _ = run("lens", tiny, model_name="tiny", n=3, seed=7, out=tmp_path, progress=False)
    assert again["reused"] == 3 and again["skipped_scenes"] == 1  # the skip is remembered


# -------------------------------------------------------- stores and caches
def _store_with_parts(tmp_path, n=3):
    s = RunStore(tmp_path / "store")
    keys = [s.key("x", i) for i in range(n)]
    for i, k in enumerate(keys):
        s.put(k, pd.DataFrame({"layer": np.arange(50), "value": np.linspace(0, 1, 50) + i,
                               "word": [f"w{j}" for j in range(50)]}), item=i)
    return s, keys


def _page_start(path: Path, column: int) -> int:
    """Offset of a column chunk's first page (dictionary or data) in the first row group."""
    import pyarrow.parquet as pq

    c = pq.ParquetFile(path).metadata.row_group(0).column(column)
    return c.dictionary_page_offset if c.has_dictionary_page else c.data_page_offset


def _plain_part(path: Path):
    pd.DataFrame({"value": [1.0]}).to_parquet(path)  # no digest: an older or foreign writer


PART_DAMAGE = [
    ("part-truncated-footer", lambda p: p.write_bytes(p.read_bytes()[:-30])),
    ("part-truncated-to-header", lambda p: p.write_bytes(p.read_bytes()[:20])),
    ("part-magic-header-flipped", lambda p: _flip(p, 1)),
    ("part-body-byte-flipped", lambda p: _flip(p, 0.25)),
    ("part-dictionary-page-flipped", lambda p: _flip(p, _page_start(p, 2) + 40)),
    ("part-footer-metadata-flipped", lambda p: _flip(p, -200)),
    ("part-without-a-digest", _plain_part),
    ("part-emptied", lambda p: p.write_bytes(b"")),
]


@pytest.mark.parametrize("damage", [c[1] for c in PART_DAMAGE], ids=[c[0] for c in PART_DAMAGE])
def test_a_damaged_part_is_quarantined_and_never_counted(damage, tmp_path):
    s, keys = _store_with_parts(tmp_path)
    damage(s.parts / f"{keys[1]}.parquet")
    fresh = RunStore(s.root)
    with pytest.warns(DamagedPartWarning, match=keys[1]):
        assert fresh.done() == {keys[0], keys[2]}
    assert (s.root / "quarantine" / f"{keys[1]}.parquet").exists()
    df = fresh.load()
    assert set(df._key) == {keys[0], keys[2]} and len(df) == 100


def test_byte_flips_across_a_whole_part_are_caught(tmp_path):
    """Every seventh byte of one part (header, pages, footer), flipped in turn: each flip is
    detected, or leaves the rows exactly as written; none changes the rows unnoticed."""
    s, keys = _store_with_parts(tmp_path, n=1)
    path = s.parts / f"{keys[0]}.parquet"
    good = path.read_bytes()
    want = s.read(keys[0])
    silent = []
    for i in range(0, len(good), 7):
        b = bytearray(good)
        b[i] ^= 0x10
        path.write_bytes(bytes(b))
        try:
            got = s.read(keys[0])
        except DamagedFileError:
            continue
        if not got.equals(want):
            silent.append(i)
    path.write_bytes(good)
    assert silent == []


MASK_DAMAGE = [
    ("mask-file-truncated", lambda p: p.write_bytes(p.read_bytes()[:40])),
    ("mask-file-body-flipped", lambda p: _flip(p, -3)),
    ("mask-file-header-flipped", lambda p: _flip(p, 12)),
    ("mask-file-missing", lambda p: p.unlink()),
]


@pytest.mark.parametrize("damage", [c[1] for c in MASK_DAMAGE], ids=[c[0] for c in MASK_DAMAGE])
def test_a_damaged_mask_file_makes_its_part_recomputed(damage, tiny, tmp_path):
    from vlmscope.findings import heatmaps
    from vlmscope.runner import run

    # a random tiny model gains little over the baseline: accept every position
    hcfg = HeatmapConfig(threshold=-1e9, single_token_ratio=1e9, iterations=1, ig_iter=2, size=4)
    cfg = heatmaps.Config(max_new_tokens=3, heatmap=hcfg)
    first, df1 = run("heatmaps", tiny, model_name="tiny", n=2, seed=1, out=tmp_path, config=cfg,
                     progress=False)
    masks = sorted((tmp_path / "heatmaps" / "masks").glob("*.safetensors"))
    assert len(masks) == 4 and first["skipped"] == 0
    damage(masks[0])
    with pytest.warns(DamagedPartWarning, match="the file it names"):
        again, df2 = run("heatmaps", tiny, model_name="tiny", n=2, seed=1, out=tmp_path,
                         config=cfg, progress=False)
    assert again["computed"] == 1 and again["reused"] == 1 and again["rows"] == len(df2) == 4
    assert masks[0].exists()  # rewritten
    cols = [c for c in df1.columns if c != "seconds"]
    pd.testing.assert_frame_equal(df1[cols], df2[cols])


MEAN_DAMAGE = [
    ("mean-cache-data-overwritten", "data"),
    ("mean-cache-header-damaged", "header"),
    ("mean-cache-truncated", "truncated"),
    ("mean-cache-without-digest", "legacy"),
]


@pytest.mark.parametrize("kind", [c[1] for c in MEAN_DAMAGE], ids=[c[0] for c in MEAN_DAMAGE])
def test_a_damaged_mean_vector_cache_is_recomputed(kind, tiny, tmp_path):
    from safetensors.torch import save_file

    from vlmscope import ablation as A

    images = [World().scene(seed=200 + i).image for i in range(2)]
    path = tmp_path / "mean.safetensors"
    fresh = A.mean_vector(tiny, images, cache=path)
    if kind == "data":  # same size, other numbers: the header still parses
        _flip(path, -3)
    elif kind == "header":
        _flip(path, 10)
    elif kind == "truncated":
        path.write_bytes(path.read_bytes()[:-8])
    else:
        save_file({"vector": fresh.vector.cpu() + 1}, str(path),
                  metadata={k: str(v) for k, v in fresh.provenance().items()})
    with pytest.warns(UserWarning, match="is damaged"):
        again = A.mean_vector(tiny, images, cache=path)
    assert torch.equal(again.vector, fresh.vector)
    assert not list(tmp_path.glob("*.tmp"))  # written through a per-writer temporary


def test_checked_files_refuse_damage_in_body_and_header(tmp_path):
    p = tmp_path / "t.safetensors"
    save_checked(p, {"a": torch.arange(64, dtype=torch.float32)}, {"who": "me"})
    assert load_checked(p)[1]["who"] == "me"
    good = p.read_bytes()
    _flip(p, -5)
    with pytest.raises(DamagedFileError, match="does not match its content digest"):
        load_checked(p)
    p.write_bytes(good)
    _flip(p, 3)
    with pytest.raises(DamagedFileError, match="unreadable"):
        load_checked(p)


# ------------------------------------------------------ locks and temporaries
def test_a_second_run_on_a_locked_store_stops_with_a_clear_message(tiny, tmp_path):
    from vlmscope.runner import run

    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from filelock import FileLock\n"
                               f"l = FileLock({str(tmp_path / 'fractions' / 'run.lock')!r}); l.acquire()\n"
                               "print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        (tmp_path / "fractions").mkdir()
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreBusyError, match="another run is using the store"):
            run("fractions", tiny, model_name="tiny", n=1, seed=0, out=tmp_path, progress=False)
        assert not list((tmp_path / "fractions" / "parts").glob("*.parquet"))
    finally:
        holder.kill()
        holder.wait()
    summary, _ = run("fractions", tiny, model_name="tiny", n=1, seed=0, out=tmp_path, progress=False)
    assert summary["computed"] == 1  # the lock died with its holder


def test_a_live_writers_temporary_is_left_alone(tmp_path):
    from vlmscope.integrity import temporary_path

    s = RunStore(tmp_path)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        mine = temporary_path(s.parts / "a.parquet")
        theirs = s.parts / mine.name.replace(f"-{os.getpid()}-", f"-{live.pid}-")
        mine.write_bytes(b"half")
        theirs.write_bytes(b"half, still being written")
        assert s.clean_temporaries() == 1
        assert theirs.exists() and not mine.exists()
    finally:
        live.kill()
        live.wait()
    assert s.clean_temporaries() == 1 and not theirs.exists()  # now provably dead


# ------------------------------------------------------------- the judge
def test_the_judge_follows_the_data_not_the_name():
    class Named:
        name = "organism"

    scene = World().scene(seed=1)
    assert isinstance(default_judge(Named(), scene.image), ExactJudge)
    assert isinstance(default_judge(None, scene), ExactJudge)
    assert isinstance(default_judge(Named(), Image.new("RGB", (8, 8))), VocabularyJudge)


def test_a_knockout_run_records_the_judge_of_its_data(tiny, tmp_path):
    from vlmscope.findings import knockout
    from vlmscope.runner import run

    assert not tiny.name.startswith("organism")  # a model loaded by path: the data decides
    summary, df = run("knockout", tiny, model_name=tiny.name, n=1, seed=0, out=tmp_path,
                      config=knockout.Config(max_new_tokens=2), progress=False)
    assert summary["judge"] == "identity" and set(df.judge) == {"identity"}  # the paper's rule on synthetic data


JUDGE_CASES = [
    ("judge-key-over-http-remote", ("http://judge.example.com/v1", "m", "sk-1"), "refusing to send an API key"),
    ("judge-key-over-http-lan-ip", ("http://10.0.0.5:8000/v1", "m", "sk-1"), "over plain http"),
]


@pytest.mark.parametrize("args,phrase", [c[1:] for c in JUDGE_CASES], ids=[c[0] for c in JUDGE_CASES])
def test_llm_judge_refuses_a_key_over_plain_http(args, phrase):
    with pytest.raises(ValueError, match=phrase):
        LLMJudge(*args)


def test_llm_judge_key_from_the_environment_over_http(monkeypatch):
    monkeypatch.setenv("VLMSCOPE_JUDGE_API_KEY", "sk-env")
    with pytest.raises(ValueError, match="over plain http"):
        LLMJudge("http://judge.example.com/v1", "m")


def test_llm_judge_allows_loopback_https_and_keyless(monkeypatch):
    monkeypatch.delenv("VLMSCOPE_JUDGE_API_KEY", raising=False)
    for url in ("http://127.0.0.1:8000/v1", "http://localhost:8000/v1", "http://[::1]:8000/v1",
                "https://judge.example.com/v1"):
        assert LLMJudge(url, "m", "sk-1").api_key == "sk-1"
    assert LLMJudge("http://judge.example.com/v1", "m").api_key is None  # nothing to leak


@pytest.mark.slow
def test_organism_by_name_and_by_path_give_identical_knockout_rows(tmp_path):
    import vlmscope
    from vlmscope.findings import knockout
    from vlmscope.runner import run

    path = ROOT / "data" / "organism" / "organism-vit-m"
    if not (path / "model.safetensors").exists():
        pytest.skip("the bundled organism is missing")
    cfg = knockout.Config(max_new_tokens=24)
    frames = {}
    for how, model in (("name", "organism-vit-m"), ("path", str(path))):
        vlm = vlmscope.load(model, device="cpu")
        summary, df = run("knockout", vlm, model_name=model, n=2, seed=3, out=tmp_path / how,
                          config=cfg, progress=False)
        assert summary["judge"] == "identity"
        frames[how] = (df.drop(columns=["model", "_key"])  # parts are keyed by the model's name
                       .sort_values(["item", "config", "start"]).reset_index(drop=True))
    pd.testing.assert_frame_equal(frames["name"], frames["path"], check_exact=True)
    full = frames["path"][frames["path"].start == 0]
    assert full.f1.min() < 1.0  # cutting every layer loses objects: not the empty-vs-empty 1.0


# --------------------------------------------- interruption and determinism
def _run_cli(tiny_dir, out, n, extra=()):
    return subprocess.Popen([sys.executable, "-m", "vlmscope", "run", "fractions", "--model",
                             str(tiny_dir), "--n", str(n), "--seed", "2", "--out", str(out),
                             "--max-new-tokens", "3", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _rows(out):
    df = RunStore(out / "fractions").load()
    return df.sort_values(["item", "_key", *[c for c in df.columns if c not in ("item", "_key")]]
                          ).reset_index(drop=True)


@pytest.mark.slow
def test_a_sweep_killed_after_k_parts_resumes_to_the_same_rows(tiny, tiny_dir, tmp_path):
    """A CLI sweep killed with SIGKILL after k parts; resumed; compared with an uninterrupted run."""
    from vlmscope.findings import fractions
    from vlmscope.runner import run

    n, k = 8, 2
    parts = tmp_path / "killed" / "fractions" / "parts"
    victim = _run_cli(tiny_dir, tmp_path / "killed", n)
    deadline = time.time() + 600
    while time.time() < deadline and len(list(parts.glob("*.parquet"))) < k:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    done_at_kill = len(list(parts.glob("*.parquet")))
    assert k <= done_at_kill < n
    cfg = fractions.Config(max_new_tokens=3)  # what the CLI's --max-new-tokens 3 builds
    resumed, df_resumed = run("fractions", tiny, model_name=str(tiny_dir), n=n, seed=2,
                              out=tmp_path / "killed", config=cfg, progress=False)
    assert resumed["reused"] == done_at_kill and resumed["computed"] == n - done_at_kill
    assert resumed["rows"] == len(df_resumed) == len(_rows(tmp_path / "killed"))
    assert not list(parts.glob(".*.tmp"))
    whole, _ = run("fractions", tiny, model_name=str(tiny_dir), n=n, seed=2, out=tmp_path / "whole",
                   config=cfg, progress=False)
    assert whole["computed"] == n
    pd.testing.assert_frame_equal(_rows(tmp_path / "whole"), _rows(tmp_path / "killed"),
                                  check_exact=True)


TIMING = {"seconds"}


@pytest.mark.slow
def test_two_runs_are_bitwise_equal_except_timing(tiny, tmp_path):
    from vlmscope import findings
    from vlmscope.runner import run

    hcfg = HeatmapConfig(threshold=-1e9, single_token_ratio=1e9, iterations=1, ig_iter=2, size=4)
    cfg = {"heatmaps": findings.heatmaps.Config(max_new_tokens=3, heatmap=hcfg),
           "knockout": findings.knockout.Config(max_new_tokens=3),
           "ablation": findings.ablation.Config(max_new_tokens=3)}
    got = {}
    for which in ("a", "b"):
        for name in ("heatmaps", "knockout", "ablation"):
            _, df = run(name, tiny, model_name="tiny", n=1 if name == "ablation" else 2, seed=11,
                        out=tmp_path / which, config=cfg[name], progress=False)
            got[which, name] = df.drop(columns=[c for c in df.columns if c in TIMING])
    for name in ("heatmaps", "knockout", "ablation"):
        a, b = got["a", name], got["b", name]
        assert len(a) > 0
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    from safetensors import safe_open

    masks = sorted((tmp_path / "a" / "heatmaps" / "masks").glob("*.safetensors"))
    assert masks
    for f in masks:  # safetensors orders its metadata keys at random: compare content, bit for bit
        with safe_open(str(f), "pt") as fa, \
                safe_open(str(tmp_path / "b" / "heatmaps" / "masks" / f.name), "pt") as fb:
            assert fa.metadata() == fb.metadata() and set(fa.keys()) == set(fb.keys())
            for k in fa.keys():
                ta, tb = fa.get_tensor(k), fb.get_tensor(k)
                assert ta.dtype == tb.dtype and torch.equal(ta.view(torch.uint8), tb.view(torch.uint8))
