"""Simple baselines (input-gradient and attention saliency) and the model-randomisation
sanity check."""

from __future__ import annotations

import numpy as np
import torch

from ..pixels import image_tensor
from .objective import Objective
from .selection import Selection


def gradient_saliency(vlm, prepared, selection: Selection) -> np.ndarray:
    """``[H, W]`` |d S / d pixel| summed over channels (input-gradient saliency)."""
    image = image_tensor(prepared.image, vlm.device).requires_grad_(True)
    obj = Objective(vlm, prepared, torch.tensor(selection.answer_ids), selection.positions)
    obj.score(image[None]).sum().backward()
    return image.grad.abs().sum(0).cpu().numpy()


@torch.no_grad()
def attention_saliency(vlm, prepared, selection: Selection) -> np.ndarray:
    """``[H, W]`` attention from the selected answer positions to image tokens (mean of layers, heads).

    Eager ``output_attentions`` on the teacher-forced sequence; tokens of the
    first view are painted onto their boxes (``TokenGeometry.to_pixels``).
    """
    obj = Objective(vlm, prepared, torch.tensor(selection.answer_ids), selection.positions)
    out = vlm.model(**obj.inputs, output_attentions=True)
    img = prepared.groups.image.to(vlm.device)
    rows = obj.rows
    per_layer = [a[0][:, rows.to(a.device)][:, :, img.to(a.device)].float().mean((0, 1)).cpu()
                 for a in out.attentions]
    values = torch.stack(per_layer).mean(0).cpu().numpy()
    painted = prepared.geometry.to_pixels(values)
    return np.nan_to_num(painted, nan=0.0)


def randomised(vlm, seed: int = 0):
    """A copy of ``vlm`` with freshly initialised weights (same config, processor, adapter).

    The model-randomisation sanity check: a heatmap that does not change when
    the weights are random explains the image, not the model.
    """
    from ..models import VLM

    torch.manual_seed(seed)
    model = type(vlm.model)(vlm.model.config).to(vlm.device, vlm.dtype).eval()
    return VLM(model, vlm.processor, type(vlm.adapter)(model, vlm.processor),
               name=f"{vlm.name} (random weights, seed {seed})")
