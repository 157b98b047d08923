"""InternVL (transformers-native ``InternVLForConditionalGeneration``).

The GOT-OCR2 image processor picks a tile grid (cols x rows, between
``min_patches`` and ``max_patches`` tiles) whose aspect ratio is closest to
the image's, resizes the whole image to ``(rows*S, cols*S)`` and cuts it into
S x S tiles; when there is more than one tile, a thumbnail (the whole image
resized to S x S) follows the tiles. Each tile's ViT patch grid is pixel-
shuffled by ``downsample_ratio`` (0.5: 2x2 patches -> one token), so a tile
gives ``image_seq_length`` tokens, row-major.

Views: view 0 is the whole image (the thumbnail, or the only tile); view 1
is the tiles as one mosaic grid over the original image. Thumbnail tokens
come LAST in the sequence although they are view 0.

transformers' ``InternVLProcessor`` insists on a video processor, which needs
torchvision; ``InternVLImageOnlyProcessor`` is the same processor without it.
Tiny checkpoints are saved with it, and ``load_processor`` falls back to it
for real checkpoints where torchvision is missing.
"""

from __future__ import annotations

import numpy as np
import torch

from ..tokens import TokenGeometry
from ._grid import GridBuilder, cell_grid, image_kwargs, n_views, pair, size_hw, view_hw
from .base import Adapter, register

_IMAGE_ONLY: list[type] = []


def image_only_processor() -> type:
    """``InternVLImageOnlyProcessor``: ``InternVLProcessor`` without its video processor.

    transformers 5.x builds InternVL's video processor (which needs torchvision,
    not a vlmscope dependency) even for images. This subclass takes
    ``image_processor`` and ``tokenizer`` only and behaves the same on images.
    Built on first use and registered with ``AutoProcessor``, so a checkpoint
    saved with it loads by class name in the same process.
    """
    if not _IMAGE_ONLY:
        from transformers import AutoProcessor, InternVLProcessor

        def __init__(self, image_processor=None, tokenizer=None, image_seq_length=256,
                     chat_template=None, **kwargs):
            kwargs.pop("video_processor", None)
            InternVLProcessor.__init__(self, image_processor, tokenizer, None, image_seq_length,
                                       chat_template, **kwargs)

        cls = type("InternVLImageOnlyProcessor", (InternVLProcessor,), {
            "__init__": __init__, "__module__": __name__,
            "__qualname__": "InternVLImageOnlyProcessor",
            "__doc__": "``InternVLProcessor`` for images only: no video processor, no torchvision."})
        AutoProcessor.register("vlmscope-internvl-image-only", cls, exist_ok=True)
        _IMAGE_ONLY.append(cls)
    return _IMAGE_ONLY[0]


def __getattr__(name):  # PEP 562: ``from .internvl import InternVLImageOnlyProcessor``
    if name == "InternVLImageOnlyProcessor":
        return image_only_processor()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@register
class InternVLAdapter(Adapter):
    family = "internvl"
    config_classes = ("InternVLConfig",)
    checkpoints = ("OpenGVLab/InternVL3-1B-hf", "OpenGVLab/InternVL3-8B-hf")
    quirks = (
        "dynamic tiling: 448-px tiles in the grid (1..12 tiles) closest to the image's aspect "
        "ratio, plus a 448-px thumbnail when there is more than one tile; 256 tokens per tile",
        "the token count depends on the image's aspect ratio and size (e.g. 7 x 256 = 1792 for "
        "a 3:2 photo); thumbnail tokens come last in the sequence but are view 0",
        "the InternVLProcessor passes crop_to_patches=True itself; the image processor's own "
        "crop_to_patches attribute is overridden",
        "pixel shuffle (downsample_ratio 0.5): each token is a 2x2 block of 14-px ViT patches "
        "(28 px of a tile), CLS dropped",
        "tiles are stretched, not padded: the mosaic resize changes the aspect ratio slightly",
        "each image is wrapped as <img> ... </img>; those two are query tokens, not image tokens",
        "Qwen2 decoder (InternVL3): no BOS token; EOS is <|im_end|>",
        "transformers' InternVLProcessor needs a video processor, which needs torchvision; "
        "without torchvision load_processor falls back to InternVLImageOnlyProcessor",
    )
    selftest_image_size = (96, 64)
    selftest_boxes = ((52, 20, 60, 28), (4, 44, 12, 52))
    capabilities = {"image gradients": "yes"}

    @classmethod
    def load_processor(cls, source, **kwargs):
        """``AutoProcessor.from_pretrained(source)``, or without torchvision the image-only one.

        Also registers ``InternVLImageOnlyProcessor``, so tiny checkpoints saved with it load.
        """
        from transformers import AutoProcessor

        image_only = image_only_processor()
        try:
            return AutoProcessor.from_pretrained(source, **kwargs)
        except ImportError as e:  # the native processor's video processor needs torchvision
            if "torchvision" not in str(e).lower():
                raise
            return image_only.from_pretrained(source, **kwargs)

    def prompt_text(self, question: str) -> str | None:
        """``None``: InternVL-hf checkpoints ship a chat template, use it."""
        return None

    def _options(self) -> dict:
        return image_kwargs(self.processor, ("crop_to_patches", "min_patches", "max_patches", "size",
                                             "do_resize"))

    def tiles(self, image_size) -> tuple[int, int]:
        """(cols, rows) of the tile grid for an image of ``(width, height)``; (1, 1) = no tiling."""
        import sys

        from transformers.models.got_ocr2 import image_processing_pil_got_ocr2 as pil

        # the image processor's own module (PIL or torchvision backend) holds the rule
        module = sys.modules.get(type(self.processor.image_processor).__module__)
        canvas = getattr(module, "get_optimal_tiled_canvas", pil.get_optimal_tiled_canvas)
        o = self._options()
        if not (o["crop_to_patches"] and o["max_patches"] > 1):
            return 1, 1
        w, h = image_size
        return canvas((h, w), size_hw(o["size"]), o["min_patches"], o["max_patches"])

    def geometry(self, image_size, inputs=None) -> TokenGeometry:
        cfg = self.model.config
        ph, pw = pair(cfg.vision_config.patch_size)
        cols, rows = self.tiles(image_size)
        n_tiles = cols * rows
        expect = n_tiles + 1 if n_tiles > 1 else 1
        n = n_views(inputs)
        if n is not None and n != expect:
            raise RuntimeError(f"the processor made {n} tiles; the tiling as configured gives {expect}")
        sh, sw = view_hw(inputs, size_hw(self._options()["size"]))
        # pixel shuffle: a (sh/ph) x (sw/pw) patch grid -> gh x gw tokens, row-major
        gh, gw = int(sh // ph * cfg.downsample_ratio), int(sw // pw * cfg.downsample_ratio)
        ey, ex = np.arange(gh + 1) / gh, np.arange(gw + 1) / gw
        w, h = image_size
        g = GridBuilder(image_size)
        grids = [(gh, gw)]
        if n_tiles > 1:
            tw, th = w / cols, h / rows  # each tile's share of the original image
            for i in range(n_tiles):
                r, c = divmod(i, cols)
                g.add(1, *cell_grid(ey, ex, c * tw, r * th, tw, th, row0=r * gh, col0=c * gw))
            grids.append((rows * gh, cols * gw))
        g.add(0, *cell_grid(ey, ex, 0, 0, w, h))  # thumbnail (or the only tile), last
        return g.build(grids, self.preprocessing(image_size))

    def pixel_inputs(self, image, inputs):
        """Tiles row-major, then the thumbnail when there is more than one: ``[n_views, 3, S, S]``."""
        from .. import pixels

        ip, o = self.processor.image_processor, self._options()
        sh, sw = size_hw(o["size"])
        height, width = image.shape[-2:]
        if o["crop_to_patches"] and o["max_patches"] > 1:
            cols, rows = self.tiles((width, height))
            views = pixels.tiles(pixels.resize(image, rows * sh, cols * sw, ip.resample), sh, sw)
            if len(views) > 1:
                views.append(pixels.resize(image, sh, sw, ip.resample))
        else:
            views = [pixels.resize(image, sh, sw, ip.resample) if o["do_resize"] else image]
        x = torch.stack([pixels.normalized(v, ip) for v in views])
        ref = inputs["pixel_values"]
        if tuple(x.shape) != tuple(ref.shape):
            raise ValueError(f"{self.family}: pixel_inputs takes one image; it makes views "
                             f"{tuple(x.shape)}, the inputs hold {tuple(ref.shape)}")
        return {"pixel_values": x.to(ref.dtype)}

    def preprocessing(self, image_size=None) -> str:
        o = self._options()
        sh, sw = size_hw(o["size"])
        if not (o["crop_to_patches"] and o["max_patches"] > 1):
            return f"resize to {sh}x{sw} (aspect ratio not kept)" if o["do_resize"] else "no resize"
        if image_size is None:
            return (f"{o['min_patches']}..{o['max_patches']} tiles of {sh}x{sw} in the grid closest "
                    "to the image's aspect ratio, plus a thumbnail")
        cols, rows = self.tiles(image_size)
        if cols * rows == 1:
            return f"one tile: resize to {sh}x{sw} (aspect ratio not kept)"
        return (f"resize to {rows * sh}x{cols * sw}, cut into {rows}x{cols} tiles of {sh}x{sw}, "
                f"plus a {sh}x{sw} thumbnail of the whole image")
