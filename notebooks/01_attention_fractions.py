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
# # 01 · Where does the attention of generated tokens go?
#
# Kaduri, Bagon & Dekel (CVPR 2025, "What's in the image?") start with a simple
# measurement: while a VLM describes an image, how much of each generated
# token's attention lands on the **image** tokens, on the **query** tokens
# (every non-image prompt token, BOS included) and on the **earlier generated**
# tokens? Per layer, averaged over heads, pooled over tokens and images.
#
# vlmscope records this while generation runs, with one attention backend
# registered through transformers' `AttentionInterface`: for each layer it
# keeps only the row of the token being predicted and sums it by group, so no
# full attention matrix is ever stored. (`tests/test_attention.py` checks the
# numbers against stock eager `output_attentions`.)

# %% tags=["parameters"]
model_id = "organism"
n_images = 8  # synthetic scenes to describe
seed = 0
max_new_tokens = 48
images = ""  # empty: the synthetic world; else your image folder or COCO copy (docs/images.md)
runs_dir = ""  # resumable run store; empty: <figures_dir>/01_runs
figures_dir = "../figures"

# %%
from pathlib import Path

import matplotlib.pyplot as plt

import vlmscope
from vlmscope import plots, runner
from vlmscope.datasets.folder import load_images
from vlmscope.findings import fractions as finding
from vlmscope.findings import Conclusion, nothing_to_report, write_summary

figures = Path(figures_dir)
figures.mkdir(parents=True, exist_ok=True)
vlm = vlmscope.load(model_id)
config = finding.Config(max_new_tokens=max_new_tokens)

# %% [markdown]
# ## Record while describing
#
# Each scene is described greedily ("describe the image ."); one stored,
# resumable part per scene (`vlmscope.runner`, the same run as
# `python -m vlmscope run fractions`). Step 0 is the last prompt row (it
# predicts the first answer token); step *k* predicts answer token *k*.

# %%
result = runner.run(finding, vlm, n=n_images, seed=seed, images=images, config=config,
                    out=Path(runs_dir or figures / "01_runs"), model_name=model_id)
fractions = result.df.rename(columns={"item": "image_id"})
fractions.to_parquet(figures / "01_fractions.parquet")
print(f"{fractions.image_id.nunique()} images, {len(fractions) // vlm.adapter.n_layers} generated "
      f"tokens, {vlm.adapter.n_layers} layers")
fractions.groupby("layer")[["image", "query", "query_no_bos", "bos", "generated"]].mean().round(3)

# %%
fig = plots.fractions_by_layer(fractions, title=f"{model_id}: attention of generated tokens")
fig.savefig(figures / "01_fractions.png", dpi=120)

# %% [markdown]
# ## Beside the paper
#
# The paper shows these curves as figures (InternVL2-76B in Fig. 1, LLaVA-1.5
# in the appendix) rather than a table, and draws two conclusions we can
# check here: generated tokens give the image a **small share** of their
# attention compared with its share of the sequence, and BOS (the attention
# sink) takes a large part of the "query" share, which is why it is reported
# separately. The summary below keeps this run's figures; *What we found* at
# the end sets them beside the paper's.

# %%
first = vlm.prepare(load_images(images, n=1, seed=seed)[0].image, config.question).groups
summary = finding.report(fractions, image_tokens=first.image.numel(),
                         prompt_length=first.prompt_length, n_images=result.summary["n"])
nonsense = None if summary["object_words"] else nothing_to_report(
    "no description names an object of its image: the answers are nonsense",
    "The attention shares are measured all the same; read them as this model's, not as a finding "
    "about how a working model looks.")
summary = write_summary(figures / "01_summary.json", summary, nonsense)

# %% [markdown]
# ## Explore one image
#
# Pick an image and a generated token; the bars show that token's attention
# split per layer. (Widgets need a live kernel; the static figure above is the
# headless record. `vlmscope.widgets` holds the explorer: it only wires the
# table above to `plots.token_fractions`.)

# %%
from vlmscope.widgets import fractions_explorer

fractions_explorer(fractions)

# %% [markdown]
# ## What we found
#
# This run beside Kaduri et al. (`findings.fractions.vs_paper`: the paper
# gives curves, so its column says what to compare), then the same numbers
# in words (`findings.fractions.what_we_found`). The chance level of the
# image's share is its share of the prompt: what attention spread evenly
# over the prompt would give it.

# %%
plt.close("all")
Conclusion(finding.vs_paper(fractions),
           finding.what_we_found(summary, model_id, vlm.adapter.n_layers))

# %% [markdown]
# **Reading it for the bundled organism.** The default `model_id`,
# `organism`, is `organism-vit-m`, a 4-layer decoder, so "the middle layers"
# are layers 1 and 2 and the paper's 32-layer curve has no exact
# counterpart. Its image is 64 tokens of a short prompt, so the image is most
# of the prompt; the comparison with the paper is about the *relation* of the
# two shares (see the table and the sentence above), not their size. How
# much of that attention lands on the object a word names is notebook 02's
# question.
