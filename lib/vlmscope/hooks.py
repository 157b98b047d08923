"""Named hook sites: say WHERE to look (``"lm.layer.3.out"``), not how to hook.

Everything here stands on one primitive, ``hooked``: a forward (pre-)hook
registered for the duration of a ``with`` block and removed in ``finally``
whatever happens inside. On it:

- ``sites(vlm)``: the named places of the loaded family (the adapter supplies
  the modules, ``Adapter.site_modules``)::

      vision.layer.{i}     output of vision-encoder layer i (as the tower returns it)
      projector            the projector's output (the image tokens' embeddings)
      lm.input             the merged embeddings entering the language model
      lm.layer.{i}.in      the residual stream entering decoder layer i
      lm.layer.{i}.attn    the attention block's output (before any post-norm and the residual add)
      lm.layer.{i}.mlp     the MLP's output (before any post-norm and the residual add)
      lm.layer.{i}.out     the residual stream after decoder layer i
      lm.final_norm        the final norm's output (Hugging Face's last ``hidden_states``)
      logits               the model's returned logits (after any soft-capping)

  ``lm.layer.{i}.in`` equals ``lm.layer.{i-1}.out`` and, for i = 0, ``lm.input``
  except where the decoder rescales its input (Gemma 2 / PaliGemma multiply by
  sqrt(d) inside the language model).
- ``capture(vlm, prepared, sites) -> Cache``: one forward, the sites' tensors
  detached (on the CPU by default);
- ``intervene(vlm, prepared, {site: fn})``: a context in which every forward
  (``vlm.model``, ``vlm.generate``, ``vlm.score``) passes each site's tensor
  through ``fn``.

Shapes. Language-model sites (``lm.*``, ``logits``) run ``[batch, positions, ...]``.
``capture`` takes one prepared example, so its ``Cache`` drops that batch of
one: ``cache["lm.layer.3.out"]`` is ``[positions, d]`` and positions index it
directly (``cache["lm.layer.3.out"][prepared.groups.image]``). Vision sites
and ``projector`` keep the tower's own layout (tiles or patches first; it
differs between families). An ``intervene`` function sees the tensor as the
model runs it: batch first, and one position per decoding step in ``generate``.

>>> cache = vlm.capture(prepared, ["lm.input", "lm.layer.*.out"])   # doctest: +SKIP
>>> cache.at("lm.layer.3.out", "image").shape                      # doctest: +SKIP
torch.Size([144, 256])
>>> with vlm.intervene(prepared, {"lm.layer.0.out": zero_at(prepared.groups.image)}):  # doctest: +SKIP
...     vlm.generate(prepared).text
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch


@contextmanager
def hooked(module: torch.nn.Module, fn, pre: bool = False):
    """Register ``fn`` on ``module`` for the duration of the block.

    ``pre=True``: ``fn(module, args, kwargs) -> None | (args, kwargs)`` before forward.
    ``pre=False``: ``fn(module, args, kwargs, output) -> None | output`` after forward.
    """
    if pre:
        handle = module.register_forward_pre_hook(fn, with_kwargs=True)
    else:
        handle = module.register_forward_hook(fn, with_kwargs=True)
    try:
        yield handle
    finally:
        handle.remove()


@contextmanager
def capture_lm_inputs(vlm):
    """Collect the language model's ``inputs_embeds`` ``[B, T, d]`` for each forward call.

    Yields a list that fills with one tensor per call (detached).
    """
    seen: list[torch.Tensor] = []

    def grab(module, args, kwargs):
        emb = kwargs.get("inputs_embeds")
        if emb is None and args:
            emb = args[0]
        if emb is not None:
            seen.append(emb.detach())

    with hooked(vlm.adapter.language_model, grab, pre=True):
        yield seen


# ----------------------------------------------------------------------- sites
class SiteError(KeyError):
    """A site name that the loaded model does not have."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


@dataclass(frozen=True)
class Site:
    """One named place: the module, whether its input or output is meant, and how to read it."""

    name: str
    module: torch.nn.Module
    pre: bool  # True: the module's input (a pre-hook), False: its output
    key: str | None = None  # the keyword argument (pre) or output field holding the tensor
    layer: int | None = None

    @property
    def has_positions(self) -> bool:
        """Whether the tensor is ``[batch, positions, ...]`` (the language model's sites)."""
        return self.name.startswith("lm.") or self.name == "logits"


def _site_table(vlm) -> dict[str, Site]:
    ad = vlm.adapter
    out: dict[str, Site] = {}
    for i, m in enumerate(ad.vision_layers):
        out[f"vision.layer.{i}"] = Site(f"vision.layer.{i}", m, False, layer=i)
    out["projector"] = Site("projector", ad.projector, False)
    out["lm.input"] = Site("lm.input", ad.language_model, True, "inputs_embeds")
    for i, layer in enumerate(ad.layers):
        attn, mlp = ad.layer_parts(layer)
        out[f"lm.layer.{i}.in"] = Site(f"lm.layer.{i}.in", layer, True, "hidden_states", i)
        out[f"lm.layer.{i}.attn"] = Site(f"lm.layer.{i}.attn", attn, False, layer=i)
        if mlp is not None:
            out[f"lm.layer.{i}.mlp"] = Site(f"lm.layer.{i}.mlp", mlp, False, layer=i)
        out[f"lm.layer.{i}.out"] = Site(f"lm.layer.{i}.out", layer, False, layer=i)
    out["lm.final_norm"] = Site("lm.final_norm", ad.final_norm, False)
    out["logits"] = Site("logits", vlm.model, False, "logits")
    return out


def sites(vlm) -> list[str]:
    """The site names of the loaded model, in the order a forward pass reaches them."""
    return list(_site_table(vlm))


def _summary(names: list[str]) -> str:
    """``vision.layer.{0..23}, projector, lm.input, lm.layer.{0..31}.{in,attn,mlp,out}, ...``"""
    import re

    parts: dict[str, list] = {}
    for n in names:
        m = re.fullmatch(r"(vision|lm)\.layer\.(\d+)(\.\w+)?", n)
        key = f"{m.group(1)}.layer.{{}}" + (".{}" if m.group(3) else "") if m else n
        parts.setdefault(key, []).append((int(m.group(2)), m.group(3)) if m else None)
    shown = []
    for key, vals in parts.items():
        if vals[0] is None:
            shown.append(key)
            continue
        idx = sorted({v[0] for v in vals})
        sub = list(dict.fromkeys(v[1][1:] for v in vals if v[1]))
        shown.append(key.format(f"{{{idx[0]}..{idx[-1]}}}", "{" + ",".join(sub) + "}"))
    return ", ".join(shown)


def resolve(vlm, names) -> list[Site]:
    """Sites by name or glob pattern (``"lm.layer.*.out"``); ``SiteError`` names the valid ones."""
    table = _site_table(vlm)
    if isinstance(names, str):
        names = [names]
    found: list[Site] = []
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"a site is named by a string, not {type(name).__name__}")
        hits = [table[name]] if name in table else [table[n] for n in table
                                                    if fnmatch.fnmatchcase(n, name)]
        if not hits:
            raise SiteError(f"{vlm.adapter.family} model has no site {name!r}; valid sites: "
                            f"{_summary(list(table))} (see vlm.sites())")
        found += [s for s in hits if s not in found]
    order = list(table)
    return sorted(found, key=lambda s: order.index(s.name))  # the order a forward reaches them


# -------------------------------------------------------------- read / write
def _read(site: Site, args, kwargs, output=None):
    """The site's tensor from a hook's arguments, or None when the call carries none."""
    if site.pre:
        x = kwargs.get(site.key)
        return args[0] if x is None and args else x
    if isinstance(output, tuple):
        return output[0]
    if site.key is not None:
        return getattr(output, site.key, None)
    return output


def _written(site: Site, args, kwargs, output, new):
    """The hook's return value that puts ``new`` in the site's place."""
    if site.pre:
        if site.key in kwargs or not args:
            return args, {**kwargs, site.key: new}
        return (new, *args[1:]), kwargs
    if isinstance(output, tuple):
        return (new, *output[1:])
    if site.key is not None:
        output[site.key] = new
        return output
    return new


# --------------------------------------------------------------------- capture
class Cache(Mapping):
    """Site name -> tensor of one captured forward (see the module docstring for shapes).

    ``cache.at(site, group)`` picks a token group's positions of a language-model
    site: ``"image"``, ``"query"``, ``"bos"``, ``"last"`` (the last prompt
    position), ``"answer"`` (the scored answer's positions, when captured with
    one), or explicit positions.
    """

    def __init__(self, tensors: dict, groups=None, prompt_length: int | None = None,
                 length: int | None = None):
        self._t = tensors
        self.groups = groups
        self.prompt_length = prompt_length  # positions of the prompt
        self.length = length  # positions of the forward (prompt and answer)

    def __getitem__(self, name: str) -> torch.Tensor:
        try:
            return self._t[name]
        except KeyError:
            raise SiteError(f"site {name!r} was not captured; captured: {', '.join(self._t)}") from None

    def __iter__(self):
        return iter(self._t)

    def __len__(self) -> int:
        return len(self._t)

    def __repr__(self) -> str:
        return "Cache(" + ", ".join(f"{k}: {tuple(v.shape)}" for k, v in self._t.items()) + ")"

    def positions(self, group) -> torch.Tensor:
        """Absolute positions of a group name, or ``group`` itself as a long tensor."""
        return group_positions(self.groups, group, self.prompt_length, self.length)

    def at(self, name: str, group) -> torch.Tensor:
        """``cache[name]`` at a token group's positions (language-model sites only)."""
        if not (name.startswith("lm.") or name == "logits"):
            raise ValueError(f"{name!r} has no position axis: index cache[{name!r}] yourself")
        x = self[name]
        return x[self.positions(group).to(x.device)]


def group_positions(groups, group, prompt_length: int | None = None,
                    length: int | None = None) -> torch.Tensor:
    """Absolute positions of ``"image"``, ``"query"``, ``"bos"``, ``"last"``, ``"answer"``,
    or explicit positions (returned as a long tensor)."""
    if not isinstance(group, str):
        return torch.as_tensor(group, dtype=torch.long).reshape(-1)
    if groups is None:
        raise ValueError(f"group {group!r} needs the prepared example's token groups")
    P = groups.prompt_length if prompt_length is None else prompt_length
    if group in ("image", "query", "bos"):
        return getattr(groups, group).long()
    if group == "last":
        return torch.tensor([P - 1])
    if group == "answer":
        if length is None or length <= P:
            raise ValueError("no answer positions: capture with answer=... to have them")
        return torch.arange(P, length)
    raise ValueError(f"unknown token group {group!r}; use image, query, bos, last, answer "
                     "or explicit positions")


def capture(vlm, prepared, names, device="cpu", answer=None) -> Cache:
    """One forward of ``prepared`` (followed by ``answer``'s tokens when given, teacher-forced),
    keeping the tensors of ``names`` (site names or glob patterns), detached.

    ``device="cpu"`` (default) copies them to the CPU; ``None`` leaves them where
    they were computed. Language-model sites lose the batch axis (one example).
    A site the forward never reached (e.g. the vision tower of a text-only
    call) raises ``SiteError``; a site reached twice keeps the last call.
    """
    chosen = resolve(vlm, names)
    inputs = prepared.inputs
    if answer is not None:
        ids = vlm.answer_ids(answer, prepared).to(vlm.device)
        inputs = vlm.adapter.extend_inputs(prepared.inputs, ids[None])
    got: dict[str, torch.Tensor] = {}

    def keep(site):
        def fn(x, call):
            x = x.detach()
            if site.has_positions:
                x = x[0]
            got[site.name] = x if device is None else x.to(device)
        return fn

    with intervene(vlm, prepared, {s.name: keep(s) for s in chosen}), torch.no_grad():
        vlm.model(**inputs)
    missing = [s.name for s in chosen if s.name not in got]
    if missing:
        raise SiteError(f"the forward pass never reached {', '.join(missing)}")
    return Cache({s.name: got[s.name] for s in chosen}, prepared.groups,
                 prepared.input_ids.shape[1], inputs["input_ids"].shape[1])


# ------------------------------------------------------------------- intervene
@dataclass
class Call:
    """What an intervention function is told about the call it edits.

    ``prefill``: the call holds the whole prompt (a prefill or a scoring pass),
    not one decoding step; None without a prepared example or for sites
    without positions. ``index``: how many calls of this site came before in
    the block.
    """

    site: str
    layer: int | None
    index: int
    prefill: bool | None
    prepared: object = None


def _arity(fn) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return 2
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
               for p in params)


@contextmanager
def intervene(vlm, prepared, edits: dict):
    """Inside the block, every forward passes each site's tensor through its function.

    ``edits``: site name (or glob pattern) -> ``fn(x)`` or ``fn(x, call)``
    (``call`` a ``Call``), returning a tensor of ``x``'s shape to put in its
    place, or None to leave it (a read). ``prepared`` (may be None) tells the
    functions the token groups and which calls hold the whole prompt. The
    hooks are removed on leaving the block, also after an exception.
    """
    plan = []
    for name, fn in edits.items():
        if not callable(fn):
            raise TypeError(f"the edit for {name!r} must be a function, not {type(fn).__name__}")
        plan += [(s, fn) for s in resolve(vlm, name)]
    prompt = prepared.input_ids.shape[1] if prepared is not None else None
    counts: dict[str, int] = {}

    def hook(site, fn):
        two = _arity(fn) >= 2

        def apply(args, kwargs, output=None):
            x = _read(site, args, kwargs, output)
            if x is None:
                return None
            prefill = (x.shape[1] >= prompt if prompt is not None and site.has_positions
                       and x.dim() >= 2 else None)
            call = Call(site.name, site.layer, counts.get(site.name, 0), prefill, prepared)
            counts[site.name] = call.index + 1
            new = fn(x, call) if two else fn(x)
            if new is None:
                return None
            if not torch.is_tensor(new) or new.shape != x.shape:
                raise ValueError(f"the edit at {site.name!r} returned "
                                 f"{tuple(new.shape) if torch.is_tensor(new) else type(new).__name__}"
                                 f"; it must return None or a tensor of shape {tuple(x.shape)}")
            return _written(site, args, kwargs, output, new)

        if site.pre:
            return lambda module, args, kwargs: apply(args, kwargs)
        return lambda module, args, kwargs, output: apply(args, kwargs, output)

    with ExitStack() as stack:
        for site, fn in plan:
            stack.enter_context(hooked(site.module, hook(site, fn), pre=site.pre))
        yield


# ---------------------------------------------------------- ready-made edits
def set_at(positions, value, prefill_only: bool = True):
    """An edit writing ``value`` (scalar, ``[d]`` or ``[len(positions), d]``) at ``positions``
    of every batch row; decoding steps (one new position) are left alone by default."""
    pos = torch.as_tensor(positions, dtype=torch.long).reshape(-1)

    def fn(x, call):
        if pos.numel() == 0 or (prefill_only and call.prefill is False):
            return None
        if int(pos.max()) >= x.shape[1]:
            raise IndexError(f"position {int(pos.max())} is beyond the {x.shape[1]} positions of this "
                             f"call at {call.site!r}; pass the prepared example to intervene so that "
                             "decoding steps are recognised and left alone")
        x = x.clone()
        x[:, pos.to(x.device)] = (value.to(x.device, x.dtype) if torch.is_tensor(value) else value)
        return x
    return fn


def zero_at(positions, prefill_only: bool = True):
    """An edit zeroing ``positions`` (see ``set_at``)."""
    return set_at(positions, 0.0, prefill_only)


__all__ = ["hooked", "capture_lm_inputs", "sites", "resolve", "capture", "intervene", "Cache",
           "Call", "Site", "SiteError", "set_at", "zero_at", "group_positions"]
