"""LLaVA-1.5 and the bundled organism: one square grid of patches.

LLaVA-1.5 was trained with pad-to-square; the Hugging Face processor
center-crops unless ``do_pad=True``. Both are mapped exactly here, and
``preprocessing()`` says which one a run used (it moves every map).
"""

from __future__ import annotations

import numpy as np

from ..tokens import TokenGeometry, grid_boxes
from ._grid import keeps_cls_token, resize_hw, size_dict
from .base import Adapter, register


@register
class LlavaAdapter(Adapter):
    family = "llava"
    config_classes = ("LlavaConfig",)
    checkpoints = ("llava-hf/llava-1.5-7b-hf", "llava-hf/llava-1.5-13b-hf", "vlmscope organism")
    capabilities = {"image gradients": "yes"}
    quirks = (
        "trained with pad-to-square, but the HF processor centre-crops unless do_pad=True",
        "vision_feature_layer=-2 by default (the penultimate CLIP layer)",
        "24x24 grid of 14-px patches at 336 px; 576 image tokens, CLS dropped",
    )

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

    def transform(self, width: int, height: int):
        """Return ``(to_original, (H, W))``: fractions of the processed view -> original pixels."""
        ip = self._ip
        do_pad = bool(getattr(ip, "do_pad", False))
        w, h = float(width), float(height)
        off_x = off_y = 0.0
        if do_pad and width != height:
            side = max(width, height)
            off_x, off_y = (side - width) // 2, (side - height) // 2
            w = h = float(side)
        ph, pw = int(round(h)), int(round(w))
        if getattr(ip, "do_resize", True):
            ph, pw = resize_hw(int(h), int(w), size_dict(ip.size))
        sx, sy = pw / w, ph / h
        top = left = 0
        out_h, out_w = ph, pw
        if getattr(ip, "do_center_crop", False):
            crop = size_dict(ip.crop_size)
            out_h, out_w = int(crop["height"]), int(crop["width"])
            top, left = (ph - out_h) // 2, (pw - out_w) // 2

        def to_original(u: float, v: float) -> tuple[float, float]:
            px, py = u * out_w + left, v * out_h + top  # processed (resized) pixels
            return px / sx - off_x, py / sy - off_y

        return to_original, (out_h, out_w)

    def geometry(self, image_size, inputs=None) -> TokenGeometry:
        width, height = image_size
        to_original, (out_h, out_w) = self.transform(width, height)
        rows, cols = out_h // self.patch_size, out_w // self.patch_size
        boxes = grid_boxes(rows, cols, to_original)
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        cells = np.stack(np.divmod(np.arange(rows * cols), cols), axis=1)
        views = np.zeros(rows * cols, dtype=np.int64)
        if self.has_cls_token:  # CLS comes first and sees the whole image
            boxes = np.vstack([[0, 0, width, height], boxes])
            cells = np.vstack([[-1, -1], cells])
            views = np.concatenate([[0], views])
        return TokenGeometry(boxes=boxes, views=views, cells=cells, grids=((rows, cols),),
                             image_size=(width, height), note=self.preprocessing())

    def pixel_inputs(self, image, inputs):
        from .. import pixels

        ip = self._ip
        x = image
        if getattr(ip, "do_pad", False):
            fill = [int(m * 255) / 255 for m in ip.image_mean]  # the processor's background
            x = pixels.pad_to_square(x, fill)
        if getattr(ip, "do_resize", True):
            h, w = resize_hw(x.shape[-2], x.shape[-1], size_dict(ip.size))
            x = pixels.resize(x, h, w, getattr(ip, "resample", 3))
        if getattr(ip, "do_center_crop", False):
            crop = size_dict(ip.crop_size)
            x = pixels.center_crop(x, int(crop["height"]), int(crop["width"]))
        x = pixels.normalized(x, ip)
        ref = inputs["pixel_values"]
        return {"pixel_values": x[None].to(ref.dtype)}

    def preprocessing(self) -> str:
        ip = self._ip
        steps = []
        if getattr(ip, "do_pad", False):
            steps.append("pad to square")
        if getattr(ip, "do_resize", True):
            size = size_dict(ip.size)
            steps.append(f"resize shortest edge to {size['shortest_edge']}"
                         if size.get("shortest_edge") else f"resize to {size['height']}x{size['width']}")
        if getattr(ip, "do_center_crop", False):
            crop = size_dict(ip.crop_size)
            steps.append(f"center-crop {crop['height']}x{crop['width']}")
        return ", then ".join(steps)
