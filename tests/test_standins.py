"""Stand-ins of the real checkpoints: real geometry, real tokenizer kinds, large non-square images.

The expected token counts are derived by hand from each checkpoint's published
preprocessing rules (comments), not from vlmscope's adapters, so a stand-in
that drifts from the real geometry, or an adapter that maps it wrongly, fails.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vlmscope.testing.standins import BY_FAMILY, STANDINS, standin_config

NAMES = list(STANDINS)
SIZES = ((640, 480), (1920, 1080))

# image tokens per (width, height), from the real checkpoints' rules
EXPECTED_TOKENS = {
    # CLIP 336 px / 14 = 24x24, CLS dropped, centre crop: any image gives 576
    "standin-llava-1.5": {(640, 480): 576, (1920, 1080): 576},
    # best pinpoint 672x672 for both (2x2 tiles -> 48x48 features); unpad keeps rows
    # [p, 48 - p) with p = (48 - int(48 * H / W)) // 2: 640x480 -> 36 rows, 1920x1080 -> 28;
    # one newline per row, + the 576-token base view
    "standin-llava-next": {(640, 480): 36 * 49 + 576, (1920, 1080): 28 * 49 + 576},
    # 640x480 -> pinpoint 768x768 (2x2 tiles of 27): 54x54 unpadded to 40 rows, 40*55 + 729;
    # 1920x1080 -> 1152x1920 (3x5 tiles): 81x135 unpadded to 75 rows, over 9 tiles' worth
    # (ratio sqrt(75*135 / (9*729)) = 1.24) so pooled to 60x108: 60*109 + 729
    "standin-llava-onevision": {(640, 480): 40 * 55 + 729, (1920, 1080): 60 * 109 + 729},
    # smart_resize to multiples of 28: 476x644 -> 17x23 merged tokens; 1092x1932 -> 39x69
    "standin-qwen2-vl": {(640, 480): 17 * 23, (1920, 1080): 39 * 69},
    "standin-qwen2.5-vl": {(640, 480): 17 * 23, (1920, 1080): 39 * 69},
    # closest tile grid with <= 12 tiles: 4:3 -> 4x3; 16:9 -> 2:1 ties 4:2, the larger wins;
    # + a thumbnail; 256 tokens each (448/14 = 32, pixel shuffle 0.5 -> 16x16)
    "standin-internvl3": {(640, 480): 13 * 256, (1920, 1080): 9 * 256},
    # longest edge 1456, sides rounded up to 364: 1456x1092 = 4x3 tiles + global; 13x13 each
    "standin-idefics3": {(640, 480): 13 * 169, (1920, 1080): 13 * 169},
    # longest edge 2048, sides rounded up to 512: 2048x1536 = 4x3 tiles + global; 8x8 each
    "standin-smolvlm": {(640, 480): 13 * 64, (1920, 1080): 13 * 64},
    # 896 px / 14 = 64x64 patches average-pooled 4x4
    "standin-gemma3": {(640, 480): 256, (1920, 1080): 256},
    # 224 px / 14 = 16x16 patches
    "standin-paligemma": {(640, 480): 256, (1920, 1080): 256},
}

# (tower image size, patch size) of the mirrored checkpoints' config.json
TOWER = {"standin-llava-1.5": (336, 14), "standin-llava-next": (336, 14),
         "standin-llava-onevision": (384, 14), "standin-internvl3": (448, 14),
         "standin-idefics3": (364, 14), "standin-smolvlm": (512, 16), "standin-gemma3": (896, 14),
         "standin-paligemma": (224, 14)}

# words as a real tokenizer of each kind writes them after a space
WORD_MARK = {"sentencepiece": "▁", "bytelevel": "Ġ"}


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth random picture with a bright square in its lower right quarter."""
    rng = np.random.default_rng(seed)
    im = np.asarray(Image.fromarray(rng.integers(30, 225, (6, 8, 3), dtype=np.uint8))
                    .resize((width, height), Image.BILINEAR)).copy()
    im[int(0.6 * height):int(0.8 * height), int(0.6 * width):int(0.8 * width)] = (250, 240, 20)
    return Image.fromarray(im)


def test_every_supported_family_has_a_standin():
    from vlmscope.adapters import supported_families

    assert set(BY_FAMILY) == set(supported_families())
    assert set(EXPECTED_TOKENS) == set(STANDINS)


@pytest.mark.parametrize("name", NAMES)
def test_standin_has_the_real_geometry_and_tokenizer_kind(standin, name):
    spec = STANDINS[name]
    vlm = standin(name)
    assert vlm.adapter.family == spec.family
    cfg = vlm.model.config
    if name in TOWER:
        side, patch = (np.ravel(getattr(cfg.vision_config, k))[0] for k in ("image_size", "patch_size"))
        assert (int(side), int(patch)) == TOWER[name]
    else:  # Qwen: dynamic resolution, 14 px patches merged 2x2
        assert (cfg.vision_config.patch_size, cfg.vision_config.spatial_merge_size) == (14, 2)
    for size in SIZES:
        prepared = vlm.prepare(photo(*size), "what is in the image ?")
        assert prepared.groups.image.numel() == EXPECTED_TOKENS[name][size], size
    # the tokenizer is of the real kind: a word after a space carries the kind's mark
    pieces = vlm.tokenizer.convert_ids_to_tokens(
        vlm.tokenizer("a red circle", add_special_tokens=False)["input_ids"])
    assert WORD_MARK[spec.tokenizer] + "red" in pieces, pieces
    assert WORD_MARK["bytelevel" if spec.tokenizer == "sentencepiece" else "sentencepiece"] \
        not in "".join(pieces)
    # depth and width are cut: a forward pass is cheap
    text = getattr(cfg, "text_config", cfg)
    assert text.num_hidden_layers <= 2 and text.hidden_size <= 64


def test_full_size_configs_are_the_real_7b_shapes():
    """The GPU rehearsal's models, built on the meta device: no weights are allocated."""
    import transformers

    for name, params in (("standin-llava-1.5", 7.06e9), ("standin-qwen2-vl", 8.29e9)):
        cfg, cls, _, _ = standin_config(name, full_size=True)
        with torch.device("meta"):
            model = getattr(transformers, cls)(cfg)
        n = sum(p.numel() for p in model.parameters())
        assert abs(n - params) / params < 0.01, (name, n)
    with pytest.raises(ValueError, match="no full-size"):
        standin_config("standin-gemma3", full_size=True)


def _independent_first_box(name, width, height):
    """The first grid token's box in original pixels, from the checkpoint's rules (or None)."""
    if name in ("standin-paligemma", "standin-gemma3"):  # squashed square, 16x16 tokens
        return (0, 0, width / 16, height / 16)
    if name in ("standin-qwen2-vl", "standin-qwen2.5-vl"):  # stretched to a 28-px grid
        rows, cols = round(height / 28), round(width / 28)
        return (0, 0, width / cols, height / rows)
    if name == "standin-llava-1.5":  # shortest edge -> 336, centre crop 336, 14-px patches
        if width >= height:
            long = int(336 * width / height)
            scale, left, top = width / long, (long - 336) // 2, 0
        else:
            long = int(336 * height / width)
            scale, left, top = height / long, 0, (long - 336) // 2
        return (left * scale, top * scale, (left + 14) * scale, (top + 14) * scale)
    return None


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", NAMES)
def test_large_image_geometry_and_mask_to_tokens(standin, name, size):
    width, height = size
    vlm = standin(name)
    prepared = vlm.prepare(photo(width, height), "what is in the image ?")
    geo = prepared.geometry
    assert geo.image_size == (width, height)
    b = geo.boxes
    assert (b[:, 0] >= 0).all() and (b[:, 2] <= width).all() and (b[:, 1] >= 0).all() \
        and (b[:, 3] <= height).all() and (b[:, 2] >= b[:, 0]).all() and (b[:, 3] >= b[:, 1]).all()
    grid = geo.cells[:, 0] >= 0
    assert ((b[grid, 2] - b[grid, 0]) * (b[grid, 3] - b[grid, 1]) > 0).all(), "empty grid boxes"
    want = _independent_first_box(name, width, height)
    if want is not None:
        first = np.nonzero(grid & (geo.views == 0))[0][0]
        np.testing.assert_allclose(b[first], want, atol=0.5)
    # the square's tokens: every chosen box overlaps it, every box inside it is chosen
    x0, y0, x1, y1 = int(0.6 * width), int(0.6 * height), int(0.8 * width), int(0.8 * height)
    mask = np.zeros((height, width), bool)
    mask[y0:y1, x0:x1] = True
    toks = geo.tokens_for_mask(mask, view=None)
    assert len(toks)
    tb = b[toks]
    assert ((tb[:, 0] < x1) & (tb[:, 2] > x0) & (tb[:, 1] < y1) & (tb[:, 3] > y0)).all()
    inside = np.nonzero(grid & (b[:, 0] >= x0) & (b[:, 2] <= x1) & (b[:, 1] >= y0) & (b[:, 3] <= y1)
                        & (b[:, 2] > b[:, 0]))[0]
    assert set(inside.tolist()) <= set(toks.tolist())
    if want is not None or name != "standin-llava-1.5":
        assert len(inside), "no token lies inside a square of a fifth of the image"


def _cases():
    # 1920x1080: differentiable preprocessing of 2 Mpixel images and up to 7300 tokens: slow
    for name in NAMES:
        for size in SIZES:
            marks = [pytest.mark.slow] if size == (1920, 1080) else []
            yield pytest.param(name, size, marks=marks, id=f"{name}-{size[0]}x{size[1]}")


@pytest.mark.parametrize("name, size", list(_cases()))
def test_large_image_igos_mask_and_ablation(standin, name, size):
    from vlmscope.ablation import ablated
    from vlmscope.heatmaps import HeatmapConfig, igos, select_tokens

    width, height = size
    vlm = standin(name)
    prepared = vlm.prepare(photo(width, height), "what is in the image ?")
    # ablation of the square's tokens changes the next-token logits; an empty set does not
    toks = prepared.geometry.tokens_for_mask(
        np.pad(np.ones((int(0.2 * height), int(0.2 * width)), bool),
               ((int(0.6 * height), height - int(0.6 * height) - int(0.2 * height)),
                (int(0.6 * width), width - int(0.6 * width) - int(0.2 * width)))), view=None)
    with torch.no_grad():
        base = vlm.model(**prepared.inputs).logits[0, -1].float()
        with ablated(vlm, prepared, [], mode="zeros"):
            same = vlm.model(**prepared.inputs).logits[0, -1].float()
        with ablated(vlm, prepared, toks, mode="zeros"):
            cut = vlm.model(**prepared.inputs).logits[0, -1].float()
    assert torch.equal(same, base)
    assert not torch.allclose(cut, base), "ablating the square's tokens changed nothing"
    # iGOS+ with tiny settings: a mask in the ORIGINAL pixels, moved by the gradients
    config = HeatmapConfig(size=6, iterations=1, ig_iter=1, batch=2)
    selection = select_tokens(vlm, prepared, "yellow square", config=config, positions=[0])
    hm = igos(vlm, prepared, config=config, selection=selection)
    imp = hm.importance()
    assert imp.shape == (height, width)
    assert np.isfinite(imp).all() and imp.std() > 0, "the mask did not move"


def test_tokens_smaller_than_a_pixel_are_found_by_masks():
    """A small image enlarged to many tokens per pixel (LLaVA-NeXT tiles of a 30x20 picture):
    a token box between two pixel centres must still be selected by a mask over its pixel
    (it was invisible to every mask before)."""
    from vlmscope.tokens import TokenGeometry

    # 2 rows x 3 cols of tokens over a 2x1 image: boxes 0.67 px wide, 0.5 px tall
    xs, ys = np.arange(4) * 2 / 3, np.arange(3) * 0.5
    boxes = np.array([[xs[c], ys[r], xs[c + 1], ys[r + 1]] for r in range(2) for c in range(3)])
    cells = np.array([[r, c] for r in range(2) for c in range(3)])
    geo = TokenGeometry(boxes=boxes, views=np.zeros(6, np.int64), cells=cells, grids=((2, 3),),
                        image_size=(2, 1))
    left = np.array([[True, False]])
    assert geo.tokens_for_mask(left).tolist() == [0, 1, 3, 4]  # token 1 straddles both pixels
    assert geo.tokens_for_mask(~left).tolist() == [1, 2, 4, 5]
    assert (geo.mask_coverage(np.ones((1, 2), bool)) == 1).all()


def test_documented_shapes_are_the_standins():
    """docs/models.md's stand-in table (``SHAPES``) is what the stand-ins really are."""
    from vlmscope.testing.standins import SHAPE_COLUMNS, SHAPES, standin_shapes

    got = [tuple(row[c] for c in SHAPE_COLUMNS) for row in standin_shapes()]
    assert got == [tuple(r) for r in SHAPES]


@pytest.mark.parametrize("name", ["standin-llava-1.5", "standin-llava-next", "standin-qwen2-vl"])
def test_batched_integrated_gradients_equal_one_point_at_a_time(standin, name):
    """The ablation study's IG with path points as batch rows (the prompt repeated through the
    real processor: fixed tiles, anyres tiles, flattened dynamic-resolution patches) equals
    the same IG run one point per forward."""
    from vlmscope.ablation import ig_attribution

    vlm = standin(name)
    prepared = vlm.prepare(photo(640, 480), "what is in the image ?")
    assert vlm.repeated_inputs(prepared, 3) is not None  # the batch path is the one taken
    answer = vlm.answer_ids("yes", prepared)
    one = ig_attribution(vlm, prepared, answer, steps=4, batch=1)
    batched = ig_attribution(vlm, prepared, answer, steps=4, batch=3)
    assert one.shape == (prepared.groups.image.numel(),) and np.abs(one).sum() > 0
    np.testing.assert_allclose(batched, one, rtol=1e-4, atol=1e-7 * np.abs(one).max())
