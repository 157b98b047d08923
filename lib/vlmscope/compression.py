"""Compressed context (Kaduri et al., their MME tables): answer from a pruned KV cache.

The model describes the image once ("describe the image ."). The attention it
paid to the image tokens while generating that description (head-averaged,
averaged over the rows that predict the description's tokens) ranks the image
tokens, separately in every decoder layer. The describe prompt's KV cache is
then cut down to

- ``"both"``  : the top-K image tokens of each layer + the query tokens (every
  non-image prompt token, BOS included);
- ``"query"`` : the query tokens only;
- ``"image"`` : the top-K image tokens only;

and NEW questions are answered from that cache alone. References: ``"full"``
(the whole describe-prompt cache, nothing pruned) and ``"direct"`` (the
question asked the ordinary way, in a fresh prompt with the image). K is a
share of the image tokens, ``ceil(k_frac * n_image)`` and at least 1 (5% of
576 -> 29 for LLaVA-1.5; the paper rounds to 28); because it is the same count
in every layer the pruned cache is rectangular and is gathered physically,
``[1, kv_heads, kept, head_dim]`` per layer.

Positions are the ORIGINAL ones: cached keys already carry their RoPE
rotation, and the new tokens are fed with explicit ``position_ids`` that
continue where they would have stood in the uncompressed sequence. The
description itself is never in the cache, in any variant. How the new
question follows the cached prompt is ``CompressionConfig.followup``:

- ``"replace"`` (default): the new question's own prompt suffix (the tokens
  after the image in ``vlm.prepare(image, question)``) appended right after
  the cached describe prompt, at positions ``P, P+1, ...``.
- ``"turn"``: the chat template's next turn. The conversation
  ``[user(image + describe), assistant(description), user(question)]`` is
  rendered with ``add_generation_prompt=True``; the describe prompt must be a
  token prefix of it (checked, ``ValueError`` if not); the assistant's
  description turn is dropped from the cache but its positions still count,
  so the new turn's tokens sit exactly where they stand in the conversation.

Why "replace": measured on the bundled organism (``organism-vit-m``, stages A
+ B, single-turn training) over 40 scenes (``World().scene(_mix(0, i))``,
i < 40), uncompressed ``"full"`` cache, ACC:

==========  =====  =====  =====  =====  ==============================
followup    count  color  shape  where  exists (ACC / ACC+, 80 qs)
==========  =====  =====  =====  =====  ==============================
replace     0.900  0.525  0.475  0.300  0.500 / 0.000
turn        0.550  0.425  0.250  0.075  0.500 / 0.000
direct      0.975  0.400  0.450  0.400  0.500 / 0.000
==========  =====  =====  =====  =====  ==============================

("direct": the question asked the ordinary way.) "replace" stays close to
the direct baseline; "turn" (a second turn after a dropped description, which
this organism never saw in training) loses most of it. On the "exists"
questions themselves neither format can help: this organism answers "yes" to
every one, directly or not, so ACC is 0.5 and ACC+ 0 for every variant and K
(``python -m vlmscope run compression --model organism --n 40 --seed 0``).
Its other question kinds (``CompressionConfig.questions``) are where the
compressed cache can be seen to matter. To repeat the table::

    for fu in FOLLOWUPS:
        cfg = CompressionConfig(followup=fu, variants=("full", "direct"), questions=KINDS)
        df = pd.concat(compress_scene(vlm, World().scene(_mix(0, i)), cfg).assign(image_id=i)
                       for i in range(40))
        print(fu, scores(df, by=("kind",)))

The slow, obviously-correct path is ``masked_logits``: run the FULL sequence
(describe prompt, description turn, new question) and cut, with
``attention.Knockout``, every edge from the new tokens to the entries the
pruned cache drops. ``tests/test_compression.py`` checks that both paths give
the same logits.

>>> ctx = describe(vlm, scene.image)                                     # doctest: +SKIP
>>> answer(vlm, ctx, "is there a red circle ?", "both", 0.05).text       # doctest: +SKIP
'yes'
>>> df = compress_scene(vlm, scene, CompressionConfig(k_frac=(0.05, 0.25)))  # doctest: +SKIP
>>> scores(df)                           # ACC, ACC+ and tokens per variant and K  # doctest: +SKIP

One module on purpose (about 540 lines, 75 of them this docstring): one finding's
pipeline, describe -> rank -> prune -> answer -> score, each step feeding the next and
tested against ``masked_logits`` in the same terms.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .attention import Edge, Knockout, attention
from .datasets.synthetic import DESCRIBE
from .maps import record_generation

VARIANTS = ("both", "query", "image", "full", "direct")
PRUNED = ("both", "query", "image")  # the variants that depend on K
FOLLOWUPS = ("replace", "turn")
KINDS = ("exists", "color", "shape", "where", "count")  # synthetic questions with short answers

# the paper's headline (LLaVA-1.5-7B on MME perception), for notebooks to print beside ours
PAPER = {"model": "LLaVA-1.5-7B", "benchmark": "MME perception", "k_frac": 0.05,
         "kept_image_tokens": 28, "image_tokens": 576, "relative_performance": 0.96,
         "token_reduction": 12.0}


# ------------------------------------------------------------------ configuration
@dataclass(frozen=True)
class CompressionConfig:
    """What to keep and how to ask.

    Parameters
    ----------
    k_frac : share of the image tokens kept per layer, in (0, 1]; one value or a
        tuple (one run per value; the image attention is computed once).
    variants : any of ``VARIANTS`` ("both", "query", "image", "full", "direct").
    followup : "replace" (the question's own prompt suffix) or "turn" (the chat
        template's next turn); see the module docstring for why "replace" is the default.
    questions : kinds of synthetic questions per scene (``compress_scene``): "exists"
        gives the yes/no pair (MME-style), every other kind of ``KINDS`` one question.
    describe : the prompt whose generation ranks the image tokens.
    describe_tokens : the description's token budget.
    max_new_tokens : the answer's token budget (greedy).
    question_suffix : appended to every new question (e.g. " Please answer yes or
        no." for LLaVA-1.5 on MME; the organism's vocabulary lacks those words).
    """

    k_frac: float | tuple[float, ...] = 0.05
    variants: tuple[str, ...] = VARIANTS
    followup: str = "replace"
    questions: tuple[str, ...] = ("exists",)
    describe: str = DESCRIBE
    describe_tokens: int = 48
    max_new_tokens: int = 8
    question_suffix: str = ""

    def __post_init__(self):
        if isinstance(self.k_frac, list):  # frozen and hashable: lists become tuples
            object.__setattr__(self, "k_frac", tuple(self.k_frac))
        object.__setattr__(self, "variants", check_variants(self.variants))
        kinds = (self.questions,) if isinstance(self.questions, str) else tuple(self.questions)
        if not kinds or any(k not in KINDS for k in kinds):
            raise ValueError(f"questions: unknown kind in {kinds}; known: {', '.join(KINDS)}")
        object.__setattr__(self, "questions", kinds)
        if not self.k_fracs:  # also validates every k_frac
            raise ValueError("k_frac: give at least one value in (0, 1]")
        if not self.variants:
            raise ValueError(f"no variants given; known: {', '.join(VARIANTS)}")
        if self.followup not in FOLLOWUPS:
            raise ValueError(f"unknown followup {self.followup!r}; known: {', '.join(FOLLOWUPS)}")
        if self.max_new_tokens < 1 or self.describe_tokens < 1:
            raise ValueError("max_new_tokens and describe_tokens must be >= 1")

    @property
    def k_fracs(self) -> tuple[float, ...]:
        k = self.k_frac
        return tuple(_check_k_frac(v) for v in (k if isinstance(k, (tuple, list)) else (k,)))


def _check_k_frac(k_frac) -> float:
    try:
        k = float(k_frac)
    except (TypeError, ValueError):
        raise ValueError(f"k_frac must be a number in (0, 1], not {k_frac!r}") from None
    if not 0.0 < k <= 1.0 or math.isnan(k):
        raise ValueError(f"k_frac must be in (0, 1] (a share of the image tokens), got {k_frac!r}")
    return k


def check_variants(variants) -> tuple[str, ...]:
    """Return ``variants`` as a tuple or raise a ValueError listing the known ones."""
    variants = (variants,) if isinstance(variants, str) else tuple(variants)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    return variants


def n_keep(n_image: int, k_frac: float) -> int:
    """Image tokens kept per layer: ``ceil(k_frac * n_image)``, at least 1."""
    k = _check_k_frac(k_frac)
    return max(1, math.ceil(k * n_image - 1e-9))  # 1e-9: 0.1 * 640 = 64.00000000000001 is 64


# ------------------------------------------------------------------ the describe run
@dataclass
class Context:
    """One image, described once: what every compressed answer starts from.

    Attributes
    ----------
    prepared : the describe prompt (``Prepared``), ``P`` tokens.
    generation : the greedy description.
    image_attention : ``[layers, n_image]`` head-averaged attention on each image
        token, averaged over the rows that predict the description's tokens
        (the last prompt row for the first token; one row if the description is empty).
    cache : the describe prompt's ``DynamicCache``, ``[1, kv_heads, P, head_dim]`` per
        layer. Never handed to the model: every answer gathers its own copy.
    """

    prepared: object
    generation: object
    image_attention: torch.Tensor
    cache: object

    @property
    def prompt_length(self) -> int:
        return int(self.prepared.input_ids.shape[1])

    @property
    def n_layers(self) -> int:
        return int(self.image_attention.shape[0])


@torch.no_grad()
def describe(vlm, image, cfg: CompressionConfig = CompressionConfig()) -> Context:
    """Describe ``image`` on the recording backend, then prefill the prompt's cache."""
    rec = record_generation(vlm, image, cfg.describe, cfg.describe_tokens, maps="mean")
    maps = rec.recorder.image_maps()  # [L, steps, n_image]
    steps = max(1, rec.generation.token_ids.numel())
    attn = maps[:, :steps].float().mean(1)  # [L, n_image]
    out = vlm.model(**rec.prepared.inputs, use_cache=True)
    return Context(rec.prepared, rec.generation, attn, out[_cache_name(vlm.model)])


def top_image_tokens(image_attention: torch.Tensor, k: int) -> torch.Tensor:
    """``[layers, k]`` indices (into the image tokens) of each layer's top-``k``, ascending."""
    if not 1 <= k <= image_attention.shape[1]:
        raise ValueError(f"k={k} out of range 1..{image_attention.shape[1]}")
    return image_attention.topk(k, dim=1).indices.sort(dim=1).values


def kept_positions(ctx: Context, variant: str, k_frac: float = 1.0) -> torch.Tensor:
    """``[layers, kept]`` absolute prompt positions the cache keeps, ascending, per layer."""
    check_variants(variant)
    g = ctx.prepared.groups
    L, P = ctx.n_layers, ctx.prompt_length
    if variant in ("full", "direct"):
        return torch.arange(P).expand(L, P)
    query = g.query.expand(L, -1)  # [L, n_query]
    if variant == "query":
        return query
    img = g.image[top_image_tokens(ctx.image_attention, n_keep(len(g.image), k_frac))]  # [L, k]
    keep = img if variant == "image" else torch.cat([query, img], dim=1)
    return keep.sort(dim=1).values


def prune_cache(cache, positions: torch.Tensor):
    """A new ``DynamicCache`` holding, in layer ``l``, only the entries at ``positions[l]``.

    ``cache.layers[l].keys`` is ``[B, kv_heads, T, head_dim]``; the result's is
    ``[B, kv_heads, positions.shape[1], head_dim]``. The input cache is not changed.
    """
    from transformers import DynamicCache

    out = DynamicCache()
    for l, layer in enumerate(cache.layers):
        idx = positions[l].to(layer.keys.device)
        out.update(layer.keys.index_select(2, idx), layer.values.index_select(2, idx), l)
    return out


# ------------------------------------------------------------------ the new question
@dataclass(frozen=True)
class Followup:
    """The new question's tokens after the cached describe prompt.

    ``ids`` and ``positions`` are ``[n]``; ``skipped`` are the positions between
    the prompt and the question (the description turn: dropped, still counted);
    ``sequence`` is the whole uncompressed token sequence ``[positions[-1] + 1]``
    (prompt, skipped turn, question), for the masked reference.
    """

    ids: torch.Tensor
    positions: torch.Tensor
    skipped: torch.Tensor
    sequence: torch.Tensor


def _image_and_text_ids(vlm, image, text: str) -> torch.Tensor:
    inputs = vlm.processor(text=text, images=image, return_tensors="pt",
                           **vlm._special_tokens_kwargs(text))
    return inputs["input_ids"][0]


def followup_tokens(vlm, ctx: Context, question: str, followup: str = "replace") -> Followup:
    """The new question's ids and original positions under ``followup`` ("turn" / "replace")."""
    if followup not in FOLLOWUPS:
        raise ValueError(f"unknown followup {followup!r}; known: {', '.join(FOLLOWUPS)}")
    if not isinstance(question, str) or not question.strip():
        raise ValueError("the question is empty: pass a non-empty string")
    question = question.strip()
    P = ctx.prompt_length
    if followup == "replace":
        q = vlm.prepare(ctx.prepared.image, question)
        ids = q.input_ids[0, int(q.groups.image.max()) + 1:].cpu()
        seq = torch.cat([ctx.prepared.input_ids[0].cpu(), ids])
        return Followup(ids, torch.arange(P, P + len(ids)), torch.arange(P, P), seq)
    if vlm.adapter.prompt_text(question) is not None:
        raise ValueError(f"followup='turn' needs a chat template; {vlm.adapter.family} builds its "
                         "prompt without one: use followup='replace'")
    user = {"role": "user", "content": [{"type": "image"},
                                        {"type": "text", "text": ctx.prepared.question}]}
    said = {"role": "assistant", "content": [{"type": "text", "text": ctx.generation.text}]}
    ask = {"role": "user", "content": [{"type": "text", "text": question}]}
    tmpl = vlm.processor.apply_chat_template
    turn1 = _image_and_text_ids(vlm, ctx.prepared.image, tmpl([user, said]))
    conv = _image_and_text_ids(vlm, ctx.prepared.image,
                               tmpl([user, said, ask], add_generation_prompt=True))
    prompt = ctx.prepared.input_ids[0].cpu()
    if len(conv) < len(turn1) or not torch.equal(conv[:P], prompt) \
            or not torch.equal(conv[:len(turn1)], turn1):
        raise ValueError(
            "followup='turn': the describe prompt's tokens are not a prefix of the multi-turn "
            "conversation's tokens under this chat template, so the cached prompt cannot be "
            "continued by the next turn; use followup='replace'")
    T1 = len(turn1)
    return Followup(conv[T1:], torch.arange(T1, len(conv)), torch.arange(P, T1), conv)


# ------------------------------------------------------------------ answering
def followup_works(vlm, ctx: Context, followup: str) -> str | None:
    """None when ``followup`` can continue ``ctx``'s cached prompt, else why not.

    "turn" needs a chat template whose multi-turn conversation starts with the
    describe prompt's tokens (LLaVA-1.5's "USER: ... ASSISTANT:" does not).
    """
    try:
        followup_tokens(vlm, ctx, "is there an object ?", followup)
    except ValueError as e:
        return str(e)
    return None


@dataclass
class Answer:
    """A greedy answer from a (pruned) cache.

    ``logits`` are the ``[n_followup + fed, vocab]`` float32 logits of every token
    fed (the question's rows first; empty for "direct"); ``kept_tokens`` the cache
    length, ``full_tokens`` the uncompressed prompt length, ``k`` the image tokens
    kept per layer.
    """

    text: str
    token_ids: torch.Tensor
    logits: torch.Tensor
    kept_tokens: int
    full_tokens: int
    k: int  # image tokens kept per layer


def _cache_name(model) -> str:
    """The KV cache's argument and output name: ``cache`` from transformers 5.25, before it
    ``past_key_values`` (5.25 still takes the old name, with a deprecation notice)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _stop_ids(vlm) -> set[int]:
    eos = vlm.model.generation_config.eos_token_id
    stop = set(eos if isinstance(eos, (list, tuple)) else [eos])
    stop.add(vlm.tokenizer.eos_token_id)
    stop.discard(None)
    return stop


@torch.no_grad()
def greedy_from_cache(vlm, cache, ids: torch.Tensor, positions: torch.Tensor,
                      max_new_tokens: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy-decode after ``cache`` from ``ids [n]`` at ``positions [n]``; EOS excluded.

    The mask is all ones over the cache plus causal among the new tokens, so the
    model attends to exactly the cached entries; RoPE follows ``positions``, and
    each generated token fed back takes the next position. Returns (new token
    ids ``[m]``, float32 logits ``[n + fed, vocab]``: one row per token fed, the
    question's ``n`` first, then each generated token fed back).
    """
    dev = vlm.device
    inp, pos = ids[None].to(dev), positions[None].to(dev)  # [1, n]
    stop, new, rows = _stop_ids(vlm), [], []
    cache_arg = _cache_name(vlm.model)
    for _ in range(max_new_tokens):
        mask = torch.ones(1, cache.get_seq_length() + inp.shape[1], dtype=torch.long, device=dev)
        out = vlm.model(input_ids=inp, position_ids=pos, attention_mask=mask,
                        **{cache_arg: cache}, use_cache=True)
        rows.append(out.logits[0].float().cpu())  # [q, vocab]
        nxt = int(out.logits[0, -1].argmax())
        if nxt in stop:
            break
        new.append(nxt)
        inp = torch.tensor([[nxt]], device=dev)
        pos = pos[:, -1:] + 1
    return torch.tensor(new, dtype=torch.long), torch.cat(rows)


def answer(vlm, ctx: Context, question: str, variant: str = "both", k_frac: float = 0.05,
           cfg: CompressionConfig = CompressionConfig()) -> Answer:
    """Answer ``question`` from the describe prompt's cache under ``variant``."""
    (variant,) = check_variants(variant)
    text_q = question.strip() + cfg.question_suffix
    n_image = len(ctx.prepared.groups.image)
    if variant == "direct":
        p = vlm.prepare(ctx.prepared.image, text_q)
        g = vlm.generate(p, max_new_tokens=cfg.max_new_tokens)
        n = int(p.input_ids.shape[1])
        return Answer(g.text, g.token_ids, torch.empty(0), n, n, n_image)
    keep = kept_positions(ctx, variant, k_frac)  # [L, kept]
    fu = followup_tokens(vlm, ctx, text_q, cfg.followup)
    ids, logits = greedy_from_cache(vlm, prune_cache(ctx.cache, keep), fu.ids, fu.positions,
                                    cfg.max_new_tokens)
    text = vlm.tokenizer.decode(ids, skip_special_tokens=True).strip()
    k = {"query": 0, "full": n_image}.get(variant, n_keep(n_image, k_frac))
    return Answer(text, ids, logits, int(keep.shape[1]), ctx.prompt_length, k)


@torch.no_grad()
def masked_logits(vlm, ctx: Context, question: str, variant: str, k_frac: float = 0.05,
                  followup: str = "replace") -> torch.Tensor:
    """Reference: the question's logits ``[n, vocab]`` from the FULL sequence with cut edges.

    Runs describe prompt + (description turn) + question in one forward pass on
    the knockout backend; in every layer the question's rows may not attend to
    the prompt entries that ``variant`` drops there, nor to the description turn.
    Equal, within float tolerance, to ``answer(...).logits``.
    """
    keep = kept_positions(ctx, variant, k_frac)  # [L, kept]
    fu = followup_tokens(vlm, ctx, question, followup)
    P, L = ctx.prompt_length, ctx.n_layers
    rows = tuple(fu.positions.tolist())
    edges = []
    for l in range(L):
        dropped = sorted(set(range(P)) - set(keep[l].tolist())) + fu.skipped.tolist()
        if dropped:
            edges.append(Edge(rows, tuple(dropped), (l,)))
    inputs = dict(ctx.prepared.inputs)
    inputs["input_ids"] = fu.sequence[None].to(vlm.device)
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    ko = Knockout(ctx.prepared.groups, [tuple(edges)], L)
    with attention(vlm, knockout=ko):
        logits = vlm.model(**inputs).logits[0]  # [T, vocab]
    return logits[fu.positions.to(logits.device)].float().cpu()


# ------------------------------------------------------------------ questions and scores
def exists_pair(scene, seed: int):
    """Two "exists" questions about ``scene``: one whose answer is yes, one no.

    The yes question names a present object; the no question a hard negative
    (a present shape in another present colour) where the scene allows one.
    """
    from .datasets.synthetic import Question, _hard_negative, question

    rng = np.random.default_rng([seed, 11])
    o = scene.objects[int(rng.integers(len(scene.objects)))]
    shape, color = _hard_negative(scene, rng)
    return (Question("exists", question("exists", o), "yes", o),
            Question("exists", question("exists", color=color, shape=shape), "no"))


def scene_questions(scene, kinds=("exists",)) -> list:
    """Questions about ``scene``: the yes/no pair for "exists", one question per other kind."""
    from .datasets.synthetic import World

    out = list(exists_pair(scene, scene.seed)) if "exists" in kinds else []
    others = tuple(k for k in kinds if k != "exists")
    return out + (World().questions(scene, seed=scene.seed, kinds=others) if others else [])


def is_correct(text: str, truth: str) -> bool:
    """Whether the answer starts with the truth's words ("Yes, there is..." counts as yes)."""
    words = re.findall(r"[a-z]+", text.lower())
    want = re.findall(r"[a-z]+", truth.lower())
    return bool(want) and words[:len(want)] == want


def compress_image(vlm, image, questions, cfg: CompressionConfig = CompressionConfig(),
                   ctx: Context | None = None) -> pd.DataFrame:
    """One row per (variant, K, question).

    ``questions``: synthetic ``Question`` objects or (text, truth) pairs. Pass
    ``ctx`` (from ``describe``) to reuse one description run across calls.
    Columns: variant, k_frac (1.0 for "full" and "direct"), k (image tokens kept
    per layer: 0 for "query", ``n_image`` for the references), question_id, kind,
    question, truth, answer, correct, kept_tokens, full_tokens, compression
    (full / kept), followup, description.
    """
    ctx = ctx if ctx is not None else describe(vlm, image, cfg)
    questions = [(q.text, q.answer, q.kind) if hasattr(q, "text") else (q[0], q[1], "")
                 for q in questions]
    runs = [(v, k) for v in cfg.variants if v in PRUNED for k in cfg.k_fracs]
    runs += [(v, 1.0) for v in cfg.variants if v not in PRUNED]
    rows, done = [], {}
    for v, k in runs:
        for qi, (text, truth, kind) in enumerate(questions):
            key = (v, None if v == "query" else k, qi)  # "query" keeps no image token: no K
            if key not in done:
                done[key] = answer(vlm, ctx, text, v, k, cfg)
            a = done[key]
            rows.append({"variant": v, "k_frac": k, "k": a.k, "question_id": qi, "kind": kind,
                         "question": text,
                         "truth": truth, "answer": a.text, "correct": is_correct(a.text, truth),
                         "kept_tokens": a.kept_tokens, "full_tokens": a.full_tokens,
                         "compression": a.full_tokens / a.kept_tokens, "followup": cfg.followup,
                         "description": ctx.generation.text})
    return pd.DataFrame(rows)


def compress_scene(vlm, scene, cfg: CompressionConfig = CompressionConfig(),
                   ctx: Context | None = None) -> pd.DataFrame:
    """``compress_image`` on a synthetic scene with the questions of ``cfg.questions``."""
    return compress_image(vlm, scene.image, scene_questions(scene, cfg.questions), cfg, ctx)


def scores(df: pd.DataFrame, image_col: str = "image_id", by: tuple[str, ...] = ()) -> pd.DataFrame:
    """ACC, ACC+ and token counts per (``*by``, variant, k_frac).

    ACC is the share of questions answered right; ACC+ the share of images
    whose questions (within the group) were ALL answered right: for the
    "exists" pair, MME's ACC+. ``relative`` is ACC over the "full" variant's
    ACC in the same ``by`` group (NaN without a "full" run or when it is 0).
    """
    if df.empty:
        return pd.DataFrame()
    by = list(by)
    keys = by + ["variant", "k_frac"]
    per_image = df.groupby(keys + [image_col]).correct.all().groupby(keys).mean()
    out = df.groupby(keys).agg(acc=("correct", "mean"), n_questions=("correct", "size"),
                               n_images=(image_col, "nunique"), k=("k", "mean"),
                               kept_tokens=("kept_tokens", "mean"),
                               full_tokens=("full_tokens", "mean"))
    out["acc_plus"] = per_image
    out["compression"] = out.full_tokens / out.kept_tokens
    out = out.reset_index()
    full = out[out.variant == "full"][by + ["acc"]].rename(columns={"acc": "_full"})
    out = out.merge(full, on=by, how="left") if by else out.assign(
        _full=full._full.iloc[0] if len(full) else float("nan"))
    out["relative"] = out.acc / out._full.where(out._full > 0)
    order = {v: i for i, v in enumerate(VARIANTS)}
    out = out.sort_values(keys, key=lambda c: c.map(order) if c.name == "variant" else c)
    cols = ["variant", "k_frac", "k", "acc", "acc_plus", "relative", "kept_tokens", "full_tokens",
            "compression", "n_questions", "n_images"]
    return out[by + cols].reset_index(drop=True)


__all__ = ["CompressionConfig", "Context", "Answer", "Followup", "VARIANTS", "FOLLOWUPS", "PAPER",
           "describe", "top_image_tokens", "kept_positions", "prune_cache", "followup_tokens",
           "greedy_from_cache", "answer", "masked_logits", "exists_pair", "scene_questions",
           "is_correct", "KINDS",
           "compress_image", "compress_scene", "scores", "n_keep", "check_variants"]
