"""Idefics3 and SmolVLM: square tiles of the resized image plus one global view.

Both families share one image pipeline (the processors differ only in video
support). For an original image of ``W x H`` the image processor

1. resizes it so its longest edge is ``size["longest_edge"]`` (always, small
   images are upscaled; the short side is truncated, then rounded up to even);
2. resizes it again so both sides are multiples of the tile side
   ``M = max_image_size["longest_edge"]`` (not exactly aspect-preserving);
3. cuts that canvas into ``R x C`` tiles of ``M x M`` in row-major order and
   appends the whole canvas squashed to ``M x M`` (the global view). A canvas
   of exactly ``M x M`` is not split: one view only. With
   ``do_image_splitting=False`` steps 2-3 are replaced by one squash to ``M x M``.

Each view goes through the SigLIP tower (``M // patch`` patches per side; a
remainder of ``M % patch`` pixels on the right/bottom is never seen) and the
connector's pixel shuffle, which merges ``s x s`` patch blocks
(``s = scale_factor``) into one token, row-major: ``(M // patch // s) ** 2``
tokens per view (``processor.image_seq_len``). The prompt is
``<fake><row_1_col_1><image>*n <fake><row_1_col_2>... \\n\\n<fake><global-img><image>*n<fake>``.

View convention (``TokenGeometry.views``): **0 is the global view** (the whole
image, as the default ``view=0`` of ``to_grid``/``to_pixels`` expects) and
tile ``(r, c)`` is view ``1 + r * C + c``. Geometry arrays are in sequence
order, so the global view's tokens come last in them.
"""

from __future__ import annotations

import math

import numpy as np

from ..tokens import TokenGeometry
from .base import Adapter, register

# the image processors' absolute cap on the resized longest edge (MAX_IMAGE_SIZE in transformers)
_MAX_IMAGE_SIZE = 4096

def _size_get(size, key):
    if size is None:
        return None
    if isinstance(size, dict):
        return size.get(key)
    return getattr(size, key, None)


def _resize_longest(height: int, width: int, longest: int) -> tuple[int, int]:
    """(height, width) after the processors' longest-edge resize (same float arithmetic)."""
    aspect = width / height
    if width >= height:
        width = longest
        height = int(width / aspect)
        height += height % 2  # odd -> even
    else:
        height = longest
        width = int(height * aspect)
        width += width % 2
    height, width = max(height, 1), max(width, 1)
    # then kept below the absolute cap
    aspect = width / height
    if width >= height and width > _MAX_IMAGE_SIZE:
        width, height = _MAX_IMAGE_SIZE, int(_MAX_IMAGE_SIZE / aspect)
    elif height > width and height > _MAX_IMAGE_SIZE:
        height, width = _MAX_IMAGE_SIZE, int(_MAX_IMAGE_SIZE * aspect)
    return max(height, 1), max(width, 1)


def _resize_to_multiples(height: int, width: int, tile: int) -> tuple[int, int]:
    """(height, width) after ``resize_for_vision_encoder``: both sides multiples of ``tile``."""
    aspect = width / height
    if width >= height:
        width = math.ceil(width / tile) * tile
        height = math.ceil(int(width / aspect) / tile) * tile
    else:
        height = math.ceil(height / tile) * tile
        width = math.ceil(int(height * aspect) / tile) * tile
    return height, width


def resized_size(width: int, height: int, image_processor) -> tuple[int, int]:
    """(height, width) after the image processor's first resize (``size``), before any tiling."""
    ip = image_processor
    if not getattr(ip, "do_resize", True):
        return height, width
    longest = _size_get(ip.size, "longest_edge")
    if longest:
        return _resize_longest(height, width, int(longest))
    return int(_size_get(ip.size, "height")), int(_size_get(ip.size, "width"))


def tile_layout(width: int, height: int, image_processor) -> tuple[int, int, int, int]:
    """``(rows, cols, canvas_h, canvas_w)`` of the tiling of an original ``width x height``.

    Follows the image processor's own settings (``do_resize``, ``size``,
    ``do_image_splitting``, ``max_image_size``). ``rows = cols = 0`` means one
    view (no split); ``canvas`` is the image size just before it is split into
    tiles (or squashed to one tile when nothing is split).
    """
    ip = image_processor
    tile = int(_size_get(ip.max_image_size, "longest_edge"))
    h, w = resized_size(width, height, ip)
    if not getattr(ip, "do_image_splitting", True):
        return 0, 0, h, w
    h, w = _resize_to_multiples(h, w, tile)
    if h > tile or w > tile:
        return h // tile, w // tile, h, w
    return 0, 0, h, w


class _TiledAdapter(Adapter):
    """Shared geometry of Idefics3 and SmolVLM."""

    quirks = (
        "the longest edge is always resized to size['longest_edge'] (small images are upscaled), "
        "then both sides are rounded up to multiples of the tile side: not aspect-preserving",
        "the global view squashes the whole image to a square tile (aspect ratio lost)",
        "a tile side that is not a multiple of the patch size leaves its right/bottom remainder "
        "unseen (e.g. 384 px tiles with 14 px patches: 6 px)",
        "the decoder is model.model.text_model (not language_model)",
        "image tokens are bracketed by <fake_token_around_image> and <row_r_col_c>/<global-img> "
        "text markers: these are query tokens, not image tokens",
        "a view whose normalised pixels are all exactly 0 is dropped as padding by the model",
        "with torchvision installed, AutoProcessor loads the torchvision image-processor backend: "
        "same tiling (checked), slightly different resampling than PIL's LANCZOS",
    )
    # 96x64 -> identity resize at the tiny model's size: 3x2 tiles of 32 px + a global view
    selftest_image_size = (96, 64)
    capabilities = {"image gradients": "yes"}
    # inside one tile; across the vertical tile seam; across the horizontal seam (and the global
    # view's), kept >= 10 px from the global view's token edges (x=48, y=32) that they do not cross,
    # since LANCZOS downscaling to the global view blurs by up to 9 original pixels
    selftest_boxes = ((6, 6, 20, 18), (26, 42, 38, 56), (62, 24, 76, 40))

    # -- language model parts -------------------------------------------------
    @property
    def language_model(self):
        """The Llama decoder (``model.model.text_model``)."""
        return self.model.model.text_model

    # -- image geometry -------------------------------------------------------
    @property
    def _ip(self):
        return self.processor.image_processor

    def _settings(self) -> dict:
        """Tile side, patch, scale factor and tokens per view, from the processor and config."""
        cfg = self.model.config
        tile = int(_size_get(self._ip.max_image_size, "longest_edge"))
        patch, scale = int(cfg.vision_config.patch_size), int(cfg.scale_factor)
        side = tile // patch // scale  # tokens per side of one view
        return dict(tile=tile, patch=patch, scale=scale, side=side,
                    seq_len=int(getattr(self.processor, "image_seq_len", side * side)))

    def layout(self, width: int, height: int) -> tuple[int, int, int, int]:
        """``(rows, cols, canvas_h, canvas_w)`` of an original image (see ``tile_layout``)."""
        return tile_layout(width, height, self._ip)

    def geometry(self, image_size, inputs=None) -> TokenGeometry:
        """Boxes of every image token in the original image, in sequence order.

        Parameters
        ----------
        image_size : (width, height) of the original image.
        inputs : the processor's output; when given, its number of views
            (``pixel_values [1, n_views, 3, M, M]``) is checked against the layout.
        """
        width, height = image_size
        s = self._settings()
        g = s["side"]
        if g * g != s["seq_len"]:
            raise ValueError(
                f"the processor writes {s['seq_len']} image tokens per view but the model makes "
                f"{g}x{g} (tile {s['tile']} px, patch {s['patch']}, scale factor {s['scale']})")
        rows, cols, ch, cw = self.layout(width, height)
        # each token covers s*p view pixels of the M seen per side (a remainder is never seen)
        frac = s["scale"] * s["patch"] / s["tile"]
        regions = []  # (view, x0, y0, x1, y1) in original pixels, in sequence order
        tx, ty = s["tile"] * width / cw, s["tile"] * height / ch  # one tile in original pixels
        for r in range(rows):
            for c in range(cols):
                regions.append((1 + r * cols + c, c * tx, r * ty, (c + 1) * tx, (r + 1) * ty))
        regions.append((0, 0.0, 0.0, float(width), float(height)))  # global view, last
        if inputs is not None and "pixel_values" in inputs:
            n_views = int(inputs["pixel_values"].shape[1])
            if n_views != len(regions):
                raise ValueError(f"the processor made {n_views} views but the layout expects "
                                 f"{len(regions)} ({rows}x{cols} tiles + global)")
        ii, jj = np.divmod(np.arange(g * g), g)  # token (row, col) in its view, row-major
        boxes, views, cells = [], [], []
        for v, x0, y0, x1, y1 in regions:
            bw, bh = (x1 - x0) * frac, (y1 - y0) * frac
            boxes.append(np.stack([x0 + jj * bw, y0 + ii * bh, x0 + (jj + 1) * bw,
                                   y0 + (ii + 1) * bh], axis=1))
            views.append(np.full(g * g, v))
            cells.append(np.stack([ii, jj], axis=1))
        boxes = np.concatenate(boxes)  # [n_image, 4]
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        grids = ((g, g),) * (rows * cols + 1)
        return TokenGeometry(boxes=boxes, views=np.concatenate(views).astype(np.int64),
                             cells=np.concatenate(cells).astype(np.int64), grids=grids,
                             image_size=(width, height), note=self.preprocessing())

    def pixel_inputs(self, image, inputs):
        """Tiles row-major then the global view, ``[1, n_views, 3, M, M]`` (one image).

        ``pixel_attention_mask`` is layout (all ones: every view is ``M x M``) and stays.
        """
        import torch

        from .. import pixels

        ip = self._ip
        ref = inputs["pixel_values"]
        if ref.shape[0] != 1:
            raise ValueError(f"{self.family}: pixel_inputs takes one image, the inputs hold "
                             f"{ref.shape[0]} prompts")
        height, width = image.shape[-2:]
        tile = int(_size_get(ip.max_image_size, "longest_edge"))
        x = pixels.resize(image, *resized_size(width, height, ip), ip.resample)
        rows, _, canvas_h, canvas_w = self.layout(width, height)
        if not getattr(ip, "do_image_splitting", True):
            views = [pixels.resize(x, tile, tile, ip.resample)]
        else:
            x = pixels.resize(x, canvas_h, canvas_w, ip.resample)
            views = [x] if rows == 0 else (pixels.tiles(x, tile, tile)
                                           + [pixels.resize(x, tile, tile, ip.resample)])
        x = torch.stack([pixels.normalized(v, ip) for v in views])
        return {"pixel_values": x[None].to(ref.dtype)}

    def preprocessing(self) -> str:
        ip = self._ip
        m = int(_size_get(ip.max_image_size, "longest_edge"))
        steps = []
        if getattr(ip, "do_resize", True):
            longest = _size_get(ip.size, "longest_edge")
            steps.append(f"resize longest edge to {longest}" if longest else
                         f"resize to {_size_get(ip.size, 'height')}x{_size_get(ip.size, 'width')}")
        if getattr(ip, "do_image_splitting", True):
            steps.append(f"round sides up to multiples of {m}, split into {m}x{m} tiles "
                         f"(views 1.., row-major) + the whole image squashed to {m}x{m} (view 0)")
        else:
            steps.append(f"squash to {m}x{m} (view 0)")
        return ", then ".join(steps)


@register
class Idefics3Adapter(_TiledAdapter):
    family = "idefics3"
    config_classes = ("Idefics3Config",)
    checkpoints = ("HuggingFaceM4/Idefics3-8B-Llama3",)
    quirks = _TiledAdapter.quirks + (
        "364 px tiles, 14 px patches, scale factor 2: 169 tokens per view; longest edge 4*364, "
        "so a typical image gives 4xN tiles + global (up to 17 views)",
    )


@register
class SmolVLMAdapter(_TiledAdapter):
    family = "smolvlm"
    config_classes = ("SmolVLMConfig",)
    checkpoints = ("HuggingFaceTB/SmolVLM-256M-Instruct", "HuggingFaceTB/SmolVLM2-2.2B-Instruct")
    quirks = _TiledAdapter.quirks + (
        "SmolVLMProcessor needs torchvision (its video processor) and num2words, even for images",
        "SmolVLMProcessor reads a flat list of images as ONE prompt's images: batch with one list "
        "per prompt ([[im1], [im2]])",
        "SmolVLM-256M: 512 px tiles, 16 px patches, scale factor 4 (64 tokens per view); "
        "SmolVLM2-2.2B: 384 px tiles, 14 px patches, scale factor 3 (81 tokens per view, "
        "6 px unseen)",
        "without torchvision or num2words, load_processor falls back to Idefics3Processor (the "
        "same image prompt, no video) and the tiny checkpoint is saved with it",
    )

    @classmethod
    def load_processor(cls, source, **kwargs):
        """``AutoProcessor``; without torchvision or num2words, ``Idefics3Processor``.

        ``SmolVLMProcessor`` builds a video processor (torchvision) and imports
        num2words even for images; ``Idefics3Processor`` writes the same image
        prompt and reads the same checkpoint files (the video settings are ignored).
        """
        from transformers import AutoProcessor, Idefics3Processor

        try:
            return AutoProcessor.from_pretrained(source, **kwargs)
        except ImportError as e:
            if not any(name in str(e).lower() for name in ("torchvision", "num2words")):
                raise
            return Idefics3Processor.from_pretrained(source, **kwargs)
