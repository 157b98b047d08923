"""The shared pieces of every attribution method: the result, the registry, cost
measurement, the teacher-forced answer pass, and the token <-> pixel layout."""

from __future__ import annotations

import ctypes
import functools
import inspect
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..models import at_least_float32


# ----------------------------------------------------------------------- result
@dataclass
class Attribution:
    """One importance map of an answer over the image (HIGH = important).

    ``tokens``: float, the image tokens' values. On a model whose image tokens
    form ONE grid (every token has a cell of view 0: LLaVA-1.5, the organism,
    Qwen2-VL) it is that grid, ``[rows, cols]``; on tiled or multi-view models
    (LLaVA-NeXT, Idefics3, InternVL: several views, row-end newlines, separators)
    it is ``[n_image]`` in sequence order (``tokens_1d`` always is).
    ``pixels``: float ``[H, W]`` of the original image (``prepared.image.size``):
    token methods paint each token's value on its box (``TokenGeometry.to_pixels``,
    views averaged where they overlap, 0 where no token looks); pixel methods
    (integrated gradients, iGOS) are native there and their tokens are the mean
    over each token's box.
    ``seconds``: wall time of this map; ``peak_bytes``: its peak memory (see
    ``measure``); ``oracle``: a choice was made knowing the truth;
    ``causal``: the method IS the causal truth of the study (activation patching),
    so a leaderboard must not rank it against itself.
    """

    method: str
    tokens: np.ndarray
    pixels: np.ndarray
    seconds: float = 0.0
    peak_bytes: int | None = None
    oracle: bool = False
    causal: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def tokens_1d(self) -> np.ndarray:
        """``[n_image]`` the token values in sequence order, whatever the layout."""
        order = self.extra.get("_order")
        flat = np.asarray(self.tokens, dtype=np.float64).reshape(-1)
        return flat if order is None else flat[order]


METHODS: dict[str, Callable] = {}


def register(name: str):
    """Add a method to ``METHODS`` under ``name``; calling it measures its time and memory."""
    def wrap(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def timed(vlm, prepared, answer, **options) -> Attribution:
            try:
                signature.bind(vlm, prepared, answer, **options)
            except TypeError:
                known = [p for p in list(signature.parameters)[3:]]
                raise ValueError(f"attribution method {name!r} has no option(s) "
                                 f"{', '.join(sorted(set(options) - set(known)))}; its options: "
                                 f"{', '.join(known) or 'none'}") from None
            with measure(vlm) as cost:
                out = fn(vlm, prepared, answer, **options)
            out.seconds, out.peak_bytes = cost["seconds"], cost["peak_bytes"]
            out.extra.setdefault("memory", cost["how"])
            return out
        METHODS[name] = timed
        return timed
    return wrap


def get(name: str) -> Callable:
    """The method registered as ``name``; an unknown name is a ``ValueError`` listing the known."""
    if name not in METHODS:
        raise ValueError(f"unknown attribution method {name!r}; known: {', '.join(names())}")
    return METHODS[name]


def names() -> list[str]:
    """The registered method names, in registration order."""
    return list(METHODS)


def attribute(vlm, prepared, answer, method: str, **options) -> Attribution:
    """``method``'s map of ``answer`` to ``prepared``, with its wall time and peak memory."""
    return get(method)(vlm, prepared, answer, **options)


# ------------------------------------------------------------------------- cost
def _heap_bytes() -> Callable[[], int] | None:
    """A reader of the bytes glibc's malloc holds in use (arenas + mmapped chunks), or None."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None

    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                    "usmblks", "fsmblks", "uordblks", "fordblks",
                                                    "keepcost")]
    fn.restype = Info
    return lambda: int((info := fn()).uordblks + info.hblkhd)


_HEAP = _heap_bytes()


@contextmanager
def measure(vlm, interval: float = 0.002):
    """Wall time and peak memory of the block: yields a dict filled on exit with
    ``seconds``, ``peak_bytes`` and ``how``.

    On CUDA: ``torch.cuda.max_memory_allocated`` after a reset, minus what was
    allocated before (the block's own peak, exact; on the model's input device only,
    so a model spread over several devices is under-counted). On the CPU: glibc's
    ``mallinfo2`` in-use bytes (where torch's CPU tensors live), sampled every
    ``interval`` seconds by a thread, the peak minus the value at the start (a
    peak shorter than the interval can be missed); None where glibc is absent.
    """
    cost: dict = {"seconds": 0.0, "peak_bytes": None, "how": "unknown"}
    device = vlm.input_device
    cuda = device.type == "cuda"
    stop = threading.Event()
    peak = [0]
    if cuda:
        torch.cuda.synchronize(device)
        start_alloc = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    elif _HEAP is not None:
        start_alloc = _HEAP()
        peak[0] = start_alloc

        def sample():
            while not stop.wait(interval):
                peak[0] = max(peak[0], _HEAP())
        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
    t0 = time.perf_counter()
    try:
        yield cost
    finally:
        if cuda:
            torch.cuda.synchronize(device)
        cost["seconds"] = time.perf_counter() - t0
        if cuda:
            cost["peak_bytes"] = int(torch.cuda.max_memory_allocated(device) - start_alloc)
            cost["how"] = "cuda max_memory_allocated"
        elif _HEAP is not None:
            stop.set()
            thread.join()
            peak[0] = max(peak[0], _HEAP())
            cost["peak_bytes"] = int(peak[0] - start_alloc)
            cost["how"] = "cpu heap (glibc mallinfo2, sampled)"


# ----------------------------------------------------------- the answer's pass
TARGETS = ("logprob", "logit")


@dataclass
class AnswerPass:
    """A teacher-forced answer: the extended inputs and the rows that predict each answer token."""

    ids: torch.Tensor  # [n_answer] on the model's device
    inputs: dict
    rows: torch.Tensor  # [n_answer] absolute positions whose logits predict the answer tokens
    image: torch.Tensor  # [n_image] absolute positions of the image tokens

    def score(self, logits: torch.Tensor, target: str = "logprob") -> torch.Tensor:
        """``[B]`` from ``logits [B, T, V]``: the sum over the answer's tokens of their
        log-probabilities (``target="logprob"``) or of their raw logits (``"logit"``)."""
        if target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {target!r}")
        rows = at_least_float32(logits[:, self.rows.to(logits.device)])
        if target == "logprob":
            rows = torch.log_softmax(rows, dim=-1)
        return rows.gather(-1, self.ids.to(logits.device).expand(len(logits), -1)[..., None])[..., 0].sum(-1)


def answer_pass(vlm, prepared, answer) -> AnswerPass:
    """The prompt followed by ``answer``'s tokens (as ``vlm.score`` scores them)."""
    ids = vlm.answer_ids(answer, prepared).to(vlm.input_device)
    if ids.numel() == 0:
        raise ValueError("the answer to attribute has no tokens")
    n = prepared.input_ids.shape[1]
    inputs = vlm.adapter.extend_inputs(prepared.inputs, ids[None])
    rows = torch.arange(n - 1, n - 1 + ids.numel())
    return AnswerPass(ids, inputs, rows, prepared.groups.image.long())


@contextmanager
def frozen(vlm):
    """Weights need no gradients inside the block (only the inputs we differentiate do)."""
    params = [p for p in vlm.model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        with torch.enable_grad():
            yield
    finally:
        for p in params:
            p.requires_grad_(True)


class _FullAttention:
    """A ``Recorder`` stand-in for the attention backend: keeps each layer's whole
    ``[heads, T, T]`` weights (of batch row 0), still in the graph when it is one."""

    def __init__(self):
        self.weights: dict[int, torch.Tensor] = {}

    def observe(self, layer: int, weights: torch.Tensor, k: int):
        if weights.requires_grad:  # the gradient reaches the tensor the model used, not a view
            weights.retain_grad()
        self.weights[layer] = weights


def forward(vlm, prepared, answer, attentions: bool = False, grad: bool = False,
            target: str = "logprob") -> dict:
    """One teacher-forced pass of ``answer``: ``{"pass", "score", "embeds", "attn"}``.

    ``score``: the answer's summed log-probability, or its summed logits (``target="logit"``).

    ``grad=True`` makes the language model's input embeddings a leaf that needs a
    gradient and runs ``score.backward()`` (weights frozen): ``embeds.grad`` and,
    with ``attentions=True``, each layer's ``attn[l].grad`` are then filled.
    ``attentions=True`` runs the language model on the suite's attention backend
    (``vlmscope.attention``) keeping every layer's full weights ``[heads, T, T]`` (batch row 0,
    detached, with the gradient in ``.grad`` when ``grad=True``).
    """
    from ..attention import attention

    ap = answer_pass(vlm, prepared, answer)
    held: dict = {}

    def leaf(x, call):
        if call.prefill is False:
            return None
        x = x.detach().clone().requires_grad_(grad)
        held["embeds"] = x
        return x

    rec = _FullAttention() if attentions else None
    with frozen(vlm) if grad else torch.no_grad():
        with vlm.intervene(prepared, {"lm.input": leaf}):
            if attentions:
                with attention(vlm, record=rec):
                    logits = vlm.model(**ap.inputs).logits
            else:
                logits = vlm.model(**ap.inputs).logits
        score = ap.score(logits, target)[0]
        if grad:
            score.backward()
    attn = None
    if rec is not None:
        attn = []
        for l in sorted(rec.weights):
            w = rec.weights[l]
            one = w.detach()[0]
            one.grad = w.grad[0] if w.grad is not None else None
            attn.append(one)
    return {"pass": ap, "score": score.detach(), "embeds": held["embeds"], "attn": attn}


# ------------------------------------------------------------ token <-> pixels
def single_grid(geometry) -> bool:
    """Whether every image token is a cell of one grid (then ``tokens`` is that grid)."""
    if len(geometry.grids) != 1 or (geometry.cells[:, 0] < 0).any():
        return False
    rows, cols = geometry.grids[0]
    return rows * cols == len(geometry)


def paint(geometry, values) -> np.ndarray:
    """``[H, W]``: per-token ``values [n_image]`` on their boxes, views averaged, 0 where none."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    views = [geometry.to_pixels(values, view=v) for v in range(len(geometry.grids))]
    stack = np.stack(views)
    seen = ~np.isnan(stack)
    total = np.where(seen, stack, 0.0).sum(0)
    count = seen.sum(0)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def pool(geometry, pixels) -> np.ndarray:
    """``[n_image]``: the mean of ``pixels [H, W]`` over each token's box (0 for an empty box)."""
    pixels = np.asarray(pixels, dtype=np.float64)
    out = np.zeros(len(geometry))
    for i in range(len(geometry)):
        r0, r1, c0, c1 = geometry._pixel_span(i)
        if r1 > r0 and c1 > c0:
            out[i] = pixels[r0:r1, c0:c1].mean()
    return out


def layout(geometry, values) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-token ``values [n_image]`` in the Attribution's ``tokens`` layout, and the order
    that reads that layout back into sequence order (None when it already is)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if not single_grid(geometry):
        return values, None
    rows, cols = geometry.grids[0]
    flat_index = geometry.cells[:, 0] * cols + geometry.cells[:, 1]  # token i -> grid cell
    grid = np.zeros(rows * cols)
    grid[flat_index] = values
    order = None if np.array_equal(flat_index, np.arange(len(values))) else flat_index
    return grid.reshape(rows, cols), order


def from_tokens(method: str, prepared, values, **kw) -> Attribution:
    """An ``Attribution`` of a token-level method: its tokens laid out and painted on pixels."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float64).reshape(-1))
    if values.size != len(prepared.geometry):
        raise ValueError(f"{values.size} token values for {len(prepared.geometry)} image tokens")
    tokens, order = layout(prepared.geometry, values)
    extra = kw.pop("extra", {})
    if order is not None:
        extra["_order"] = order
    return Attribution(method, tokens, paint(prepared.geometry, values), extra=extra, **kw)


def from_pixels(method: str, prepared, pixels, **kw) -> Attribution:
    """An ``Attribution`` of a pixel-level method: native pixels, tokens the box means."""
    pixels = np.nan_to_num(np.asarray(pixels, dtype=np.float64))
    w, h = prepared.image.size
    if pixels.shape != (h, w):
        raise ValueError(f"a pixel map of shape {pixels.shape} for an image of {h}x{w} (HxW)")
    tokens, order = layout(prepared.geometry, pool(prepared.geometry, pixels))
    extra = kw.pop("extra", {})
    if order is not None:
        extra["_order"] = order
    return Attribution(method, tokens, pixels, extra=extra, **kw)


def per_layer(prepared, layer_values) -> np.ndarray:
    """``[layers, *tokens layout]`` of per-layer token values ``[layers, n_image]``."""
    return np.stack([layout(prepared.geometry, v)[0] for v in np.asarray(layer_values)])
