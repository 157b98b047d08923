"""Knockout layer curves (Kaduri et al., Fig. 2): cut image edges from layer l on.

For one image, every (configuration, start layer) pair regenerates the
description with the edges cut, and the judge compares its objects with the
same model's un-knocked description. Pairs run as one batch: each batch row
carries its own knockout (``attention.Knockout``), so the sweep costs a few
batched generations instead of ``3 x (L + 1)`` single ones. Never reuse a
baseline KV cache: a prefill knockout changes the cached keys and values.

Layer numbering as in the paper: edges are cut in the layers with index > l,
so l = -1 cuts every layer and l = L - 1 none. Rows carry ``l`` and the
internal ``start = l + 1`` (the first cut layer).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from .attention import KNOCKOUTS, Knockout, attention, from_layer
from .datasets.synthetic import DESCRIBE
from .judge import default_judge


@dataclass(frozen=True)
class SweepConfig:
    """Which knockouts, from which start layers (None = every layer 0..L), how long."""

    configs: tuple[str, ...] = ("img->gen", "img->txt", "img->txt+gen")
    starts: tuple[int, ...] | None = None
    question: str = DESCRIBE
    max_new_tokens: int = 48
    batch_size: int = 32


def _repeat(inputs: dict, n: int) -> dict:
    return {k: (torch.cat([v] * n) if torch.is_tensor(v) else v) for k, v in inputs.items()}


def generate_with_knockouts(vlm, prepared, edge_sets, max_new_tokens: int = 48,
                            batch_size: int = 32) -> list[str]:
    """Greedy texts for ``prepared`` under each edge set (one batch row per set)."""
    L = vlm.adapter.n_layers
    texts: list[str] = []
    tok = vlm.tokenizer
    for i in range(0, len(edge_sets), batch_size):
        chunk = edge_sets[i:i + batch_size]
        ko = Knockout(prepared.groups, chunk, L)
        with attention(vlm, knockout=ko), torch.no_grad():
            out = vlm.model.generate(**_repeat(prepared.inputs, len(chunk)), do_sample=False,
                                     max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id)
        new = out[:, prepared.input_ids.shape[1]:]
        texts += [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
    return texts


def knockout_sweep(vlm, image, cfg: SweepConfig = SweepConfig(), judge=None,
                   also: dict | None = None) -> pd.DataFrame:
    """One row per (config, start): the knocked-out text and its object P/R/F1.

    ``l`` is the paper's layer number (cut in layers with index > l: -1 cuts
    every layer, L - 1 none); ``start = l + 1`` is the first cut layer.
    ``judge`` gives the precision/recall/f1 columns (default
    ``judge.default_judge``; where Kaduri et al.'s figure is reproduced pass
    ``judge.paper_judge(...)``); ``also`` maps a name to further judges whose
    figures are added beside as ``precision_<name>``, ``recall_<name>``,
    ``f1_<name>`` (e.g. ``{"exact": ExactJudge()}``).
    """
    judge = judge or default_judge(vlm, image)
    also = dict(also or {})
    prepared = vlm.prepare(image, cfg.question)
    L = vlm.adapter.n_layers
    starts = tuple(range(L + 1)) if cfg.starts is None else cfg.starts
    for s in starts:
        if not 0 <= s <= L:
            raise IndexError(f"start layer {s} out of range 0..{L}")
    unknown = [c for c in cfg.configs if c not in KNOCKOUTS]
    if unknown:
        raise ValueError(f"unknown knockout {unknown}; known: {', '.join(KNOCKOUTS)}")
    baseline = vlm.generate(prepared, max_new_tokens=cfg.max_new_tokens).text
    pairs = [(c, s) for c in cfg.configs for s in starts]
    edges = [from_layer(KNOCKOUTS[c], s, L) for c, s in pairs]
    texts = generate_with_knockouts(vlm, prepared, edges, cfg.max_new_tokens, cfg.batch_size)
    rows = []
    for (c, s), text in zip(pairs, texts):
        row = {"config": c, "l": s - 1, "start": s, "n_layers": L, "text": text,
               "baseline": baseline, "judge": getattr(judge, "name", type(judge).__name__),
               **judge.compare(text, baseline)}
        for name, other in also.items():
            res = other.compare(text, baseline)
            row.update({f"{k}_{name}": res[k] for k in ("precision", "recall", "f1")})
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------- where does object identity sit?
def probe_accuracy(x_train, y_train, x_test, y_test, steps: int = 300, l2: float = 1e-2) -> float:
    """Held-out balanced accuracy of linear probes, one logistic regression per label, averaged.

    ``x``: ``[N, d]`` features; ``y``: ``[N, labels]`` 0/1. Features are
    standardised on the training rows; labels constant in the test rows are
    skipped. 0.5 is chance.
    """
    x_train, x_test = torch.as_tensor(x_train).float(), torch.as_tensor(x_test).float()
    y_train, y_test = torch.as_tensor(y_train).float(), torch.as_tensor(y_test).float()
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    xtr, xte = (x_train - mu) / sd, (x_test - mu) / sd
    w = torch.zeros(xtr.shape[1], y_train.shape[1], requires_grad=True)
    b = torch.zeros(y_train.shape[1], requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.05)
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(xtr @ w + b, y_train)
            (loss + l2 * (w ** 2).sum()).backward()
            opt.step()
    with torch.no_grad():
        pred = (xte @ w + b) > 0
    accs = []
    for j in range(y_test.shape[1]):
        t = y_test[:, j].bool()
        if t.all() or (~t).all():
            continue
        accs.append(0.5 * (pred[t, j].float().mean() + (~pred[~t, j]).float().mean()).item())
    return float(sum(accs) / len(accs)) if accs else float("nan")


@torch.no_grad()
def identity_probes(vlm, scenes, question: str = DESCRIBE, n_train: int | None = None,
                    seed: int = 0) -> pd.DataFrame:
    """Per layer: can a linear probe read which shapes a scene holds, and from where?

    Kaduri et al. explain img->gen knockout's surviving F1 by query tokens that
    store global image information. This tests it on synthetic ``scenes``:
    hidden states (input of each layer, then the last layer's output) at the
    last prompt position, the mean of the query positions (BOS excluded) and
    the mean of the image positions (a positive control), probed for "is
    shape s in the scene"; shuffled labels give the chance level. Returns
    rows: place, layer (0 = embeddings), balanced_accuracy.
    """
    import numpy as np

    from .datasets.synthetic import SHAPES

    scenes = list(scenes)
    n_train = n_train or (3 * len(scenes)) // 4
    if not 0 < n_train < len(scenes):
        raise ValueError(f"n_train must lie in 1..{len(scenes) - 1}")
    feats: dict[str, list] = {"last prompt position": [], "query mean": [], "image mean": []}
    labels = []
    for scene in scenes:
        p = vlm.prepare(scene.image, question)
        hs = vlm.model(**p.inputs, output_hidden_states=True).hidden_states
        g = p.groups
        q, last = g.query_without_bos, int(g.prompt_length) - 1
        feats["last prompt position"].append(torch.stack([h[0, last] for h in hs]).float().cpu())
        feats["query mean"].append(torch.stack([h[0, q].mean(0) for h in hs]).float().cpu())
        feats["image mean"].append(torch.stack([h[0, g.image].mean(0) for h in hs]).float().cpu())
        present = {o.shape for o in scene.objects}
        labels.append([float(s in present) for s in SHAPES])
    y = torch.tensor(labels)
    y_shuffled = y[torch.as_tensor(np.random.default_rng(seed).permutation(len(y)))]
    rows = []
    places = [(k, v, y) for k, v in feats.items()]
    places.append(("last prompt position, shuffled labels", feats["last prompt position"], y_shuffled))
    for place, xs, lab in places:
        x = torch.stack(xs)  # [N, layers + 1, d]
        for layer in range(x.shape[1]):
            acc = probe_accuracy(x[:n_train, layer], lab[:n_train], x[n_train:, layer], lab[n_train:])
            rows.append({"place": place, "layer": layer, "balanced_accuracy": acc})
    return pd.DataFrame(rows)
