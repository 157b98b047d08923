"""The baseline image B: blurred (the reference's kernel rule, float or 8-bit), black or noise."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def blur_kernel_size(width: int) -> int:
    """The reference's kernel rule: 101 px below 500 px wide, 201 from 500, 301 from 800, 501 from 2000."""
    if width >= 2000:
        return 501
    if width >= 800:
        return 301
    if width >= 500:
        return 201
    return 101


def _reflect101(n: int, radius: int) -> torch.Tensor:
    """Source indices for reflect-101 padding of any radius (OpenCV's default border)."""
    idx = torch.arange(-radius, n + radius)
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    idx = idx.remainder(period)
    return torch.where(idx >= n, period - idx, idx)


def gaussian_blur(image: torch.Tensor, kernel: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[3, H, W]`` with reflect-101 borders (any kernel size)."""
    r = kernel // 2
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = (g / g.sum()).to(image.dtype).to(image.device)
    _, h, w = image.shape
    out = image[:, :, _reflect101(w, r).to(image.device)]  # [3, H, W + 2r]
    out = F.conv1d(out.reshape(-1, 1, out.shape[-1]), g[None, None]).reshape(3, h, w)
    out = out[:, _reflect101(h, r).to(image.device), :].transpose(1, 2)  # [3, W, H + 2r]
    out = F.conv1d(out.reshape(-1, 1, out.shape[-1]), g[None, None]).reshape(3, w, h)
    return out.transpose(1, 2).contiguous()


def make_baseline(image: torch.Tensor, kind: str = "blur", seed: int = 0,
                  uint8: bool = False) -> torch.Tensor:
    """The baseline image B for ``image [3, H, W]``: blurred, black or uniform noise.

    ``uint8`` (blur only): blur the 8-bit image and round to 8 bits, as the
    released code does (OpenCV ``GaussianBlur`` on a uint8 array: reflect-101
    borders, result rounded half to even); otherwise a float blur.
    """
    if kind == "blur":
        k = blur_kernel_size(image.shape[-1])
        if not uint8:
            return gaussian_blur(image, k, float(k - 1))
        levels = torch.round(image.double() * 255).clamp(0, 255)
        return (torch.round(gaussian_blur(levels, k, float(k - 1))).clamp(0, 255) / 255).to(image.dtype)
    if kind == "black":
        return torch.zeros_like(image)
    if kind == "noise":
        gen = torch.Generator().manual_seed(seed)
        return torch.rand(image.shape, generator=gen).to(image)
    raise ValueError(f"baseline must be 'blur', 'black' or 'noise', not {kind!r}")


def config_baseline(image: torch.Tensor, config: "HeatmapConfig") -> torch.Tensor:
    """``make_baseline`` with a config's kind, seed and uint8 rule."""
    return make_baseline(image, config.baseline, config.seed, uint8=config.blur_uint8)
