"""``Heatmap``: an iGOS+/iGOS++ result (raw masks, selection, trace), its importance map,
and saving to / loading from safetensors."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .config import HeatmapConfig
from .penalties import upsample
from .selection import Selection


@dataclass
class Heatmap:
    """An iGOS+/iGOS++ result: the raw mask(s), the selection, and the optimisation trace."""

    mask: np.ndarray | None  # [size, size] coarse mask, low = important (product for iGOS++)
    selection: Selection
    config: HeatmapConfig
    image_size: tuple[int, int]  # (width, height)
    masks: dict = field(default_factory=dict)  # iGOS++: {"deletion": ..., "insertion": ...}
    trace: list = field(default_factory=list)  # per iteration: deletion, insertion, l1, btv, l2
    forwards: int = 0
    history: list = field(default_factory=list, repr=False)  # masks after each iteration (keep_history)

    @property
    def skipped(self) -> str | None:
        return self.selection.skipped

    def importance(self) -> np.ndarray:
        """``[H, W]`` importance in original pixels: 1 - the upsampled mask (high = important).

        iGOS++ with ``combine="upsampled"``: 1 - up(Md) * up(Mi), the product the
        optimisation saw; otherwise 1 - up(mask)."""
        if self.mask is None:
            raise ValueError(f"no heatmap: the sample was skipped ({self.skipped})")
        w, h = self.image_size
        if self.config.combine == "upsampled" and {"deletion", "insertion"} <= set(self.masks):
            md, mi = (upsample(torch.from_numpy(np.asarray(self.masks[k])).float(), h, w)
                      for k in ("deletion", "insertion"))
            return 1.0 - (md * mi).numpy()
        return 1.0 - upsample(torch.from_numpy(self.mask).float(), h, w).numpy()

    def save(self, path) -> None:
        """Raw masks and metadata to one safetensors file."""
        import json

        from safetensors.torch import save_file

        tensors = {}
        if self.mask is not None:
            tensors["mask"] = torch.from_numpy(np.ascontiguousarray(self.mask, dtype=np.float32))
        for k, v in self.masks.items():
            tensors[f"mask_{k}"] = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
        meta = {"config": json.dumps(asdict(self.config)), "selection": json.dumps(asdict(self.selection)),
                "image_size": json.dumps(list(self.image_size)), "trace": json.dumps(self.trace),
                "forwards": str(self.forwards)}
        save_file(tensors, str(path), metadata=meta)

    @classmethod
    def load(cls, path) -> "Heatmap":
        import json

        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = f.metadata()
            tensors = {k: f.get_tensor(k).numpy() for k in f.keys()}
        return cls(mask=tensors.get("mask"), selection=Selection(**json.loads(meta["selection"])),
                   config=HeatmapConfig.from_dict(json.loads(meta["config"])),
                   image_size=tuple(json.loads(meta["image_size"])),
                   masks={k[5:]: v for k, v in tensors.items() if k.startswith("mask_")},
                   trace=json.loads(meta["trace"]), forwards=int(meta["forwards"]))
