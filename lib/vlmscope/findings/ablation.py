"""Object-token ablation (Neo et al., Table 1): how often an answer that named an object is lost
when the object's image tokens are replaced by the mean visual-token vector, against as many
random, high-norm or integrated-gradient tokens (notebook 07; ``ablation.ablate_object``).

A synthetic object gets the organism's three tasks (``ablation.organism_tasks``);
an annotated object the generative and polling tasks, as for COCO
(``record_tasks``: a COCO category name gets ``ablation.coco_tasks`` itself).
The mean vector comes from 32 synthetic reference scenes for synthetic runs
and from the run's own images for an image folder.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import pandas as pd

from ._common import DESCRIBE, is_scene, option, stored_config

NAME = "ablation"


@dataclass(frozen=True)
class Config:
    max_new_tokens: int = option(48, "answer length in tokens", minimum=1)


def setup(vlm, store, cfg: Config, seed: int, items=()) -> dict:
    """The mean visual-token vector, computed once (and cached in the store) per run."""
    from ..ablation import mean_vector
    from ..datasets.synthetic import World, _mix

    records = [it for it in items if not is_scene(it)]
    if records:
        refs, cache = [r.image for r in records[:32]], store.root / f"mean-images-{seed}.safetensors"
    else:
        world = World()
        refs = [world.scene(_mix(10**6 + seed, j)).image for j in range(32)]
        cache = store.root / f"mean-{seed}.safetensors"
    return {"mean": mean_vector(vlm, refs, cache=cache)}


def key(cfg: Config, mean=None, **extra) -> list:
    """What a stored part's key holds between the model and the item id: the mean vector's
    images ("rules-2": the rules a part was computed with)."""
    return [stored_config(max_new_tokens=cfg.max_new_tokens), mean.images_digest, "rules-2"]


def record_tasks(obj) -> dict:
    """Generative and polling tasks for an annotated object: ``coco_tasks`` for a COCO category;
    otherwise "describe the image ." naming any word of its name (whole words) and
    "is there a <name> ?" answered yes (the first word)."""
    from ..ablation import coco_tasks
    from ..judge import COCO_SYNONYMS, Vocabulary, words

    if obj.name.lower() in COCO_SYNONYMS:
        return coco_tasks(obj.name.lower())
    vocab = Vocabulary(synonyms={obj.name.lower(): tuple(obj.words)})

    def names(text):
        return vocab.mentions(text, obj.name.lower())

    def yes(text):
        w = words(text)
        return bool(w) and w[0] == "yes"

    return {"generative": (DESCRIBE, names), "polling": (f"is there a {obj.name} ?", yes)}


def _record_rows(vlm, record, mean, cfg: Config) -> pd.DataFrame:
    from ..ablation import ablate_object, noise_filter

    tag = zlib.crc32(str(record.file).encode())  # a stable seed per image
    frames = []
    for oi, obj in enumerate(record.objects):
        t = record_tasks(obj)
        df = ablate_object(vlm, record.image, obj.mask, t, mean,
                           max_new_tokens=cfg.max_new_tokens, seed=[tag, tag, oi])
        gen = df[df.task == "generative"]
        question, names = t["generative"]
        kept = noise_filter(vlm, record.image, obj.mask, names, question=question,
                            max_new_tokens=cfg.max_new_tokens, seed=tag,
                            named=bool(gen.correct_before.iloc[0]) if len(gen) else None)["keep"]
        frames.append(df.assign(object=obj.name, noise_filter_keep=kept))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def run(vlm, item, cfg: Config = Config(), mean=None) -> pd.DataFrame:
    """Every (object, rings, rule, task) of the item, correct before and after ablation."""
    from ..ablation import ablate_scene

    if mean is None:
        raise ValueError("the ablation finding needs the mean visual-token vector: pass "
                         "mean=ablation.mean_vector(vlm, reference_images) (the runner does)")
    if not is_scene(item):
        return _record_rows(vlm, item, mean, cfg)
    return ablate_scene(vlm, item, mean, max_new_tokens=cfg.max_new_tokens, seed=item.seed)


def summarise(df: pd.DataFrame) -> dict:
    from ..ablation import loss_table

    if df.empty:
        return {}
    # Table 1's protocol: objects that pass the noise filter, one table per task
    # (generative / polling / VQA); the pooled figure is an extra
    d = df[df.rings == 1]
    out = {}
    if "noise_filter_keep" in d:
        objs = d.drop_duplicates(["_key", "object"]) if "_key" in d else d.drop_duplicates("object")
        out["noise_filter_kept"] = f"{int(objs.noise_filter_keep.sum())} of {len(objs)}"
        d = d[d.noise_filter_keep.astype(bool)]
    for r in loss_table(d, by=("rule", "task")).itertuples():
        out[f"lost[{r.rule},+1,{r.task}]"] = round(float(r.lost), 4)
        out[f"n[{r.rule},+1,{r.task}]"] = int(r.n_correct_before)
    for r in loss_table(d, by=("rule",)).itertuples():
        out[f"lost[{r.rule},+1,pooled]"] = round(float(r.lost), 4)
    return out
