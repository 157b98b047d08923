"""Heatmaps for free-form answers: iGOS+ / iGOS++ mask optimisation (Xing et al. 2025).

A mask ``M`` on a coarse grid (32x32 by default; low = important) is
optimised in the ORIGINAL image's pixel space. Each model sees it through its
adapter's differentiable preprocessing (``Adapter.pixel_inputs``), so one
mask explains every architecture on the same picture.

Two sets of definitions: ``HeatmapConfig.preset("reference")`` follows the
released code (bytedance/LVLM_Interpretation; checked against the
independent ``benchmarks/igos_reference.py``), ``HeatmapConfig()`` (the
preset "vlmscope") this library's choices; each difference is a field,
listed with its measured effect in docs/fidelity.md.

The pieces, each usable alone:

- ``make_baseline``: the blurred (the reference's kernel rule; float, or 8-bit
  and rounded as the released code), black or noise image;
- ``select_tokens``: the visually relevant answer positions,
  log p(y_t | image) - log p(y_t | baseline) > 1, stop tokens derived from the
  tokenizer in use, first position dropped or not (``drop_first``), the
  single-token rule; a sample with none is reported as skipped with the reason;
- ``Objective``: teacher-forced sum of the selected tokens' log-probabilities
  as a function of a batch of images (log_softmax in float32, logits only at
  the selected rows);
- ``igos``: the optimisation (integrated-gradient deletion and insertion
  terms, L1 + bilateral TV + decaying L2, Nesterov steps or an Armijo line
  search). The path images run in batches of at most ``batch`` with a
  backward per batch, so at most ``batch`` path graphs are alive at once (the
  reference keeps all of them). The noise comes from a seed per path image
  or from one generator drawn in path order, so the mask does not depend on
  ``batch`` either way; a batch that runs out of memory is split and rerun;
- ``faithfulness``: deletion and insertion curves and scores (ours or the
  released definition; ties by a stated rule, ``cell_order``);
- ``gradient_saliency`` and ``attention_saliency``: simple baselines;
- ``plausibility``: pointing game and mass in a ground-truth mask;
- ``compare_configs``: heatmaps of one question under several configs, side by side.

Conventions: images are ``[3, H, W]`` float tensors in 0..1
(``vlmscope.pixels.image_tensor``); maps returned to users are importance maps
``[H, W]`` where HIGH means important (``1 - upsampled mask`` for iGOS).
"""

from __future__ import annotations

import math
import unicodedata
import warnings
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
import torch.nn.functional as F

from .models import at_least_float32, attention_implementation, check_attention_name
from .pixels import image_tensor

STOP_WORDS = ("the", "and", "of", "a", "an", "this", "that", "is", "with")


# ---------------------------------------------------------------------- config
@dataclass(frozen=True)
class HeatmapConfig:
    """Every knob of the heatmap. Field defaults: the "vlmscope" preset (iGOS+ at the reference
    README's hyperparameters, with this library's choices); ``HeatmapConfig.preset("reference")``
    follows the released code's definitions (docs/fidelity.md, "Heatmaps").

    The reference's ``args.py`` defaults differ (L1 0.1, L2 1.0, L3 20,
    gamma 0.2, ig_iter 5, momentum 3): ``HeatmapConfig.reference_args()``.
    """

    method: str = "igos+"  # "igos+" (one mask) or "igos++" (deletion and insertion masks)
    size: int = 32  # mask grid (size x size)
    iterations: int = 5
    ig_iter: int = 10  # N path points of the integrated-gradient terms
    l1: float = 1.0
    l2: float = 0.1  # decaying L2, times exp(-gamma * iteration)
    l3: float = 10.0  # bilateral total variation
    gamma: float = 1.0
    momentum: float = 5.0  # Nesterov: e_i = i / (i + momentum)
    lr: float = 10.0  # Nesterov step; the line search's first trial step
    noise: float = 0.2  # std of Gaussian noise on path images, normalised pixel units
    baseline: str = "blur"  # "blur" | "black" | "noise"
    btv_sigma: float = 0.01
    threshold: float = 1.0  # token selection: log-prob gain over the baseline
    single_token_ratio: float = 0.5  # single-token answers: keep when p(y|B) <= ratio * p(y|I)
    drop_first: bool = True  # token selection: never select answer position 0 (the first release)
    batch: int = 8  # path images per forward + backward (a speed/memory knob: the mask does not depend on it)
    attn_implementation: str | None = "sdpa"  # attention kernels while optimising; None = as loaded
    seed: int = 0
    # -- the released code's definitions against this library's (docs/fidelity.md) --
    btv: str = "ours"  # "ours": symmetric edge weights on [0, 1] pixels, no 1/2;
    #                    "released": 1/2 x (four terms), edge weights on the processor-normalised
    #                    image, vertical exp(-(mean_c dI)^2/s), horizontal mean_c exp(-dI^2/s)
    blur_uint8: bool = False  # the blurred baseline made on the uint8 image and rounded (released)
    combine: str = "product"  # iGOS++ combined term: "product" up(Md*Mi) | "upsampled" up(Md)*up(Mi)
    step: str = "nesterov"  # "nesterov" (the released code's only working update) | "armijo"
    ls_beta: float = 1e-4  # Armijo: accept when loss(new) <= loss - ls_beta * step * |grad|^2
    ls_decay: float = 0.2  # Armijo: step *= ls_decay after a rejected trial
    ls_min: float = 1e-5  # Armijo: smallest step tried
    noise_seeds: str = "per-image"  # "per-image": a seed per path image (noise_seed) |
    #                                 "shared": one generator drawn in path order (released)
    deletion_metric: str = "ours"  # faithfulness: "ours" (nearest cells, mean of all steps) |
    #                                "released" (bilinear cells, steps weighted by cells changed)
    tie_seed: int | None = None  # faithfulness: equal mask values in a seeded random order
    #                              (None: by cell index, row-major)

    def __post_init__(self):
        if self.method not in ("igos+", "igos++"):
            raise ValueError(f"method must be 'igos+' or 'igos++', not {self.method!r}")
        if self.baseline not in ("blur", "black", "noise"):
            raise ValueError(f"baseline must be 'blur', 'black' or 'noise', not {self.baseline!r}")
        for name, allowed in (("btv", ("ours", "released")), ("combine", ("product", "upsampled")),
                              ("step", ("nesterov", "armijo")),
                              ("noise_seeds", ("per-image", "shared")),
                              ("deletion_metric", ("ours", "released"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {getattr(self, name)!r}")
        for name in ("size", "ig_iter", "batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.iterations < 0:
            raise ValueError("iterations must be >= 0")
        for name in ("lr", "btv_sigma"):  # must be > 0
            if not getattr(self, name) > 0:
                raise ValueError(f"HeatmapConfig {name} must be > 0, not {getattr(self, name)}")
        for name in ("l1", "l2", "l3", "gamma", "momentum", "noise", "single_token_ratio"):
            if not getattr(self, name) >= 0:  # (NaN fails too)
                raise ValueError(f"HeatmapConfig {name} must be >= 0, not {getattr(self, name)}")
        if self.threshold != self.threshold:
            raise ValueError("HeatmapConfig threshold must be a number, not NaN")
        if self.seed < 0:
            raise ValueError(f"HeatmapConfig seed must be >= 0, not {self.seed}")
        if not (0 < self.ls_decay < 1) or self.ls_min <= 0 or self.ls_beta < 0:
            raise ValueError("line search: ls_decay must be in (0, 1), ls_min > 0, ls_beta >= 0")
        check_attention_name(self.attn_implementation)

    def result_fields(self) -> dict:
        """The settings a heatmap depends on: all but ``batch`` (speed and memory only), for
        run-store keys, so a sweep resumed with another batch reuses its finished parts."""
        d = asdict(self)
        del d["batch"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "HeatmapConfig":
        """From ``asdict`` output, also of files written before ``batch`` replaced ``chunk``
        (and before the fields of the presets: they take the values those files were made with)."""
        d = dict(d)
        if "chunk" in d:  # path points per backward: 2 (iGOS+) or 4 (iGOS++) images each
            chunk = d.pop("chunk")
            d.setdefault("batch", chunk * (2 if d.get("method", "igos+") == "igos+" else 4))
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown heatmap settings: {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def reference_args(cls, **kw) -> "HeatmapConfig":
        """The reference code's ``args.py`` defaults (not those of its README run)."""
        base = dict(l1=0.1, l2=1.0, l3=20.0, gamma=0.2, ig_iter=5, momentum=3.0)
        return cls(**{**base, **kw})

    @classmethod
    def preset(cls, name: str, **kw) -> "HeatmapConfig":
        """A named set of definitions, then ``kw`` on top.

        ``"reference"``: the released code (bytedance/LVLM_Interpretation) as it
        runs: its bilateral TV, the uint8 blur, up(Md)*up(Mi) for iGOS++,
        Nesterov, one noise generator drawn in path order, attention kernels as
        loaded, its deletion/insertion metric (precedence bug fixed), and the
        current release's token rule (position 0 may be selected).
        ``"vlmscope"``: the field defaults (see docs/fidelity.md for each
        difference and its measured effect).
        """
        if name not in PRESETS:
            raise ValueError(f"unknown heatmap preset {name!r}: one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **kw})

    def switches(self) -> dict:
        """The fields where this config differs from the "reference" preset (what a preset
        comparison changes), e.g. ``{"step": "armijo"}``."""
        ref = asdict(HeatmapConfig.preset("reference"))
        return {k: v for k, v in asdict(self).items() if ref[k] != v and k not in _NOT_SWITCHES}


# fields that are settings of a run, not definitions (left out of ``switches``)
_NOT_SWITCHES = ("method", "size", "iterations", "ig_iter", "l1", "l2", "l3", "gamma", "momentum",
                 "lr", "noise", "baseline", "btv_sigma", "threshold", "single_token_ratio", "batch",
                 "seed", "ls_beta", "ls_decay", "ls_min", "tie_seed")

PRESETS = {
    "vlmscope": {},
    "reference": dict(btv="released", blur_uint8=True, combine="upsampled", step="nesterov",
                      noise_seeds="shared", attn_implementation=None, deletion_metric="released",
                      drop_first=False),
}


# -------------------------------------------------------------------- baselines
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


# ------------------------------------------------------------------- objective
def _batched(inputs: dict, pixel_list: list[dict]) -> dict:
    """Stack per-image pixel entries along dim 0; repeat the other ``[1, ...]`` entries."""
    b = len(pixel_list)
    out = {}
    for k, v in inputs.items():
        if k in pixel_list[0]:
            out[k] = torch.cat([p[k] for p in pixel_list], 0)
        elif torch.is_tensor(v) and v.dim() >= 1 and v.shape[0] == 1:
            out[k] = v.expand(b, *v.shape[1:]).contiguous() if b > 1 else v
        else:
            out[k] = v
    return out


class Objective:
    """Teacher-forced log-probabilities of chosen answer positions, as a function of images.

    ``positions`` index the answer (0 = its first token). ``logprobs(images)``
    returns ``[B, n_positions]`` for a batch of original-pixel images
    ``[B, 3, H, W]``; gradients flow back to the images.
    """

    def __init__(self, vlm, prepared, answer_ids: torch.Tensor, positions):
        self.vlm = vlm
        self.prepared = prepared
        self.answer_ids = torch.as_tensor(answer_ids, dtype=torch.long).reshape(-1).cpu()
        self.positions = torch.as_tensor(list(positions), dtype=torch.long)
        if self.positions.numel() == 0:
            raise ValueError("no answer positions to score")
        if int(self.positions.max()) >= len(self.answer_ids) or int(self.positions.min()) < 0:
            raise IndexError(f"positions {self.positions.tolist()} outside an answer of "
                             f"{len(self.answer_ids)} tokens")
        n = prepared.input_ids.shape[1]
        # causal model: answer tokens after the last scored one change nothing, so they are left out
        needed = self.answer_ids[:int(self.positions.max())]
        self.inputs = vlm.adapter.extend_inputs(prepared.inputs, needed[None].to(vlm.device))
        self.rows = (n - 1 + self.positions).to(vlm.device)
        self.targets = self.answer_ids[self.positions].to(vlm.device)
        self.forwards = 0  # images run through the model (for benchmarks)

    def logprobs(self, images: torch.Tensor, noise: float = 0.0, seeds=None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """``[B, n_positions]`` log-probabilities; ``noise``: Gaussian std added to the model's
        (normalised) pixel inputs, drawn with ``seeds`` (one int per image) from a generator
        of each image's own, else from ``generator`` (image after image), else from torch's
        global generator."""
        adapter = self.vlm.adapter
        pix = [adapter.pixel_inputs(img, self.inputs) for img in images]
        if noise:
            if seeds is not None and len(seeds) != len(pix):
                raise ValueError(f"{len(seeds)} seeds for {len(pix)} images")
            gens = ([torch.Generator(device=images.device).manual_seed(int(sd)) for sd in seeds]
                    if seeds is not None else [generator] * len(pix))
            pix = [{k: (v + noise * torch.randn(v.shape, generator=g, device=v.device,
                                                dtype=torch.float32).to(v.dtype)
                        if v.is_floating_point() else v) for k, v in p.items()}
                   for p, g in zip(pix, gens)]
        batch = _batched(self.inputs, pix)
        logits = self.vlm.model(**batch, logits_to_keep=self.rows).logits  # [B, n_pos, V]
        self.forwards += len(images)
        logp = torch.log_softmax(at_least_float32(logits), dim=-1)
        return logp.gather(-1, self.targets.expand(len(images), -1)[..., None])[..., 0]

    def score(self, images: torch.Tensor, **kw) -> torch.Tensor:
        """``[B]`` sum of the selected log-probabilities (the reference's S)."""
        return self.logprobs(images, **kw).sum(-1)


# -------------------------------------------------------------- token selection
def stop_token_mask(tokenizer, ids) -> list[bool]:
    """Whether each answer token is a stop token, decided from the tokenizer in use.

    Stop: special tokens, tokens that decode to whitespace or punctuation only,
    and the words in ``STOP_WORDS`` (whatever their ids in this vocabulary).
    """
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    out = []
    for i in [int(t) for t in ids]:
        text = tokenizer.decode([i]).strip().lower()
        punct = all(unicodedata.category(c)[0] in "PSZC" for c in text)
        out.append(i in special or not text or punct or text in STOP_WORDS)
    return out


@dataclass
class Selection:
    """Which answer positions a heatmap explains, and why."""

    tokens: list[str]
    answer_ids: list[int]
    logp_image: list[float]
    logp_baseline: list[float]
    stop: list[bool]
    positions: list[int]
    rule: str  # "gain > threshold" | "single token" | "given"
    skipped: str | None = None  # the reason when no position was selected

    def table(self):
        import pandas as pd

        return pd.DataFrame({"token": self.tokens, "logp_image": self.logp_image,
                             "logp_baseline": self.logp_baseline,
                             "gain": np.subtract(self.logp_image, self.logp_baseline),
                             "stop": self.stop,
                             "selected": [i in self.positions for i in range(len(self.tokens))]})


def _answer_ids(vlm, prepared, answer) -> torch.Tensor:
    if answer is None:
        answer = vlm.generate(prepared)
    ids = vlm.answer_ids(answer, prepared).cpu()
    if ids.numel() == 0:
        raise ValueError("the answer has no tokens (the model generated nothing to explain)")
    return ids


@torch.no_grad()
def select_tokens(vlm, prepared, answer=None, baseline: torch.Tensor | None = None,
                  config: HeatmapConfig = HeatmapConfig(), positions=None) -> Selection:
    """Visually relevant positions of ``answer`` (the model's greedy answer if None).

    ``positions`` overrides the rule (``rule="given"``); the log-probabilities
    are still recorded for them.
    """
    ids = _answer_ids(vlm, prepared, answer)
    image = image_tensor(prepared.image, vlm.device)
    if baseline is None:
        baseline = config_baseline(image, config)
    obj = Objective(vlm, prepared, ids, range(len(ids)))
    lp = obj.logprobs(torch.stack([image, baseline.to(image)])).cpu()
    lp_i, lp_b = lp[0].tolist(), lp[1].tolist()
    stop = stop_token_mask(vlm.tokenizer, ids)
    toks = vlm.tokenizer.convert_ids_to_tokens(ids.tolist())
    common = dict(tokens=toks, answer_ids=ids.tolist(), logp_image=lp_i, logp_baseline=lp_b, stop=stop)
    if positions is not None:
        pos = sorted({int(t) for t in positions})
        if not pos or pos[0] < 0 or pos[-1] >= len(ids):
            raise IndexError(f"positions {pos} outside an answer of {len(ids)} tokens")
        return Selection(**common, positions=pos, rule="given")
    if len(ids) == 1:
        keep = math.exp(lp_b[0]) <= config.single_token_ratio * math.exp(lp_i[0])
        return Selection(**common, positions=[0] if keep else [], rule="single token",
                         skipped=None if keep else
                         f"single-token answer: p(y|baseline) = {math.exp(lp_b[0]):.3g} > "
                         f"{config.single_token_ratio} x p(y|image) = {math.exp(lp_i[0]):.3g}")
    pos = [t for t in range(len(ids))
           if not (config.drop_first and t == 0) and not stop[t]
           and lp_i[t] - lp_b[t] > config.threshold]
    reason = None
    if not pos:
        best = max(range(len(ids)), key=lambda t: lp_i[t] - lp_b[t])
        reason = (f"no token gains more than {config.threshold} in log-probability over the "
                  f"baseline (largest: {lp_i[best] - lp_b[best]:.3g} at {toks[best]!r})")
    return Selection(**common, positions=pos, rule="gain > threshold", skipped=reason)


# ---------------------------------------------------------------- regulariser
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
    from .pixels import normalized

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


# ------------------------------------------------------------------- heatmap
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


def noise_seed(seed: int, iteration: int, term: int, k: int) -> int:
    """The seed of one path image's noise: a hash of (config seed, iteration, term, path point).

    Every path image draws from its own generator, so the mask is the same
    whatever ``batch`` splits the images into (and after an out-of-memory
    retry); ``term`` indexes ``_terms``.
    """
    return int(np.random.SeedSequence([seed, iteration, term, k]).generate_state(1, np.uint64)[0] >> 1)


def _combined(masks: dict) -> torch.Tensor:
    """The coarse explaining mask: iGOS+'s single mask, or iGOS++'s deletion x insertion product
    (what the regulariser sees and what the released code returns)."""
    return masks["single"] if "single" in masks else masks["deletion"] * masks["insertion"]


def _terms(masks: dict) -> list[tuple[str, str, float]]:
    """(kind, mask, weight) of each integrated-gradient term, in the released code's order:
    iGOS+ deletion then insertion; iGOS++ the product's deletion and insertion, then each
    mask's own (the product's terms and the masks' own each weigh 1/2)."""
    if "single" in masks:
        return [("deletion", "single", 1.0), ("insertion", "single", 1.0)]
    return [("deletion", "both", 0.5), ("insertion", "both", 0.5),
            ("deletion", "deletion", 0.5), ("insertion", "insertion", 0.5)]


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocator running out of memory (CUDA, MPS or CPU)."""
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    if isinstance(error, (oom, MemoryError)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text
                                                or "can't allocate memory" in text)


def _balanced(remaining: int, batch: int) -> int:
    """Size of the next batch: as many calls as ``batch`` needs, sizes differing by at most one."""
    calls = -(-remaining // batch)
    return -(-remaining // calls)


def path_gradient(obj: Objective, image: torch.Tensor, baseline: torch.Tensor, masks: dict,
                  config: HeatmapConfig, iteration: int = 0, state: dict | None = None,
                  backward: bool = True) -> dict:
    """Accumulate the gradient of the integrated deletion-minus-insertion term into ``masks``.

    ``masks``: {"single": M} (iGOS+) or {"deletion": Md, "insertion": Mi}
    (iGOS++), leaf tensors ``[size, size]`` with ``requires_grad``. The
    ``ig_iter`` path images of every term (2 terms for iGOS+, 4 for iGOS++)
    run at most ``config.batch`` at a time in balanced batches, with a
    ``backward`` per batch. Noise: one seed per path image
    (``noise_seed(config.seed, iteration, term, k)``), or with
    ``noise_seeds="shared"`` the generator ``state["generator"]`` drawn image
    after image in path order. A batch that runs out of memory is rerun in
    halves (the gradients it had added and the generator are restored first)
    and the smaller size is kept in ``state["batch"]`` for later calls.
    ``backward=False``: values only (no graph; the line search's trials).
    Returns the terms' values ``{"deletion": D, "insertion": I}``.
    """
    n = config.ig_iter
    h, w = image.shape[-2:]
    terms = _terms(masks)
    todo = [(t, k) for t in range(len(terms)) for k in range(1, n + 1)]  # the released order
    state = state if state is not None else {}
    batch = state.setdefault("batch", config.batch)
    gen = state.get("generator")
    totals = {"deletion": 0.0, "insertion": 0.0}
    pos = 0
    while pos < len(todo):
        size = _balanced(len(todo) - pos, batch)
        part = todo[pos:pos + size]
        before = {key: None if m.grad is None else m.grad.clone() for key, m in masks.items()}
        gen_state = gen.get_state() if gen is not None else None
        forwards = obj.forwards
        try:
            with torch.set_grad_enabled(backward):
                values = _path_batch(obj, image, baseline, masks, terms, part, config, iteration,
                                     (h, w), gen, backward)
        except Exception as e:  # noqa: BLE001 - only memory errors are handled; the rest re-raised
            if not out_of_memory(e) or size == 1:
                raise
            for key, m in masks.items():
                m.grad = before[key]
            if gen is not None:
                gen.set_state(gen_state)
            obj.forwards = forwards
            batch = state["batch"] = max(1, size // 2)
            del e
            _free_memory(image.device)
            warnings.warn(f"out of memory with {size} path images in a batch: continuing with "
                          f"{batch} (the mask does not change)", RuntimeWarning, stacklevel=2)
            continue
        for (t, _), v in zip(part, values):
            totals[terms[t][0]] += terms[t][2] * v / n
        pos += size
    return totals


def _up_masks(masks: dict, keys, hw, combine: str) -> dict:
    """Upsampled masks ``[1, H, W]`` for ``keys``; "both" per ``combine``."""
    ups = {}
    for key in keys:
        if key == "both":
            m = (upsample(masks["deletion"], *hw) * upsample(masks["insertion"], *hw)
                 if combine == "upsampled" else upsample(masks["deletion"] * masks["insertion"], *hw))
        else:
            m = upsample(masks[key], *hw)
        ups[key] = m[None]
    return ups


def _path_batch(obj, image, baseline, masks, terms, part, config, iteration, hw, gen=None,
                backward=True) -> list[float]:
    """Forward (and backward) of one batch of path images ``part`` [(term, k)]; their scores."""
    n = config.ig_iter
    ups = _up_masks(masks, {terms[t][1] for t, _ in part}, hw, config.combine)
    images, coefs = [], []
    for t, k in part:
        kind, key, weight = terms[t]
        wgt = (k / n) * ups[key]
        if kind == "deletion":
            images.append(image * wgt + baseline * (1 - wgt))
            coefs.append(weight / n)
        else:
            images.append(baseline * wgt + image * (1 - wgt))
            coefs.append(-weight / n)
    if config.noise_seeds == "shared":
        s = obj.score(torch.stack(images), noise=config.noise, generator=gen)
    else:
        seeds = [noise_seed(config.seed, iteration, t, k) for t, k in part]
        s = obj.score(torch.stack(images), noise=config.noise, seeds=seeds)  # [b]
    if backward:
        (s * torch.tensor(coefs, dtype=s.dtype, device=s.device)).sum().backward()
    return s.detach().double().cpu().tolist()


def line_search(obj, image, baseline, masks: dict, grads: dict, loss: float, config: HeatmapConfig,
                iteration: int, state: dict, edges: torch.Tensor) -> tuple[float, int]:
    """Backtracking (Armijo) step along ``-grads``: ``(step, trials)``.

    Starting at ``config.lr``, a trial ``M' = clip(M - step * g, 0, 1)`` is
    accepted when ``loss(M') <= loss(M) - ls_beta * step * |g|^2`` (the released
    ``line_search``'s condition, with its constants as defaults); otherwise
    ``step *= ls_decay``, down to ``ls_min`` (then the smallest step is taken).
    ``loss`` is deletion - insertion + regulariser at ``M``, evaluated with the
    same noise draws as the gradient (so the test compares like with like).
    """
    sq = sum(float((g.double() ** 2).sum()) for g in grads.values())
    step, trials = float(config.lr), 0
    gen = state.get("generator")
    start = state.get("iteration_generator_state")
    with torch.no_grad():
        while True:
            trial = {k: (m - step * grads[k]).clamp(0, 1) for k, m in masks.items()}
            if gen is not None and start is not None:
                gen.set_state(start)
            terms = path_gradient(obj, image, baseline, trial, config, iteration, state, backward=False)
            l1, btv, l2 = regulariser(_combined(trial), edges, config, iteration)
            value = terms["deletion"] - terms["insertion"] + float(l1 + btv + l2)
            trials += 1
            if value <= loss - config.ls_beta * step * sq or step * config.ls_decay < config.ls_min:
                return step, trials
            step *= config.ls_decay


def _free_memory(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def igos(vlm, prepared, answer=None, config: HeatmapConfig = HeatmapConfig(), *,
         selection: Selection | None = None, baseline: torch.Tensor | None = None,
         progress: bool = False, keep_history: bool = False) -> Heatmap:
    """iGOS+ (or iGOS++ with ``config.method``) heatmap of ``answer`` to ``prepared``.

    ``answer``: text, a ``Generation`` or ids; None = the model's greedy answer.
    ``selection``: positions to explain (default: ``select_tokens``). A sample
    with no selected position returns a ``Heatmap`` whose ``mask`` is None and
    whose ``skipped`` says why. ``keep_history``: keep the (combined) mask after
    every iteration in ``Heatmap.history`` (for watching the optimisation).
    """
    image = image_tensor(prepared.image, vlm.device)
    if baseline is None:
        baseline = config_baseline(image, config)
    baseline = baseline.to(image)
    if selection is None:
        selection = select_tokens(vlm, prepared, answer, baseline, config)
    size = prepared.image.size
    if not selection.positions:
        return Heatmap(None, selection, config, size)
    obj = Objective(vlm, prepared, torch.tensor(selection.answer_ids), selection.positions)
    edges = edge_image(vlm, image, config)
    names = ("single",) if config.method == "igos+" else ("deletion", "insertion")
    masks = {k: torch.ones(config.size, config.size, device=image.device, requires_grad=True)
             for k in names}
    theta_prev = {k: m.detach().clone() for k, m in masks.items()}
    trace, history, state = [], [], {"batch": config.batch}
    if config.noise_seeds == "shared":
        state["generator"] = torch.Generator(device=image.device).manual_seed(config.seed)
    params = [p for p in vlm.model.parameters() if p.requires_grad]
    for p in params:  # only the mask needs gradients: no weight-gradient work or memory
        p.requires_grad_(False)
    try:
        from tqdm.auto import tqdm

        with attention_implementation(vlm.model, config.attn_implementation):
            for it in tqdm(range(config.iterations), desc="iGOS", disable=not progress):
                if "generator" in state:
                    state["iteration_generator_state"] = state["generator"].get_state()
                terms = path_gradient(obj, image, baseline, masks, config, it, state)
                l1, btv, l2 = regulariser(_combined(masks), edges, config, it)
                (l1 + btv + l2).backward()
                row = {**terms, "l1": l1.item(), "btv": btv.item(), "l2": l2.item(),
                       "batch": state["batch"]}
                grads = {k: m.grad.detach().clone() for k, m in masks.items()}
                if config.step == "armijo":
                    loss = terms["deletion"] - terms["insertion"] + row["l1"] + row["btv"] + row["l2"]
                    after = state["generator"].get_state() if "generator" in state else None
                    step, trials = line_search(obj, image, baseline, masks, grads, loss, config,
                                               it, state, edges)
                    if after is not None:  # the next iteration draws as without the search
                        state["generator"].set_state(after)
                    row.update(step=step, trials=trials)
                    with torch.no_grad():
                        for k, m in masks.items():
                            m.copy_((m - step * grads[k]).clamp(0, 1))
                            m.grad = None
                else:
                    e = it / (it + config.momentum)
                    with torch.no_grad():
                        for k, m in masks.items():
                            theta = m - config.lr * grads[k]
                            m.copy_((theta + e * (theta - theta_prev[k])).clamp(0, 1))
                            theta_prev[k] = theta
                            m.grad = None
                trace.append(row)
                if keep_history:
                    history.append(_combined(masks).detach().cpu().numpy().copy())
    finally:
        for p in params:
            p.requires_grad_(True)
    raw = {k: m.detach().cpu().numpy().copy() for k, m in masks.items()}
    mask = raw["single"] if "single" in raw else raw["deletion"] * raw["insertion"]
    return Heatmap(mask, selection, config, size, masks={} if "single" in raw else raw,
                   trace=trace, forwards=obj.forwards, history=history)


# --------------------------------------------------------------- faithfulness
@dataclass
class Faithfulness:
    """Deletion and insertion curves (normalised per step) and their weighted means."""

    deletion_curve: np.ndarray  # at each count of cells changed (``counts``), 0 first
    insertion_curve: np.ndarray
    deletion_raw: np.ndarray  # mean probability of the selected tokens per step
    insertion_raw: np.ndarray
    original: float
    baseline: float
    cells_per_step: int
    counts: np.ndarray | None = None  # cells changed at each curve point
    weights: np.ndarray | None = None  # each point's weight in the score (sums to 1)
    definition: str = "ours"
    tie_seed: int | None = None

    def _mean(self, curve) -> float:
        if self.weights is None:
            return float(np.mean(curve))
        return float(np.sum(np.asarray(curve) * self.weights))

    @property
    def deletion(self) -> float:
        """Normalised deletion score (lower = better)."""
        return self._mean(self.deletion_curve)

    @property
    def insertion(self) -> float:
        """Normalised insertion score (higher = better)."""
        return self._mean(self.insertion_curve)


def cell_order(mask: np.ndarray, tie_seed: int | None = None) -> np.ndarray:
    """Mask cells from most to least important (lowest mask value first).

    Equal values: by cell index (row-major) when ``tie_seed`` is None, else in
    a random order drawn from ``numpy.random.default_rng(tie_seed)``. (The
    released code sorts with ``torch.argsort``, whose order among equal values
    is not defined.)
    """
    values = np.asarray(mask, dtype=np.float64).ravel()
    if tie_seed is None:
        return np.argsort(values, kind="stable")
    key = np.random.default_rng(tie_seed).permutation(values.size)
    return np.lexsort((key, values))


def metric_steps(n_cells: int, cells_per_step: int, definition: str) -> tuple[np.ndarray, np.ndarray]:
    """``(counts, weights)``: cells changed at each curve point and the point's weight in the score.

    "ours": 0, s, 2s, ..., n cells (``s = cells_per_step``), every point
    weighing the same. "released" (the released ``metric``): step
    ``s = max(1, n // 50)``; the points after each step score with the number
    of cells that step changed, divided by n (the released code adds
    ``n - pixels`` instead of the last step's score times its cells, an
    operator-precedence slip, fixed here); the point at 0 (nothing changed)
    is drawn but weighs nothing.
    """
    if definition == "ours":
        counts = np.array(list(range(0, n_cells, cells_per_step)) + [n_cells])
        return counts, np.full(len(counts), 1.0 / len(counts))
    if definition == "released":
        step = max(1, n_cells // 50)
        counts = np.array([0] + [min(c, n_cells) for c in range(step, n_cells + step, step)])
        return counts, np.r_[0.0, np.diff(counts) / n_cells]
    raise ValueError(f"deletion_metric must be 'ours' or 'released', not {definition!r}")


@torch.no_grad()
def faithfulness(vlm, prepared, selection: Selection, mask: np.ndarray,
                 baseline: torch.Tensor | None = None, cells_per_step: int = 20,
                 batch: int = 8, config: HeatmapConfig = HeatmapConfig(), *,
                 definition: str | None = None, tie_seed: int | None = -1) -> Faithfulness:
    """Deletion (image -> baseline) and insertion (baseline -> image), cell by cell.

    Each step scores the mean probability of the selected tokens and is
    normalised as ``(s - s_baseline) / (s_original - s_baseline)``.
    ``definition`` (default ``config.deletion_metric``): "ours" changes
    ``cells_per_step`` cells a step, cells become pixels by nearest-neighbour
    upsampling, and the score is the mean over all steps, first (nothing
    changed) and last (all cells) included; "released" follows the released
    code (bilinear cells, step ``n // 50``, steps weighted by cells changed;
    see ``metric_steps``). ``tie_seed`` (default ``config.tie_seed``): order of
    equal mask values (``cell_order``).
    """
    if not selection.positions:
        raise ValueError(f"nothing to score: the sample was skipped ({selection.skipped})")
    definition = config.deletion_metric if definition is None else definition
    tie_seed = config.tie_seed if tie_seed == -1 else tie_seed
    image = image_tensor(prepared.image, vlm.device)
    if baseline is None:
        baseline = config_baseline(image, config)
    baseline = baseline.to(image)
    obj = Objective(vlm, prepared, torch.tensor(selection.answer_ids), selection.positions)
    mask = np.asarray(mask)
    s_rows, s_cols = mask.shape
    order = cell_order(mask, tie_seed)
    counts, weights = metric_steps(order.size, cells_per_step, definition)
    h, w = image.shape[-2:]
    cells = torch.zeros(len(counts), s_rows * s_cols, device=image.device)
    for j, c in enumerate(counts):
        cells[j, torch.as_tensor(order[:c], device=image.device)] = 1.0
    cells = cells.reshape(-1, 1, s_rows, s_cols)
    if definition == "released":
        changed = F.interpolate(cells, size=(h, w), mode="bilinear", align_corners=True)
    else:
        changed = F.interpolate(cells, size=(h, w), mode="nearest")

    def probs(images):
        out = [obj.logprobs(images[i:i + batch]).exp().mean(-1) for i in range(0, len(images), batch)]
        return torch.cat(out).cpu().numpy().astype(np.float64)

    ends = probs(torch.stack([image, baseline]))
    s_orig, s_base = float(ends[0]), float(ends[1])
    deleted = probs(image * (1 - changed) + baseline * changed)
    inserted = probs(baseline * (1 - changed) + image * changed)
    denom = s_orig - s_base
    norm = (lambda s: (s - s_base) / denom) if abs(denom) > 1e-12 else (lambda s: s * np.nan)
    return Faithfulness(norm(deleted), norm(inserted), deleted, inserted, s_orig, s_base,
                        cells_per_step, counts, weights, definition, tie_seed)


# ------------------------------------------------------------- simple baselines
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


# ---------------------------------------------------------------- sanity checks
def randomised(vlm, seed: int = 0):
    """A copy of ``vlm`` with freshly initialised weights (same config, processor, adapter).

    The model-randomisation sanity check: a heatmap that does not change when
    the weights are random explains the image, not the model.
    """
    from .models import VLM

    torch.manual_seed(seed)
    model = type(vlm.model)(vlm.model.config).to(vlm.device, vlm.dtype).eval()
    return VLM(model, vlm.processor, type(vlm.adapter)(model, vlm.processor),
               name=f"{vlm.name} (random weights, seed {seed})")


# ------------------------------------------------------------------ plausibility
def plausibility(importance: np.ndarray, target: np.ndarray) -> dict:
    """Pointing game and mass-in-mask of an importance map against a boolean target mask.

    ``pointing``: every pixel where the map is maximal lies in the target (a
    flat map points nowhere in particular and fails); ``mass``: share of the (non-negative)
    importance inside the target; ``area``: the target's share of the image
    (the mass a uniform map would get).
    """
    imp = np.clip(np.nan_to_num(np.asarray(importance, dtype=np.float64)), 0, None)
    target = np.asarray(target, dtype=bool)
    if imp.shape != target.shape:
        raise ValueError(f"map {imp.shape} and mask {target.shape} differ in shape")
    if not target.any():
        from .tokens import EmptyMaskError

        raise EmptyMaskError("the target mask is empty (no pixel set): plausibility needs a region")
    total = imp.sum()
    peak = imp == imp.max()
    return {"pointing": bool(total > 0 and target[peak].all()),
            "mass": float(imp[target].sum() / total) if total > 0 else float("nan"),
            "area": float(target.mean())}


# ------------------------------------------------------------- comparing configs
def rank_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two masks or maps (NaN when either is constant)."""
    from scipy.stats import spearmanr

    a, b = np.ravel(a), np.ravel(b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b)[0])


def compare_configs(vlm, prepared, selection: Selection, configs: dict, target=None,
                    baseline_name: str | None = None, faithful: bool = True) -> "pd.DataFrame":
    """One heatmap per named config of the same question and positions, side by side.

    Columns: the config's ``switches()`` (how it differs from the "reference"
    preset), ``rho`` (Spearman of its coarse mask with that of
    ``baseline_name``, default the first config), and with a boolean ``target``
    mask the ``mass`` and ``pointing`` of its importance map; with ``faithful``
    the deletion and insertion scores, all measured alike (the metric, tie rule and
    baseline of the ``baseline_name`` config).
    """
    import pandas as pd

    names = list(configs)
    base = baseline_name or names[0]
    maps = {k: igos(vlm, prepared, None, c, selection=selection) for k, c in configs.items()}
    rows = []
    for k, c in configs.items():
        hm = maps[k]
        row = {"config": k, "switches": ", ".join(f"{a}={b}" for a, b in c.switches().items()) or "—",
               "rho": rank_agreement(hm.mask, maps[base].mask)}
        if target is not None:
            row.update({f"{m}": v for m, v in plausibility(hm.importance(), target).items()
                        if m != "area"})
        if faithful:
            f = faithfulness(vlm, prepared, selection, hm.mask, batch=configs[base].batch,
                             config=configs[base])
            row.update(deletion=f.deletion, insertion=f.insertion)
        rows.append(row)
    return pd.DataFrame(rows).set_index("config")
