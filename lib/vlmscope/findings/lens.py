"""Logit lens on image tokens (Neo et al.): per object and layer, the share of its patches whose
lens top-1 word names it (notebook 08; ``lens.image_lens``).

A synthetic object is named by its colour or shape word (``share``; each
alone in ``share_color`` and ``share_shape``); an annotated object by any
single-token word of its name (``share``; the words in ``words``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ._common import count, DESCRIBE, is_scene, option, stored_config, ours_vs_paper, paper_table

NAME = "lens"


@dataclass(frozen=True)
class Config:
    question: str = option(DESCRIBE, "the prompt the image is read with")


def key(cfg: Config, **extra) -> list:
    """What a stored part's key holds between the model and the item id."""
    return [stored_config(cfg.question)]


def _single_token_words(res, words) -> list[str]:
    from ..words import lens_ids

    out = []
    for w in words:
        try:
            lens_ids(res.tokenizer, w)
        except ValueError:  # several pieces: the lens reads single-token words only
            continue
        out.append(w)
    return out


def run(vlm, item, cfg: Config = Config()) -> pd.DataFrame:
    """Per object and layer: share of its patches whose lens top-1 is its colour or shape word."""
    from ..lens import image_lens

    p = vlm.prepare(item.image, cfg.question)
    res = image_lens(vlm, p, k=1)
    rows = []
    if not is_scene(item):
        for o in item.objects:
            words = _single_token_words(res, o.words)
            if not words:
                continue
            for r in (0, 1):
                toks = p.geometry.tokens_for_mask(o.mask, rings=r)
                for layer, share in enumerate(res.share(toks, words)):
                    rows.append({"object": o.name, "rings": r, "layer": layer,
                                 "n_tokens": len(toks), "share": share, "words": " ".join(words)})
        return pd.DataFrame(rows)
    for o in item.objects:
        for r in (0, 1):
            toks = p.geometry.tokens_for_mask(o.mask, rings=r)
            for layer, (both, col, shp) in enumerate(zip(res.share(toks, [o.color, o.shape]),
                                                         res.share(toks, [o.color]),
                                                         res.share(toks, [o.shape]))):
                rows.append({"object": o.name, "rings": r, "layer": layer, "n_tokens": len(toks),
                             "share": both, "share_color": col, "share_shape": shp})
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame) -> dict:
    if df.empty:
        return {}
    by = df[df.rings == 0].groupby("layer").share.mean()
    return {"best_layer": int(by.idxmax()), "best_share": round(float(by.max()), 4)}


NEO = "Neo et al., ICLR 2025 (2nd-hand; shared/REFERENCES.md C2)"
PAPER = paper_table([
    ("best_share", 0.237, "LLaVA-1.5-7B", NEO),
    ("best_share", 0.065, "Qwen2-VL-2B", NEO),
    ("best_layer_fraction", round(26 / 33, 2), "LLaVA-1.5-7B", NEO),
])


def vs_paper(data, chance: float | None = None) -> pd.DataFrame:
    """The best layer's share of object patches read as the object's name, and where that layer
    sits (hidden-state index over hidden states, embeddings counted, as the paper counts).
    ``chance`` (``chance``/``chance_share``) adds this run's chance level beside the share."""
    s = summarise(data) if isinstance(data, pd.DataFrame) else dict(data)
    ours = {"best_share": s.get("best_share")}
    notes = {"best_share": "rings 0; named by its colour or shape word (a synthetic object) or a "
                           "single-token word of its name (an annotated one)"}
    if isinstance(data, pd.DataFrame) and len(data):
        L = int(data.layer.max()) + 1
        ours["best_layer_fraction"] = round((s["best_layer"] + 1) / (L + 1), 2)
        notes["best_layer_fraction"] = f"hidden state {s['best_layer'] + 1} of {L + 1}"
    return ours_vs_paper(PAPER, ours, notes,
                         None if chance is None else {"best_share": chance})


# --- for notebook 08: one scene in detail, and what object patches read as instead ---
@dataclass
class Example:
    """One item read through the lens: its first object, the prompt, the lens result (top 5
    per position) and the object's image tokens (``run``'s rings 0)."""

    item: object
    object: object
    prepared: object
    result: object
    tokens: object

    def words_by_layer(self, top: int = 3) -> pd.DataFrame:
        """Per layer, the ``top`` most common top-1 words over the object's patches (word, count)."""
        from collections import Counter

        res = self.result
        return pd.DataFrame({f"layer {layer}": pd.Series(Counter(res.top_tokens(layer)[i]
                                                                 for i in self.tokens)
                                                         .most_common(top), dtype=object)
                             for layer in range(res.n_layers)}).T.rename(
            columns=lambda c: f"#{c + 1} (word, patches)")


def example(vlm, item, cfg: Config = Config(), k: int = 5) -> Example:
    """``item``'s first object read through the lens at every layer (its naming words: a
    scene's colour and shape, an annotated object's single-token name words)."""
    from types import SimpleNamespace

    from ..lens import image_lens

    obj = item.objects[0]
    p = vlm.prepare(item.image, cfg.question)
    if is_scene(item):
        words = [obj.color, obj.shape]
    else:  # the lens reads single-token words only
        words = _single_token_words(SimpleNamespace(tokenizer=vlm.tokenizer), obj.words)
    res = image_lens(vlm, p, k=k, words=words)
    return Example(item, obj, p, res, p.geometry.tokens_for_mask(obj.mask))


def per_layer(df: pd.DataFrame) -> pd.DataFrame:
    """Mean shares per rings and layer (``share``; ``share_color``/``share_shape`` on scenes)."""
    cols = [c for c in ("share", "share_color", "share_shape") if c in df]
    return df.groupby(["rings", "layer"])[cols].mean()


def reads_as(vlm, layer: int, n: int = 8, images=None, first_seed: int = 1000,
             cfg: Config = Config()):
    """What the objects' patches read as at ``layer``: a ``Counter`` of top-1 lens words
    (``most_common(10)`` for a table) over ``n`` synthetic scenes seeded ``first_seed``,
    ``first_seed + 1``, ... (other scenes than the run's), or the first ``n`` of ``images``."""
    from collections import Counter

    from ..datasets.folder import load_images
    from ..datasets.synthetic import World
    from ..lens import image_lens

    items = (load_images(images, n) if images
             else [World().scene(seed=first_seed + i) for i in range(n)])
    what = Counter()
    for item in items:
        q = vlm.prepare(item.image, cfg.question)
        r = image_lens(vlm, q, k=1)
        for o in item.objects:
            what.update(r.top_tokens(layer)[t] for t in q.geometry.tokens_for_mask(o.mask))
    return what



# --- notebook 08's closing section: a chance level, what patches read as, the conclusion ---
def vocabulary_size(vlm) -> int:
    """The number of words the lens chooses its top-1 from (the unembedding's rows)."""
    return int(vlm.adapter.unembedding.weight.shape[0])


def chance_share(vocabulary: int, words_per_object: float = 2) -> float:
    """The share a uniformly random vocabulary word would score: the chance that a patch's top-1
    word is one of its object's ``words_per_object`` naming words (a synthetic object's colour
    and shape word: 2) out of ``vocabulary`` words."""
    if vocabulary < 1 or words_per_object < 0:
        raise ValueError(f"a vocabulary of {vocabulary} words and {words_per_object} naming words "
                         "per object give no chance level")
    return min(words_per_object / vocabulary, 1.0)


def chance(vlm, df: pd.DataFrame) -> float:
    """This run's chance level (``chance_share``): the model's vocabulary, and the naming words
    per object of ``df`` (a run's rows: 2 on synthetic scenes, colour and shape; the mean count
    of an annotated object's single-token name words)."""
    per_object = (float(df.drop_duplicates("object").words.str.split().str.len().mean())
                  if "words" in df and len(df) else 2)
    return chance_share(vocabulary_size(vlm), per_object)


def word_kind(word: str) -> str:
    """What a lens word names in the synthetic world: "position" (row and column words),
    "colour", "shape", or "other"."""
    from ..datasets.synthetic import COLORS, COLS, ROWS, SHAPES

    w = word.strip().lstrip("\u2581\u0120").lower()
    if w in ROWS or w in COLS:
        return "position"
    if w in COLORS:
        return "colour"
    if w in SHAPES:
        return "shape"
    return "other"


def reads_as_table(what, top: int = 10) -> pd.DataFrame:
    """``reads_as``' counter as a table: the ``top`` most common top-1 words of object patches,
    how many patches read as each, their share of all counted patches and the word's kind
    (``word_kind``)."""
    total = sum(what.values())
    rows = [{"top-1 word at the best layer": w, "patches": c,
             "share of object patches": round(c / total, 3) if total else None, "kind": word_kind(w)}
            for w, c in what.most_common(top)]
    return pd.DataFrame(rows, columns=["top-1 word at the best layer", "patches",
                                       "share of object patches", "kind"])


def what_we_found(summary: dict, model: str, chance: float, what) -> str:
    """Notebook 08's conclusion in words: the best layer's share of object patches read as their
    object's name beside the paper's 23.7% (LLaVA-1.5-7B) and the chance level ``chance``
    (``chance_share``), and what the patches read as instead (``what``: ``reads_as``' counter,
    by ``word_kind``)."""
    best, layer = summary.get("best_share"), summary.get("best_layer")
    paper = float(PAPER[PAPER.paper_model == "LLaVA-1.5-7B"].set_index("quantity").paper["best_share"])
    out = (f"**{model}** ({count(summary.get('n_scenes'), 'scene')}): at its best layer "
           f"({layer if layer is not None else 'none'}) {best:.1%} of object patches read as their "
           f"object's name (a synthetic object's colour or shape word); the paper finds {paper:.1%} on LLaVA-1.5-7B. A "
           f"uniformly random vocabulary word would score {chance:.1%}: this model is "
           + (f"{best / chance:.1f}x above that chance level" if best > chance else
              "not above that chance level") + ".")
    total = sum(what.values())
    if total:
        kinds = {}
        for w, c in what.items():
            kinds[word_kind(w)] = kinds.get(word_kind(w), 0) + c
        top = max(kinds, key=kinds.get)
        out += (f" At that layer the object patches of other scenes read as "
                + ", ".join(f"{k} words {v / total:.0%}" for k, v in
                            sorted(kinds.items(), key=lambda kv: -kv[1]))
                + f" of the time: mostly **{top}** words"
                + (", where the object is rather than what it is." if top == "position" else "."))
    return out
