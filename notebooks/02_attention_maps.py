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
# # 02 · Attention maps across layers: does the model look at what it names?
#
# Notebook 01 measured *how much* attention generated tokens give the image.
# This one asks *where* it goes. Kaduri, Bagon & Dekel (CVPR 2025, Fig. 4)
# take the attention row of a generated token over the image tokens, average
# it over heads, lay it back on the patch grid, min-max normalise it and
# overlay it on the picture, one panel per layer. What they see:
#
# - in **early and late layers** the maps are dominated by a few **outlier
#   tokens** (attention sinks / high-norm tokens) that light up whatever the
#   word is;
# - in the **middle layers**, when the model writes an object word, the
#   attention peak falls **inside that object** (they checked against SAM
#   masks).
#
# On photographs "inside the object" needs a segmentation model. The organism's
# synthetic world gives exact masks, so here we can *score* every map:
#
# - **pointing game**: is the map's peak token one of the object's tokens?
# - **mass in mask**: what share of the image attention lands on the object's
#   tokens, divided by the share of image tokens the object covers. A uniform
#   map scores 1.0, so 1.0 is chance.

# %% tags=["parameters"]
model_id = "organism"
n_images = 8  # synthetic scenes to describe and score
seed = 0
max_new_tokens = 48
images = ""  # empty: the synthetic world; else your image folder or COCO copy (docs/images.md)
runs_dir = ""  # resumable run store; empty: <figures_dir>/02_runs
figures_dir = "../figures"

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

import vlmscope
from vlmscope import plots, runner
from vlmscope.datasets.folder import load_images
from vlmscope.findings import NO_OBJECT_WORDS, Conclusion, mentioned_objects, nothing_to_report
from vlmscope.findings import maps as finding
from vlmscope.findings import outliers
from vlmscope.maps import (crop_or_pad, image_token_norms, outlier_table, record_generation,
                           sink_norms)

figures = Path(figures_dir)
figures.mkdir(parents=True, exist_ok=True)
vlm = vlmscope.load(model_id)
L = vlm.adapter.n_layers
scenes = load_images(images, n=n_images, seed=seed)
run = dict(n=n_images, seed=seed, images=images, model_name=model_id,
           out=Path(runs_dir or figures / "02_runs"))

# %% [markdown]
# ## One description, one map
#
# `record_generation` describes the image greedily on vlmscope's attention
# backend and keeps, per layer and generated token, the row over the image
# tokens (with `maps="heads"`, one row per head; `Recorded.maps()` averages
# them). Step *s* is the row that **predicts** token *s*: the map of the word
# "red" is the attention of the position that is about to write "red".

# %%
scene = scenes[0]
rec = record_generation(vlm, scene.image, max_new_tokens=max_new_tokens, maps="heads")
geometry = rec.prepared.geometry
print(f"description : {rec.generation.text}\nground truth: {scene.description()}\n{len(geometry)} "
      f"image tokens on a {geometry.grids[0][0]}x{geometry.grids[0][1]} grid; preprocessing: {geometry.note}")

# %%
words = mentioned_objects(rec.generation.tokens, scene)  # (step, object) of every object word
step, obj = words[0] if words else (0, scene.objects[0])
plots.attention_map(scene.image, geometry, rec.map(L // 2, step), outline=obj.mask,
                    title=f"{rec.generation.tokens[step]!r}, layer {L // 2}, heads averaged");

# %% [markdown]
# ## The same word, every layer
#
# One row per object word of the description, one column per layer; the
# object's true outline is drawn in cyan.
#
# > **Gotcha: min-max normalisation.** Each panel is stretched to its own
# > range, so a nearly uniform map looks as contrasted as a sharp one, and a
# > layer that gives the image almost no attention looks as bright as one that
# > gives it plenty. Read the panels for *where*, and the numbers below for
# > *how much*.

# %%
fig = plots.object_word_maps(scene.image, geometry, rec.maps(), rec.generation.tokens, words,
                             title=f"{model_id}: attention of object words, by layer")
plots.save(fig, figures, "02_maps_across_layers")

# %% [markdown]
# ## Scoring every map against the ground truth
#
# For every scene, every object word the model writes (a colour or shape word
# naming an object that is really there; hallucinated words are skipped) and
# every layer: the pointing game, the mass in the mask and the mask's share
# of the image tokens. One stored, resumable part per scene
# (`vlmscope.runner`, the same run as `python -m vlmscope run maps`). We
# average per image first, so the spread (± sd) is over images, not over
# words of one image.

# %%
loc = runner.run(finding, vlm, config=finding.Config(max_new_tokens=max_new_tokens), **run).df
nonsense = None if len(loc) else nothing_to_report(
    NO_OBJECT_WORDS, "None of the descriptions names an object; the outlier sections still run.")
per_image, by_layer = finding.by_layer(loc)
by_layer.round(3)

# %%
if not nonsense:
    fig = plots.localisation_by_layer(per_image, title=f"{model_id}: do object words attend to "
                                      "their object? (mean ± sd over images)")
    plots.save(fig, figures, "02_localisation")

# %% [markdown]
# ## Outlier tokens
#
# > **Gotcha: sinks and high-norm tokens.** Some positions collect attention
# > whatever the query is: BOS in the text, and in the image a few patches
# > (often background) whose hidden states grow a very large norm. In layers
# > where they dominate, the map shows the sink, not the object, and a
# > head-averaged map can look "confident" while saying nothing about the
# > word. Three signs of it, per layer, over every generated token (not only
# > object words): how often the peak is the *same* token (the layer's most
# > common peak) whatever the word and the image are, how often the peak sits
# > off every object (on background), and how much of the image attention the
# > single peak token takes.

# %%
peaks = runner.run(outliers, vlm, config=outliers.Config(max_new_tokens=max_new_tokens), **run).df
outlier_table(peaks).round(3)

# %% [markdown]
# Are those fixed peaks high-norm tokens? For the first scene, the norm of
# each image token's hidden state entering each layer (one prompt forward with
# scoped hooks; image tokens precede the answer, so generation sees the same
# states), and where that scene's most common peak token ranks.

# %%
sinks = sink_norms(peaks[peaks.item == 0], image_token_norms(vlm, rec.prepared))
sinks

# %% [markdown]
# > **Gotcha: preprocessing moves every map.** A map is only as right as the
# > token → pixel geometry behind it. LLaVA-1.5 was *trained* with
# > pad-to-square, but the Hugging Face processor **centre-crops** unless
# > `do_pad=True`; the organism's processor also centre-crops. The synthetic
# > scenes are square, so nothing is lost here, but put the same scene on a
# > wide canvas and the crop cuts its left and right edges off: objects there
# > have no image tokens at all, and their words cannot attend to them. Padding
# > to square instead keeps every object but shrinks it onto fewer tokens.
# > vlmscope's geometry follows the processor exactly (`geometry.note`), so the
# > maps above stay aligned; a hand-rolled reshape-and-resize would not.

# %%
table, texts = crop_or_pad(vlm, scene, max_new_tokens=max_new_tokens)
display(pd.Series(texts).to_frame("description"), table)

# %% [markdown]
# ## Beside the paper
#
# Kaduri et al. show Fig. 4 qualitatively (LLaVA-1.5-7B, 32 layers): in the
# **middle layers** the attention peak of an object word falls **inside the
# object's mask**; **early and late layers are dominated by outlier tokens**.
# They give no localisation numbers, so we compare shapes, not values. Below,
# "early" is the first quarter of the layers, "late" the last quarter and
# "middle" the rest; every statement is computed from the tables above. The
# summary below keeps this run's figures; *What we found* at the end sets
# them beside the paper's claims.

# %%
summary = finding.write(figures, loc, peaks, sinks, n_layers=L, n_images=len(scenes),
                        nonsense=nonsense)

# %% [markdown]
# ## Explore
#
# Slide through layers, heads ("mean" = the head average used above) and the
# generated tokens of the first scene; the table scores the shown map against
# every object in the scene. Watch for heads that always point at the same
# patch, and for the layer where the colour and shape words find their object.

# %%
from vlmscope.widgets import map_explorer

map_explorer(rec, masks={o.name: o.mask for o in scene.objects})

# %% [markdown]
# ## What we found
#
# This run's best pointing layer beside Kaduri et al.'s qualitative claim
# (`findings.maps.vs_paper`), then the summary's figures by band in words,
# with the chance level (`findings.maps.what_we_found`).

# %%
plt.close("all")
Conclusion(finding.vs_paper(loc), finding.what_we_found(summary, model_id))

# %% [markdown]
# **Reading it for the bundled organism.** The default `model_id`,
# `organism`, is `organism-vit-m`, a 4-layer decoder: "early" and "late" are
# one layer each and "middle" is layers 1 and 2, so a band is a layer or two,
# not the paper's eight. Nothing in the organism's training asks a
# particular layer to localise; whether its best band is the paper's middle
# one is what the sentence above says, and why a 4-layer model localises
# where it does is **not known** from these measurements. Pointing is read
# against chance (the object's share of the image tokens): a layer well
# above chance looks at the object whatever its band.
