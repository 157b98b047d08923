"""Where object information lives: visual-token ablation (Neo et al., ICLR 2025, Table 1).

Ablation edits the language model's INPUT: the post-projector embeddings of
chosen image tokens are replaced by one mean visual-token vector (or zeros)
during prefill only; positions do not change. Which tokens:

- ``object``: the tokens whose boxes overlap the object's mask (any overlap),
  plus 0, 1 or 2 rings of 8-neighbour buffer (``TokenGeometry.tokens_for_mask``);
- baselines at the same count: ``random`` (seeded), ``high-norm`` (the tokens
  with the largest embedding norm; how many exceed mean + 2 std is reported,
  with torch's unbiased std as released), ``ig`` (integrated-gradients top-n,
  attributed to the ANSWER token's log-probability, not to BOS as in the
  reference code; absolute values, 50 points as released, or ours: signed, 8).

Rules as released by clemneo/llava-interp unless an option says otherwise
(docs/fidelity.md): the noise filter replaces every patch cell overlapping the
object (``noise_rule="patches"``; ours: the mask's pixels only); the
probability drop is on the top token's probability (``p_top_before`` /
``p_top_after``; ours, the answer's first token: ``p_before`` / ``p_after``).

``mean_vector`` computes the mean visual-token vector over a reference image
set (all positions) and caches it with its provenance; a damaged or
mismatched cache is recomputed, never trusted.

>>> mv = mean_vector(vlm, images, cache="runs/mean-organism.safetensors")   # doctest: +SKIP
>>> with ablated(vlm, prepared, tokens, vector=mv.vector):                  # doctest: +SKIP
...     g = vlm.generate(prepared)
"""

from __future__ import annotations

import hashlib
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .datasets.synthetic import DESCRIBE
from .hooks import set_at
from .models import out_of_memory
from .words import answer_ids

RULES = ("object", "random", "high-norm", "ig")


# ------------------------------------------------------------------ the mean
@dataclass(frozen=True)
class MeanVector:
    """The mean visual-token vector and where it came from."""

    vector: torch.Tensor  # [d]
    model: str
    n_images: int
    n_tokens: int
    images_digest: str  # sha256 over the reference images' pixels (first 16 hex)

    def provenance(self) -> dict:
        return {"model": self.model, "n_images": self.n_images, "n_tokens": self.n_tokens,
                "images_digest": self.images_digest}


def _digest(images) -> str:
    h = hashlib.sha256()
    for im in images:
        arr = np.asarray(im)
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def mean_vector(vlm, images, question: str = DESCRIBE, cache=None) -> MeanVector:
    """Mean of the LM-input embeddings at image positions over ``images`` (all positions).

    ``cache``: a ``.safetensors`` path. Reused when its provenance (model,
    images) matches; recomputed (with a warning) when it is damaged or made
    from other images or another model.
    """
    from .integrity import DamagedFileError, load_checked, save_checked

    images = list(images)
    if not images:
        raise ValueError("mean_vector needs at least one reference image")
    digest = _digest(images)
    path = Path(cache) if cache else None
    if path is not None and path.exists():
        try:  # verified in full: a cache whose data was overwritten is recomputed
            tensors, meta = load_checked(path)
            vec = tensors["vector"]
            if meta.get("model") == vlm.name and meta.get("images_digest") == digest:
                return MeanVector(vec.to(vlm.device, vlm.dtype), vlm.name, int(meta["n_images"]),
                                  int(meta["n_tokens"]), digest)
            warnings.warn(f"{path} was computed for other images or another model; recomputing",
                          stacklevel=2)
        except (DamagedFileError, KeyError, ValueError) as e:  # any damage means: recompute
            warnings.warn(f"{path} is damaged ({e}); recomputing", stacklevel=2)
    total, count = None, 0
    for im in images:
        p = vlm.prepare(im, question)
        emb = vlm.capture(p, "lm.input", device=None).at("lm.input", "image").double()
        total = emb.sum(0) if total is None else total + emb.sum(0)
        count += emb.shape[0]
    vec = (total / count).to(vlm.dtype)
    mv = MeanVector(vec, vlm.name, len(images), count, digest)
    if path is not None:  # through a temporary unique to this writer, with a content digest
        save_checked(path, {"vector": vec}, mv.provenance())
    return mv


# -------------------------------------------------------------- the ablation
@contextmanager
def ablated(vlm, prepared, tokens, vector: torch.Tensor | None = None, mode: str = "mean"):
    """Inside the block, prefill replaces the embeddings of image ``tokens`` (indices into the
    image tokens) with ``vector`` (``mode="mean"``) or zeros (``mode="zeros"``).

    Decoding steps (one new token) are left alone, as are all positions. An
    empty ``tokens`` changes nothing at all.
    """
    positions = _image_positions(prepared, tokens)
    value = _ablation_value(mode, vector)  # written at the LM input, prefill only
    with vlm.intervene(prepared, {"lm.input": set_at(positions, value)}):
        yield


def _ablation_value(mode: str, vector: torch.Tensor | None):
    """What ablated tokens become: ``vector`` (``mode="mean"``) or 0.0 (``"zeros"``), checked."""
    if mode not in ("mean", "zeros"):
        raise ValueError(f"mode must be 'mean' or 'zeros', not {mode!r}")
    if mode == "mean" and vector is None:
        raise ValueError("mode='mean' needs the mean vector (see mean_vector)")
    return 0.0 if mode == "zeros" else vector


def _image_positions(prepared, tokens) -> torch.Tensor:
    """Sequence positions of image ``tokens`` (indices into the image tokens), checked."""
    idx = torch.as_tensor(np.asarray(tokens, dtype=np.int64).reshape(-1))
    n_image = prepared.groups.image.numel()
    if idx.numel() and (idx.min() < 0 or idx.max() >= n_image):
        raise IndexError(f"token indices must lie in 0..{n_image - 1}")
    return prepared.groups.image[idx]


def ablated_answers(vlm, prepared, token_sets, first, vector: torch.Tensor | None = None,
                    mode: str = "mean", max_new_tokens: int = 48, batch: int = 16) -> list[dict]:
    """For each of ``token_sets``: what ``ablated`` with those tokens gives, as a dict with
    ``answer`` (the greedy ``Generation``), ``p_first`` (the probability of token ``first``,
    a 1-element id tensor or empty for NaN, at the first answer position) and ``p_top`` (the
    largest next-token probability there).

    The sets run as batch rows of one generation (the prompt repeated, each row with its own
    tokens replaced during prefill), ``batch`` rows at a time, halved when the accelerator
    runs out of memory; the first step's logits give both probabilities, so they cost no
    forward of their own. Where the processor cannot repeat the prompt (``repeated_inputs``
    is None) the sets run one at a time, as ``ablated``, ``generate`` and ``score`` would.
    """
    if int(batch) < 1:
        raise ValueError(f"batch must be at least 1, not {batch}")
    value = _ablation_value(mode, vector)
    positions = [_image_positions(prepared, t) for t in token_sets]
    first = torch.as_tensor(first, dtype=torch.long).reshape(-1)[:1]
    out, pos, size = [], 0, int(batch)
    while pos < len(positions):
        part = positions[pos:pos + size]
        inputs = vlm.repeated_inputs(prepared, len(part)) if len(part) > 1 else prepared.inputs
        try:
            if inputs is None:  # one at a time
                out += [_one_ablated(vlm, prepared, p, value, first, max_new_tokens) for p in part]
            else:
                out += _rows_ablated(vlm, prepared, inputs, part, value, first, max_new_tokens)
        except Exception as e:  # noqa: BLE001 - only out-of-memory is retried
            if not out_of_memory(e) or size == 1:
                raise
            size = max(1, size // 2)
            warnings.warn(f"out of memory with {len(part)} ablations in a batch: continuing with "
                          f"{size}", RuntimeWarning, stacklevel=2)
            continue
        pos += len(part)
    return out


def _probabilities(logits: torch.Tensor, first: torch.Tensor) -> tuple[list, list]:
    """Per row of ``logits`` ``[rows, vocab]``: p(first) (NaN without one) and the top p."""
    probs = torch.softmax(logits.float(), -1)
    top = probs.max(-1).values.tolist()
    p_first = (probs[:, int(first[0])].tolist() if first.numel()
               else [float("nan")] * probs.shape[0])
    return p_first, top


def _rows_ablated(vlm, prepared, inputs, positions, value, first, max_new_tokens) -> list[dict]:
    def edit(h, call):
        if call.prefill is False:
            return None
        h = h.clone()
        for r, p in enumerate(positions):
            if p.numel():
                h[r, p.to(h.device)] = (value.to(h.device, h.dtype) if torch.is_tensor(value)
                                        else value)
        return h

    with vlm.intervene(prepared, {"lm.input": edit}):
        gens, logits = vlm.generate_rows(prepared, inputs, max_new_tokens=max_new_tokens)
    p_first, top = _probabilities(logits, first)
    return [{"answer": g, "p_first": pf, "p_top": pt} for g, pf, pt in zip(gens, p_first, top)]


def _one_ablated(vlm, prepared, positions, value, first, max_new_tokens) -> dict:
    with vlm.intervene(prepared, {"lm.input": set_at(positions, value)}):
        gen = vlm.generate(prepared, max_new_tokens=max_new_tokens)
        with torch.no_grad():
            logits = vlm.model(**prepared.inputs, logits_to_keep=1).logits[:, -1]
    p_first, top = _probabilities(logits, first)
    return {"answer": gen, "p_first": p_first[0], "p_top": top[0]}


# ------------------------------------------------------------- token choices
def image_embeddings(vlm, prepared) -> torch.Tensor:
    """``[n_image, d]`` the image tokens' LM-input embeddings (float32, detached)."""
    return vlm.capture(prepared, "lm.input", device=None).at("lm.input", "image").float()


def image_embedding_norms(vlm, prepared, embeddings: torch.Tensor | None = None) -> np.ndarray:
    """``[n_image]`` L2 norm of each image token's LM-input embedding."""
    emb = image_embeddings(vlm, prepared) if embeddings is None else embeddings
    return emb.norm(dim=-1).cpu().numpy()


IG_RULES = {"released": {"steps": 50, "absolute": True, "points": "linspace"},
            "ours": {"steps": 8, "absolute": False, "points": "right"}}


def _ig_chunk(vlm, prepared, inputs, alphas, x, x0, img, ids, n) -> torch.Tensor:
    """The summed gradient of the answer's log-probability at the path points ``alphas``, one
    batch row each (rows of ``inputs`` past ``len(alphas)`` keep the image and are not read)."""
    a = torch.tensor(alphas, dtype=x.dtype, device=x.device)[:, None, None]
    point = (x0 + a * (x - x0)).requires_grad_(True)  # [rows, n_image, d]
    k = len(alphas)

    def edit(h, call):
        if call.prefill is False:
            return None
        h = h.clone()
        h[:k, img.to(h.device)] = point.to(h.device, h.dtype)
        return h

    with vlm.intervene(prepared, {"lm.input": edit}):
        logits = vlm.model(**inputs).logits[:k, n - 1]
    torch.log_softmax(logits.float(), -1)[:, ids[0]].sum().backward()
    return point.grad.sum(0)


def ig_attribution(vlm, prepared, answer, steps: int | None = None,
                   baseline: torch.Tensor | None = None, embeddings: torch.Tensor | None = None,
                   rule: str = "released", batch: int = 10) -> np.ndarray:
    """``[n_image]`` integrated gradients of the answer's first token log-probability per image token.

    Path from ``baseline`` (default zeros; ``ablate_scene`` passes the mean
    visual-token vector) to the real embeddings. ``rule="released"`` (the
    reference code's ``integrated_gradients`` / ``get_high_gradient_indices``):
    ``steps`` = 50 points ``linspace(0, 1, steps)`` (both ends included),
    attribution = sum over the embedding dimension of ``|(x - x0) * mean
    gradient|``. ``rule="ours"``: 8 right Riemann points ``k / steps`` and the
    signed sum (which adds up to f(x) - f(x0), up to the Riemann error).
    ``steps`` overrides the rule's count. Both attribute to the ANSWER token
    (the reference code's target, ``encode("Yes")[0]``, is BOS). Zeros are a
    poor path start for pre-norm decoders: RMSNorm maps any small non-zero
    vector to unit scale but zero to zero, so the path jumps at its start.
    ``batch``: path points per forward (batch rows are independent, so the
    gradients are those of one point at a time; 1, or a processor whose
    batch differs from the prepared prompt, runs them one by one). Out of
    accelerator memory, the batch halves (with a warning) and the chunk reruns.
    """
    if rule not in IG_RULES:
        raise ValueError(f"unknown IG rule {rule!r}; known: {', '.join(IG_RULES)}")
    spec = IG_RULES[rule]
    steps = spec["steps"] if steps is None else int(steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, not {steps}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, not {batch}")
    alphas = (torch.linspace(0, 1, steps).tolist() if spec["points"] == "linspace"
              else [k / steps for k in range(1, steps + 1)])
    ids = vlm.answer_ids(answer, prepared)[:1].to(vlm.device)
    x = image_embeddings(vlm, prepared) if embeddings is None else embeddings.float()
    img = prepared.groups.image.to(x.device)
    x0 = torch.zeros_like(x) if baseline is None else baseline.float().expand_as(x)
    grads = torch.zeros_like(x)
    n = prepared.input_ids.shape[1]
    size, start = min(batch, len(alphas)), 0
    while start < len(alphas):
        base = vlm.repeated_inputs(prepared, size) if size > 1 else None
        if base is None:
            size, base = 1, prepared.inputs
        inputs = vlm.adapter.extend_inputs(base, ids[None].expand(size, -1))
        try:
            while start < len(alphas):
                grads += _ig_chunk(vlm, prepared, inputs, alphas[start:start + size], x, x0, img,
                                   ids, n)
                start += size
        except (RuntimeError, MemoryError) as error:
            if size == 1 or not out_of_memory(error):
                raise
            warnings.warn(f"out of memory with {size} IG path points in a batch: continuing with "
                          f"{size // 2} (the attribution does not change)", RuntimeWarning,
                          stacklevel=2)
            size //= 2
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    per_dim = (x - x0) * grads / len(alphas)
    return (per_dim.abs() if spec["absolute"] else per_dim).sum(-1).detach().cpu().numpy()


def high_norm_count(norms, ddof: int = 1) -> int:
    """How many tokens have a norm above mean + 2 std (``ddof=1``: torch's unbiased std, as
    released in ``get_register_indices``; ``ddof=0``: the population std)."""
    norms = np.asarray(norms, dtype=np.float64)
    return int((norms > norms.mean() + 2 * norms.std(ddof=ddof)).sum())


def choose_tokens(rule: str, n: int, *, object_tokens=None, norms=None, attribution=None,
                  n_image: int, seed=0) -> np.ndarray:
    """``n`` image-token indices by ``rule`` (``RULES``), sorted."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; known: {', '.join(RULES)}")
    if not 0 <= n <= n_image:
        raise ValueError(f"cannot choose {n} of {n_image} image tokens")
    if rule == "object":
        return np.sort(np.asarray(object_tokens, dtype=np.int64))
    if rule == "random":
        return np.sort(np.random.default_rng(seed).choice(n_image, n, replace=False))
    score = np.asarray(norms if rule == "high-norm" else attribution, dtype=np.float64)
    if score.shape != (n_image,):
        raise ValueError(f"rule {rule!r} needs one score per image token ({n_image})")
    return np.sort(np.argsort(-score, kind="stable")[:n])


# --------------------------------------------------------------- the tasks
TASKS = ("generative", "polling", "vqa")


def organism_tasks(obj) -> dict:
    """The three tasks for one organism object: (question, is_correct(answer)) by task.

    generative: "describe the image ." names the object (its colour and shape
    together, parsed as whole words, never substrings); polling: "is there a
    <colour> <shape> ?" -> yes; vqa (one token): "what color is the <shape> ?"
    -> its colour.
    """
    from .datasets.synthetic import parse_description, question

    def names(text):
        return any((c, s) == (obj.color, obj.shape) for c, s, *_ in parse_description(text))

    return {"generative": (question("describe"), names),
            "polling": (question("exists", obj), lambda t: t.strip() == "yes"),
            "vqa": (question("color", obj), lambda t: t.strip() == obj.color)}


def coco_tasks(category: str) -> dict:
    """Generative and polling tasks for a COCO object (``datasets.coco.CocoItem.category``).

    generative: "Describe this image." names the object (whole words, plurals
    and synonyms via ``judge.Vocabulary``, never substrings: "cat" is not in
    "location"); polling: "Is there a <name> in this image?" answered yes (the
    first word, so "eyes" is not "yes"). The paper's one-token VQA needs an
    assistant prefix ("It is a") that chat templates differ on; not provided.
    """
    from .judge import Vocabulary, words

    vocab = Vocabulary()

    def names(text):
        return vocab.mentions(text, category)

    def yes(text):
        w = words(text)
        return bool(w) and w[0] == "yes"

    return {"generative": ("Describe this image.", names),
            "polling": (f"Is there a {category} in this image?", yes)}


def _top_probability(vlm, prepared) -> float:
    """The largest next-token probability at the last prompt position (whatever token it is)."""
    with torch.no_grad():
        logits = vlm.model(**prepared.inputs, logits_to_keep=1).logits[0, -1].float()
    return float(torch.softmax(logits, -1).max())


def ablate_object(vlm, image, mask, tasks: dict, mean: MeanVector, rings=(0, 1, 2), rules=RULES,
                  mode: str = "mean", max_new_tokens: int = 48, seed=0, ig_rule: str = "released",
                  high_norm_ddof: int = 1):
    """Every (rings, rule, task) for one object of one image: correct before and after ablation.

    ``tasks``: name -> (question, is_correct(answer_text)). Returns a tidy
    DataFrame: rings, rule, task, n_tokens, n_high_norm (tokens with norm >
    mean + 2 std, ``high_norm_ddof``), answers and correctness before and
    after, the top token's probability at the first answer position before
    and after (``p_top_before`` / ``p_top_after``: the released drop) and the
    probability of the un-ablated answer's first token (``p_before`` /
    ``p_after``: ours). ``ig_rule``: ``IG_RULES`` key.
    """
    import pandas as pd

    rows = []
    for task, (question, ok) in tasks.items():
        p = vlm.prepare(image, question)
        base = vlm.generate(p, max_new_tokens=max_new_tokens)
        before = bool(ok(base.text))
        first = base.token_ids[:1]
        p_before = float(vlm.score(p, first).logprobs.exp()[0]) if first.numel() else float("nan")
        p_top_before = _top_probability(vlm, p)
        emb = image_embeddings(vlm, p)  # one forward for the norms and the IG path
        norms = image_embedding_norms(vlm, p, emb)
        n_image = len(norms)
        n_high = high_norm_count(norms, ddof=high_norm_ddof)
        target = first if first.numel() else answer_ids(vlm.tokenizer, vlm.chat_text(question), "yes")
        attribution = (ig_attribution(vlm, p, target, baseline=mean.vector,
                                      embeddings=emb, rule=ig_rule) if "ig" in rules else None)
        conditions = []  # (rings, rule, tokens): all ablated at once, as batch rows
        for r in rings:
            obj_tokens = p.geometry.tokens_for_mask(mask, rings=r)
            for rule in rules:
                conditions.append((r, rule, choose_tokens(
                    rule, len(obj_tokens), object_tokens=obj_tokens, norms=norms,
                    attribution=attribution, n_image=n_image,
                    seed=[*np.atleast_1d(seed).tolist(), r])))
        after = ablated_answers(vlm, p, [c[2] for c in conditions], first, vector=mean.vector,
                                mode=mode, max_new_tokens=max_new_tokens)
        for (r, rule, toks), a in zip(conditions, after):
            rows.append({"rings": r, "rule": rule, "task": task, "n_tokens": int(len(toks)),
                         "n_high_norm": n_high, "answer_before": base.text,
                         "answer_after": a["answer"].text, "correct_before": before,
                         "correct_after": bool(ok(a["answer"].text)), "p_before": p_before,
                         "p_after": a["p_first"], "p_top_before": p_top_before,
                         "p_top_after": a["p_top"]})
    return pd.DataFrame(rows)


def ablate_scene(vlm, scene, mean: MeanVector, rings=(0, 1, 2), rules=RULES, tasks=TASKS,
                 mode: str = "mean", max_new_tokens: int = 48, seed: int = 0,
                 ig_rule: str = "released", high_norm_ddof: int = 1, noise_rule: str = "patches"):
    """``ablate_object`` for every object of an organism scene (``organism_tasks``).

    Each row also says whether the object passes the paper's ``noise_filter``
    (``noise_filter_keep``, with ``noise_rule``), so tables can be made with
    or without it.
    """
    import pandas as pd

    frames = []
    for oi, obj in enumerate(scene.objects):
        t = {k: v for k, v in organism_tasks(obj).items() if k in tasks}
        df = ablate_object(vlm, scene.image, obj.mask, t, mean, rings, rules, mode,
                           max_new_tokens, seed=[seed, scene.seed, oi], ig_rule=ig_rule,
                           high_norm_ddof=high_norm_ddof)
        gen = df[df.task == "generative"]  # its un-ablated description is the filter's first half
        kept = noise_filter(vlm, scene.image, obj.mask, organism_tasks(obj)["generative"][1],
                            max_new_tokens=max_new_tokens, seed=scene.seed, rule=noise_rule,
                            named=bool(gen.correct_before.iloc[0]) if len(gen) else None)["keep"]
        frames.append(df.assign(object=obj.name, noise_filter_keep=kept))
    return pd.concat(frames, ignore_index=True)


NOISE_RULES = ("patches", "pixels")


def noised(vlm, image, mask, rule: str = "patches", seed: int = 0,
           question: str = DESCRIBE):
    """``image`` with the object replaced by uniform noise (a PIL image).

    ``rule="patches"`` (released, ``replace_image_regions_with_patches``): every
    patch cell overlapping the mask (any overlap, the cells of
    ``TokenGeometry.tokens_for_mask``) is filled with one noise patch, the same
    patch in every cell; the object's outline goes with it. ``rule="pixels"``
    (ours): only the mask's pixels get noise, so the outline survives.
    """
    from PIL import Image

    if rule not in NOISE_RULES:
        raise ValueError(f"unknown noise rule {rule!r}; known: {', '.join(NOISE_RULES)}")
    from .images import to_rgb

    image = to_rgb(image)
    arr = np.asarray(image).copy()
    m = np.asarray(mask, dtype=bool)
    if m.shape != arr.shape[:2]:
        raise ValueError(f"mask has shape {m.shape}, but the image is "
                         f"{arr.shape[0]}x{arr.shape[1]} (HxW)")
    rng = np.random.default_rng(seed)
    if rule == "pixels":
        arr[m] = rng.integers(0, 256, (int(m.sum()), 3), dtype=np.uint8)
        return Image.fromarray(arr)
    geo = vlm.prepare(image, question).geometry
    spans = [geo._pixel_span(int(i)) for i in geo.tokens_for_mask(m)]
    if spans:
        ph = max(r1 - r0 for r0, r1, _, _ in spans)
        pw = max(c1 - c0 for _, _, c0, c1 in spans)
        patch = rng.integers(0, 256, (ph, pw, 3), dtype=np.uint8)
        for r0, r1, c0, c1 in spans:
            arr[r0:r1, c0:c1] = patch[:r1 - r0, :c1 - c0]
    return Image.fromarray(arr)


def noise_filter(vlm, image, mask, names, question: str = DESCRIBE,
                 max_new_tokens: int = 48, seed: int = 0, named: bool | None = None,
                 rule: str = "patches") -> dict:
    """The paper's filter: keep an object the model names, and stops naming once it is noise.

    ``names(answer_text) -> bool``. ``named``: whether the clean image's answer
    names it, when already known (skips that generation). ``rule``: what
    becomes noise (``noised``; "patches" as released). Returns ``{"named":
    ..., "named_with_noise": ..., "keep": named and not named_with_noise}``;
    report how many were kept.
    """
    noisy_image = noised(vlm, image, mask, rule=rule, seed=seed, question=question)
    if named is None:
        named = bool(names(vlm.generate(vlm.prepare(image, question),
                                        max_new_tokens=max_new_tokens).text))
    noisy = bool(names(vlm.generate(vlm.prepare(noisy_image, question),
                                    max_new_tokens=max_new_tokens).text))
    return {"named": named, "named_with_noise": noisy, "keep": named and not noisy}


def loss_table(df, by=("task", "rule", "rings"), seed: int = 0):
    """Share of initially correct identifications lost, with denominators and 95% intervals.

    Rows: ``by`` groups; columns n_correct_before (the denominator), n_lost,
    lost (share), ci_low / ci_high (Wilson score interval, ``stats.wilson``), mean n_tokens.
    """
    import pandas as pd

    from .stats import wilson

    rows = []
    for key, g in df.groupby(list(by)):
        key = key if isinstance(key, tuple) else (key,)
        base = g[g.correct_before]
        n, lost = len(base), int((~base.correct_after).sum())
        lo, hi = wilson(lost, n)
        rows.append({**dict(zip(by, key)), "n_correct_before": n, "n_lost": lost,
                     "lost": lost / n if n else float("nan"), "ci_low": lo, "ci_high": hi,
                     "n_tokens": float(g.n_tokens.mean())})
    return pd.DataFrame(rows)
