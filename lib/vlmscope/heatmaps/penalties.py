"""The mask's regulariser: L1, bilateral total variation (ours or the released form) and
the decaying L2; ``upsample`` (coarse mask to pixels)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import HeatmapConfig


def upsample(mask: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Coarse mask ``[..., s, s]`` -> pixels ``[..., H, W]`` (bilinear, align_corners=True)."""
    lead = mask.shape[:-2]
    m = mask.reshape(-1, 1, *mask.shape[-2:])
    up = F.interpolate(m, size=(height, width), mode="bilinear", align_corners=True)
    return up.reshape(*lead, height, width)


def bilateral_tv(mask: torch.Tensor, image: torch.Tensor, sigma: float = 0.01,
                 form: str = "ours") -> torch.Tensor:
    """Squared differences of the coarse mask plus image-edge-weighted ones of the upsampled mask.

    ``form="ours"``: the weight of a pixel pair is ``exp(-|dI|^2 / sigma)``
    (``|dI|^2``: squared difference averaged over channels), the same rule in
    both directions, and the four terms are summed. ``form="released"`` (the
    released ``bilateral_tv_norm``): vertical pairs weigh
    ``exp(-(mean_c dI)^2 / sigma)``, horizontal pairs ``mean_c exp(-dI_c^2 / sigma)``,
    and the result is half the sum. ``image`` is whatever the weights are computed
    on: [0, 1] pixels (ours) or the processor-normalised image (``edge_image``).
    """
    tv = ((mask[..., 1:, :] - mask[..., :-1, :]) ** 2).mean() + \
         ((mask[..., :, 1:] - mask[..., :, :-1]) ** 2).mean()
    up = upsample(mask, image.shape[-2], image.shape[-1])
    dv = image[:, 1:, :] - image[:, :-1, :]
    dh = image[:, :, 1:] - image[:, :, :-1]
    if form == "ours":
        wv = torch.exp(-(dv ** 2).mean(0) / sigma)
        wh = torch.exp(-(dh ** 2).mean(0) / sigma)
    elif form == "released":
        wv = torch.exp(-dv.mean(0) ** 2 / sigma)
        wh = torch.exp(-dh ** 2 / sigma).mean(0)
    else:
        raise ValueError(f"bilateral TV form must be 'ours' or 'released', not {form!r}")
    btv = (wv * (up[..., 1:, :] - up[..., :-1, :]) ** 2).mean() + \
          (wh * (up[..., :, 1:] - up[..., :, :-1]) ** 2).mean()
    return tv + btv if form == "ours" else 0.5 * (tv + btv)


def edge_image(vlm, image: torch.Tensor, config: "HeatmapConfig") -> torch.Tensor:
    """What the bilateral TV's edge weights are computed on: the [0, 1] image (ours) or, for
    ``btv="released"``, the image rescaled and normalised as the model's processor does (in
    the original pixel grid; the organism's processor does not resample, so it is the
    processor's own tensor there)."""
    if config.btv != "released":
        return image
    from ..pixels import normalized

    ip = getattr(getattr(vlm, "processor", None), "image_processor", None)
    if ip is None or not hasattr(ip, "image_mean"):
        raise ValueError("btv='released' needs the model's image processor (image_mean/image_std) "
                         "to normalise the edge image; use btv='ours'")
    return normalized(image, ip)


def regulariser(mask: torch.Tensor, image: torch.Tensor, config: HeatmapConfig, iteration: int):
    """``(l1, btv, l2)`` terms (each a scalar tensor) at an iteration; ``image``: the edge image."""
    l1 = config.l1 * (1 - mask).abs().mean()
    btv = config.l3 * bilateral_tv(mask, image, config.btv_sigma, config.btv)
    l2 = config.l2 * math.exp(-config.gamma * iteration) * ((1 - mask) ** 2).sum()
    return l1, btv, l2
