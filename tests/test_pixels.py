"""Differentiable preprocessing (``vlmscope.pixels`` and ``Adapter.pixel_inputs``).

The building blocks are checked against PIL and the transformers functions the
processors call; each family's ``pixel_inputs`` against its processor's own
output on a non-square image of an awkward size, and its gradient against the
region of the original image the processor actually reads.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

import vlmscope
from vlmscope import pixels
from vlmscope.adapters import adapter_class, supported_families
from vlmscope.testing.tiny import build_tiny

torch.set_num_threads(1)


def _noise(width, height, seed=0):
    """Uniform noise over 0..255: the hardest case for resampling (overshoot, clipping)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


# ----------------------------------------------------------------- building blocks
FILTERS = [Image.Resampling.NEAREST, Image.Resampling.BOX, Image.Resampling.BILINEAR,
           Image.Resampling.HAMMING, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS]
FILTERS += [getattr(Image.Resampling, n) for n in ("MKS2013", "MKS2021")
            if hasattr(Image.Resampling, n)]  # Pillow >= 13
# (width, height) -> (new width, new height): up, down, mixed, one axis, and a height that
# shrinks by more than twice the width (Pillow >= 13 then resamples rows first)
RESIZES = [((23, 17), (61, 45)), ((97, 61), (30, 22)), ((40, 90), (60, 45)), ((90, 40), (45, 60)),
           ((37, 29), (37, 71)), ((41, 29), (13, 29)), ((33, 517), (336, 336))]


@pytest.mark.parametrize("resample", FILTERS, ids=[f.name for f in FILTERS])
@pytest.mark.parametrize("sizes", RESIZES, ids=[f"{a[0]}x{a[1]}-{b[0]}x{b[1]}" for a, b in RESIZES])
def test_resize_matches_pil_on_noise(resample, sizes):
    (w, h), (nw, nh) = sizes
    image = _noise(w, h, seed=w * h)
    ref = pixels.image_tensor(image.resize((nw, nh), resample))
    got = pixels.resize(pixels.image_tensor(image), nh, nw, resample)
    err = (got - ref).abs() * 255
    # PIL rounds to uint8 after each of its two passes: at most about a grey level apart
    assert err.max() <= 1.25 and err.mean() < 0.5, (err.max(), err.mean())


def test_resize_keeps_leading_dims_and_same_size_is_identity():
    x = torch.rand(2, 3, 10, 14)
    assert pixels.resize(x, 10, 14) is x
    y = pixels.resize(x, 7, 20)
    assert y.shape == (2, 3, 7, 20)
    assert torch.allclose(y[1], pixels.resize(x[1], 7, 20))


def test_resize_weights_rows_sum_to_one():
    for code in range(6):
        m = pixels.resize_weights(37, 11, code)
        assert m.shape == (11, 37) and np.allclose(m.sum(1), 1.0)
        assert np.allclose(pixels.resize_weights(13, 13, code), np.eye(13))


def test_resample_code_reads_codes_enums_and_names():
    assert pixels.resample_code(Image.Resampling.LANCZOS) == 1
    assert pixels.resample_code(3) == 3
    assert pixels.resample_code("bilinear") == 2
    assert pixels.resample_code(None) == 2  # PIL backend default
    with pytest.raises(ValueError):
        pixels.resample_code(42)


def test_pad_to_square_matches_processor_placement_and_fill():
    from transformers import LlavaOnevisionImageProcessorPil

    ip = LlavaOnevisionImageProcessorPil()
    fill = tuple(int(m * 255) for m in ip.image_mean)
    for w, h in ((9, 4), (4, 9), (8, 5), (5, 5)):
        arr = np.asarray(_noise(w, h)).transpose(2, 0, 1)
        ref = ip.pad_to_square(arr, background_color=fill).astype(np.float32) / 255
        got = pixels.pad_to_square(torch.from_numpy(arr / 255.0).float(), [f / 255 for f in fill])
        assert got.shape == ref.shape and np.allclose(got.numpy(), ref, atol=1e-6), (w, h)


def test_pad_places_image_and_fills_per_channel():
    x = torch.rand(3, 2, 3)
    y = pixels.pad(x, left=1, top=2, right=3, bottom=0, fill=[0.1, 0.2, 0.3])
    assert y.shape == (3, 4, 7)
    assert torch.equal(y[:, 2:4, 1:4], x)
    mask = torch.ones(4, 7, dtype=torch.bool)
    mask[2:4, 1:4] = False
    fill = torch.tensor([0.1, 0.2, 0.3])[:, None]
    assert torch.allclose(y[:, mask], fill.expand(3, int(mask.sum())))


@pytest.mark.parametrize("crop", [(4, 4), (5, 3), (7, 10), (12, 4), (8, 13), (3, 11)])
def test_center_crop_offsets_match_the_processors_rule(crop):
    from transformers.image_transforms import center_crop

    arr = np.random.default_rng(0).random((3, 7, 10)).astype(np.float32)
    ref = center_crop(arr, crop, data_format="channels_first", input_data_format="channels_first")
    got = pixels.center_crop(torch.from_numpy(arr), *crop)
    assert got.shape == ref.shape and np.allclose(got.numpy(), ref)


def test_normalized_matches_processor_rescale_and_normalize():
    from transformers import CLIPImageProcessor

    ip = CLIPImageProcessor()
    arr = np.asarray(_noise(6, 5)).transpose(2, 0, 1)
    ref = ip.normalize(ip.rescale(arr.astype(np.float32), ip.rescale_factor), ip.image_mean,
                       ip.image_std, input_data_format="channels_first")
    got = pixels.normalized(torch.from_numpy(arr / 255.0).float(), ip)
    assert np.allclose(got.numpy(), ref, atol=1e-5)
    m = torch.tensor([0.1, 0.5, 0.9])[:, None, None]
    x = torch.rand(3, 2, 2)
    assert torch.allclose(pixels.normalize(x, [0.1, 0.5, 0.9], [0.5, 0.25, 2.0]),
                          (x - m) / torch.tensor([0.5, 0.25, 2.0])[:, None, None])


def test_tiles_match_divide_to_patches():
    from transformers.image_transforms import divide_to_patches

    x = torch.rand(3, 10, 13)
    got = pixels.tiles(x, 4, 5)
    ref = divide_to_patches(x.numpy(), (4, 5))
    assert len(got) == len(ref) == 9
    assert all(np.array_equal(a.numpy(), b) for a, b in zip(got, ref))


def test_flatten_patches_matches_qwen_patchify():
    from transformers import Qwen2VLImageProcessorPil

    x = torch.rand(3, 4 * 6, 6 * 6)  # 4 x 6 patches of 6 px, merged 2 x 2
    ref, gh, gw = Qwen2VLImageProcessorPil().patchify(x.numpy(), 6, 2, 2)
    got = pixels.flatten_patches(x, 6, 2, 2)
    assert (gh, gw) == (4, 6) and got.shape == ref.shape
    assert np.array_equal(got.numpy(), ref)


# ---------------------------------------------------------------------- families
WIDTH, HEIGHT = 53, 37  # non-square, odd, neither side a multiple of any tile or patch
IMPLEMENTED = [f for f in supported_families()
               if adapter_class(f).capabilities.get("image gradients") == "yes"]
SUPPORT = {1: 3.0, 2: 1.0, 3: 2.0}  # PIL filter code -> kernel half-width (output pixels)


@pytest.fixture(scope="module", params=IMPLEMENTED)
def vlm(request, tmp_path_factory):
    path = build_tiny(adapter_class(request.param), tmp_path_factory.mktemp(request.param) / "m")
    return vlmscope.load(path, device="cpu")


def test_every_family_has_image_gradients():
    assert set(IMPLEMENTED) == set(supported_families())


def test_pixel_inputs_match_the_processor(vlm):
    image = _noise(WIDTH, HEIGHT, seed=1)
    prepared = vlm.prepare(image, "what is this ?")
    got = vlm.adapter.pixel_inputs(pixels.image_tensor(image), prepared.inputs)
    assert set(got) == {"pixel_values"}
    ref = prepared.inputs["pixel_values"]
    assert got["pixel_values"].shape == ref.shape
    err = (got["pixel_values"] - ref).abs()
    # about one grey level per resize (PIL rounds), in normalised units; on noise
    assert err.max() < 0.05 and err.mean() < 0.01, (err.max(), err.mean())


def _reach(a, b, chain):
    """Original-pixel interval read by outputs ``[a, b)`` of a chain of resizes.

    ``chain`` lists ``(n_in, n_out, support)`` from the original outwards. Returns
    ``(exact, reach)``: the outputs' footprint, and it grown by each kernel's support
    (in input pixels: ``support * max(1, n_in / n_out)``, as PIL widens kernels when
    shrinking; PIL skips a pass that keeps the size).
    """
    exact, reach = (a, b), (a, b)
    for n_in, n_out, s in reversed(chain):
        scale = n_in / n_out
        grow = 0.0 if n_in == n_out else s * max(1.0, scale)
        exact = (exact[0] * scale, exact[1] * scale)
        reach = (reach[0] * scale - grow, reach[1] * scale + grow)
    return exact, reach


def _probe(vlm):
    """``(select, x_reach, y_reach)``: a part of ``pixel_values`` and the original region it reads.

    The layout of each family comes from transformers' own rules (not the adapter's).
    """
    family = vlm.adapter.family
    ip = vlm.processor.image_processor
    s = SUPPORT[pixels.resample_code(ip.resample)]
    W, H = WIDTH, HEIGHT
    if family == "llava":  # shortest edge, then centre crop: columns cut away are never read
        side = ip.size["shortest_edge"]
        rh, rw = side, int(side * W / H)
        left = (rw - ip.crop_size["width"]) // 2
        return (lambda pv: pv[0], _reach(left, left + ip.crop_size["width"], [(W, rw, s)]),
                _reach(0, rh, [(H, rh, s)]))
    if family in ("llava-next", "llava-onevision"):  # the top-left high-resolution tile
        from transformers.image_processing_utils import select_best_resolution

        bh, bw = select_best_resolution((H, W), ip.image_grid_pinpoints)
        sw, sh = bw / W, bh / H
        nh, nw = (min(math.ceil(H * sw), bh), bw) if sw < sh else (bh, min(math.ceil(W * sh), bw))
        px, py = (bw - nw) // 2, (bh - nh) // 2
        tile = (ip.crop_size or ip.size)["height"]
        return (lambda pv: pv[0, 1], _reach(-px, tile - px, [(W, nw, s)]),
                _reach(-py, tile - py, [(H, nh, s)]))
    if family in ("qwen2-vl", "qwen2.5-vl"):  # the first merged token: 2x2 patches, top left
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        side = ip.patch_size * ip.merge_size
        rh, rw = smart_resize(H, W, side, ip.size["shortest_edge"], ip.size["longest_edge"])
        return (lambda pv: pv[:ip.merge_size ** 2], _reach(0, side, [(W, rw, s)]),
                _reach(0, side, [(H, rh, s)]))
    if family in ("idefics3", "smolvlm"):  # the first tile (view 0): two resizes, then a cut
        from transformers.models.idefics3.image_processing_pil_idefics3 import (
            get_resize_output_image_size)

        tile = ip.max_image_size["longest_edge"]
        h1, w1 = get_resize_output_image_size(np.zeros((3, H, W)), ip.size["longest_edge"])
        assert w1 >= h1  # the canvas rule below is the landscape branch
        cw = math.ceil(w1 / tile) * tile
        ch = math.ceil(int(cw / (w1 / h1)) / tile) * tile
        assert ch > tile or cw > tile, "the probe needs a split image"
        return (lambda pv: pv[0, 0], _reach(0, tile, [(W, w1, s), (w1, cw, s)]),
                _reach(0, tile, [(H, h1, s), (h1, ch, s)]))
    if family == "internvl":  # the first tile of the mosaic
        from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import (
            get_optimal_tiled_canvas)

        th, tw = ip.size["height"], ip.size["width"]
        cols, rows = get_optimal_tiled_canvas((H, W), (th, tw), ip.min_patches, ip.max_patches)
        assert cols * rows > 1, "the probe needs a tiled image"
        return (lambda pv: pv[0], _reach(0, tw, [(W, cols * tw, s)]),
                _reach(0, th, [(H, rows * th, s)]))
    # gemma3, paligemma: one squashed view; its top-left quarter
    th, tw = ip.size["height"], ip.size["width"]
    return (lambda pv: pv[0, :, :th // 2, :tw // 2], _reach(0, tw // 2, [(W, tw, s)]),
            _reach(0, th // 2, [(H, th, s)]))


def test_gradient_reaches_only_what_the_processor_reads(vlm):
    from vlmscope.testing.selftest import smooth_image

    image = smooth_image(WIDTH, HEIGHT)  # no overshoot, so no clipped (gradient-free) outputs
    prepared = vlm.prepare(image, "what is this ?")
    x = pixels.image_tensor(image).requires_grad_(True)
    pv = vlm.adapter.pixel_inputs(x, prepared.inputs)["pixel_values"]
    select, (x_exact, x_reach), (y_exact, y_reach) = _probe(vlm)
    part = select(pv)
    weights = torch.randn(part.shape, generator=torch.Generator().manual_seed(0))
    (part * weights).sum().backward()
    g = x.grad.abs().sum(0)  # [H, W]
    cols, rows = g.sum(0) > 0, g.sum(1) > 0
    xs, ys = torch.arange(WIDTH), torch.arange(HEIGHT)
    # nothing outside the kernels' reach (one pixel of slack for the centre offsets)
    assert not cols[(xs < x_reach[0] - 1) | (xs > x_reach[1] + 1)].any(), \
        (cols.nonzero().ravel().tolist(), x_reach)
    assert not rows[(ys < y_reach[0] - 1) | (ys > y_reach[1] + 1)].any(), \
        (rows.nonzero().ravel().tolist(), y_reach)
    # every pixel under the outputs' footprint is read
    inside_x = (xs >= max(x_exact[0], 0)) & (xs < min(x_exact[1], WIDTH))
    inside_y = (ys >= max(y_exact[0], 0)) & (ys < min(y_exact[1], HEIGHT))
    assert inside_x.any() and inside_y.any()
    assert (g[inside_y][:, inside_x] > 0).all()
    # and the probe is a strict part of the image: something lies outside its reach
    assert not cols.all() or not rows.all()
