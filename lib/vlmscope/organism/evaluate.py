"""Held-out evaluation of an organism: exact match per question kind, describe F1."""

from __future__ import annotations

import re

import numpy as np

from ..datasets.synthetic import COLORS, QUESTION_KINDS, SHAPES, World, parse_description, question

__all__ = ["parse_description", "object_f1", "normalise", "evaluate_generate", "raw_generate",
           "content_probe"]  # parse_description: the world's grammar (datasets.synthetic)


def object_f1(predicted: str, reference: str) -> float:
    """F1 between the object lists of two descriptions (exact objects and places)."""
    p, r = parse_description(predicted), parse_description(reference)
    if not p and not r:
        return 1.0
    tp = len(p & r)
    if tp == 0:
        return 0.0
    prec, rec = tp / len(p), tp / len(r)
    return 2 * prec * rec / (prec + rec)


def normalise(answer: str) -> str:
    return " ".join(re.findall(r"[a-z]+", answer.lower()))


def evaluate_generate(generate, n: int = 100, seed: int = 12345, world: World | None = None,
                      kinds=QUESTION_KINDS, batch: int = 32, text: bool = False) -> dict:
    """Accuracy of ``generate(images, questions) -> answers`` on ``n`` fresh scenes.

    Every scene is asked one question of each kind. Returns a dict with
    exact-match accuracy per short-answer kind, ``describe_f1`` (mean
    object-list F1), ``describe_exact`` and ``n``. ``text=True`` asks without
    the image: ``generate`` gets ``None`` for the images and each question
    follows the scene written in words, as training stage T writes it (the
    decoder's accuracy as a language model, before it has seen an image).
    """
    world = world or World()
    items = [(s, q) for s, qs in world.samples(n, seed, kinds) for q in qs]
    answers: list[str] = []
    for i in range(0, len(items), batch):
        chunk = items[i:i + batch]
        if text:
            answers += generate(None, [f"{s.description()} {q.text}" for s, q in chunk])
        else:
            answers += generate([s.image for s, _ in chunk], [q.text for _, q in chunk])
    scores: dict[str, list[float]] = {k: [] for k in kinds}
    for (scene, q), a in zip(items, answers):
        if q.kind == "describe":
            scores[q.kind].append(object_f1(a, q.answer))
            scores.setdefault("describe_exact", []).append(float(normalise(a) == normalise(q.answer)))
        else:
            scores[q.kind].append(float(normalise(a) == normalise(q.answer)))
    out = {("describe_f1" if k == "describe" else k): round(float(np.mean(v)), 4)
           for k, v in scores.items()}
    out["n"] = n
    out["seed"] = seed
    return out


def raw_generate(model, processor, max_new_tokens: int = 40):
    """A batched greedy ``generate(images, questions)`` over a bare model and processor.

    ``images=None`` asks the language model alone: a text-only prompt with no
    image token, tokenised by the tokenizer (stage T's evaluation).
    """
    import torch

    def run(images, questions):
        head = [] if images is None else [{"type": "image"}]
        texts = [processor.apply_chat_template(
            [{"role": "user", "content": head + [{"type": "text", "text": q}]}],
            add_generation_prompt=True) for q in questions]
        tok = processor.tokenizer
        tok.padding_side = "left"
        inputs = (tok(texts, return_tensors="pt", padding=True) if images is None else
                  processor(text=texts, images=images, return_tensors="pt", padding=True))
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        return tok.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    return run


def content_probe(vlm, n: int = 12, seed: int = 1000, n_objects: int = 1) -> dict:
    """Does the model use the question's content words? p("yes") to "is there a X Y ?".

    For ``n`` scenes of ``n_objects`` objects, asks about the first object as it is
    ("present"), with a wrong colour, with a wrong shape, and with both wrong
    (colours and shapes absent from the scene), and returns the mean of
    p(yes) / (p(yes) + p(no)) (teacher-forced) for each, plus ``spread``: the
    mean over scenes of the largest minus the smallest of the four. A model
    that reads the question gives "present" far more than the others; one
    that ignores the content words gives the same number to all four
    (spread near 0).
    """
    world = World()
    out: dict[str, list[float]] = {"present": [], "wrong_color": [], "wrong_shape": [],
                                   "wrong_both": []}
    spread = []
    for i in range(n):
        scene = world.scene(seed + i, n_objects=n_objects)
        o = scene.objects[0]
        colours = [c for c in COLORS if c not in {x.color for x in scene.objects}]
        shapes = [s for s in SHAPES if s not in {x.shape for x in scene.objects}]
        c, s = colours[i % len(colours)], shapes[i % len(shapes)]
        asks = {"present": (o.color, o.shape), "wrong_color": (c, o.shape),
                "wrong_shape": (o.color, s), "wrong_both": (c, s)}
        here = []
        for name, (colour, shape) in asks.items():
            p = vlm.prepare(scene.image, question("exists", color=colour, shape=shape))
            y, no = vlm.score(p, "yes").total, vlm.score(p, "no").total
            here.append(1.0 / (1.0 + float(np.exp(no - y))))
            out[name].append(here[-1])
        spread.append(max(here) - min(here))
    res = {k: round(float(np.mean(v)), 4) for k, v in out.items()}
    res["spread"] = round(float(np.mean(spread)), 4)
    return res
