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
figures_dir = "../figures"

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import vlmscope
from vlmscope import plots
from vlmscope.datasets.folder import load_images
from vlmscope.findings import NO_OBJECT_WORDS, mentioned_objects, nothing_to_report, write_summary
from vlmscope.maps import (image_token_norms, localisation, map_peaks,
                           record_generation)

figures = Path(figures_dir)
figures.mkdir(parents=True, exist_ok=True)
vlm = vlmscope.load(model_id)
L = vlm.adapter.n_layers
scenes = load_images(images, n=n_images, seed=seed)
vlm

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
print("description :", rec.generation.text)
print("ground truth:", scene.description())
print(f"{len(geometry)} image tokens on a {geometry.grids[0][0]}x{geometry.grids[0][1]} grid; "
      f"preprocessing: {geometry.note}")
print("maps per head:", rec.head_maps().shape, "= [layers, steps, heads, image tokens]")

# %%
words = mentioned_objects(rec.generation.tokens, scene)
print("object words:", [(s, rec.generation.tokens[s], o.name) for s, o in words])
step, obj = words[0] if words else (0, scene.objects[0])
middle = L // 2
fig = plots.attention_map(scene.image, geometry, rec.map(middle, step),
                          title=f"{rec.generation.tokens[step]!r}, layer {middle}, heads averaged")
fig.axes[0].contour(obj.mask.astype(float), levels=[0.5], colors="cyan", linewidths=0.8);

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
shown = words[:4] or [(s, None) for s in range(min(3, len(rec.generation.tokens)))]
fig = plots.maps_across_layers(
    scene.image, geometry, rec.maps(), steps=[s for s, _ in shown],
    labels=[f"{rec.generation.tokens[s]!r}" + (f" ({o.name})" if o else "") for s, o in shown],
    masks=[o.mask if o else None for _, o in shown],
    title=f"{model_id}: attention of object words, by layer")
fig.savefig(figures / "02_maps_across_layers.png", dpi=120)

# %% [markdown]
# ## Scoring every map against the ground truth
#
# For every scene, every object word the model writes (a colour or shape word
# naming an object that is really there; hallucinated words are skipped) and
# every layer: the pointing game, the mass in the mask and the mask's share
# of the image tokens. We average per image first, so the spread (± sd) is
# over images, not over words of one image.

# %%
frames, peak_frames, texts = [], [], []
for i, sc in enumerate(scenes):
    r = rec if i == 0 else record_generation(vlm, sc.image, max_new_tokens=max_new_tokens)
    found = mentioned_objects(r.generation.tokens, sc)
    df = localisation(r, [(s, o.mask) for s, o in found])
    if len(df):
        df["object"] = [found[w][1].name for w in df.word]
        df["image_id"] = i
        frames.append(df)
    pk = map_peaks(r)
    on_objects = np.unique(np.concatenate([r.prepared.geometry.tokens_for_mask(o.mask)
                                           for o in sc.objects]))
    pk["peak_on_object"] = pk.peak.isin(on_objects)
    pk["image_id"] = i
    peak_frames.append(pk)
    texts.append({"image_id": i, "text": r.generation.text, "truth": sc.description(),
                  "object_words": len(found)})
loc, nonsense = None, None
if frames:
    loc = pd.concat(frames, ignore_index=True)
    loc.to_parquet(figures / "02_localisation.parquet")
else:
    nonsense = nothing_to_report(NO_OBJECT_WORDS, f"None of the {len(scenes)} descriptions names "
                                 "an object of its image; the outlier sections below need no object "
                                 "words and still run.")
peaks = pd.concat(peak_frames, ignore_index=True)
peaks.to_parquet(figures / "02_peaks.parquet")
pd.DataFrame(texts)

# %%
if loc is not None:
    per_image = (loc.assign(pointing=loc.pointing.astype(float))
                 .groupby(["image_id", "layer"])[["pointing", "mass_in_mask", "mask_share", "ratio"]]
                 .mean().reset_index())
    by_layer = per_image.groupby("layer")[["pointing", "ratio", "mask_share"]].agg(["mean", "std"])
    print(f"{loc.image_id.nunique()} images with object words, {len(loc) // L} object words")
    display(by_layer.round(3))

# %%
if loc is not None:
    fig = plots.localisation_by_layer(
        per_image,
        title=f"{model_id}: do object words attend to their object? (mean ± sd over images)")
    fig.savefig(figures / "02_localisation.png", dpi=120)

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
mode = peaks.groupby("layer").peak.agg(lambda p: p.value_counts().idxmax())
peaks["modal_peak"] = peaks.peak == peaks.layer.map(mode)
outliers = peaks.groupby("layer")[["peak_share", "modal_peak", "peak_on_object"]].mean()
outliers["modal_token"] = mode
outliers.round(3)

# %% [markdown]
# Are those fixed peaks high-norm tokens? For the first scene, the norm of
# each image token's hidden state entering each layer (one prompt forward with
# scoped hooks; image tokens precede the answer, so generation sees the same
# states), and where that scene's most common peak token ranks.

# %%
norms = image_token_norms(vlm, rec.prepared)  # [layers, n_image]
first = peaks[peaks.image_id == 0]
rows = []
for layer in range(L):
    counts = first[first.layer == layer].peak.value_counts()
    tok = int(counts.idxmax())
    n, median = norms[layer], np.median(norms[layer])
    rows.append({"layer": layer, "most common peak": tok,
                 "share of this scene's peaks": round(counts.max() / counts.sum(), 3),
                 "its norm / median norm": round(float(n[tok] / median), 2),
                 "norm rank (1 = largest)": int((n > n[tok]).sum()) + 1,
                 "largest norm / median": round(float(n.max() / median), 2)})
sinks = pd.DataFrame(rows).set_index("layer")
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
w, h = scene.image.size
wide = np.zeros((h, w * 2, 3), dtype=np.uint8)
wide[:] = np.asarray(scene.image)[:4, :4].reshape(-1, 3).mean(0).astype(np.uint8)
wide[:, :w] = np.asarray(scene.image)  # the scene on the left half of a 2:1 canvas
side = w * 2
square = np.zeros((side, side, 3), dtype=np.uint8)
square[:] = wide[0, -1]
top = (side - h) // 2
square[top:top + h] = wide  # pad to square by hand, as LLaVA-1.5's training did
cropped = vlm.prepare(wide, "describe the image .")
padded = vlm.prepare(square, "describe the image .")
rows = []
for o in scene.objects:
    m_wide = np.zeros((h, side), dtype=bool)
    m_wide[:, :w] = o.mask
    m_square = np.zeros((side, side), dtype=bool)
    m_square[top:top + h] = m_wide
    rows.append({"object": o.name, "where": o.where,
                 "tokens (square scene)": len(geometry.tokens_for_mask(o.mask)),
                 "tokens (wide, centre-cropped)": len(cropped.geometry.tokens_for_mask(m_wide,
                                                                                      allow_empty=True)),
                 "tokens (wide, padded to square)": len(padded.geometry.tokens_for_mask(m_square))})
print("wide + centre crop :", vlm.generate(cropped, max_new_tokens=max_new_tokens).text)
print("wide + pad-to-square:", vlm.generate(padded, max_new_tokens=max_new_tokens).text)
pd.DataFrame(rows)

# %% [markdown]
# ## Beside the paper
#
# Kaduri et al. show Fig. 4 qualitatively (LLaVA-1.5-7B, 32 layers): in the
# **middle layers** the attention peak of an object word falls **inside the
# object's mask**; **early and late layers are dominated by outlier tokens**.
# They give no localisation numbers, so we compare shapes, not values. Below,
# "early" is the first quarter of the layers, "late" the last quarter and
# "middle" the rest; every statement is computed from the tables above.

# %%
early = [l for l in range(L) if l < L / 4]
late = [l for l in range(L) if l >= 3 * L / 4 and l not in early]
mid = [l for l in range(L) if l not in early + late]
band = {name: ls for name, ls in (("early", early), ("middle", mid), ("late", late)) if ls}
summary = {
    "n_layers": L, "n_images": len(scenes),
    "images_scored": int(loc.image_id.nunique()) if loc is not None else 0,
    "object_words": int(len(loc) // L) if loc is not None else 0,
    "layers": {"early": early, "middle": mid, "late": late},
    "peak_share_by_band": {k: round(float(outliers.peak_share.loc[v].mean()), 3)
                           for k, v in band.items()},
    "modal_peak_rate_by_band": {k: round(float(outliers.modal_peak.loc[v].mean()), 3)
                                for k, v in band.items()},
    "first_scene_sink_norm_rank_by_layer": sinks["norm rank (1 = largest)"].tolist(),
    "off_object_peak_rate_by_band": {k: round(1 - float(outliers.peak_on_object.loc[v].mean()), 3)
                                     for k, v in band.items()},
}
if loc is not None:  # localisation needs object words
    point = by_layer[("pointing", "mean")]
    ratio = by_layer[("ratio", "mean")]
    summary.update({
        "pointing_by_layer": point.round(3).tolist(),
        "pointing_sd_by_layer": by_layer[("pointing", "std")].round(3).tolist(),
        "ratio_by_layer": ratio.round(3).tolist(),
        "ratio_sd_by_layer": by_layer[("ratio", "std")].round(3).tolist(),
        "pointing_chance": round(float(per_image.mask_share.mean()), 3),
        "best_pointing_layer": int(point.idxmax()),
        "best_ratio_layer": int(ratio.idxmax()),
        "pointing_by_band": {k: round(float(point.loc[v].mean()), 3) for k, v in band.items()},
        "ratio_by_band": {k: round(float(ratio.loc[v].mean()), 3) for k, v in band.items()}})
summary = write_summary(figures / "02_summary.json", summary, nonsense)
print(json.dumps(summary, indent=1))

# %%
pb, rb = summary.get("pointing_by_band", {}), summary.get("ratio_by_band", {})
sb, mb = summary["peak_share_by_band"], summary["modal_peak_rate_by_band"]
ob = summary["off_object_peak_rate_by_band"]
ends = [b for b in ("early", "late") if b in band]
print("Paper: middle-layer attention peaks fall inside the object's mask; early/late layers "
      "are dominated by outlier tokens.\n")
if nonsense:
    print(f"Nothing to compare: {nonsense}.")
elif "middle" in band:
    best_mid = all(pb["middle"] > pb[b] for b in ends)
    print(f"1. Middle layers {mid} point inside the object {pb['middle']:.0%} of the time "
          f"(chance {summary['pointing_chance']:.0%}); early {pb.get('early', float('nan')):.0%}, "
          f"late {pb.get('late', float('nan')):.0%}. Best layer: {summary['best_pointing_layer']}. "
          + ("Agrees: the middle band localises best." if best_mid else
             "Differs: the middle band is not the best; here the best layer is "
             f"{summary['best_pointing_layer']}."))
    above = rb["middle"] > 1.0
    print(f"2. Mass in mask / mask share in the middle band: {rb['middle']:.2f} (1.0 = uniform). "
          + ("Agrees: object words put more than chance attention on their object." if above else
             "Differs: no more attention on the object than a uniform map."))
    louder = [b for b in ends if mb[b] > mb["middle"] + 0.05]
    barely = [b for b in ends if mb["middle"] < mb[b] <= mb["middle"] + 0.05]
    quiet = [b for b in ends if b not in louder + barely]
    print("3. Outliers (one token taking the peak whatever the word): the layer's most common "
          "peak token is the peak of " + ", ".join(f"{b} {mb[b]:.0%}" for b in band)
          + " of maps; peaks off every object: " + ", ".join(f"{b} {ob[b]:.0%}" for b in band)
          + "; the peak's share of image attention: " + ", ".join(f"{b} {sb[b]:.2f}" for b in band)
          + ". " + (f"Agrees for {' and '.join(louder)}: a fixed token peaks more often than in "
                    "the middle. " if louder else "")
          + (f"Not clearly for {' and '.join(barely)}: a fixed token peaks more often than in "
             "the middle, but by 5 points or less. " if barely else "")
          + (f"Differs for {' and '.join(quiet)}: no more dominated by one fixed token than the "
             "middle layers." if quiet else ""))
else:
    print(f"This model has only {L} layers: no middle band to compare.")
print(f"\nSpread: ± sd over {summary['images_scored']} images (tables above); with few images "
      "treat small differences as noise.")

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

# %%
plt.close("all")
