"""Heatmaps for free-form answers: iGOS+ / iGOS++ mask optimisation (Xing et al. 2025).

A mask ``M`` on a coarse grid (32x32 by default; low = important) is
optimised in the ORIGINAL image's pixel space. Each model sees it through its
adapter's differentiable preprocessing (``Adapter.pixel_inputs``), so one
mask explains every architecture on the same picture.

The pieces, each usable alone:

- ``make_baseline``: the blurred (the reference's kernel rule), black or noise image;
- ``select_tokens``: the visually relevant answer positions,
  log p(y_t | image) - log p(y_t | baseline) > 1, stop tokens derived from the
  tokenizer in use, first position dropped, the single-token rule; a sample
  with none is reported as skipped with the reason;
- ``Objective``: teacher-forced sum of the selected tokens' log-probabilities
  as a function of a batch of images (log_softmax in float32, logits only at
  the selected rows);
- ``igos``: the optimisation (integrated-gradient deletion and insertion
  terms, L1 + bilateral TV + decaying L2, Nesterov steps). The path images
  run in batches of at most ``batch`` with a backward per batch, so at most
  ``batch`` path graphs are alive at once (the reference keeps all of them).
  Each path image draws its noise from its own seed, so the mask does not
  depend on ``batch``; a batch that runs out of memory is split and rerun;
- ``faithfulness``: deletion and insertion curves and scores (20 cells a step);
- ``gradient_saliency`` and ``attention_saliency``: simple baselines;
- ``plausibility``: pointing game and mass in a ground-truth mask.

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
    """Every knob of the heatmap. Defaults: the reference README's run (iGOS+).

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
    lr: float = 10.0
    noise: float = 0.2  # std of Gaussian noise on path images, normalised pixel units
    baseline: str = "blur"  # "blur" | "black" | "noise"
    btv_sigma: float = 0.01
    threshold: float = 1.0  # token selection: log-prob gain over the baseline
    single_token_ratio: float = 0.5  # single-token answers: keep when p(y|B) <= ratio * p(y|I)
    drop_first: bool = True
    batch: int = 8  # path images per forward + backward (a speed/memory knob: the mask does not depend on it)
    attn_implementation: str | None = "sdpa"  # attention kernels while optimising; None = as loaded
    seed: int = 0

    def __post_init__(self):
        if self.method not in ("igos+", "igos++"):
            raise ValueError(f"method must be 'igos+' or 'igos++', not {self.method!r}")
        if self.baseline not in ("blur", "black", "noise"):
            raise ValueError(f"baseline must be 'blur', 'black' or 'noise', not {self.baseline!r}")
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
        check_attention_name(self.attn_implementation)

    def result_fields(self) -> dict:
        """The settings a heatmap depends on: all but ``batch`` (speed and memory only), for
        run-store keys, so a sweep resumed with another batch reuses its finished parts."""
        d = asdict(self)
        del d["batch"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "HeatmapConfig":
        """From ``asdict`` output, also of files written before ``batch`` replaced ``chunk``."""
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


def make_baseline(image: torch.Tensor, kind: str = "blur", seed: int = 0) -> torch.Tensor:
    """The baseline image B for ``image [3, H, W]``: blurred, black or uniform noise."""
    if kind == "blur":
        k = blur_kernel_size(image.shape[-1])
        return gaussian_blur(image, k, float(k - 1))
    if kind == "black":
        return torch.zeros_like(image)
    if kind == "noise":
        gen = torch.Generator().manual_seed(seed)
        return torch.rand(image.shape, generator=gen).to(image)
    raise ValueError(f"baseline must be 'blur', 'black' or 'noise', not {kind!r}")


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

    def logprobs(self, images: torch.Tensor, noise: float = 0.0, seeds=None) -> torch.Tensor:
        """``[B, n_positions]`` log-probabilities; ``noise``: Gaussian std added to the model's
        (normalised) pixel inputs, drawn with ``seeds`` (one int per image) from a generator
        of each image's own, or from torch's global generator when ``seeds`` is None."""
        adapter = self.vlm.adapter
        pix = [adapter.pixel_inputs(img, self.inputs) for img in images]
        if noise:
            if seeds is not None and len(seeds) != len(pix):
                raise ValueError(f"{len(seeds)} seeds for {len(pix)} images")
            gens = ([torch.Generator(device=images.device).manual_seed(int(sd)) for sd in seeds]
                    if seeds is not None else [None] * len(pix))
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
        baseline = make_baseline(image, config.baseline, config.seed)
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


def bilateral_tv(mask: torch.Tensor, image: torch.Tensor, sigma: float = 0.01) -> torch.Tensor:
    """Squared differences of the coarse mask plus image-edge-weighted ones of the upsampled mask.

    The weight of a pixel pair is ``exp(-|dI|^2 / sigma)`` (``|dI|^2``: squared
    difference averaged over channels), so the mask may change across image edges.
    """
    tv = ((mask[..., 1:, :] - mask[..., :-1, :]) ** 2).mean() + \
         ((mask[..., :, 1:] - mask[..., :, :-1]) ** 2).mean()
    up = upsample(mask, image.shape[-2], image.shape[-1])
    wv = torch.exp(-((image[:, 1:, :] - image[:, :-1, :]) ** 2).mean(0) / sigma)
    wh = torch.exp(-((image[:, :, 1:] - image[:, :, :-1]) ** 2).mean(0) / sigma)
    btv = (wv * (up[..., 1:, :] - up[..., :-1, :]) ** 2).mean() + \
          (wh * (up[..., :, 1:] - up[..., :, :-1]) ** 2).mean()
    return tv + btv


def regulariser(mask: torch.Tensor, image: torch.Tensor, config: HeatmapConfig, iteration: int):
    """``(l1, btv, l2)`` terms (each a scalar tensor) at an iteration."""
    l1 = config.l1 * (1 - mask).abs().mean()
    btv = config.l3 * bilateral_tv(mask, image, config.btv_sigma)
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
        """``[H, W]`` importance in original pixels: 1 - the upsampled mask (high = important)."""
        if self.mask is None:
            raise ValueError(f"no heatmap: the sample was skipped ({self.skipped})")
        w, h = self.image_size
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
    """The explaining mask: iGOS+'s single mask, or iGOS++'s deletion x insertion product."""
    return masks["single"] if "single" in masks else masks["deletion"] * masks["insertion"]


def _terms(masks: dict) -> list[tuple[str, str, float]]:
    """(kind, mask, weight) of each integrated-gradient term: iGOS+ one mask; iGOS++ two and their product."""
    if "single" in masks:
        return [("deletion", "single", 1.0), ("insertion", "single", 1.0)]
    return [("deletion", "deletion", 0.5), ("deletion", "both", 0.5),
            ("insertion", "insertion", 0.5), ("insertion", "both", 0.5)]


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
                  config: HeatmapConfig, iteration: int = 0, state: dict | None = None) -> dict:
    """Accumulate the gradient of the integrated deletion-minus-insertion term into ``masks``.

    ``masks``: {"single": M} (iGOS+) or {"deletion": Md, "insertion": Mi}
    (iGOS++), leaf tensors ``[size, size]`` with ``requires_grad``. The
    ``ig_iter`` path images of every term (2 terms for iGOS+, 4 for iGOS++)
    run at most ``config.batch`` at a time in balanced batches, with a
    ``backward`` per batch. Noise: one seed per path image
    (``noise_seed(config.seed, iteration, term, k)``). A batch that runs out
    of memory is rerun in halves (the gradients it had added are restored
    first) and the smaller size is kept in ``state["batch"]`` for later calls.
    Returns the terms' values ``{"deletion": D, "insertion": I}``.
    """
    n = config.ig_iter
    h, w = image.shape[-2:]
    terms = _terms(masks)
    todo = [(t, k) for t in range(len(terms)) for k in range(1, n + 1)]  # deletion first, as the reference
    state = state if state is not None else {}
    batch = state.setdefault("batch", config.batch)
    totals = {"deletion": 0.0, "insertion": 0.0}
    pos = 0
    while pos < len(todo):
        size = _balanced(len(todo) - pos, batch)
        part = todo[pos:pos + size]
        before = {key: None if m.grad is None else m.grad.clone() for key, m in masks.items()}
        forwards = obj.forwards
        try:
            values = _path_batch(obj, image, baseline, masks, terms, part, config, iteration, (h, w))
        except Exception as e:  # noqa: BLE001 - only memory errors are handled; the rest re-raised
            if not out_of_memory(e) or size == 1:
                raise
            for key, m in masks.items():
                m.grad = before[key]
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


def _path_batch(obj, image, baseline, masks, terms, part, config, iteration, hw) -> list[float]:
    """Forward and backward of one batch of path images ``part`` [(term, k)]; their scores."""
    n = config.ig_iter
    ups = {}
    for key in {terms[t][1] for t, _ in part}:
        m = masks["deletion"] * masks["insertion"] if key == "both" else masks[key]
        ups[key] = upsample(m, *hw)[None]  # [1, H, W]
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
    seeds = [noise_seed(config.seed, iteration, t, k) for t, k in part]
    s = obj.score(torch.stack(images), noise=config.noise, seeds=seeds)  # [b]
    (s * torch.tensor(coefs, dtype=s.dtype, device=s.device)).sum().backward()
    return s.detach().double().cpu().tolist()


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
        baseline = make_baseline(image, config.baseline, config.seed)
    baseline = baseline.to(image)
    if selection is None:
        selection = select_tokens(vlm, prepared, answer, baseline, config)
    size = prepared.image.size
    if not selection.positions:
        return Heatmap(None, selection, config, size)
    obj = Objective(vlm, prepared, torch.tensor(selection.answer_ids), selection.positions)
    names = ("single",) if config.method == "igos+" else ("deletion", "insertion")
    masks = {k: torch.ones(config.size, config.size, device=image.device, requires_grad=True)
             for k in names}
    theta_prev = {k: m.detach().clone() for k, m in masks.items()}
    trace, history, state = [], [], {"batch": config.batch}
    params = [p for p in vlm.model.parameters() if p.requires_grad]
    for p in params:  # only the mask needs gradients: no weight-gradient work or memory
        p.requires_grad_(False)
    try:
        from tqdm.auto import tqdm

        with attention_implementation(vlm.model, config.attn_implementation):
            for it in tqdm(range(config.iterations), desc="iGOS", disable=not progress):
                terms = path_gradient(obj, image, baseline, masks, config, it, state)
                l1, btv, l2 = regulariser(_combined(masks), image, config, it)
                (l1 + btv + l2).backward()
                trace.append({**terms, "l1": l1.item(), "btv": btv.item(), "l2": l2.item(),
                              "batch": state["batch"]})
                e = it / (it + config.momentum)
                with torch.no_grad():
                    for k, m in masks.items():
                        theta = m - config.lr * m.grad
                        m.copy_((theta + e * (theta - theta_prev[k])).clamp(0, 1))
                        theta_prev[k] = theta
                        m.grad = None
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
    """Deletion and insertion curves (normalised per step) and their means."""

    deletion_curve: np.ndarray
    insertion_curve: np.ndarray
    deletion_raw: np.ndarray  # mean probability of the selected tokens per step
    insertion_raw: np.ndarray
    original: float
    baseline: float
    cells_per_step: int

    @property
    def deletion(self) -> float:
        """Mean normalised deletion score (lower = better)."""
        return float(np.mean(self.deletion_curve))

    @property
    def insertion(self) -> float:
        """Mean normalised insertion score (higher = better)."""
        return float(np.mean(self.insertion_curve))


def cell_order(mask: np.ndarray) -> np.ndarray:
    """Mask cells from most to least important (lowest mask value first; ties by index)."""
    return np.argsort(np.asarray(mask, dtype=np.float64).ravel(), kind="stable")


@torch.no_grad()
def faithfulness(vlm, prepared, selection: Selection, mask: np.ndarray,
                 baseline: torch.Tensor | None = None, cells_per_step: int = 20,
                 batch: int = 8, config: HeatmapConfig = HeatmapConfig()) -> Faithfulness:
    """Deletion (image -> baseline) and insertion (baseline -> image), ``cells_per_step`` at a time.

    Each step scores the mean probability of the selected tokens and is
    normalised as ``(s - s_baseline) / (s_original - s_baseline)``; the score
    is the mean over all steps, first (nothing changed) and last (all cells)
    included. Cells become pixels by nearest-neighbour upsampling of the grid.
    """
    if not selection.positions:
        raise ValueError(f"nothing to score: the sample was skipped ({selection.skipped})")
    image = image_tensor(prepared.image, vlm.device)
    if baseline is None:
        baseline = make_baseline(image, config.baseline, config.seed)
    baseline = baseline.to(image)
    obj = Objective(vlm, prepared, torch.tensor(selection.answer_ids), selection.positions)
    mask = np.asarray(mask)
    s_rows, s_cols = mask.shape
    order = cell_order(mask)
    counts = list(range(0, order.size, cells_per_step)) + [order.size]
    h, w = image.shape[-2:]
    cells = torch.zeros(len(counts), s_rows * s_cols, device=image.device)
    for j, c in enumerate(counts):
        cells[j, torch.as_tensor(order[:c], device=image.device)] = 1.0
    changed = F.interpolate(cells.reshape(-1, 1, s_rows, s_cols), size=(h, w), mode="nearest")

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
                        cells_per_step)


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
