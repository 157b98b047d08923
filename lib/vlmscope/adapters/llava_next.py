"""LLaVA-NeXT (v1.6) and LLaVA-OneVision: a base view plus "anyres" tiles.

Both families show the model the image twice:

* the **base view**: the whole image squashed (aspect ratio NOT kept) to the
  tower's square input, one ``g x g`` grid of patch tokens;
* the **high-resolution view**: the image resized (aspect kept) into the best
  of ``image_grid_pinpoints``, padded (centred, zeros) to that resolution and
  cut into tower-sized tiles. The model stitches the tiles' feature grids into
  one ``(tiles_down * g) x (tiles_across * g)`` grid, crops the rows or columns
  that it computes to be padding (``unpad_image``, at feature resolution, so
  a kept border cell can still be partly padding), and appends a learned
  ``image_newline`` embedding after every row. OneVision first bilinearly
  shrinks the unpadded grid when it has more than ``anyres_max_N`` tiles'
  worth of cells (``vision_aspect_ratio``), then appends the newlines.

Token order: base view row-major (after a CLS token where one is kept), then
the high-resolution view row-major, each row followed by its newline token.

Geometry conventions (``TokenGeometry``):

* ``views``: 0 = base view, 1 = the stitched high-resolution view (all tiles
  together, after unpadding and pooling; tile ``(i, j)`` holds rows
  ``i*g..`` and columns ``j*g..`` before unpadding). ``grids`` holds
  ``(g, g)`` and the unpadded (pooled) ``(rows, cols)``.
* newline tokens: view 1, cell ``(-1, -1)``, and an EMPTY box of zero width at
  the right edge of their row, ``(x_end, y0, x_end, y1)``: the embedding is a
  constant that sees no pixels, the box only records the row it closes.
* boxes are exact preimages of each patch through the processor's resize, pad,
  tile split, per-tile resize/crop, clipped to the image; cells that see only
  padding get empty boxes.
* OneVision pooled cells: the box is the union of the stitched cells that the
  bilinear interpolation reads with non-zero weight (its receptive field), so
  pooled boxes of neighbouring tokens overlap.

The module is a little over 450 lines because both families share every
geometry step (OneVision only adds the pooling and its several-image layout);
split, the pooling would sit apart from the grid it pools.
"""

from __future__ import annotations

import math

import numpy as np

from ..tokens import TokenGeometry
from ._grid import keeps_cls_token, resize_hw, size_dict
from .base import Adapter, register


# -------------------------------------------------------------------- helpers
def select_best_resolution(height: int, width: int, pinpoints) -> tuple[int, int]:
    """The processor's choice of (height, width) among ``pinpoints`` for an image."""
    from transformers.image_processing_utils import select_best_resolution as best

    return tuple(int(v) for v in best((height, width), [list(p) for p in pinpoints]))


def patch_output_size(height: int, width: int, target: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of the aspect-keeping resize into ``target`` (``get_patch_output_size``)."""
    th, tw = target
    sw, sh = tw / width, th / height
    if sw < sh:
        return min(math.ceil(height * sw), th), tw
    return th, min(math.ceil(width * sh), tw)


def patch_steps(ip, height: int, width: int):
    """The processor's per-view steps (``do_resize`` with ``size``, then ``do_center_crop``).

    Returns ``(to_input, (out_h, out_w))``: ``to_input(u, v)`` maps fractions of
    the processed view to pixels of the ``height x width`` input of these steps.
    """
    rh, rw = height, width
    if getattr(ip, "do_resize", True):
        rh, rw = resize_hw(height, width, size_dict(ip.size))
    top = left = 0
    out_h, out_w = rh, rw
    if getattr(ip, "do_center_crop", False):
        crop = size_dict(ip.crop_size)
        out_h, out_w = int(crop["height"]), int(crop["width"])
        top, left = (rh - out_h) // 2, (rw - out_w) // 2

    def to_input(u: float, v: float) -> tuple[float, float]:
        return (u * out_w + left) * width / rw, (v * out_h + top) * height / rh

    return to_input, (out_h, out_w)


def unpad_slices(height: int, width: int, rows: int, cols: int) -> tuple[slice, slice]:
    """Rows and columns of a stitched ``rows x cols`` grid kept by ``unpad_image``."""
    if width / height > cols / rows:
        new_h = int(round(height * (cols / width), 7))
        pad = (rows - new_h) // 2
        return slice(pad, rows - pad), slice(0, cols)
    new_w = int(round(width * (rows / height), 7))
    pad = (cols - new_w) // 2
    return slice(0, rows), slice(pad, cols - pad)


def bilinear_support(n_in: int, n_out: int) -> list[np.ndarray]:
    """Per output index, the inputs that ``interpolate(mode="bilinear")`` reads (weight != 0)."""
    import torch

    eye = torch.eye(n_in)[None, :, :, None]  # [1, n_in (channels), n_in, 1]
    w = torch.nn.functional.interpolate(eye, size=(n_out, 1), mode="bilinear")
    w = w[0, :, :, 0]  # [n_in, n_out]
    return [np.nonzero(w[:, j].numpy())[0] for j in range(n_out)]


def _product(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Boxes ``[rows, cols, 4]`` from column x-spans ``[cols, 2]`` and row y-spans ``[rows, 2]``."""
    out = np.empty((len(ys), len(xs), 4))
    out[..., 0], out[..., 2] = xs[None, :, 0], xs[None, :, 1]
    out[..., 1], out[..., 3] = ys[:, None, 0], ys[:, None, 1]
    return out


def union_spans(spans: np.ndarray, support: list[np.ndarray]) -> np.ndarray:
    """``[n_out, 2]``: per output, the union of the non-empty input spans it reads (else empty)."""
    out = np.empty((len(support), 2))
    for k, idx in enumerate(support):
        part = spans[idx]
        part = part[part[:, 1] > part[:, 0]]
        out[k] = (part[:, 0].min(), part[:, 1].max()) if len(part) else spans[idx[0], [0, 0]]
    return out


# ------------------------------------------------- OneVision without torchvision
_IMAGE_ONLY: list = []
IMAGE_ONLY_KEY = "vlmscope-llava-onevision-image-only"


def image_only_onevision_processor():
    """``LlavaOnevisionImageOnlyProcessor``: ``LlavaOnevisionProcessor`` minus its video processor.

    In transformers 5 the OneVision processor cannot be built, saved or loaded
    without torchvision, because its video processor needs it. This subclass
    keeps every image code path of the real class (token counting, anyres
    preprocessing by ``LlavaOnevisionImageProcessor[Pil]``) and takes no video
    processor. Calling this registers it with ``AutoProcessor`` (under a name
    key, so native lookups are unchanged) and returns the class.
    """
    if _IMAGE_ONLY:
        return _IMAGE_ONLY[0]
    from transformers import AutoProcessor, LlavaOnevisionProcessor
    from transformers.processing_utils import ProcessorMixin

    class LlavaOnevisionImageOnlyProcessor(LlavaOnevisionProcessor):
        """LLaVA-OneVision's processor for images only (no torchvision needed)."""

        def __init__(self, image_processor=None, tokenizer=None, num_image_tokens=None,
                     vision_feature_select_strategy=None, chat_template=None, image_token="<image>",
                     video_token="<video>", vision_aspect_ratio="anyres_max_9", **kwargs):
            # the attributes LlavaOnevisionProcessor.__init__ sets, minus the video processor
            self.num_image_tokens = num_image_tokens
            self.vision_feature_select_strategy = vision_feature_select_strategy
            self.image_token = getattr(tokenizer, "image_token", None) or image_token
            self.video_token = getattr(tokenizer, "video_token", None) or video_token
            self.image_token_id = (getattr(tokenizer, "image_token_id", None)
                                   or tokenizer.convert_tokens_to_ids(self.image_token))
            self.video_token_id = (getattr(tokenizer, "video_token_id", None)
                                   or tokenizer.convert_tokens_to_ids(self.video_token))
            self.vision_aspect_ratio = vision_aspect_ratio
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    LlavaOnevisionImageOnlyProcessor.__module__ = __name__
    AutoProcessor.register(IMAGE_ONLY_KEY, LlavaOnevisionImageOnlyProcessor, exist_ok=True)
    _IMAGE_ONLY.append(LlavaOnevisionImageOnlyProcessor)
    return LlavaOnevisionImageOnlyProcessor


# -------------------------------------------------------------------- adapters
@register
class LlavaNextAdapter(Adapter):
    """LLaVA-NeXT: base view + unpadded anyres tiles with row-end newline tokens."""

    family = "llava-next"
    config_classes = ("LlavaNextConfig",)
    checkpoints = ("llava-hf/llava-v1.6-mistral-7b-hf", "llava-hf/llava-v1.6-vicuna-7b-hf",
                   "llava-hf/llava-v1.6-vicuna-13b-hf", "llava-hf/llava-v1.6-34b-hf")
    quirks = (
        "base view squashed to the tower's square input (aspect not kept), then anyres tiles",
        "tiles: best of image_grid_pinpoints, aspect-keeping resize, centred zero padding, "
        "cut into crop_size tiles; the processor records image_sizes (H, W) per image",
        "the model crops padding at FEATURE resolution (unpad_image); kept border cells may "
        "still be partly padding, dropped ones may hold a few image pixels",
        "a learned image_newline token ends every high-resolution row (none after the base view)",
        "vision_feature_layer=-2 and strategy 'default' (CLS dropped) in the v1.6 checkpoints",
        "strategy 'full' on a CLIP tower keeps a CLS token per tile, which the model's tile "
        "reshape does not expect (only the base view's CLS is counted)",
        "small images tie in select_best_resolution; the first listed pinpoint wins",
    )
    selftest_image_size = (30, 20)
    selftest_boxes = ((4, 3, 9, 8), (19, 10, 26, 17))
    capabilities = {"image gradients": "yes"}

    # -- geometry ---------------------------------------------------------------
    @property
    def _ip(self):
        return self.processor.image_processor

    @property
    def patch_size(self) -> int:
        return int(self.model.config.vision_config.patch_size)

    @property
    def has_cls_token(self) -> bool:
        """Whether the image tokens include the tower's CLS token ("full" strategy on CLIP)."""
        return keeps_cls_token(self.model.config)

    @property
    def grid_side(self) -> int:
        """Patches per side of one tower view (``image_size // patch_size``)."""
        vcfg = self.model.config.vision_config
        return int(vcfg.image_size) // int(vcfg.patch_size)

    def _view_spans(self, to_input, out_hw, to_original) -> tuple[np.ndarray, np.ndarray]:
        """Column and row spans ``([g, 2], [g, 2])`` (unclipped, original px) of one view's patches.

        Every step (resize, pad, crop, tile offset) is axis-aligned, so a view's
        patch boxes are the product of its column x-spans and row y-spans.
        """
        g, ps = self.grid_side, self.patch_size
        out_h, out_w = out_hw
        t = np.arange(g + 1) * float(ps)
        x, _ = to_original(*to_input(t / out_w, 0 * t))
        _, y = to_original(*to_input(0 * t, t / out_h))
        return np.stack([x[:-1], x[1:]], 1), np.stack([y[:-1], y[1:]], 1)

    def _sizes(self):
        """(base (h, w), tile side in pixels) following the processor's ``_preprocess``."""
        size = size_dict(self._ip.size)
        if size.get("height") and size.get("width"):
            base = (int(size["height"]), int(size["width"]))
        else:
            base = (int(size["shortest_edge"]),) * 2
        crop = size_dict(getattr(self._ip, "crop_size", None))
        tile = int(crop.get("height") or size.get("height") or size["shortest_edge"])
        return base, tile

    def transform(self, width: int, height: int):
        """The base view's ``(to_original, (H, W))``: fractions of it -> original pixels."""
        (bh, bw), _ = self._sizes()
        to_input, out_hw = patch_steps(self._ip, bh, bw)

        def to_original(u, v):
            x, y = to_input(u, v)
            return x * width / bw, y * height / bh

        return to_original, out_hw

    def base_spans(self, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """Base view ``(x-spans [g, 2], y-spans [g, 2])``: squash to the base size, then steps."""
        to_original, out_hw = self.transform(width, height)
        return self._view_spans(lambda u, v: (u, v), out_hw, to_original)

    def tile_layout(self, width: int, height: int) -> dict:
        """How the processor tiles an image: best resolution, resized size, padding, tile grid."""
        _, tile = self._sizes()
        best_h, best_w = select_best_resolution(height, width, self._ip.image_grid_pinpoints)
        new_h, new_w = patch_output_size(height, width, (best_h, best_w))
        return dict(best=(best_h, best_w), resized=(new_h, new_w), tile=tile,
                    paste=((best_w - new_w) // 2, (best_h - new_h) // 2),
                    tiles=(math.ceil(best_h / tile), math.ceil(best_w / tile)))

    def tile_spans(self, i: int, j: int, width: int, height: int, lay: dict):
        """``(x-spans [g, 2], y-spans [g, 2])`` of tile ``(i, j)`` (row-major, as the processor cuts).

        Tile ``(i, j)`` is cut from the padded image at ``(i * tile, j * tile)``;
        padded pixels map back through the paste offset and the resize scale.
        """
        tile = lay["tile"]
        (best_h, best_w), (new_h, new_w) = lay["best"], lay["resized"]
        paste_x, paste_y = lay["paste"]
        th, tw = min(tile, best_h - i * tile), min(tile, best_w - j * tile)
        to_input, out_hw = patch_steps(self._ip, th, tw)

        def to_original(x, y):  # tile pixels -> original pixels
            return ((x + j * tile - paste_x) * width / new_w,
                    (y + i * tile - paste_y) * height / new_h)

        return self._view_spans(to_input, out_hw, to_original)

    def stitched_spans(self, width: int, height: int, lay: dict) -> tuple[np.ndarray, np.ndarray]:
        """``(x-spans [cols, 2], y-spans [rows, 2])`` of the stitched tile grid, before unpadding."""
        rows, cols = lay["tiles"]
        xs = [self.tile_spans(0, j, width, height, lay)[0] for j in range(cols)]
        ys = [self.tile_spans(i, 0, width, height, lay)[1] for i in range(rows)]
        return np.vstack(xs), np.vstack(ys)

    def pool(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pooling of the unpadded grid's (clipped) spans; none for LLaVA-NeXT."""
        return xs, ys

    def geometry(self, image_size, inputs=None) -> TokenGeometry:
        width, height = image_size
        g = self.grid_side
        bx, by = self.base_spans(width, height)
        base = _product(bx.clip(0, width), by.clip(0, height)).reshape(-1, 4)
        lay = self.tile_layout(width, height)
        xs, ys = self.stitched_spans(width, height, lay)
        rs, cs = unpad_slices(height, width, len(ys), len(xs))
        unpadded = (len(ys[rs]), len(xs[cs]))
        xs, ys = self.pool(xs[cs].clip(0, width), ys[rs].clip(0, height))
        R, C = len(ys), len(xs)
        # each high-resolution row, then its newline token: an empty box at the row's end
        seen = xs[:, 1] > xs[:, 0]
        x_end = xs[seen, 1].max() if seen.any() else xs[:, 1].max()
        hi = np.concatenate([_product(xs, ys), np.zeros((R, 1, 4))], axis=1)  # [R, C + 1, 4]
        hi[:, C] = np.stack([np.full(R, x_end), ys[:, 0], np.full(R, x_end), ys[:, 1]], 1)
        hi_cells = np.full((R, C + 1, 2), -1)
        rr, cc = np.meshgrid(np.arange(R), np.arange(C), indexing="ij")
        hi_cells[:, :C, 0], hi_cells[:, :C, 1] = rr, cc
        boxes = np.vstack([base, hi.reshape(-1, 4)])
        cells = np.vstack([np.stack(np.divmod(np.arange(g * g), g), axis=1),
                           hi_cells.reshape(-1, 2)]).astype(np.int64)
        views = np.concatenate([np.zeros(g * g, np.int64), np.ones(R * (C + 1), np.int64)])
        if self.has_cls_token:  # CLS comes first and sees the whole (base) image
            boxes = np.vstack([[0, 0, width, height], boxes])
            cells = np.vstack([[-1, -1], cells])
            views = np.concatenate([[0], views])
        note = (f"{self.preprocessing()}; this image: best resolution {lay['best'][1]}x"
                f"{lay['best'][0]} (WxH), resized to {lay['resized'][1]}x{lay['resized'][0]}, "
                f"tiles {lay['tiles'][1]} across x {lay['tiles'][0]} down, high-resolution grid "
                f"{R}x{C} (rows x cols) after unpadding{self._pool_note(unpadded, (R, C))}")
        return TokenGeometry(boxes=boxes, views=views, cells=cells, grids=((g, g), (R, C)),
                             image_size=(width, height), note=note)

    def _pool_note(self, before, after) -> str:
        return ""

    # -- differentiable preprocessing -------------------------------------------
    def _view_pixels(self, view):
        """One view through the processor's per-view steps: resize, centre crop, normalise."""
        from .. import pixels

        ip = self._ip
        if getattr(ip, "do_resize", True):
            h, w = resize_hw(view.shape[-2], view.shape[-1], size_dict(ip.size))
            view = pixels.resize(view, h, w, ip.resample)
        if getattr(ip, "do_center_crop", False):
            crop = size_dict(ip.crop_size)
            view = pixels.center_crop(view, int(crop["height"]), int(crop["width"]))
        return pixels.normalized(view, ip)

    def _views(self, image) -> list:
        """The processor's views of one image, before the per-view steps: base view, tiles."""
        from .. import pixels

        height, width = image.shape[-2:]
        resample = self._ip.resample
        (bh, bw), _ = self._sizes()
        lay = self.tile_layout(width, height)
        (best_h, best_w), (new_h, new_w), (px, py) = lay["best"], lay["resized"], lay["paste"]
        hi = pixels.resize(image, new_h, new_w, resample)
        hi = pixels.pad(hi, px, py, best_w - new_w - px, best_h - new_h - py)  # zeros
        return [pixels.resize(image, bh, bw, resample)] + pixels.tiles(hi, lay["tile"], lay["tile"])

    def pixel_inputs(self, image, inputs):
        """Base view then tiles, ``[1, n_views, 3, h, w]`` (one image per prompt)."""
        import torch

        ref = inputs["pixel_values"]
        if ref.shape[0] != 1:
            raise ValueError(f"{self.family}: pixel_inputs takes one image, the inputs hold "
                             f"{ref.shape[0]}")
        x = torch.stack([self._view_pixels(v) for v in self._views(image)])
        return {"pixel_values": x[None].to(ref.dtype)}

    def preprocessing(self) -> str:
        (bh, bw), tile = self._sizes()
        steps = [f"base view: resize to {bw}x{bh} (aspect not kept)",
                 f"tiles: resize (aspect kept) into the best of image_grid_pinpoints, "
                 f"centre zero-pad, cut into {tile}-px tiles"]
        if getattr(self._ip, "do_center_crop", False):
            crop = size_dict(self._ip.crop_size)
            steps.append(f"each view centre-cropped to {crop['width']}x{crop['height']}")
        return "; ".join(steps)


@register
class LlavaOnevisionAdapter(LlavaNextAdapter):
    """LLaVA-OneVision: LLaVA-NeXT's anyres layout, plus bilinear pooling of big grids."""

    family = "llava-onevision"
    config_classes = ("LlavaOnevisionConfig",)
    checkpoints = ("llava-hf/llava-onevision-qwen2-0.5b-ov-hf",
                   "llava-hf/llava-onevision-qwen2-7b-ov-hf",
                   "llava-hf/llava-onevision-qwen2-0.5b-si-hf",
                   "llava-hf/llava-onevision-qwen2-72b-ov-hf")
    quirks = (
        "SigLIP tower (no CLS), strategy 'full', vision_feature_layer=-1; 384 px views of "
        "27x27 patches of 14 px: the last 6 px of every view are never seen",
        "base view resized to size (aspect not kept); tiles as in LLaVA-NeXT, up to 6x6 of them",
        "unpadding at feature resolution as in LLaVA-NeXT; a newline token ends every "
        "high-resolution row",
        "vision_aspect_ratio 'anyres_max_N': a stitched grid with more than ~N tiles' worth of "
        "cells is shrunk by bilinear interpolation (pooled boxes are receptive fields: they "
        "overlap)",
        "several images in one prompt: no tiles, pad-to-square (mean colour), base view + one "
        "trailing newline token per image",
        "the processor counts tokens with its own vision_aspect_ratio, the model pools with the "
        "config's: they must agree",
    )
    selftest_image_size = (30, 20)
    selftest_boxes = ((4, 3, 9, 8), (19, 10, 26, 17))

    @classmethod
    def load_processor(cls, source, **kwargs):
        """``AutoProcessor.from_pretrained``, or the image-only processor without torchvision."""
        from transformers import AutoProcessor

        image_only = image_only_onevision_processor()  # registers it for tiny checkpoints
        try:
            return AutoProcessor.from_pretrained(source, **kwargs)
        except (ImportError, OSError, TypeError, ValueError, AttributeError) as e:
            if "torchvision" not in str(e).lower() and "video" not in str(e).lower():
                raise
            return image_only.from_pretrained(source, **kwargs)

    @property
    def has_cls_token(self) -> bool:
        return False  # the model insists on g*g base tokens

    @property
    def max_tiles(self) -> int:
        ratio = (getattr(self.processor, "vision_aspect_ratio", None)
                 or getattr(self.model.config, "vision_aspect_ratio", "anyres_max_9"))
        return int(ratio.strip("anyres_max_"))

    def pooled_shape(self, rows: int, cols: int) -> tuple[int, int]:
        """Grid shape after OneVision's pooling of an unpadded ``rows x cols`` grid."""
        g = self.grid_side
        ratio = math.sqrt(rows * cols / (self.max_tiles * g ** 2))
        if ratio > 1.1:
            return int(rows // ratio), int(cols // ratio)
        return rows, cols

    def pool(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Receptive-field spans of the bilinearly pooled grid (``interpolate`` is separable)."""
        pr, pc = self.pooled_shape(len(ys), len(xs))
        if (pr, pc) == (len(ys), len(xs)):
            return xs, ys
        return (union_spans(xs, bilinear_support(len(xs), pc)),
                union_spans(ys, bilinear_support(len(ys), pr)))

    def _pool_note(self, before, after) -> str:
        if tuple(before) == tuple(after):
            return ""
        return f", bilinearly pooled from {before[0]}x{before[1]}"

    def geometry(self, image_size, inputs=None) -> TokenGeometry:
        n = None if inputs is None else inputs.get("batch_num_images")
        if n is not None and int(np.asarray(n.cpu() if hasattr(n, "cpu") else n).ravel()[0]) != 1:
            return self._multi_image_geometry(image_size)
        return super().geometry(image_size, inputs)

    def _multi_image_geometry(self, image_size) -> TokenGeometry:
        """One image of a several-image prompt: pad to square, one view, one trailing newline."""
        width, height = image_size
        side = max(width, height)
        off_x, off_y = (side - width) // 2, (side - height) // 2
        to_input, out_hw = patch_steps(self._ip, side, side)
        g = self.grid_side
        xs, ys = self._view_spans(to_input, out_hw, lambda x, y: (x - off_x, y - off_y))
        boxes = _product(xs.clip(0, width), ys.clip(0, height)).reshape(-1, 4)
        boxes = np.vstack([boxes, [[width, 0, width, height]]])
        cells = np.vstack([np.stack(np.divmod(np.arange(g * g), g), axis=1), [[-1, -1]]])
        return TokenGeometry(boxes=boxes, views=np.zeros(len(boxes), np.int64), cells=cells,
                             grids=((g, g),), image_size=(width, height),
                             note="several images: pad to square, resize, no tiles")

    def preprocessing(self) -> str:
        return (super().preprocessing()
                + f"; grids over {self.max_tiles} tiles' worth of cells are bilinearly pooled")


__all__ = ["LlavaNextAdapter", "LlavaOnevisionAdapter", "select_best_resolution",
           "patch_output_size", "unpad_slices", "bilinear_support"]
