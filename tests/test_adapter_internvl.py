"""InternVL adapter: dynamic tiles + thumbnail, pixel shuffle, on tiny random models.

The token geometry is checked through the real processor and model: with a
ViT of zero layers each image token depends only on its own 2x2 patches, so
painting a square must change exactly the tokens whose boxes cover it (up to
the resampling filter's reach).
"""

import numpy as np
import pytest
import torch
import transformers
from packaging import version
from PIL import Image

import vlmscope
from vlmscope.adapters.internvl import InternVLAdapter
from vlmscope.testing.selftest import check_locality, run_selftest
from vlmscope.testing.tiny import build_tiny

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def vlm(tmp_path_factory):
    return vlmscope.load(build_tiny(InternVLAdapter, tmp_path_factory.mktemp("internvl")))


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    return vlmscope.load(build_tiny(InternVLAdapter, tmp_path_factory.mktemp("internvl-local"),
                                    local=True))


def noise(w, h, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(90, 170, (h, w, 3), dtype=np.uint8))


def coord_image(w, h):
    """An image whose pixels spell their own (x, y): R = x % 256, G = y % 256, B = high bits."""
    x, y = np.meshgrid(np.arange(w), np.arange(h))
    rgb = np.stack([x % 256, y % 256, (x // 256) * 16 + y // 256], -1)
    return Image.fromarray(rgb.astype(np.uint8))


def sampling_overshoot(vlm, size, extra=None):
    """How far (px) any processed pixel's source lies outside its token's box; 0 = exact.

    Runs a copy of the processor with nearest resampling and no rescale/normalise on a
    coordinate image, so each processed pixel names the original pixel it came from.
    Tokens are laid out row-major per view, views in ``pixel_values`` order.
    """
    import copy

    from transformers.image_utils import PILImageResampling

    proc = copy.deepcopy(vlm.processor)
    ip = proc.image_processor
    ip.resample, ip.do_rescale, ip.do_normalize = PILImageResampling.NEAREST, False, False
    if extra:
        proc.images_kwargs = {**type(proc).images_kwargs, **extra}
    adapter = type(vlm.adapter)(vlm.model, proc)
    inputs = proc(text=vlm.chat_text("what ?"), images=coord_image(*size), return_tensors="pt")
    geo = adapter.geometry(size, inputs)
    pv = inputs["pixel_values"].numpy().astype(np.int64)  # [views, 3, H, W]
    per_view = len(geo) // pv.shape[0]
    g = int(round(per_view ** 0.5))
    bh, bw = pv.shape[-2] // g, pv.shape[-1] // g
    worst = 0.0
    for t, (x0, y0, x1, y1) in enumerate(geo.boxes):
        v, (i, j) = t // per_view, divmod(t % per_view, g)
        blk = pv[v, :, i * bh:(i + 1) * bh, j * bw:(j + 1) * bw]
        xs = blk[0] + 256 * (blk[2] // 16) + 0.5  # source pixel centres
        ys = blk[1] + 256 * (blk[2] % 16) + 0.5
        worst = max(worst, x0 - xs.min(), xs.max() - x1, y0 - ys.min(), ys.max() - y1)
    return worst


def near_tokens(geo, box, margin):
    """Tokens overlapping ``box`` grown by ``margin`` px (the resampling filter's reach)."""
    x0, y0, x1, y1 = box
    w, h = geo.image_size
    m = np.zeros((h, w), bool)
    m[max(y0 - margin, 0):y1 + margin, max(x0 - margin, 0):x1 + margin] = True
    return set(geo.tokens_for_mask(m, view=None).tolist())


def test_selftest_passes():
    res = run_selftest(InternVLAdapter)
    assert res.passed, res.checks
    assert res.checks["painted square -> covering tokens"] == "ok"


@pytest.mark.parametrize("size", [(32, 32), (96, 64), (64, 96), (200, 40), (30, 250), (97, 33),
                                  (100, 100)])
def test_token_count_matches_processor(vlm, size):
    p = vlm.prepare(noise(*size), "what is this ?")  # prepare raises on a count mismatch
    n = p.groups.image.numel()
    assert n == len(p.geometry)
    assert (p.input_ids[0, p.groups.image] == vlm.adapter.image_token_id).all()
    # the processor's own closed-form count; up to 5.24 it included <img> and </img>, from 5.25 not
    mm = vlm.processor._get_num_multimodal_tokens(image_sizes=[size[::-1]])
    delimiters = 2 if version.parse(transformers.__version__) < version.parse("5.25.0") else 0
    assert n == mm.num_image_tokens[0] - delimiters
    tiles = p.inputs["pixel_values"].shape[0]
    assert n == tiles * vlm.processor.image_seq_length
    cols, rows = vlm.adapter.tiles(size)
    assert tiles == (cols * rows + 1 if cols * rows > 1 else 1)
    geo = p.geometry
    assert len(geo.grids) == (2 if tiles > 1 else 1)
    # every view tiles the whole image once: cells unique, box areas add up to the image
    for v, (r, c) in enumerate(geo.grids):
        sel = geo.views == v
        assert len({tuple(x) for x in geo.cells[sel]}) == sel.sum() == r * c
        b = geo.boxes[sel]
        assert np.isclose(((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).sum(), size[0] * size[1])
    # thumbnail tokens come last in the sequence, as view 0
    assert (geo.views[-vlm.processor.image_seq_length:] == 0).all()


@pytest.mark.parametrize("extra", [None, {"max_patches": 12}, {"min_patches": 2, "max_patches": 4},
                                   {"crop_to_patches": False}])
@pytest.mark.parametrize("size", [(96, 64), (130, 40), (40, 130), (97, 33), (300, 20), (32, 32),
                                  (70, 70)])
def test_boxes_follow_the_processor_pixel_by_pixel(vlm, size, extra):
    """Every processed pixel of a token comes from inside that token's box."""
    assert sampling_overshoot(vlm, size, extra) <= 1e-9


def test_geometry_without_inputs_matches(vlm):
    image = noise(130, 50)
    p = vlm.prepare(image, "what is this ?")
    bare = vlm.adapter.geometry(image.size)
    assert np.allclose(bare.boxes, p.geometry.boxes) and np.array_equal(bare.views, p.geometry.views)


@pytest.mark.parametrize("size,box", [((96, 64), (52, 20, 60, 28)),
                                      ((96, 64), (4, 44, 12, 52)),
                                      ((64, 96), (40, 70, 50, 80)),
                                      ((120, 40), (70, 5, 78, 14)),
                                      ((48, 48), (20, 20, 26, 26)),
                                      ((40, 36), (10, 10, 16, 16))])
def test_painted_square_changes_exactly_the_covering_tokens(local, size, box):
    changed, covering, _ = check_locality(local, noise(*size), box)
    geo = local.prepare(noise(*size), "what ?").geometry
    side = local.processor.image_processor.size["height"]
    # bicubic reaches 2 processed px; the thumbnail shrinks by up to max(size)/side
    margin = 2 + int(np.ceil(2 * max(size) / side))
    assert covering and covering <= changed, sorted(covering - changed)
    assert changed <= near_tokens(geo, box, margin), sorted(changed - near_tokens(geo, box, margin))
    # both views see the square
    assert set(geo.views[sorted(covering)]) == set(range(len(geo.grids)))


def test_locality_check_catches_a_wrong_geometry(local):
    """Shift every box by one token and the check must object."""
    real = local.adapter.geometry

    def shifted(size, inputs=None):
        g = real(size, inputs)
        g.boxes[:, [0, 2]] += 8
        return g

    local.adapter.geometry = shifted
    try:
        changed, covering, near = check_locality(local, noise(96, 64), (52, 20, 60, 28))
    finally:
        del local.adapter.geometry
    assert not (covering <= changed and changed <= near)


def test_locality_check_catches_thumbnail_first(local):
    """Tiles then thumbnail is the processor's order; the reverse must fail the check."""
    real = local.adapter.geometry
    n = local.processor.image_seq_length

    def swapped(size, inputs=None):
        g = real(size, inputs)
        order = np.r_[np.arange(len(g) - n, len(g)), np.arange(len(g) - n)]
        return type(g)(g.boxes[order], g.views[order], g.cells[order], g.grids, g.image_size)

    local.adapter.geometry = swapped
    try:
        changed, covering, near = check_locality(local, noise(96, 64), (52, 20, 60, 28))
    finally:
        del local.adapter.geometry
    assert not (covering <= changed and changed <= near)


def test_processor_options_override_the_image_processor(vlm):
    """The processor passes crop_to_patches=True itself; turning it off there gives one view."""
    image = noise(96, 64)
    vlm.processor.image_processor.crop_to_patches = False  # ignored: the processor wins
    assert vlm.prepare(image, "what ?").inputs["pixel_values"].shape[0] == 7
    old = vlm.processor.images_kwargs
    vlm.processor.images_kwargs = {**old, "crop_to_patches": False}
    try:
        p = vlm.prepare(image, "what ?")
    finally:
        vlm.processor.images_kwargs = old
        vlm.processor.image_processor.crop_to_patches = True
    assert p.inputs["pixel_values"].shape[0] == 1 and len(p.geometry) == 16
    assert p.geometry.grids == ((4, 4),) and "aspect ratio not kept" in p.geometry.note


def test_generate_and_score_agree(vlm):
    """Teacher-forced scores equal the log-probs of Hugging Face's own greedy decoding."""
    p = vlm.prepare(noise(96, 64), "what is this ?")
    g = vlm.generate(p, max_new_tokens=3)
    assert g.sequence.shape[1] == p.input_ids.shape[1] + g.token_ids.numel()
    with torch.no_grad():
        out = vlm.model.generate(**p.inputs, max_new_tokens=3, do_sample=False, output_logits=True,
                                 return_dict_in_generate=True, pad_token_id=vlm.tokenizer.pad_token_id)
    ids = out.sequences[0, p.input_ids.shape[1]:]
    ref = torch.stack([torch.log_softmax(l[0].float(), -1)[t] for l, t in zip(out.logits, ids)])
    s = vlm.score(p, ids)
    assert torch.allclose(s.logprobs, ref, atol=1e-4)


def test_hub_style_checkpoint_loads_without_torchvision(vlm, tmp_path):
    """A checkpoint naming InternVLProcessor and a video processor (as on the Hub) loads and
    prepares the same inputs; without torchvision through InternVLImageOnlyProcessor."""
    import json
    import shutil

    src = vlm.model.name_or_path
    dst = tmp_path / "hub-style"
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "processor_config.json").read_text())
    cfg["processor_class"] = "InternVLProcessor"
    (dst / "processor_config.json").write_text(json.dumps(cfg))
    (dst / "video_preprocessor_config.json").write_text(json.dumps(
        {"video_processor_type": "InternVLVideoProcessor", "processor_class": "InternVLProcessor",
         "size": {"height": 32, "width": 32}}))
    hub = vlmscope.load(dst)
    image = noise(96, 64)
    assert torch.equal(hub.prepare(image, "what ?").input_ids, vlm.prepare(image, "what ?").input_ids)


def test_parts_and_prompt(vlm):
    a = vlm.adapter
    assert a.n_layers == 2 and a.final_norm is vlm.model.model.language_model.norm
    assert a.image_token_id == vlm.tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    assert a.prompt_text("what ?") is None  # the chat template is used
    p = vlm.prepare(noise(32, 32), "what ?")
    assert p.groups.bos.numel() == 0  # Qwen2: no BOS
    assert "<img>" in vlm.tokenizer.convert_ids_to_tokens(p.input_ids[0, p.groups.query])
