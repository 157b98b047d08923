"""Qwen2-VL and Qwen2.5-VL: one smart-resized image, 2x2-merged patches, M-RoPE.

The image processor stretches the whole image (no crop, no pad) to sides that
are multiples of ``patch_size * merge_size`` (14 * 2 = 28 px), keeping the
pixel count within ``[min_pixels, max_pixels]`` (``smart_resize``), so the
aspect ratio moves a little. The ViT cuts 14-px patches, stored block-major
(each 2x2 block of patches consecutive); the merger concatenates each block
into one language-model token. Image tokens therefore run row-major over the
merged grid ``(grid_h / 2, grid_w / 2)`` of ``image_grid_thw``, and token
``(r, c)`` covers the same fraction of the original image as of the resized
one. Qwen2.5-VL's ViT permutes the blocks into attention windows and restores
the order after the merger, so the token order is the same.

In transformers 5.x the processors always build a video processor, which
needs torchvision. ``Qwen2VLImageOnlyProcessor`` and
``Qwen2_5_VLImageOnlyProcessor`` are the same processors without it (see
``image_only_processors``); the tiny test checkpoints (``vlmscope.testing.tiny``)
are saved with them, and ``load_processor`` falls back to them for real
checkpoints.
"""

from __future__ import annotations

import numpy as np

from ..tokens import TokenGeometry, grid_boxes
from .base import Adapter, register

# ----------------------------------------------------------------- processors
_IMAGE_ONLY = {"qwen2-vl": ("Qwen2VLProcessor", "Qwen2VLImageOnlyProcessor"),
               "qwen2.5-vl": ("Qwen2_5_VLProcessor", "Qwen2_5_VLImageOnlyProcessor")}
_PROCESSORS: dict[str, type] = {}


def image_only_processors() -> dict[str, type]:
    """``{family: processor class}``: the Qwen processors without their video processor.

    transformers 5.x builds the video processor (which needs torchvision) for every
    Qwen processor, even for images only. These subclasses take ``image_processor``
    and ``tokenizer`` only and behave the same on images. They are built on first use
    (importing transformers' processors is slow) and registered with ``AutoProcessor``,
    so a checkpoint saved with one loads by its class name in the same process.
    """
    if _PROCESSORS:
        return _PROCESSORS
    import transformers
    from transformers import AutoProcessor
    from transformers.processing_utils import ProcessorMixin

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        # the Qwen processors' own token lookup; like them, drop unknown kwargs
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    for family, (base, name) in _IMAGE_ONLY.items():
        cls = type(name, (getattr(transformers, base),), {
            "__init__": __init__, "__module__": __name__, "__qualname__": name,
            "__doc__": f"``{base}`` for images only: no video processor, no torchvision."})
        # a string key: the native Qwen configs stay mapped to the native processors
        AutoProcessor.register(f"vlmscope-{family}-image-only", cls, exist_ok=True)
        _PROCESSORS[family] = cls
    return _PROCESSORS


def __getattr__(name):  # PEP 562: ``from .qwen2_vl import Qwen2VLImageOnlyProcessor``
    for family, (_, cls_name) in _IMAGE_ONLY.items():
        if name == cls_name:
            return image_only_processors()[family]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _size(ip) -> tuple[int, int]:
    """(min_pixels, max_pixels) of a Qwen2-VL image processor."""
    size = getattr(ip, "size", None) or {}
    get = size.get if isinstance(size, dict) else (lambda k: getattr(size, k, None))
    lo = get("shortest_edge") or getattr(ip, "min_pixels", None) or 56 * 56
    hi = get("longest_edge") or getattr(ip, "max_pixels", None) or 28 * 28 * 1280
    return int(lo), int(hi)


# -------------------------------------------------------------------- adapters
class _QwenVLAdapter(Adapter):
    """Shared Qwen2-VL / Qwen2.5-VL logic; subclasses name the transformers classes."""

    selftest_image_size = (150, 100)  # -> 140x112 resized, a 4x5 grid of merged tokens
    capabilities = {"image gradients": "yes"}
    # one box inside token (1, 1); one across the column boundary x=90 (tokens (2, 2), (2, 3))
    selftest_boxes = ((40, 30, 50, 45), (85, 58, 100, 70))

    def __init__(self, model, processor):
        if not hasattr(processor, "image_processor"):
            # AutoProcessor falls back to the bare tokenizer when it cannot resolve the
            # saved processor class (an image-only class not yet registered in this process)
            raise TypeError(
                f"{self.family} needs a processor with an image processor, got "
                f"{type(processor).__name__}; load it with {type(self).__name__}.load_processor"
                "(path), which also works without torchvision")
        super().__init__(model, processor)

    # -- sizes ---------------------------------------------------------------
    @property
    def _ip(self):
        return self.processor.image_processor

    @property
    def patch_size(self) -> int:
        return int(self.model.config.vision_config.patch_size)

    @property
    def merge_size(self) -> int:
        return int(self.model.config.vision_config.spatial_merge_size)

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) the processor resizes an image to (its ``smart_resize`` rule)."""
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        ip = self._ip
        factor = int(getattr(ip, "patch_size", self.patch_size)) * int(
            getattr(ip, "merge_size", self.merge_size))
        if not getattr(ip, "do_resize", True):
            return width, height
        lo, hi = _size(ip)
        h, w = smart_resize(height, width, factor=factor, min_pixels=lo, max_pixels=hi)
        return w, h

    def merged_grid(self, image_size, inputs=None) -> tuple[int, int]:
        """(rows, cols) of merged tokens: from ``image_grid_thw`` if given, else the resize rule."""
        m = self.merge_size
        grid = None if inputs is None else inputs.get("image_grid_thw")
        if grid is None:
            w, h = self.resized_size(*image_size)
            return h // (self.patch_size * m), w // (self.patch_size * m)
        grid = np.asarray(grid.cpu() if hasattr(grid, "cpu") else grid).reshape(-1, 3)
        if len(grid) != 1 or grid[0, 0] != 1:
            raise ValueError(f"expected one image with t=1, got image_grid_thw {grid.tolist()}")
        _, gh, gw = (int(v) for v in grid[0])
        return gh // m, gw // m

    # -- geometry --------------------------------------------------------------
    def geometry(self, image_size, inputs=None) -> TokenGeometry:
        """Boxes of the merged tokens, row-major; ``inputs`` may be ``None`` (resize rule)."""
        width, height = image_size
        rows, cols = self.merged_grid(image_size, inputs)
        # the whole image is stretched onto the grid: fractions map straight to pixels
        boxes = grid_boxes(rows, cols, lambda u, v: (u * width, v * height))  # [rows*cols, 4]
        cells = np.stack(np.divmod(np.arange(rows * cols), cols), axis=1)  # [n, 2] (row, col)
        side = self.patch_size * self.merge_size
        note = (f"{self.preprocessing()}: {width}x{height} -> {cols * side}x{rows * side}, "
                f"{rows}x{cols} tokens")
        return TokenGeometry(boxes=boxes, views=np.zeros(rows * cols, dtype=np.int64),
                             cells=cells, grids=((rows, cols),), image_size=(width, height),
                             note=note)

    def pixel_inputs(self, image, inputs):
        """smart_resize, normalise, then flatten into ``[n_patches, C * temporal * patch * patch]``."""
        from .. import pixels

        ip = self._ip
        height, width = image.shape[-2:]
        w, h = self.resized_size(width, height)
        x = pixels.resize(image, h, w, ip.resample)
        x = pixels.normalized(x, ip)
        flat = pixels.flatten_patches(x, int(getattr(ip, "patch_size", self.patch_size)),
                                      int(getattr(ip, "merge_size", self.merge_size)),
                                      int(getattr(ip, "temporal_patch_size", 2)))
        ref = inputs["pixel_values"]
        if flat.shape[0] != ref.shape[0]:
            raise ValueError(f"{self.family}: pixel_inputs takes one image; the inputs hold "
                             f"{ref.shape[0]} patches, this image makes {flat.shape[0]}")
        return {"pixel_values": flat.to(ref.dtype)}

    def preprocessing(self) -> str:
        lo, hi = _size(self._ip)
        side = self.patch_size * self.merge_size
        return (f"smart_resize (stretch, no crop or pad) to multiples of {side} px, "
                f"{lo}..{hi} pixels")

    @classmethod
    def load_processor(cls, source, **kwargs):
        """``AutoProcessor.from_pretrained(source)``, or without torchvision the image-only one.

        Also registers the image-only classes, so tiny checkpoints saved with them load.
        """
        from transformers import AutoProcessor

        image_only = image_only_processors()[cls.family]
        try:
            return AutoProcessor.from_pretrained(source, **kwargs)
        except ImportError as e:  # the native processor's video processor needs torchvision
            if "torchvision" not in str(e).lower():
                raise
            return image_only.from_pretrained(source, **kwargs)


@register
class Qwen2VLAdapter(_QwenVLAdapter):
    family = "qwen2-vl"
    config_classes = ("Qwen2VLConfig",)
    checkpoints = ("Qwen/Qwen2-VL-2B-Instruct", "Qwen/Qwen2-VL-7B-Instruct")
    quirks = (
        "smart_resize stretches the image to multiples of 28 px per side: the aspect ratio "
        "changes slightly and token boxes are not square in the original image",
        "one image token = a 2x2 block of 14-px patches concatenated by the merger; "
        "tokens run row-major over the merged grid, no CLS, no row separators",
        "min_pixels/max_pixels (image processor size shortest_edge/longest_edge) set the "
        "token count (4 to max_pixels/784); the shipped max_pixels allows 16384 tokens",
        "M-RoPE: image tokens get (t, row, col) rotary positions and the text after them "
        "resumes at max+1, so positions are not token indices; forwards need "
        "mm_token_type_ids and image_grid_thw to rebuild them",
        "only <|image_pad|> tokens are image tokens; <|vision_start|>/<|vision_end|> "
        "around them count as query tokens",
        "full attention across the whole image in every ViT block",
        "transformers 5.x: AutoProcessor builds a video processor that needs torchvision; "
        "Qwen2VLImageOnlyProcessor works without it",
    )


@register
class Qwen25VLAdapter(_QwenVLAdapter):
    family = "qwen2.5-vl"
    config_classes = ("Qwen2_5_VLConfig",)
    checkpoints = ("Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct")
    quirks = (
        "smart_resize stretches the image to multiples of 28 px per side: the aspect ratio "
        "changes slightly and token boxes are not square in the original image",
        "one image token = a 2x2 block of 14-px patches concatenated by the merger; "
        "tokens run row-major over the merged grid, no CLS, no row separators",
        "min_pixels/max_pixels (image processor size shortest_edge/longest_edge) set the "
        "token count (4 to max_pixels/784); the shipped max_pixels allows 16384 tokens",
        "M-RoPE: image tokens get (t, row, col) rotary positions and the text after them "
        "resumes at max+1, so positions are not token indices; forwards need "
        "mm_token_type_ids and image_grid_thw to rebuild them",
        "ViT window attention (window_size 112 px = 4x4 tokens) except the "
        "fullatt_block_indexes blocks (7, 15, 23, 31); patches are permuted into window "
        "order inside the ViT and put back after the merger",
        "only <|image_pad|> tokens are image tokens; <|vision_start|>/<|vision_end|> "
        "around them count as query tokens",
        "transformers 5.x: AutoProcessor builds a video processor that needs torchvision; "
        "Qwen2_5_VLImageOnlyProcessor works without it",
    )
