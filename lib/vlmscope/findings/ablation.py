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

from ._common import count, DESCRIBE, is_scene, option, stored_config, ours_vs_paper, paper_table

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


NEO = "Neo et al., ICLR 2025, Table 1 (2nd-hand; shared/REFERENCES.md C1)"
_TABLE1 = {("object", 0): (0.33, 0.15, 0.33), ("object", 1): (0.72, 0.51, 0.87),
           ("random", 1): (0.02, 0.00, 0.00)}  # generative, polling, VQA; random: 40 of 576 tokens
PAPER = paper_table([(f"lost[{rule},+{r},{task}]", v, "LLaVA-1.5-7B", NEO)
                     for (rule, r), vals in _TABLE1.items()
                     for task, v in zip(("generative", "polling", "vqa"), vals)])


def vs_paper(data) -> pd.DataFrame:
    """Share of initially correct identifications lost, per (tokens, rings, task), beside Table 1
    (the paper's protocol: noise-filtered objects). From a summary only the +1 rings are known."""
    from ..ablation import loss_table

    ours, notes = {}, {}
    if isinstance(data, pd.DataFrame):
        d = data
        if "noise_filter_keep" in d:
            d = d[d.noise_filter_keep.astype(bool)]
        if len(d):
            for r in loss_table(d, by=("rule", "rings", "task")).itertuples():
                q = f"lost[{r.rule},+{r.rings},{r.task}]"
                ours[q] = None if pd.isna(r.lost) else round(float(r.lost), 4)
                notes[q] = f"of {int(r.n_correct_before)} correct before"
    else:
        ours = {q: data.get(q) for q in PAPER.quantity}
        notes = {q: f"of {data[q.replace('lost[', 'n[')]} correct before"
                 for q in PAPER.quantity if q.replace("lost[", "n[") in data}
    for q in PAPER.quantity:
        if q.startswith("lost[random"):
            notes[q] = (notes.get(q, "") + "; random tokens at the object's +1 count "
                        "(the paper: 40 of 576)").lstrip("; ")
    return ours_vs_paper(PAPER, ours, notes)


# --- for notebook 07: one object in detail, the noise filter, the high-norm check ---
def reference_mean(vlm, n: int = 32, images=None, cache=None):
    """The mean visual-token vector over ``n`` reference images: synthetic scenes seeded
    10**6, 10**6 + 1, ... (none of a run's scenes), or the first ``n`` of ``images``."""
    from ..ablation import mean_vector
    from ..datasets.folder import load_images
    from ..datasets.synthetic import World

    refs = ([r.image for r in load_images(images, n)] if images
            else [World().scene(10**6 + i).image for i in range(n)])
    return mean_vector(vlm, refs, cache=cache)


def example(vlm, item, mean, max_new_tokens: int = 48) -> tuple[dict, pd.DataFrame, object]:
    """``item``'s first object with 0, 1 and 2 rings of buffer, and the model's answers before
    and after those tokens are replaced by ``mean``'s vector: ``(rings -> token indices,
    rows of rings, question, answer, ablated answer, the token geometry)``. A scene's object is asked "is there
    a <object> ?", "what color is the <shape> ?" and for a description; an annotated one
    the first and the last."""
    from ..ablation import ablated

    obj = item.objects[0]
    p = vlm.prepare(item.image, f"is there a {obj.name} ?")
    rings = {r: p.geometry.tokens_for_mask(obj.mask, rings=r) for r in (0, 1, 2)}
    questions = [f"is there a {obj.name} ?"]
    if is_scene(item):
        questions.append(f"what color is the {obj.shape} ?")
    questions.append(DESCRIBE)
    rows = []
    for r, toks in rings.items():
        for question in questions:
            q = vlm.prepare(item.image, question)
            with ablated(vlm, q, toks, vector=mean.vector):
                after = vlm.generate(q, max_new_tokens=max_new_tokens).text
            rows.append({"rings": r, "question": question,
                         "answer": vlm.generate(q, max_new_tokens=max_new_tokens).text,
                         "ablated answer": after})
    return rings, pd.DataFrame(rows), p.geometry


def noise_filtered(df: pd.DataFrame) -> pd.DataFrame:
    """The paper's protocol: only the objects the model names and stops naming under noise
    (``noise_filter_keep``); prints how many were kept. None kept: every object, said so."""
    from .sense import nothing_to_report

    objects = df.drop_duplicates(["item", "object"])
    print(f"noise filter kept {int(objects.noise_filter_keep.sum())} of {len(objects)} objects")
    if df.noise_filter_keep.any():
        return df[df.noise_filter_keep]
    nothing_to_report("the noise filter keeps no object (the model names none)",
                      "Every object is kept instead.")
    return df


def paper_shape(table: pd.DataFrame) -> pd.DataFrame:
    """``ablation.loss_table(df, by=("rule", "rings", "task"))`` in Table 1's shape: the share
    lost per (rule, rings) row and task column, with the mean token count beside."""
    shaped = table.pivot_table(index=["rule", "rings"], columns="task", values="lost")
    shaped["tokens"] = table.groupby(["rule", "rings"]).n_tokens.first()
    return shaped


def p_drop_table(df: pd.DataFrame, rings: int = 1) -> pd.DataFrame:
    """Mean probability drop at the first answer position per task, object + ``rings``: the
    released rule (the top token's probability) and ours (the un-ablated answer's first token)."""
    d = df[(df.rule == "object") & (df.rings == rings)]
    return pd.DataFrame({"p_drop, top token (released)": (d.p_top_before - d.p_top_after)
                         .groupby(d.task).mean(),
                         "p_drop, answer token (ours)": (d.p_before - d.p_after)
                         .groupby(d.task).mean()}).round(3)


def high_norm_on_objects(vlm, items, question: str = DESCRIBE) -> tuple[float, str]:
    """Share of each item's top-n norm image tokens (n = its objects' token count) lying on an
    object, averaged over ``items``; and a note on the last item's object coverage."""
    from ..ablation import choose_tokens, image_embedding_norms

    overlap = []
    for item in items:
        q = vlm.prepare(item.image, question)
        on_objects = set()
        for o in item.objects:
            on_objects |= set(q.geometry.tokens_for_mask(o.mask).tolist())
        norms = image_embedding_norms(vlm, q)
        top = choose_tokens("high-norm", len(on_objects), norms=norms, n_image=len(norms))
        overlap.append(len(on_objects & set(top.tolist())) / max(len(on_objects), 1))
    note = f"objects cover {len(on_objects)} of {len(norms)} tokens in the last scene"
    return float(pd.Series(overlap).mean()), note


def write(folder, table: pd.DataFrame, model: str, n_scenes: int, mean, noise_filter: bool,
          high_norm_on_objects: float, nonsense: str | None = None, prefix: str = "07") -> dict:
    """Keep notebook 07's results in ``folder``: the ``loss_table`` (``<prefix>_ablation.parquet``)
    and the summary (the run's settings, ``mean``'s provenance, the high-norm check and
    ``table_figures``) as ``<prefix>_summary.json`` (``write_summary``); return it as written."""
    from pathlib import Path

    from .sense import write_summary

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table.to_parquet(folder / f"{prefix}_ablation.parquet")
    return write_summary(folder / f"{prefix}_summary.json", {
        "model": model, "n_scenes": n_scenes, "mean_vector": mean.provenance(),
        "noise_filter": noise_filter, "high_norm_on_objects": high_norm_on_objects,
        **table_figures(table)}, nonsense)


def table_figures(table: pd.DataFrame) -> dict:
    """``loss_table`` rows as the notebook summary's dicts, keyed "rule,rings,task": the share
    lost (``lost``) and its denominator (``denominators``)."""
    return {"lost": {f"{r.rule},{r.rings},{r.task}": r.lost for r in table.itertuples()},
            "denominators": {f"{r.rule},{r.rings},{r.task}": r.n_correct_before
                             for r in table.itertuples()}}



def what_we_found(summary: dict, model: str) -> str:
    """Notebook 07's conclusion in words, from ``write``'s summary: per task, the share of
    identifications lost when the object's tokens + 1 ring are ablated against as many random
    tokens (the chance level of an ablation that does not target the object), beside Table 1."""
    lost, n = summary.get("lost", {}), summary.get("denominators", {})
    tasks = [t for t in ("generative", "polling", "vqa") if f"object,1,{t}" in lost]
    parts, local = [], []
    for t in tasks:
        o, r = lost.get(f"object,1,{t}"), lost.get(f"random,1,{t}")
        if o is None:
            continue
        paper = _TABLE1[("object", 1)][("generative", "polling", "vqa").index(t)]
        parts.append(f"{t}: object+1 {o:.2f} of {n.get(f'object,1,{t}')} lost, random "
                     + (f"{r:.2f}" if r is not None else "not measured")
                     + f" (the paper: {paper:.2f} and "
                     f"{_TABLE1[('random', 1)][('generative', 'polling', 'vqa').index(t)]:.2f})")
        local.append(r is not None and o > r)
    if not parts:
        return (f"**{model}**: no object was identified right before ablation, so nothing could "
                "be lost.")
    out = f"**{model}** ({count(summary.get('n_scenes'), 'scene')}): " + "; ".join(parts) + ". "
    out += ("Ablating the object's own tokens costs more than ablating as many random tokens in "
            "every task, as the paper finds: the object's information sits in its own tokens."
            if all(local) else "Ablating the object's tokens does not cost more than random "
            "tokens in every task: here the paper's finding holds only in part (see the table).")
    hn = summary.get("high_norm_on_objects")
    if hn is not None:
        out += (f" {hn:.0%} of the highest-norm tokens lie on objects, so the high-norm baseline "
                + ("largely ablates the objects themselves here." if hn >= 0.5 else
                   "mostly ablates background here."))
    return out
