# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · Where object information lives: ablating visual tokens
#
# Neo et al. (ICLR 2025, "Towards interpreting visual information processing
# in VLMs", Table 1) replace the embeddings of an object's image tokens, at the
# language model's input, with the mean visual-token vector, and ask whether
# the model still identifies the object. If the information about an object
# lived in a global summary, ablating the object's own tokens would not
# matter; it does matter: on LLaVA-1.5 they report (2nd-hand figures)
#
# | ablated | generative | polling | VQA |
# |---|---|---|---|
# | object tokens | 33% lost | 15% | 33% |
# | object + 1 ring | 72% | 51% | 87% |
# | 40 random tokens | 2% | 0% | 0% |
#
# Here the same on the organism, where every object's mask is exact:
# **object** tokens (boxes overlapping the mask, + 0/1/2 rings of buffer)
# against three baselines at the **same count**: random tokens, the highest-norm
# tokens, and the integrated-gradients top tokens (absolute attributions over
# 50 path points, as released, but attributed to the answer token, not to BOS
# as in the reference code). Tasks: the description names the object (parsed
# as whole words), "is there a <object> ?" -> yes, and the one-token "what
# color is the <shape> ?". The metric is the share of initially correct
# identifications lost, with its denominator and a 95% Wilson interval, one
# column per task as in Table 1.
#
# The paper's protocol is the default: only objects that pass the **noise
# filter** count (the model names the object, and stops naming it once every
# patch cell overlapping it is replaced by noise, as the released code does);
# the probability drop is on the top token's probability (released) with the
# answer token's beside (ours). Each rule and its measured effect:
# [docs/fidelity.md, "Object tokens"](../docs/fidelity.md#object-tokens-towards-interpreting).

# %% tags=["parameters"]
model_id = "organism"
n_scenes = 12
seed = 0
n_reference = 32  # scenes for the mean visual-token vector
max_new_tokens = 48
use_noise_filter = True  # the paper's protocol: only objects the model names and stops naming as noise
runs_dir = ""  # resumable run store; empty: <figures_dir>/07_runs
figures_dir = "../figures"

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

import vlmscope
from vlmscope import ablation as A
from vlmscope.datasets.synthetic import World, _mix
from vlmscope.experiments import RunConfig, run_and_load
from vlmscope.findings import nothing_to_report, write_summary

figures = Path(figures_dir)
figures.mkdir(parents=True, exist_ok=True)
runs = Path(runs_dir) if runs_dir else figures / "07_runs"
vlm = vlmscope.load(model_id)
world = World()

# %% [markdown]
# ## 1 · One scene, one object
#
# The object's tokens with 0, 1 and 2 rings of buffer, and what the model
# says when they are replaced by the mean visual-token vector (computed over
# `n_reference` other scenes, all positions; cached with its provenance).

# %%
scene = world.scene(seed=seed + 3)
obj = scene.objects[0]
mean = A.mean_vector(vlm, [world.scene(10**6 + i).image for i in range(n_reference)],
                     cache=runs / f"mean-{model_id}-{n_reference}.safetensors")
print("mean vector:", mean.provenance())
p = vlm.prepare(scene.image, f"is there a {obj.name} ?")
rings = {r: p.geometry.tokens_for_mask(obj.mask, rings=r) for r in (0, 1, 2)}
fig, axes = plt.subplots(1, 3, figsize=(8, 2.8))
for ax, (r, toks) in zip(axes, rings.items()):
    ax.imshow(scene.image)
    grid = p.geometry.to_pixels([1.0 if i in set(toks.tolist()) else 0.0
                                 for i in range(p.groups.image.numel())])
    ax.imshow(grid, cmap="Reds", alpha=0.45, vmin=0, vmax=1)
    ax.set_title(f"{obj.name}: {len(toks)} tokens (rings {r})", fontsize=8)
    ax.axis("off")
fig.savefig(figures / "07_object_tokens.png", dpi=120)
rows = []
for r, toks in rings.items():
    for question in (f"is there a {obj.name} ?", f"what color is the {obj.shape} ?",
                     "describe the image ."):
        q = vlm.prepare(scene.image, question)
        with A.ablated(vlm, q, toks, vector=mean.vector):
            after = vlm.generate(q, max_new_tokens=max_new_tokens).text
        rows.append({"rings": r, "question": question,
                     "answer": vlm.generate(q, max_new_tokens=max_new_tokens).text,
                     "ablated answer": after})
pd.DataFrame(rows)

# %% [markdown]
# ## 2 · Many scenes: the table in the paper's shape
#
# `python -m vlmscope run ablation` does the same for every object of every
# scene, every rule and ring count, every task (resumable); its one-line
# summary gives the loss per task (`lost[rule,+1,task]`, on the noise-filtered
# objects) with the pooled figure as an extra.

# %%
summary, df = run_and_load("ablation", vlm, model_id, n=n_scenes, seed=seed, out=runs,
                           cfg=RunConfig(max_new_tokens=max_new_tokens), progress=False)
print(json.dumps(summary))
if use_noise_filter:  # the paper's protocol: objects the model names, and stops naming under noise
    objects = df.drop_duplicates(["item", "object"])
    print(f"noise filter kept {int(objects.noise_filter_keep.sum())} of {len(objects)} objects")
    if df.noise_filter_keep.any():
        df = df[df.noise_filter_keep]
    else:
        nothing_to_report("the noise filter keeps no object (the model names none)",
                          "Every object is kept instead.")
table = A.loss_table(df, by=("rule", "rings", "task"))
nonsense = None
if not table.n_correct_before.any():  # every 'lost' share below is 0 of 0
    nonsense = nothing_to_report("no object is identified right before ablation: nothing to lose")
shaped = table.pivot_table(index=["rule", "rings"], columns="task", values="lost")
shaped["tokens"] = table.groupby(["rule", "rings"]).n_tokens.first()
shaped.style.format("{:.2f}")

# %% [markdown]
# The probability drop at the first answer position, object + 1 ring: the
# released rule (the top token's probability, whatever token is on top) and
# ours (the un-ablated answer's first token).

# %%
obj1 = df[(df.rule == "object") & (df.rings == 1)]
pd.DataFrame({"p_drop, top token (released)": (obj1.p_top_before - obj1.p_top_after).groupby(obj1.task).mean(),
              "p_drop, answer token (ours)": (obj1.p_before - obj1.p_after).groupby(obj1.task).mean()}).round(3)

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.2))
sns.lineplot(data=table, x="n_tokens", y="lost", hue="rule", style="task", markers=True, ax=ax)
ax.set_xlabel("ablated tokens (mean per object; rings 0, 1, 2)")
ax.set_ylabel("share of correct identifications lost")
ax.set_title(f"{model_id}: accuracy lost against tokens ablated, by selection rule", fontsize=9)
fig.tight_layout()
fig.savefig(figures / "07_loss_by_count.png", dpi=120)
table[["rule", "rings", "task", "n_correct_before", "n_lost", "lost", "ci_low", "ci_high"]]

# %% [markdown]
# ### Which tokens have the highest norms here?
#
# On large ViTs the highest-norm tokens are "registers" on background
# patches. On the organism, count how many of each scene's top-n norm tokens
# (n = the objects' token count) lie on some object.

# %%
overlap = []
for i in range(n_scenes):
    sc = world.scene(seed=_mix(seed, i))
    q = vlm.prepare(sc.image, "describe the image .")
    on_objects = set()
    for o in sc.objects:
        on_objects |= set(q.geometry.tokens_for_mask(o.mask).tolist())
    norms = A.image_embedding_norms(vlm, q)
    top = A.choose_tokens("high-norm", len(on_objects), norms=norms, n_image=len(norms))
    overlap.append(len(on_objects & set(top.tolist())) / max(len(on_objects), 1))
high_norm_on_objects = float(pd.Series(overlap).mean())
print(f"share of the top-n norm tokens lying on objects: {high_norm_on_objects:.2f} "
      f"(objects cover {len(on_objects)} of {len(norms)} tokens in the last scene)")

# %% [markdown]
# ## 3 · The paper's numbers beside this model's
#
# Object tokens with one ring of buffer against random tokens at the same
# count (the paper's random baseline used 40 tokens of 576; here the count is
# matched per object).

# %%
def lost(rule, rings, task):
    r = table[(table.rule == rule) & (table.rings == rings) & (table.task == task)]
    return f"{r.lost.iloc[0]:.0%} of {r.n_correct_before.iloc[0]}" if len(r) else "-"


paper = {("object", 0): (0.33, 0.15, 0.33), ("object", 1): (0.72, 0.51, 0.87),
         ("random", 1): (0.02, 0.00, 0.00)}
side = pd.DataFrame([{"ablated": f"{rule}, rings {r}",
                      **{f"paper {t}": f"{v:.0%}" for t, v in zip(A.TASKS, vals)},
                      **{f"{model_id} {t}": lost(rule, r, t) for t in A.TASKS}}
                     for (rule, r), vals in paper.items()])
side

# %%
table.to_parquet(figures / "07_ablation.parquet")
out = {"model": model_id, "n_scenes": n_scenes, "mean_vector": mean.provenance(),
       "noise_filter": use_noise_filter,
       "high_norm_on_objects": high_norm_on_objects,
       "lost": {f"{r.rule},{r.rings},{r.task}": r.lost for r in table.itertuples()},
       "denominators": {f"{r.rule},{r.rings},{r.task}": r.n_correct_before for r in table.itertuples()}}
out = write_summary(figures / "07_summary.json", out, nonsense)
out["lost"].get("object,1,vqa"), out["lost"].get("random,1,vqa")

# %% [markdown]
# ## What to take away
#
# - Ablating an object's own tokens removes it for the model; as many random
#   tokens barely matter. The information is local to the object's tokens.
# - The high-norm baseline depends on where high norms sit: the share printed
#   above says how many of the organism's highest-norm tokens lie on objects
#   (on a plain background, object patches carry the largest embeddings), which
#   is why that rule hurts here. Large ViTs' high-norm "register" tokens sit on
#   background patches instead (notebook 02 looks at norms by layer).
# - For photographs: `vlmscope.load("llava-hf/llava-1.5-7b-hf")` and the same
#   functions with COCO masks (the paper's filter: at most 3 annotations, a
#   single-instance object of 1000-2000 px^2).
