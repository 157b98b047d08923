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
# # 05 · Heatmaps for free-form answers: iGOS+, step by step
#
# Attention maps (notebook 02) show where the model's attention goes; they do
# not say which pixels the *answer* depends on. Xing et al. (2025, "Where do
# LVLMs look when answering questions?") optimise a mask instead: find the
# smallest region whose removal destroys the answer **and** whose insertion
# alone restores it. Their method, iGOS+, extends the image classifier
# explainers iGOS/iGOS++ to open-ended answers:
#
# 1. **Which answer tokens to explain.** Only the *visually relevant* ones:
#    tokens whose log-probability drops by more than 1 when the image is
#    replaced by a blurred copy (the baseline), minus stop words (the first
#    release also dropped the first token; the current one does not). A
#    one-token answer is kept when the baseline at least halves its
#    probability. A sample with no such token is **skipped, with the reason**.
# 2. **What to optimise.** A 32x32 mask *M* (low = important), upsampled to
#    the picture. Deletion blends the image towards the baseline where *M* is
#    low; insertion blends the baseline towards the image there. Both terms are
#    integrated along a path of *N* scalings of the mask (integrated
#    gradients), with a little noise.
# 3. **Regularisers.** L1 (keep the region small), bilateral total variation
#    (smooth, but allowed to change across image edges) and an L2 term that
#    decays with the iterations.
# 4. **Faithfulness.** Delete (or insert) the mask cells from most to least
#    important, 20 at a time, and follow the selected tokens' probability.
#
# On the organism the truth is known: every question below asks about one
# object whose exact mask the synthetic world gives, so each heatmap can be
# *scored*, against the attention map, the input gradient and a random map.
#
# **Which definitions.** By default this notebook runs
# `HeatmapConfig.preset("reference")`: the released code's definitions
# (bytedance/LVLM_Interpretation), checked against an independent
# re-implementation (`benchmarks/igos_reference.py`, Spearman rho >= 0.99
# with noise off). Where vlmscope chooses differently (the `"vlmscope"`
# preset, the line search, per-image noise seeds, ...), each choice is a
# named switch; section 4b measures them on this question and
# [docs/fidelity.md, "Heatmaps"](../docs/fidelity.md#heatmaps-where-do-lvlms-look)
# lists each with its measured effect on the organism.

# %% tags=["parameters"]
model_id = "organism"
seed = 4  # which synthetic scene (with an image folder: which of its images) to explain
kind = "color"  # "color" or "where" about one object; a folder's image: "where" or "exists"
n_questions = 8  # questions scored at the end
iterations = 5  # iGOS+ settings: the reference README's run
ig_iter = 10
mask_size = 32
preset = "reference"  # HeatmapConfig preset: "reference" (the released code) or "vlmscope"
tie_orders = 5  # random tie orders of the deletion/insertion metric (section 4)
images = ""  # empty: the synthetic world; else your image folder or COCO copy (docs/images.md)
runs_dir = ""  # resumable run store of section 8; empty: <figures_dir>/05_runs
figures_dir = "../figures"

# %%
from IPython.display import display

import vlmscope
from vlmscope import plots, runner
from vlmscope.findings import Conclusion
from vlmscope.findings import heatmaps as finding
from vlmscope.heatmaps import HeatmapConfig
from vlmscope.widgets import heatmap_explorer

vlm = vlmscope.load(model_id)
config = HeatmapConfig.preset(preset, iterations=iterations, ig_iter=ig_iter, size=mask_size)
ex = finding.explain(vlm, seed, kind, config, images=images)  # the sanity checks (5) stay synthetic
print(f"Q: {ex.question.text}\nA: {ex.answer.text}   (truth: {ex.question.answer})")
config

# %% [markdown]
# ## 1 · The baseline and the visually relevant tokens
#
# The baseline is the picture blurred with the reference's rule (kernel 101 px
# below 500 px wide, sigma = kernel - 1: on a 64-px scene, nearly its mean
# colour; the reference preset blurs the 8-bit picture and rounds to 8 bits,
# as the released code does with OpenCV). `select_tokens` scores every answer token teacher-forced on the
# image and on the baseline; the stop list is built from *this* tokenizer
# (the reference hard-codes LLaMA's token ids).

# %%
plots.save(plots.baselines(ex.image, ex.baselines), figures_dir, "05_baselines")
print("rule:", ex.selection.rule, "| skipped:", ex.selection.skipped)
ex.selection.table().round(3)

# %% [markdown]
# ## 2 · The optimisation
#
# `igos` runs the 2 x *N* path images (deletion and insertion) `config.batch`
# at a time with one backward per batch (the reference keeps all *N* graphs
# of a term alive), with the model's weights frozen, so only the mask gets
# gradients. The noise is drawn image after image in path order from one
# generator (the reference preset) or from a seed per path image, so the
# batch size changes the speed and memory, never the mask. `keep_history` keeps the mask after each
# iteration; the trace holds the deletion and insertion terms (sums of
# log-probabilities of the selected tokens) and the regularisers.

# %%
plots.save(plots.igos_iterations(ex.image, ex.heatmap, ex.target), figures_dir, "05_iterations")
ex.trace().round(4)

# %% [markdown]
# ## 3 · Against simpler maps, on the known target
#
# Three baselines on the same footing: the attention of the selected positions
# to the image tokens (layers and heads averaged), the input gradient, and a
# uniform random map (chance). **Pointing game**: is the map's maximum inside
# the object? **Mass in mask**: the share of the map inside the object; a
# uniform map gets the object's area.

# %%
panels = plots.heatmap_panels(ex.image, ex.maps(), ex.target, scores=ex.score_captions(),
                              title=f"{ex.question.text} -> {ex.answer.text!r}")
plots.save(panels, figures_dir, "05_maps")
ex.scores().round(3)

# %% [markdown]
# ## 4 · Deletion and insertion curves
#
# Cells sorted from most to least important; 20 at a time go from image to
# baseline (deletion: a faithful map makes the curve fall fast, low score) or
# from baseline to image (insertion: rises fast, high score). Scores are
# normalised per step: 1 = the original image's probability, 0 = the
# baseline's. Two definitions (`config.deletion_metric`): the released one
# (cells bilinearly upsampled, each step weighted by the cells it changed;
# the released code's operator-precedence slip at the last step is fixed) and
# vlmscope's (nearest-neighbour cells, the mean of all 53 points). Both are
# checked against direct computations in `tests/test_heatmaps.py`.
#
# **Ties.** Many cells of an iGOS mask sit exactly at 1 (never moved), so
# their order is arbitrary; the released code leaves it to `torch.argsort`.
# vlmscope orders equal values by cell index unless `tie_seed` asks for a
# seeded random order. The table after the curves shows how far the scores
# move over `tie_orders` random tie orders
# ([fidelity row](../docs/fidelity.md#heatmaps-where-do-lvlms-look)).

# %%
plots.save(plots.faithfulness_curves(ex.faithfulness(), title=f"{model_id}: {ex.question.text}"), figures_dir, "05_faithfulness")
ex.faithfulness_table().round(3)

# %%
tied, tie_spread, ties = ex.tie_orders(tie_orders)
print(f"{tied:.0%} of the mask's cells share its most common value; range over tie orders:")
display(tie_spread)
ties.round(3)

# %% [markdown]
# ## 4b · What each of vlmscope's choices does to this mask
#
# The same question and tokens, one switch at a time away from the reference
# preset: the Armijo line search instead of Nesterov steps, a noise seed per
# path image instead of one generator, SDPA attention kernels, vlmscope's
# bilateral TV, and the whole `"vlmscope"` preset. `rho` is the Spearman
# correlation of the mask with the reference preset's; mass and pointing are
# on the asked object; deletion and insertion use the reference metric for
# all. On three organism questions (one per kind) the same comparison is in
# [docs/fidelity.md](../docs/fidelity.md#heatmaps-where-do-lvlms-look)
# (`benchmarks/heatmap_fidelity.py`).

# %%
ex.switches().round(3)

# %% [markdown]
# ## 5 · Sanity checks
#
# Two checks a saliency method must pass (Adebayo et al., "Sanity checks for
# saliency maps"), run here on a one-object scene:
#
# - **move the object**: the same question on the scene with the object
#   shifted; the heatmap's mass must follow it;
# - **randomise the weights**: a model of the same architecture with freshly
#   initialised weights, explaining the same answer tokens; its heatmap must
#   be unrelated to the trained model's (Spearman rank correlation near 0).
#   A method that passes only the first check would be an edge detector.

# %%
sanity = finding.sanity_checks(vlm, seed + 100, config)
plots.save(plots.heatmap_checks(sanity.panels), figures_dir, "05_sanity")
print(f"rank correlation trained vs random weights: {sanity.rho:.3f}; object area {sanity.area:.3f}")
sanity.table.round(3)

# %% [markdown]
# ## 6 · How much does one run depend on its noise?
#
# The path images carry Gaussian noise (std 0.2 in the model's normalised
# pixel units), drawn from `config.seed`. Run the same question with other
# seeds: how similar are the masks (Spearman rank correlation over the mask
# cells), and does the mass on the object hold? A finding drawn from one
# heatmap is only as firm as this agreement.

# %%
per_seed, pairs = ex.noise_seeds((0, 1, 2))
display(per_seed.round(3))
pairs.round(3)

# %% [markdown]
# ## 7 · Explore: baseline, regularisers, iterations
#
# Change the baseline or a regulariser weight and the heatmap is recomputed
# (a few seconds on the organism, cached per setting); the iteration slider
# walks through the optimisation. Things to try: L1 = 0 (nothing keeps the
# region small), L3 = 0 (no smoothness: speckle), the black baseline (the
# answer may survive a black image differently from a blurred one).

# %%
heatmap_explorer(vlm, ex.prepared, ex.answer, target=ex.target, config=config,
                 computed=ex.heatmap)

# %% [markdown]
# ## 8 · Many questions: is the heatmap on the asked object?
#
# The same four maps for `n_questions` fresh questions of this kind
# (`runner.run("heatmaps", ...)`, also `python -m vlmscope run heatmaps`),
# scored on the questions the model answers correctly (the truth region is then
# the right one to expect). The others are listed with their reason.

# %%
result = runner.run("heatmaps", vlm, n=n_questions, seed=seed + 1000, model_name=model_id,
                    images=images, config=finding.Config(max_new_tokens=64, kinds=(ex.question.kind,),
                                                         heatmap=config),
                    out=runs_dir or f"{figures_dir}/05_runs", progress=False)
table, skipped = finding.questions_table(result.df)
print(f"{table['item'].nunique()} questions scored, {len(skipped)} skipped (below, with the reason)")
display(skipped)
finding.per_map_table(table)

# %%
summary = ex.write(figures_dir, model_id, preset, table, len(skipped), sanity)

# %% [markdown]
# ## What we found
#
# The worked question's faithfulness and the many questions' plausibility
# beside Xing et al.'s claims (`findings.heatmaps.example_vs_paper`; the
# paper has no ground-truth region, so plausibility has no paper column),
# then the same numbers in words, chance levels included
# (`findings.heatmaps.what_we_found`).

# %%
Conclusion(finding.example_vs_paper(summary), finding.what_we_found(summary, model_id))

# %% [markdown]
# **Reading it for the bundled organism.** The default `model_id`,
# `organism`, is `organism-vit-m`, whose colour answers are read off one
# object. Things to keep in mind:
#
# - **The worked question and the many questions can disagree.** The worked
#   question (scene `seed` = 4) is a teaching example: one question on which
#   every step of the method can be shown; how it was picked is not
#   recorded, and one question is an illustration, not a sample. Section 8's
#   rates are the evidence, and one question moves them by 1 / `n_questions`
#   (the sentence above gives the gap in questions): where it says iGOS+
#   points at the object less often than attention over a handful of
#   questions, that is not a ranking of the maps. Pointing looks at one pixel (the map's maximum);
#   mass in the object uses the whole map, and the two can rank the maps
#   differently. More questions (`n_questions`) narrow it.
# - **Faithfulness is not plausibility.** The paper's claim is that iGOS+ is
#   more faithful (deletion/insertion); that the map lands on the asked
#   object is a second question only the synthetic world's masks can answer.
#   On a 64-px scene with one small object, a map that deletes the object
#   deletes the answer, so all three maps can score alike on deletion.
# - A heatmap explains *the selected tokens*: for "where" answers such as
#   "top left" the current release's rule (the reference preset) may select
#   both words; the first release (and `drop_first=True`, the `"vlmscope"`
#   preset) drops the first token, so the map explains "left", not "top".
#   Hyperparameters (the authors' issue #12; the explorer) and the noise seed
#   (section 6) move the region too: average several runs before reading a
#   single map. Where vlmscope's definitions differ from the released code:
#   [docs/fidelity.md, "Heatmaps"](../docs/fidelity.md#heatmaps-where-do-lvlms-look).
# - With a real model, `vlmscope.load("llava-hf/llava-1.5-7b-hf")` and the
#   same calls: every family whose capability matrix says "image gradients"
#   (`python -m vlmscope models`) has a differentiable preprocessing checked
#   against its processor.
