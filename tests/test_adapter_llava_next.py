"""LLaVA-NeXT and LLaVA-OneVision adapters: token counts and token boxes, end to end.

Tiny random models are built from configs, saved, and loaded back through
``vlmscope.load``. With the tower read at its patch embeddings
(``build_tiny(family, path, local=True)``) an image token's language-model input depends
only on its own patch (or, for OneVision's pooled grid, on the patches the
bilinear interpolation reads), so painting a square must change exactly the
tokens whose boxes cover it.
"""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import vlmscope
from vlmscope.adapters import llava_next as ln
from vlmscope.adapters.llava_next import LlavaNextAdapter, LlavaOnevisionAdapter
from vlmscope.testing.selftest import check_locality, run_selftest
from vlmscope.testing.tiny import build_tiny

torch.set_num_threads(1)

FAMILIES = (LlavaNextAdapter, LlavaOnevisionAdapter)
IDS = [c.family for c in FAMILIES]
# (width, height): wide, tall, very wide, very tall, big (2x2 tiles), odd
SIZES = [(30, 20), (24, 40), (100, 30), (33, 90), (200, 150), (47, 31)]


def _image(size, seed=0):
    w, h = size
    return Image.fromarray(np.random.default_rng(seed).integers(90, 170, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module", params=FAMILIES, ids=IDS)
def local(request, tmp_path_factory):
    """A tiny model of the family whose vision side does not mix patches."""
    path = build_tiny(request.param, tmp_path_factory.mktemp(request.param.family), local=True)
    vlm = vlmscope.load(path)
    assert type(vlm.adapter) is request.param
    return vlm


@pytest.mark.parametrize("cls", FAMILIES, ids=IDS)
def test_selftest_passes(cls):
    res = run_selftest(cls)
    assert res.passed, res.checks
    assert res.checks["painted square -> covering tokens"] == "ok"
    w, h = cls.selftest_image_size
    assert w != h


@pytest.mark.parametrize("size", SIZES)
def test_token_count_equals_geometry_and_processor(local, size):
    p = local.prepare(_image(size), "what is this ?")
    geo = p.geometry
    n = p.groups.image.numel()
    assert n == len(geo)
    # the processor's own count from the image size alone
    w, h = size
    assert n == local.processor._get_num_multimodal_tokens(image_sizes=[(h, w)]).num_image_tokens[0]
    # base view then the high-resolution rows, each closed by one newline token
    (g, _), (rows, cols) = geo.grids
    assert (geo.views[:g * g] == 0).all() and (geo.views[g * g:] == 1).all()
    newline = geo.cells[:, 0] < 0
    ends = g * g + np.arange(1, rows + 1) * (cols + 1) - 1  # positions of the row ends
    assert newline.sum() == rows and (np.nonzero(newline)[0] == ends).all()
    assert (geo.boxes[newline, 0] == geo.boxes[newline, 2]).all(), "newline boxes are empty"
    assert len(geo) == g * g + rows * (cols + 1)
    # boxes in the image; the base view tiles it exactly (it covers all of it once)
    assert (geo.boxes[:, [0, 2]] >= 0).all() and (geo.boxes[:, [0, 2]] <= w).all()
    assert (geo.boxes[:, [1, 3]] >= 0).all() and (geo.boxes[:, [1, 3]] <= h).all()
    base = geo.boxes[:g * g]
    area = ((base[:, 2] - base[:, 0]) * (base[:, 3] - base[:, 1])).sum()
    assert area == pytest.approx(w * h)
    with torch.no_grad():  # and the model agrees: it would raise on a count mismatch
        local.model(**p.inputs)


def test_hand_computed_layouts(local):
    """30x20 -> tiles 2 across (48x32 resized, 8 px padding each side) -> 4x6 unpadded grid."""
    geo = local.prepare(_image((30, 20)), "what ?").geometry
    if local.adapter.family == "llava-next":
        assert geo.grids == ((4, 4), (4, 6)) and len(geo) == 16 + 4 * 7
        # padded grid column 1 = padded pixels 8..16 = original 0..5 (scale 1.6)
        first = geo.boxes[16]
        assert np.allclose(first, (0, 0, 5, 5))
    else:  # anyres_max_1: sqrt(24 / 16) > 1.1, so 4x6 is pooled to 3x4
        assert geo.grids == ((4, 4), (3, 4)) and len(geo) == 16 + 3 * 5
        assert "pooled from 4x6" in geo.note


BOXES = {
    (30, 20): [(2, 2, 7, 7), (22, 12, 28, 18), (13, 0, 17, 20), (9, 14, 12, 18)],
    (24, 40): [(2, 3, 8, 9), (15, 30, 22, 37), (0, 18, 24, 22), (10, 12, 14, 15)],
    (40, 24): [(1, 1, 6, 5), (30, 15, 38, 22), (18, 6, 23, 11)],
}


@pytest.mark.parametrize("size", list(BOXES))
def test_painted_square_changes_exactly_the_covering_tokens(local, size):
    image = _image(size, seed=1)
    for box in BOXES[size]:
        changed, covering, near = check_locality(local, image, box)
        assert covering, box
        assert covering <= changed, (box, sorted(covering - changed))
        assert changed <= near, (box, sorted(changed - near))
        geo = local.prepare(image, "what ?").geometry
        views = set(geo.views[sorted(covering)].tolist())
        assert views == {0, 1}, f"{box} should be seen by the base view and the tiles"


def _with_geometry(vlm, edit):
    """Swap in a geometry that ``edit(geometry)`` corrupts."""
    real = vlm.adapter.geometry

    def wrong(size, inputs=None):
        return edit(real(size, inputs))

    return wrong


def _fails(vlm, image, boxes):
    for box in boxes:
        changed, covering, near = check_locality(vlm, image, box)
        if not (covering and covering <= changed <= near):
            return True
    return False


def test_locality_check_catches_swapped_tiles(local, monkeypatch):
    """Mirror the high-resolution grid left-right (the two tiles swap sides): the check objects."""
    def mirror(geo):
        hi = (geo.views == 1) & (geo.cells[:, 0] >= 0)
        rows, cols = geo.grids[1]
        idx = np.nonzero(hi)[0].reshape(rows, cols)
        geo.boxes[idx] = geo.boxes[idx[:, ::-1]]
        return geo

    image = _image((30, 20), seed=1)
    assert not _fails(local, image, BOXES[(30, 20)][:2])
    monkeypatch.setattr(local.adapter, "geometry", _with_geometry(local, mirror))
    assert _fails(local, image, BOXES[(30, 20)][:2])


def test_locality_check_catches_shifted_base_boxes(local, monkeypatch):
    def shift(geo):
        geo.boxes[geo.views == 0, 0::2] += 8  # one base patch is 7.5 original px wide
        return geo

    image = _image((30, 20), seed=1)
    monkeypatch.setattr(local.adapter, "geometry", _with_geometry(local, shift))
    assert _fails(local, image, BOXES[(30, 20)][:2])


def test_locality_check_catches_a_forgotten_unpadding_offset(local, monkeypatch):
    """Keep as many columns as unpad_image does, but from column 0: boxes move one cell."""
    real = ln.unpad_slices

    def wrong(height, width, rows, cols):
        rs, cs = real(height, width, rows, cols)
        return slice(0, rs.stop - rs.start), slice(0, cs.stop - cs.start)

    image = _image((30, 20), seed=1)
    monkeypatch.setattr(ln, "unpad_slices", wrong)
    assert _fails(local, image, BOXES[(30, 20)])


# ---------------------------------------------------------------- real-size settings
def _real(cls):
    """The adapter over a real checkpoint's config and processor settings (no weights)."""
    from transformers import (LlavaNextConfig, LlavaNextImageProcessorPil, LlavaNextProcessor,
                              LlavaOnevisionConfig, LlavaOnevisionImageProcessorPil)

    from vlmscope.organism.build import CHAT_TEMPLATE, make_tokenizer

    tok = make_tokenizer()
    tok.add_tokens(["<video>"], special_tokens=True)
    if cls is LlavaNextAdapter:  # llava-v1.6: CLIP-L/336, 24x24 patches, CLS dropped
        proc = LlavaNextProcessor(
            image_processor=LlavaNextImageProcessorPil(
                size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}),
            tokenizer=tok, patch_size=14, vision_feature_select_strategy="default",
            num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE)
        cfg = LlavaNextConfig(vision_feature_layer=-2)
    else:  # onevision: SigLIP/384, 27x27 patches, anyres_max_9
        proc = ln.image_only_onevision_processor()(
            image_processor=LlavaOnevisionImageProcessorPil(), tokenizer=tok, num_image_tokens=729,
            vision_feature_select_strategy="full", chat_template=CHAT_TEMPLATE)
        cfg = LlavaOnevisionConfig()
    return cls(SimpleNamespace(config=cfg), proc), tok


@pytest.mark.parametrize("cls", FAMILIES, ids=IDS)
def test_real_size_token_counts(cls):
    adapter, tok = _real(cls)
    image_id = tok.convert_tokens_to_ids("<image>")
    sizes = [(640, 480), (300, 900), (200, 300)]
    if cls is LlavaOnevisionAdapter:
        sizes.append((2000, 1500))  # 6x6 tiles: pooled under anyres_max_9
    for size in sizes:
        out = adapter.processor(text="<image> what", images=Image.new("RGB", size, (90, 120, 150)),
                                return_tensors="pt")
        geo = adapter.geometry(size, out)
        assert int((out["input_ids"] == image_id).sum()) == len(geo), size
        g = geo.grids[0][0]
        assert g == (24 if cls is LlavaNextAdapter else 27)
        if size == (2000, 1500):
            assert "pooled" in geo.note


@pytest.fixture(scope="module")
def ov_local(tmp_path_factory):
    return vlmscope.load(build_tiny(LlavaOnevisionAdapter, tmp_path_factory.mktemp("ov"), local=True))


def test_onevision_several_images_have_no_tiles(ov_local):
    """Several images in one prompt: pad to square, base view only, one trailing newline each."""
    local = ov_local
    images = [_image((30, 20)), _image((20, 30))]
    out = local.processor(text=local.chat_text("what ?").replace("<image>", "<image> <image>"),
                          images=[images], return_tensors="pt")
    n = int((out["input_ids"] == local.adapter.image_token_id).sum())
    geos = [local.adapter.geometry(im.size, out) for im in images]
    assert n == sum(len(g) for g in geos) == 2 * (16 + 1)
    assert geos[0].grids == ((4, 4),) and geos[0].cells[-1].tolist() == [-1, -1]
    with torch.no_grad():
        local.model(**out)


def test_onevision_processor_loads_without_torchvision(tmp_path):
    """A checkpoint naming the real processor class still loads (image-only) without torchvision."""
    path = build_tiny(LlavaOnevisionAdapter, tmp_path)
    cfg_file = path / "processor_config.json"
    data = json.loads(cfg_file.read_text())
    data["processor_class"] = "LlavaOnevisionProcessor"
    cfg_file.write_text(json.dumps(data))
    (path / "video_preprocessor_config.json").write_text(json.dumps(
        {"video_processor_type": "LlavaOnevisionVideoProcessor",
         "processor_class": "LlavaOnevisionProcessor"}))
    proc = LlavaOnevisionAdapter.load_processor(path)
    assert proc.vision_aspect_ratio == "anyres_max_1" and proc.num_image_tokens == 16
    out = proc(text="<image> what", images=_image((30, 20)), return_tensors="pt")
    assert int((out["input_ids"] == proc.image_token_id).sum()) == 16 + 3 * 5
