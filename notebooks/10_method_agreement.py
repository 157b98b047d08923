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
# # 10 · Which attribution method finds the evidence the model actually uses?
#
# Every study this suite reproduces locates evidence in the image with one
# method: attention maps (Kaduri et al., notebooks 01-02), iGOS+ masks (Xing et
# al., notebooks 05-06), the logit lens and token ablation (Neo et al.,
# notebooks 07-08). None of them could check its method against the truth.
# The organism can, in two senses:
#
# - **geometric truth**: every object's mask is exact, so we know which image
#   tokens show the object a question asks about (pointing game, mass in the
#   mask, AUROC of the token scores against mask membership);
# - **causal truth**: the model's own dependence on each image token, measured
#   directly: the drop in the answer's log-probability when that one token's
#   embedding is replaced by the mean visual-token vector at the language
#   model's input. A method agrees with it when its map ranks the tokens alike
#   (Spearman), when the object it favours is the one whose replacement costs
#   the answer most (`region_hit`), and by deletion / insertion in the
#   reference definition of notebook 05.
#
# The two truths need not agree: a model can answer "what color is the
# circle?" from the circle's tokens, or from somewhere else; a method can point
# at the circle without the model using it, and the reverse. **Stability**
# completes the picture: the same method under another noise seed, and on a
# copy of the model with random weights (Adebayo et al. 2018: a map that does
# not change when the weights are random explains the image, not the model).

# %% tags=["parameters"]
model_id = "organism-vit-m"  # the member the worked examples and the explorer use
models = []  # zoo members of the leaderboard (all four: organism.ZOO); empty: model_id only
n_scenes = 1  # per member; one question of each kind per scene (15 scenes give the 60 questions of the docs)
kinds = ["color", "where"]  # the full study: all four, "color", "shape", "where", "exists"
methods = []  # attribution methods; empty: every method of the study (findings.agreement.METHODS)
noise_seeds = 2  # seeds per method that draws noise (seed stability)
randomised = True  # also explain a weight-randomised copy of each member (the sanity check)
n_resamples = 1000  # bootstrap resamples of the intervals
seed = 0
runs_dir = ""  # resumable run stores; empty: <figures_dir>/10_runs
figures_dir = "../figures"

# %%
from pathlib import Path

import pandas as pd

import vlmscope
from vlmscope import plots, runner
from vlmscope.datasets.synthetic import World
from vlmscope.findings import agreement as finding
from vlmscope.findings import answer_sense, nothing_to_report

figures = Path(figures_dir)
runs = Path(runs_dir) if runs_dir else figures / "10_runs"
cfg = finding.Config(methods=tuple(methods or finding.METHODS), kinds=tuple(kinds),
                     noise_seeds=noise_seeds, randomised=randomised)

# %% [markdown]
# ## The methods, a paragraph each
#
# All take the model, one prepared question and the model's own answer, and
# give a map over the image tokens and over the original pixels
# (`vlmscope.attribution`); each map's wall time and peak memory are recorded.
#
# - **attention**: the answer's attention to the image tokens, averaged over
#   heads, per layer and over layers; **attention@best** picks the layer that
#   agrees best with the truth, an oracle choice no user can make: shown,
#   never ranked.
# - **rollout** (Abnar & Zuidema 2020): attention multiplied through the
#   layers, with the residual stream's identity mixed in.
# - **attention × gradient**: attention weighted by its gradient with respect to
#   the answer's log-probability.
# - **gradient** (saliency): the gradient of the answer's log-probability with
#   respect to each image token's embedding at the language model's input, L2
#   over the hidden dimension.
# - **integrated gradients** (Sundararajan et al. 2017): in pixels, along a
#   path from a baseline image.
# - **iGOS+ / iGOS++** (Xing et al.; the suite's heatmaps in the reference
#   preset) and **iGOS+ with a line search**: a mask optimised so that deleting
#   it hurts the answer and inserting it helps.
# - **relevancy** (Chefer et al. 2021): relevance propagated through the
#   attention layers of a generic transformer.
# - **lens**: the logit lens's probability of the answer's object word at each
#   image token (best layer).
# - **patching**: the per-token causal effect itself (replacement by the mean
#   vector); it IS the causal truth, so it is not ranked against it.
#
# Two reference maps come along: the causal truth scored against the mask
# (how much the model's own evidence sits on the object) and a random map
# (chance).

# %% [markdown]
# ## The leaderboard
#
# `runner.run("agreement", ...)` for each member (the command line:
# `python -m vlmscope run agreement --model organism-vit-m --n 15`), resumable;
# the table is the mean of each truth over questions with a 95% bootstrap
# interval (BCa, seeded).

# %%
frames = [runner.run("agreement", vlmscope.load(m), n=n_scenes, seed=seed, out=runs / m, config=cfg,
                     model_name=m, progress=False).df for m in (models or [model_id])]
df = pd.concat(frames, ignore_index=True)
nonsense = nothing_to_report(answer_sense(finding.accuracy_by_kind(df)),
                             "The maps below explain nonsense answers.")
lb = finding.leaderboard(df, n_resamples=n_resamples, seed=seed)
plots.save(plots.agreement_leaderboard(lb), figures, "10_leaderboard")
finding.table(lb)

# %% [markdown]
# The ranking over all members (1 = best; `geometric` and `causal` are mean
# ranks over their truths; `shift` = causal - geometric: positive when a
# method looks better against the mask than against what the model uses).
# Oracle methods and the patching method on its own truth are left out.

# %%
finding.ranking(df).round(2)

# %% [markdown]
# ## Three questions where the methods disagree
#
# The questions whose AUROC and causal Spearman vary most across methods, on
# `model_id`; each panel is one method's map, the asked-about object outlined,
# with its AUROC and its Spearman with the causal map.

# %%
vlm = vlmscope.load(model_id)
mean = finding.reference_mean(vlm, seed)
picked = finding.worked_examples(df[df.model == model_id] if "model" in df else df)
for i, row in picked.iterrows():
    ex = finding.example(vlm, World().scene(int(row.scene_seed)), row.kind, mean, cfg.methods)
    plots.save(plots.method_maps(ex), figures, f"10_example_{i}")
picked

# %% [markdown]
# ## What this means for the three studies
#
# Each study's conclusions rest on one method. Where it ranks here, on a
# model whose truth is known, says how far those conclusions can be trusted
# on the organism: notebook 06's "focus does not go with correctness" is
# measured with iGOS+ masks, so it is only as good as iGOS+'s agreement with
# the causal truth; notebook 02's localisation by layer uses raw attention;
# notebook 08 the logit lens. The sanity check flags a method whose map on
# random weights still correlates above 0.5 with its map on the trained model.

# %%
out = finding.write(figures, df, lb, models or [model_id], n_scenes, nonsense)
print("sanity check, suspect:", out.get("sanity_suspect"))
finding.for_the_papers(df).round(2)

# %% [markdown]
# ## Explorer
#
# One question at a time: every method's map beside both truths (the mask's
# tokens and the causal map). Pick a scene seed and a question kind.

# %%
from ipywidgets import Dropdown, IntSlider, interact  # noqa: E402

interact(lambda scene, kind: plots.method_maps(finding.example(vlm, World().scene(scene), kind, mean,
                                                               cfg.methods)),
         scene=IntSlider(value=7, min=0, max=200), kind=Dropdown(options=list(finding.KINDS)));

# %% [markdown]
# ## What to take away
#
# - The table and the ranking above are the answer on this zoo: a method's
#   place against the mask and its place against the model's own use of the
#   tokens, side by side; `shift` says where they part.
# - The causal map's own AUROC against the mask (the `causal` row) says how
#   much the model relies on the asked-about object at all; a method cannot be
#   expected to point where the model does not look.
# - Numbers at the study's size, with intervals: docs/method-agreement.md.
