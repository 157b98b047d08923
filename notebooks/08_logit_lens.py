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
# # 08 · The logit lens on image tokens
#
# Neo et al. (ICLR 2025, section 4) read the residual stream at every image
# position through the model's own final norm and unembedding (the *logit
# lens*): what word would the model predict if it had to speak from that patch
# after layer l? On LLaVA-1.5 the object's patches come to read as the
# object's name in mid-to-late layers: at the best layer (about 26 of 33
# hidden states), 23.7% of object-patch positions have the object's name as
# their top-1 token; 6.5% for Qwen2-VL-2B (2nd-hand figures).
#
# `vlmscope.lens.image_lens` hooks each decoder layer's **output** (the
# residual stream) and applies the final norm once; Hugging Face's last
# `hidden_states` entry is already normed, and norming it again is a classic
# mistake. Only the top-k per position is kept.
#
# For the organism the object's "name" is its colour or shape word.

# %% tags=["parameters"]
model_id = "organism"
n_scenes = 20
seed = 0
images = ""  # an image folder (annotations.json) or a local COCO copy; empty: synthetic scenes
runs_dir = ""  # resumable run store; empty: <figures_dir>/08_runs
figures_dir = "../figures"

# %%
from pathlib import Path

import pandas as pd

import vlmscope
from vlmscope import plots, runner
from vlmscope.datasets.folder import load_images
from vlmscope.datasets.synthetic import World
from vlmscope.findings import lens as finding
from vlmscope.findings import Conclusion, nothing_to_report, write_summary
from vlmscope.widgets import lens_explorer

figures = Path(figures_dir)
figures.mkdir(parents=True, exist_ok=True)
vlm = vlmscope.load(model_id)
world = World()

# %% [markdown]
# ## 1 · One scene, every layer
#
# Each patch shows its top-1 lens word; the first object's patches are boxed
# in red. The last layer is the model's own next-token prediction at those
# positions (checked in `tests/test_lens.py`). On an image folder, the first
# image's first object, named by the single-token words of its name.

# %%
ex = finding.example(vlm, load_images(images, 1, seed)[0] if images else world.scene(seed=seed + 1))
L = ex.result.n_layers
fig = plots.lens_layers(ex.item.image, ex.prepared.geometry,
                        [ex.result.top_tokens(layer) for layer in range(L)], ex.tokens,
                        title=f"{model_id}: top lens word per patch ({ex.object.name} boxed)")
fig.savefig(figures / "08_lens_layers.png", dpi=120)
ex.words_by_layer()

# %% [markdown]
# ### Explore
#
# The layer slider redraws the patch words for that layer.

# %%
lens_explorer(ex.result, ex.prepared, highlight=ex.tokens, title=ex.object.name)

# %% [markdown]
# ## 2 · The score per layer, over many scenes
#
# For every object: the share of its patches (rings 0: boxes overlapping the
# mask; rings 1: with a ring of buffer) whose top-1 lens word is its colour or
# its shape word (an annotated object: a word of its name), per layer
# (`runner.run("lens", ...)`, also `python -m vlmscope run lens`).

# %%
result = runner.run("lens", vlm, n=n_scenes, seed=seed, images=images or None,
                    out=runs_dir or figures / "08_runs", model_name=model_id, progress=False)
fig = plots.lens_score(result.df, model=model_id)
fig.savefig(figures / "08_lens_score.png", dpi=120)
per_layer = finding.per_layer(result.df)
per_layer

# %% [markdown]
# ### What do object patches read as, if not their name?
#
# The top-1 words of every object patch at the best layer, over up to 8 other
# scenes (the image folder's first 8 images).

# %%
best_layer, best = int(per_layer.loc[0].share.idxmax()), float(per_layer.loc[0].share.max())
what = finding.reads_as(vlm, best_layer, n=min(n_scenes, 8), images=images or None)
finding.reads_as_table(what)

# %% [markdown]
# ## What we found
#
# The best layer's share of object patches read as their name beside Neo et
# al.'s (`findings.lens.vs_paper`), then the same numbers in words with the
# chance level, the share a uniformly random vocabulary word would score
# (`findings.lens.chance_share`: the object's naming words over the
# vocabulary), and what the patches read as instead (`findings.lens.what_we_found`).

# %%
per_layer.to_parquet(figures / "08_lens.parquet")
nonsense = None if best > 0 else nothing_to_report(
    "no object patch reads as its colour or shape word in any layer: no layer to point at",
    "The 'best layer' below is only the first layer of a tie at zero.")
summary = write_summary(figures / "08_summary.json", {
    "model": model_id, "n_scenes": n_scenes, "best_layer": best_layer if not nonsense else None,
    "best_share": best, "reads_as": dict(what.most_common(10)),
    "chance_share": finding.chance(vlm, result.df)}, nonsense)
Conclusion(finding.vs_paper(result.df, chance=summary["chance_share"]),
           finding.what_we_found(summary, model_id, summary["chance_share"], what))

# %% [markdown]
# **Reading it for the bundled organism.** The default `model_id`,
# `organism`, is `organism-vit-m`: a 4-layer decoder with a word-level
# vocabulary of the synthetic world's words, so a random word is far more
# likely to be the right one than among the about 32,000 tokens of
# LLaVA-1.5's vocabulary; read the share against the chance level above,
# not only against the paper's.
#
# - The table and sentence say whether this model's object patches come to
#   read as their names, and at which layer. A small organism trained only
#   to answer questions about a synthetic world need not build the
#   word-aligned representations a 7B model pretrained on text has.
# - Where the object patches read mostly as **position words** (rows and
#   columns), the patches carry *where* the object is more readily than
#   *what* it is, in the words the lens can read. Why is **not known**: these
#   measurements do not test it. One untested guess is that every object
#   word the organism was trained to produce comes with a place ("a red
#   circle at top left"), so the place is what its image tokens are pushed
#   towards; a probe or an intervention on the patches would be needed to
#   say more. [docs/organism.md, "Training variants"](../docs/organism.md#training-variants-what-makes-the-papers-mechanisms-appear)
#   measures the lens share on other zoo members and training choices, and
#   notebook 11 draws it by depth for each of them beside the paper's.
# - The lens is a *reading*, not an intervention: notebook 07 (ablation) and
#   notebook 09 (last-position knockout) test where the information is used.
