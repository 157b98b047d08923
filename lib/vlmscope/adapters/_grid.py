"""Grid and geometry helpers shared by several adapters (private to ``adapters``).

Every adapter imports what it shares from here, never from another adapter
module: the processors' resize rules (``resize_hw``, ``size_dict``,
``size_hw``, ``pair``), the image-processor options a processor call really
uses (``image_kwargs``), the shape of processed views (``view_hw``,
``n_views``), and the builders of token boxes (``GridBuilder``, ``cell_grid``,
``pooled_edges``) and of differentiable pixel tensors (``stacked_views``).
"""

from __future__ import annotations

import numpy as np
import torch

from ..tokens import TokenGeometry


def resize_hw(height: int, width: int, size: dict) -> tuple[int, int]:
    """Output (height, width) of the processor's resize, following its own rule."""
    if size.get("shortest_edge"):
        s = int(size["shortest_edge"])
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = s, int(s * long / short)
        return (new_long, new_short) if width <= height else (new_short, new_long)
    return int(size["height"]), int(size["width"])


def size_dict(value) -> dict:
    """A processor's ``size`` / ``crop_size`` (dict or ``SizeDict``) as a plain dict."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return dict(value)
    return {k: getattr(value, k) for k in ("shortest_edge", "height", "width")
            if getattr(value, k, None) is not None}


def keeps_cls_token(config) -> bool:
    """Whether a LLaVA-style model keeps the CLIP tower's CLS token ("full" strategy on CLIP)."""
    strategy = config.vision_feature_select_strategy
    return strategy == "full" and config.vision_config.model_type == "clip_vision_model"


def image_kwargs(processor, keys) -> dict:
    """The image-processor options a plain ``processor(text=, images=)`` call really uses.

    Processors pass their own ``images_kwargs`` defaults (e.g. InternVL's
    ``crop_to_patches=True``, Gemma 3's ``do_pan_and_scan=False``), which override
    the image processor's attributes; the rest come from the image processor.
    """
    ip = processor.image_processor
    try:
        merged = processor._merge_kwargs(tokenizer_init_kwargs=processor.tokenizer.init_kwargs)
        merged = merged["images_kwargs"]
    except Exception:  # noqa: BLE001 - private API; fall back to the class defaults
        merged = dict(getattr(processor, "images_kwargs", None) or {})
    return {k: (merged[k] if k in merged else getattr(ip, k, None)) for k in keys}


def size_hw(size) -> tuple[int, int]:
    """(height, width) of a ``{"height", "width"}`` dict or ``SizeDict``."""
    if isinstance(size, dict):
        return int(size["height"]), int(size["width"])
    return int(size.height), int(size.width)


def pair(v) -> tuple[int, int]:
    """(h, w) of an int or a 2-sequence (configs store both)."""
    return (int(v[0]), int(v[1])) if isinstance(v, (list, tuple)) else (int(v), int(v))


def view_hw(inputs, fallback: tuple[int, int]) -> tuple[int, int]:
    """(H, W) of the processed views, from ``pixel_values [n_views, 3, H, W]`` when given."""
    pv = None if inputs is None else inputs.get("pixel_values")
    if pv is None:
        return fallback
    return int(pv.shape[-2]), int(pv.shape[-1])


def n_views(inputs) -> int | None:
    """Number of processed views (tiles, crops) in ``pixel_values``; None without inputs."""
    pv = None if inputs is None else inputs.get("pixel_values")
    return None if pv is None else int(pv.reshape(-1, *pv.shape[-3:]).shape[0])


class GridBuilder:
    """Collect image tokens view by view, in sequence order."""

    def __init__(self, image_size):
        self.image_size = tuple(image_size)
        self.boxes, self.views, self.cells = [], [], []

    def add(self, view: int, cells, boxes):
        """Append tokens of one view: ``cells [n, 2]`` (row, col), ``boxes [n, 4]`` original px."""
        self.cells.append(np.asarray(cells, dtype=np.int64).reshape(-1, 2))
        self.boxes.append(np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
        self.views.append(np.full(len(self.cells[-1]), view, dtype=np.int64))

    def build(self, grids, note: str) -> TokenGeometry:
        w, h = self.image_size
        boxes = np.concatenate(self.boxes) if self.boxes else np.zeros((0, 4))
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        return TokenGeometry(boxes=boxes, views=np.concatenate(self.views),
                             cells=np.concatenate(self.cells), grids=tuple(grids),
                             image_size=(w, h), note=note)


def cell_grid(edges_y, edges_x, x0=0.0, y0=0.0, w=1.0, h=1.0, row0=0, col0=0):
    """Row-major cells and boxes of a grid whose edges are fractions of a region.

    ``edges_y [rows+1]`` and ``edges_x [cols+1]`` are fractions (0-1) of the region
    ``(x0, y0, w, h)`` in original pixels. Returns ``cells [n, 2]`` offset by
    ``(row0, col0)`` and ``boxes [n, 4]``.
    """
    ey, ex = np.asarray(edges_y, float), np.asarray(edges_x, float)
    rows, cols = len(ey) - 1, len(ex) - 1
    r, c = np.divmod(np.arange(rows * cols), cols)
    boxes = np.stack([x0 + ex[c] * w, y0 + ey[r] * h, x0 + ex[c + 1] * w, y0 + ey[r + 1] * h], 1)
    return np.stack([r + row0, c + col0], 1), boxes


def stacked_views(views, image_processor, size, do_resize, ref) -> torch.Tensor:
    """``[n_views, 3, H, W]``: each view resized to ``size`` (when ``do_resize``) and normalised.

    ``ref`` is the processor's ``pixel_values``; the result must have its shape
    (one image per prompt) and takes its dtype.
    """
    from .. import pixels

    ip = image_processor
    if do_resize:
        views = [pixels.resize(v, *size_hw(size), ip.resample) for v in views]
    x = torch.stack([pixels.normalized(v, ip) for v in views])
    if tuple(x.shape) != tuple(ref.shape):
        raise ValueError(f"pixel_inputs takes one image; it makes views {tuple(x.shape)}, the "
                         f"inputs hold {tuple(ref.shape)}")
    return x.to(ref.dtype)


def pooled_edges(n_tokens: int, kernel: int, patch: int, side: int) -> np.ndarray:
    """Fractions of a view covered by ``n_tokens`` pooled tokens of ``kernel`` patches each."""
    return np.arange(n_tokens + 1) * kernel * patch / side
