"""The one attention primitive: record statistics and cut edges as attention happens.

A single attention function, registered with transformers' ``AttentionInterface``
under the name ``"vlmscope"`` (and the eager mask function under the same name
in ``AttentionMaskInterface``, so the model still builds its causal mask), does
what eager attention does and, per layer:

- **records** the rows of the tokens being predicted: the fraction of attention
  on image, query (with and without BOS) and earlier generated tokens, per
  head, plus (optionally) the row over the image columns for maps; nothing
  else of the attention matrix is kept;
- **knocks out** edges: for chosen (query-row group -> key-column group) pairs
  in chosen layers, scores are set to -inf before the softmax, during prefill
  and decoding alike, by absolute position. Each batch row may carry its own
  knockout, so many configurations of one image run as one batch.

``attention(vlm, record=..., knockout=...)`` switches the language model to
this backend for the duration of the block and always restores it;
``attention_implementation(model, name)`` switches every sub-model to another
of transformers' kernels ("sdpa", "eager", ...) the same way. This module is
the door to how attention is computed.

>>> rec = Recorder(prepared.groups)                                  # doctest: +SKIP
>>> with attention(vlm, record=rec):                                 # doctest: +SKIP
...     g = vlm.generate(prepared, max_new_tokens=64)
>>> rec.fractions()    # tidy DataFrame: layer, step, group, fraction  # doctest: +SKIP

Positions: a call with ``q`` query rows and ``k`` keys holds rows at absolute
positions ``k - q .. k - 1`` (batch rows share positions: no left padding).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from .tokens import TokenGroups

NAME = "vlmscope"
GROUPS = ("image", "query", "bos", "generated")


# ------------------------------------------------------------------ edge specs
@dataclass(frozen=True)
class Edge:
    """Block rows of ``src`` from attending to columns of ``dst`` in ``layers``.

    ``src`` / ``dst`` are group names ("image", "query", "bos", "generated",
    "prompt_last") or explicit absolute positions. ``layers=None`` means every
    layer; otherwise a collection of layer indices.
    """

    src: str | tuple[int, ...]
    dst: str | tuple[int, ...]
    layers: tuple[int, ...] | None = None

    def active(self, layer: int) -> bool:
        return self.layers is None or layer in self.layers


def from_layer(edges: Sequence[Edge], start: int, n_layers: int) -> tuple[Edge, ...]:
    """The same edges, active in layers ``start .. n_layers-1`` ("from layer l on").

    ``start=0`` cuts in every layer, ``start=n_layers`` in none. (Kaduri et al.
    write this as "layers with index > l", i.e. ``start = l + 1``.)
    """
    if not 0 <= start <= n_layers:
        raise IndexError(f"start layer {start} out of range 0..{n_layers}")
    return tuple(Edge(e.src, e.dst, tuple(range(start, n_layers))) for e in edges)


KNOCKOUTS = {
    "img->gen": (Edge("generated", "image"),),
    "img->txt": (Edge("query", "image"),),
    "img->txt+gen": (Edge("query", "image"), Edge("generated", "image")),
}


def _positions(groups: TokenGroups, spec, length: int) -> torch.Tensor:
    """Boolean ``[length]`` mask of a group name or explicit positions."""
    out = torch.zeros(length, dtype=torch.bool)
    if isinstance(spec, str):
        if spec == "generated":
            out[groups.prompt_length:] = True
        elif spec == "prompt_last":
            out[groups.prompt_length - 1] = True
        elif spec in ("image", "query", "bos"):
            idx = getattr(groups, spec)
            out[idx[idx < length]] = True
        else:
            raise ValueError(f"unknown group {spec!r}; use one of {GROUPS + ('prompt_last',)} "
                             "or explicit positions")
    else:
        idx = torch.as_tensor(spec, dtype=torch.long)
        out[idx[idx < length]] = True
    return out


class Knockout:
    """Per-batch-row edge sets. ``edges[b]`` is the tuple of ``Edge`` for batch row ``b``."""

    def __init__(self, groups: TokenGroups, edges: Sequence[Sequence[Edge]], n_layers: int):
        self.groups = groups
        self.edges = [tuple(e) for e in edges]
        self.n_layers = n_layers
        for row in self.edges:
            for e in row:
                for layer in e.layers or ():
                    if not 0 <= layer < n_layers:
                        raise IndexError(f"knockout layer {layer} out of range: the model has "
                                         f"{n_layers} decoder layers (0..{n_layers - 1})")
        # the distinct (src, dst) pairs; which of them each row cuts depends on the layer only,
        # their [q, k] masks on the step only: masks are built once per step for all layers
        self._pairs = list(dict.fromkeys((e.src, e.dst) for row in self.edges for e in row))
        self._active: dict = {}  # (layer, device) -> [rows, pairs] bool, or None: nothing cut
        self._step = None
        self._masks = None  # [pairs, q, k] of the current step

    def _active_pairs(self, layer: int, device) -> torch.Tensor | None:
        key = (layer, str(device))
        if key not in self._active:
            a = torch.tensor([[any(e.active(layer) and (e.src, e.dst) == p for e in row)
                               for p in self._pairs] for row in self.edges], dtype=torch.bool)
            self._active[key] = a.reshape(len(self.edges), -1).to(device) if a.any() else None
        return self._active[key]

    def blocked(self, layer: int, q: int, k: int, batch: int, device) -> torch.Tensor | None:
        """Boolean ``[B, 1, q, k]`` of cut (row, column) pairs, or None if nothing is cut."""
        if len(self.edges) not in (1, batch):
            raise ValueError(f"{len(self.edges)} knockout rows for a batch of {batch}")
        active = self._active_pairs(layer, device)  # [rows, pairs]
        if active is None:
            return None
        step = (q, k, str(device))
        if self._step != step:  # positions grow every step
            m = torch.zeros(len(self._pairs), q, k, dtype=torch.bool)
            for i, (src, dst) in enumerate(self._pairs):
                r = _positions(self.groups, src, k)[k - q:]
                m[i] = r[:, None] & _positions(self.groups, dst, k)[None, :]
            # a token always keeps its own position: a row never loses every key (no NaN)
            m[:, torch.arange(q), torch.arange(k - q, k)] = False
            self._step, self._masks = step, m.to(device)
        out = (active[:, :, None, None] & self._masks[None]).any(1)  # [rows, q, k]
        return out[:, None].expand(batch, 1, q, k)


# ------------------------------------------------------------------- recording
@dataclass
class Recorder:
    """Collects, per layer and predicted token, attention fractions by token group.

    Parameters
    ----------
    groups : the prompt's token groups (positions >= ``prompt_length`` count as generated).
    maps : "none", "mean" (head-averaged image row per step, kept) or "heads"
        (``[heads, n_image]`` per step and layer; large for big models).
    batch_row : which batch row to record when several run at once.

    What is recorded stays on the model's device (no copy, no synchronisation
    per layer and step) until ``fraction_tensor`` / ``image_maps`` read it.
    """

    groups: TokenGroups
    maps: str = "mean"
    batch_row: int = 0
    # layer -> list over forward calls of [heads, rows, 4] (image, query, bos, generated) and of
    # [rows, n_image] / [heads, rows, n_image]; kept where attention ran (no per-step device
    # sync), concatenated and moved to the CPU when read
    _fractions: dict = field(default_factory=dict, repr=False)
    _maps: dict = field(default_factory=dict, repr=False)
    _columns: dict = field(default_factory=dict, repr=False)  # device -> (indicator, image idx)

    def _prompt_columns(self, device):
        """``[P, 3]`` 0/1 indicator of image, query, bos columns and the image column indices."""
        if device not in self._columns:
            P = self.groups.prompt_length
            ind = torch.stack([_positions(self.groups, g, P) for g in ("image", "query", "bos")], 1)
            self._columns[device] = (ind.float().to(device), self.groups.image.to(device))
        return self._columns[device]

    def observe(self, layer: int, weights: torch.Tensor, k: int):
        """``weights [B, H, q, k]`` (float32, after softmax) of one forward call."""
        q = weights.shape[2]
        first = k - q  # absolute position of the first query row
        P = self.groups.prompt_length
        start = max(P - 1, first)  # rows that predict a new token
        if start >= k:
            return
        w = weights[self.batch_row, :, start - first:, :].float()  # [H, r, k]
        ind, img_idx = self._prompt_columns(w.device)
        prompt = w[..., :P] @ ind  # [H, r, 3]: image, query, bos (prompt columns are fixed)
        gen = w[..., P:].sum(-1, keepdim=True)  # [H, r, 1]
        self._fractions.setdefault(layer, []).append(torch.cat([prompt, gen], -1).detach())
        if self.maps != "none":
            img = w[..., img_idx]  # [H, r, n_image]
            self._maps.setdefault(layer, []).append(
                (img.mean(0) if self.maps == "mean" else img).detach())

    @property
    def n_steps(self) -> int:
        return sum(c.shape[1] for c in next(iter(self._fractions.values()), []))

    def fraction_tensor(self) -> torch.Tensor:
        """``[layers, steps, heads, 4]``: image, query (BOS included), bos, generated."""
        layers = sorted(self._fractions)
        # each layer's record stays where that layer ran (a model spread over devices): to the CPU first
        return torch.stack([torch.cat(self._fractions[l], 1).transpose(0, 1).cpu() for l in layers])

    def fractions(self, heads: str = "mean"):
        """Tidy DataFrame: layer, step, [head,] image, query, query_no_bos, bos, generated."""
        import pandas as pd

        t = self.fraction_tensor()  # [L, S, H, 4]
        if heads == "mean":
            t = t.mean(2, keepdim=True)
        L, S, H, _ = t.shape
        li, si, hi = np.meshgrid(range(L), range(S), range(H), indexing="ij")
        flat = t.reshape(-1, 4).numpy()
        df = pd.DataFrame({"layer": li.ravel(), "step": si.ravel(), "image": flat[:, 0],
                           "query": flat[:, 1], "query_no_bos": flat[:, 1] - flat[:, 2],
                           "bos": flat[:, 2], "generated": flat[:, 3]})
        if heads != "mean":
            df.insert(2, "head", hi.ravel())
        return df

    def image_maps(self) -> torch.Tensor:
        """``[layers, steps, n_image]`` (mode "mean") or ``[layers, steps, heads, n_image]``."""
        if self.maps == "none":
            raise ValueError("this Recorder was made with maps='none'")
        axis = 0 if self.maps == "mean" else 1  # the rows (steps) axis of each chunk
        per_layer = [torch.cat(self._maps[l], axis).cpu() for l in sorted(self._maps)]
        if axis == 1:
            per_layer = [m.transpose(0, 1) for m in per_layer]
        return torch.stack(per_layer)


# --------------------------------------------------------- the attention function
@dataclass
class _Session:
    record: Recorder | None
    knockout: Knockout | None


def vlmscope_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """Eager attention plus recording and knockout. Shapes: query ``[B, H, q, d]``, key ``[B, Hkv, k, d]``."""
    from transformers.integrations.sdpa_attention import repeat_kv

    session: _Session | None = getattr(module, "_vlmscope_session", None)
    groups = query.shape[1] // key.shape[1]
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    B, H, q, _ = query.shape
    k = key.shape[2]
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling  # [B, H, q, k]
    if attention_mask is not None:
        scores = scores + attention_mask[:, :, :, :k]
    elif q > 1:  # no mask given: causal all the same
        causal = torch.ones(q, k, dtype=torch.bool, device=scores.device).tril(k - q)
        scores = scores.masked_fill(~causal, float("-inf"))
    layer = getattr(module, "layer_idx", None)
    if session is not None and session.knockout is not None:
        cut = session.knockout.blocked(layer, q, k, B, scores.device)
        if cut is not None:
            scores = scores.masked_fill(cut, float("-inf"))
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32)
    if session is not None and session.record is not None:
        session.record.observe(layer, weights, k)
    weights = weights.to(query.dtype)
    if dropout and module.training:
        weights = torch.nn.functional.dropout(weights, p=dropout)
    out = torch.matmul(weights, value).transpose(1, 2).contiguous()  # [B, q, H, d]
    return out, weights


def register() -> str:
    """Register the backend and its mask function with transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

    AttentionInterface.register(NAME, vlmscope_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, eager_mask)
    return NAME


@contextmanager
def attention(vlm, record: Recorder | None = None, knockout: Knockout | None = None):
    """Run the language model on the vlmscope backend inside the block; always restore."""
    register()
    lm = vlm.adapter.language_model
    cfg = lm.config
    old = cfg._attn_implementation
    attn_modules = [m for m in lm.modules() if hasattr(m, "layer_idx") and hasattr(m, "scaling")]
    if not attn_modules:
        raise RuntimeError(f"no attention modules found in {type(lm).__name__}")
    session = _Session(record, knockout)
    try:
        cfg._attn_implementation_internal = NAME
        for m in attn_modules:
            m._vlmscope_session = session
        yield session
    finally:
        cfg._attn_implementation_internal = old
        for m in attn_modules:
            if hasattr(m, "_vlmscope_session"):
                del m._vlmscope_session


# ------------------------------------------------------- the kernel switch
def check_attention_name(name: str | None) -> None:
    """A clear error for an attention implementation transformers does not know (None: as loaded)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    known = ["eager", *ALL_ATTENTION_FUNCTIONS.valid_keys()]
    if name is not None and name not in known:
        raise ValueError(f"unknown attention implementation {name!r}; known: "
                         f"{', '.join(known)} (or None: as loaded)")


@contextmanager
def attention_implementation(model, name: str | None):
    """Run every sub-model of ``model`` that supports attention ``name`` on it inside the block.

    ``name`` is a transformers attention implementation ("sdpa", "eager", ...);
    ``None`` changes nothing. A sub-model that cannot switch (no dynamic
    dispatch, or no support for ``name``) keeps what it was loaded with. The
    previous implementations are restored on exit, even after an error.
    Yields the names of the configs that were switched.
    """
    from transformers import PreTrainedModel

    check_attention_name(name)
    changed: list[tuple[object, str | None]] = []
    names: list[str] = []
    seen: set[int] = set()
    try:
        if name is not None:
            for module in model.modules():
                if not isinstance(module, PreTrainedModel) or id(module.config) in seen:
                    continue
                seen.add(id(module.config))
                cfg = module.config
                if cfg._attn_implementation == name:
                    continue
                try:
                    ok = (module._can_set_attn_implementation()
                          and module.get_correct_attn_implementation(name) == name)
                except (ValueError, ImportError):
                    ok = False
                if ok:
                    changed.append((cfg, cfg._attn_implementation_internal))
                    cfg._attn_implementation_internal = name
                    names.append(type(module).__name__)
        yield names
    finally:
        for cfg, old in reversed(changed):
            cfg._attn_implementation_internal = old
