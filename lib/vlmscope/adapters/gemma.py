"""Gemma 3 and PaliGemma: a SigLIP tower feeding a Gemma decoder.

Gemma 3 resizes the whole image to one square (no aspect ratio kept),
average-pools the SigLIP patch grid to ``mm_tokens_per_image`` tokens and,
when pan-and-scan is on, adds non-overlapping crops of the original image,
each resized to the same square. Image tokens of one image block attend to
each other bidirectionally (``token_type_ids`` = 1 for image tokens).

PaliGemma resizes the image to one square and keeps every SigLIP patch as a
token. Its sequence is ``<image>*n <bos> prompt \\n`` and the whole prefix
(image + prompt, ``token_type_ids`` = 0) attends bidirectionally; answer
tokens (``token_type_ids`` = 1) are causal.

View convention (shared with InternVL): view 0 is the whole image resized to
the processor's square; view 1, when present, is the crops/tiles laid out as
one mosaic grid over the original image.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..tokens import TokenGeometry
from ._grid import (GridBuilder, cell_grid, image_kwargs, n_views, pair, pooled_edges, size_hw,
                    stacked_views, view_hw)
from .base import Adapter, register

# --------------------------------------------------------------------- Gemma 3


@register
class Gemma3Adapter(Adapter):
    family = "gemma3"
    config_classes = ("Gemma3Config",)
    checkpoints = ("google/gemma-3-4b-it",)
    quirks = (
        "whole image squashed to 896x896 (aspect ratio not kept); SigLIP 64x64 patches of 14 px, "
        "average-pooled 4x4 to 16x16 = 256 tokens (mm_tokens_per_image)",
        "image tokens of one block attend to each other bidirectionally in every decoder layer "
        "(token_type_ids = 1 marks them): an image token sees LATER image tokens of its block and "
        "earlier text, never later text; text tokens stay causal",
        "attention knockout inside the image must cut both directions of an image-image pair; "
        "separate blocks (original image, pan-and-scan crops) are causal to each other",
        "sliding-window layers (window 1024 in 4B) apply on top of the bidirectional image block",
        "pan-and-scan is off: Gemma3Processor passes do_pan_and_scan=False itself, so setting "
        "image_processor.do_pan_and_scan does nothing; turn it on in processor.images_kwargs",
        "with pan-and-scan the original image comes first and 2..4 crops follow (ceil-sized, the "
        "last one narrower), each squashed to 896 px and its own 256-token block (view 1 mosaic)",
        "each image block is wrapped as '\\n\\n<start_of_image> 256 x <image_soft_token> "
        "<end_of_image>\\n\\n'; boi/eoi are query tokens, not image tokens",
        "the chat template starts with <bos> and the tokenizer adds one too: processor(text=...) on "
        "the rendered template gives two BOS tokens unless add_special_tokens=False (vlmscope "
        "passes it when the rendered prompt already starts with BOS)",
        "the decoder scales text embeddings by sqrt(hidden) inside embed_tokens; image features "
        "are scattered in unscaled",
    )
    selftest_image_size = (96, 64)
    selftest_boxes = ((52, 20, 62, 28), (5, 40, 15, 52))
    capabilities = {"image gradients": "yes"}

    def prompt_text(self, question: str) -> str | None:
        """``None``: Gemma 3 checkpoints ship a chat template, use it."""
        return None

    def _options(self) -> dict:
        return image_kwargs(self.processor, ("do_pan_and_scan", "pan_and_scan_min_crop_size",
                                             "pan_and_scan_max_num_crops",
                                             "pan_and_scan_min_ratio_to_activate", "size", "do_resize"))

    def crops(self, image_size) -> list[tuple[int, int, int, int]]:
        """Pan-and-scan crops ``(x0, y0, w, h)`` in original pixels, in processor order.

        Runs the image processor's own ``pan_and_scan`` on zero-copy index arrays.
        """
        o = self._options()
        if not o["do_pan_and_scan"]:
            return []
        w, h = image_size
        args = dict(pan_and_scan_min_crop_size=o["pan_and_scan_min_crop_size"],
                    pan_and_scan_max_num_crops=o["pan_and_scan_max_num_crops"],
                    pan_and_scan_min_ratio_to_activate=o["pan_and_scan_min_ratio_to_activate"])
        ip = self.processor.image_processor
        if hasattr(ip, "pan_and_scan"):  # PIL backend: one channels-first array
            xs = np.broadcast_to(np.arange(w, dtype=np.int64)[None, None, :], (1, h, w))
            ys = np.broadcast_to(np.arange(h, dtype=np.int64)[None, :, None], (1, h, w))
            cx, cy = ip.pan_and_scan(xs, **args), ip.pan_and_scan(ys, **args)
        else:  # torchvision backend: a batch [B, C, H, W]
            xs = torch.arange(w).expand(1, 1, h, w)
            ys = torch.arange(h)[:, None].expand(1, 1, h, w)
            cx, cy = ip.pan_and_scan_batched(xs, **args), ip.pan_and_scan_batched(ys, **args)
        return [(int(a[..., 0, 0].reshape(-1)[0]), int(b[..., 0, 0].reshape(-1)[0]),
                 int(a.shape[-1]), int(a.shape[-2])) for a, b in zip(cx, cy)]

    def geometry(self, image_size, inputs=None) -> TokenGeometry:
        cfg = self.model.config
        vcfg = cfg.vision_config
        t = math.isqrt(int(cfg.mm_tokens_per_image))
        if t * t != int(cfg.mm_tokens_per_image):
            raise ValueError(f"mm_tokens_per_image={cfg.mm_tokens_per_image} is not a square")
        patch = pair(vcfg.patch_size)[0]
        kernel = (int(vcfg.image_size) // patch) // t  # as Gemma3MultiModalProjector
        crops = self.crops(image_size)
        n = n_views(inputs)
        if n is not None and n != 1 + len(crops):
            raise RuntimeError(f"the processor made {n} views; pan-and-scan as configured gives "
                               f"{1 + len(crops)}")
        w, h = image_size
        sh, sw = view_hw(inputs, size_hw(self._options()["size"]))
        ey, ex = pooled_edges(t, kernel, patch, sh), pooled_edges(t, kernel, patch, sw)
        g = GridBuilder(image_size)
        g.add(0, *cell_grid(ey, ex, 0, 0, w, h))
        grids = [(t, t)]
        if crops:
            xs0 = sorted({c[0] for c in crops})
            ys0 = sorted({c[1] for c in crops})
            for x0, y0, cw, ch in crops:  # row-major, like itertools.product(h, w)
                a, b = ys0.index(y0), xs0.index(x0)
                g.add(1, *cell_grid(ey, ex, x0, y0, cw, ch, row0=a * t, col0=b * t))
            grids.append((len(ys0) * t, len(xs0) * t))
        return g.build(grids, self.preprocessing(image_size))

    def pixel_inputs(self, image, inputs):
        """The whole image, then its pan-and-scan crops (if on), each resized: ``[n_views, 3, S, S]``."""
        o = self._options()
        height, width = image.shape[-2:]
        views = [image] + [image[..., y0:y0 + h, x0:x0 + w]
                           for x0, y0, w, h in self.crops((width, height))]
        return {"pixel_values": stacked_views(views, self.processor.image_processor, o["size"],
                                              o["do_resize"], inputs["pixel_values"])}

    def preprocessing(self, image_size=None) -> str:
        o = self._options()
        sh, sw = size_hw(o["size"])
        out = f"resize to {sh}x{sw} (aspect ratio not kept)"
        if o["do_pan_and_scan"]:
            n = len(self.crops(image_size)) if image_size is not None else None
            out += (f", plus {n} pan-and-scan crops each resized to {sh}x{sw}" if n
                    else ", pan-and-scan on (no crops for this image)" if n == 0
                    else ", plus pan-and-scan crops")
        return out


# ------------------------------------------------------------------- PaliGemma


@register
class PaliGemmaAdapter(Adapter):
    family = "paligemma"
    config_classes = ("PaliGemmaConfig",)
    checkpoints = ("google/paligemma2-3b-mix-224", "google/paligemma-3b-mix-224")
    quirks = (
        "image squashed to 224x224 (aspect ratio not kept); 16x16 SigLIP patches of 14 px = "
        "256 tokens, no pooling, no CLS",
        "sequence is '<image>*256 <bos> prompt \\n': image tokens come BEFORE bos and the text",
        "the prefix (image + prompt + '\\n', token_type_ids 0) attends bidirectionally: image "
        "tokens see the prompt and query tokens see the image AND later prompt tokens; only "
        "answer tokens (token_type_ids 1) are causal",
        "attention knockout: 'image -> query' must cut both directions (query rows reading image "
        "columns AND image rows reading query columns) to isolate the image; blocking only "
        "query->image leaves prompt information inside the image tokens; hidden states at image "
        "positions are not text-free even in layer 0's output",
        "answer tokens appended for scoring must get token_type_ids 1 (extend_inputs does that); "
        "0 would make them part of the bidirectional prefix and leak later answer tokens",
        "no chat template in real checkpoints: prompt_text(question) gives '<image>' + question; "
        "mix checkpoints expect a task prefix such as 'answer en ' or 'caption en'",
        "position ids are 1-based; the processor returns 'labels' (all -100 for a prompt)",
        "PaliGemma 2 uses a Gemma 2 decoder (sliding window, logit soft-capping); PaliGemma 1 Gemma 1",
    )
    selftest_image_size = (96, 64)
    selftest_boxes = ((52, 20, 60, 28), (4, 44, 12, 52))
    capabilities = {"image gradients": "yes"}

    def prompt_text(self, question: str) -> str:
        """The prompt for ``processor(text=..., images=...)``: ``<image>`` then the question.

        The processor itself inserts ``<bos>`` after the image tokens and appends ``\\n``.
        """
        return f"{self.processor.image_token}{question}"

    def extend_inputs(self, inputs: dict, new_ids: torch.Tensor) -> dict:
        """As the base class, but appended tokens are suffix (``token_type_ids`` 1), no labels."""
        n = new_ids.shape[1]
        out = super().extend_inputs({k: v for k, v in inputs.items() if k != "labels"}, new_ids)
        tt = inputs.get("token_type_ids")
        if torch.is_tensor(tt):
            out["token_type_ids"] = torch.cat([tt, tt.new_ones(tt.shape[0], n)], dim=1)
        return out

    def geometry(self, image_size, inputs=None) -> TokenGeometry:
        vcfg = self.model.config.vision_config
        ph, pw = pair(vcfg.patch_size)
        sh, sw = view_hw(inputs, size_hw(self.processor.image_processor.size))
        rows, cols = sh // ph, sw // pw
        w, h = image_size
        g = GridBuilder(image_size)
        g.add(0, *cell_grid(np.arange(rows + 1) * ph / sh, np.arange(cols + 1) * pw / sw, 0, 0, w, h))
        return g.build([(rows, cols)], self.preprocessing())

    def pixel_inputs(self, image, inputs):
        """The image resized to the processor's square and normalised: ``[1, 3, S, S]``."""
        ip = self.processor.image_processor
        return {"pixel_values": stacked_views([image], ip, ip.size, getattr(ip, "do_resize", True),
                                              inputs["pixel_values"])}

    def preprocessing(self) -> str:
        ip = self.processor.image_processor
        if not getattr(ip, "do_resize", True):
            return "no resize"
        sh, sw = size_hw(ip.size)
        return f"resize to {sh}x{sw} (aspect ratio not kept)"
