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
# # 11 · What training makes the papers' mechanisms appear?
#
# Two mechanisms the papers report for LLaVA-1.5 do not show in the bundled
# organism (notebooks 03 and 08):
#
# 1. **Query routing** (Kaduri et al.): cut the edges from the image to the
#    generated tokens in every layer and LLaVA still names about 40% of the
#    objects (F1 ≈ 0.4): the query tokens after the image have gathered a
#    summary of it. Cut image → query instead and the description collapses.
# 2. **Object words in the logit lens** (Neo et al.): read an object's image
#    patches through the unembedding and, in middle-to-late layers, about a
#    quarter of them (23.7%) read as the object's own name.
#
# A synthetic world lets us ask what none of the papers could: **which
# training choices make these mechanisms appear?** Each variant below is a
# recipe option of `python -m vlmscope organism train` (docs/organism.md,
# "Training variants"), trained to the accuracy bar, then measured with the
# suite's own runs by `benchmarks/organism_mechanisms.py` (knockout, lens,
# attention fractions, object ablation; n = 6 scenes, seed 4242). The
# criteria were fixed before any variant was measured: query routing when
# the image → generated cut keeps F1 ≥ 0.2 while the image → query cut leaves
# ≤ 0.5; lens object words when some layer's share reaches 0.1. One control
# was added after a checkpoint fooled the first criterion (section 2): the
# image → generated cut must also keep 0.2 more than cutting both.
#
# The variants' weights are not bundled (only a variant that shows the
# mechanisms would be), so their rows are read from the recorded results; a
# bundled member is measured live first, to show the recorded rows are what
# the code computes.

# %% tags=["parameters"]
member = "organism-vit-m"  # a bundled zoo member, measured live beside its recorded row
n_scenes = 6  # the recorded rows' scenes (seed 4242): the same n reproduces them exactly
recorded = "../benchmarks/results/organism-mechanisms.json"  # benchmarks/organism_mechanisms.py's rows
figures_dir = "../figures"

# %%
import json
from pathlib import Path

import vlmscope
from vlmscope import plots
from vlmscope.findings import Conclusion
from vlmscope.organism import mechanisms as M

data = json.loads(Path(recorded).read_text())
rows = M.finished_rows(data)

# %% [markdown]
# ## 1 · The recorded rows are what the code computes
#
# `organism.mechanisms.measure` on the live model (knockout, lens and
# fractions; the ablation and held-out accuracy are left to the benchmark),
# every number beside the recorded one. `same` is within 0.001.

# %%
live = M.measure(vlmscope.load(member, progress=False), member, n=n_scenes, eval_n=0,
                 ablation_n=0)
check = M.compare_rows(live, rows.get(member))
print(f"{int(check.same.sum())} of {len(check)} numbers equal the recorded row of {member}")
check[~check.same] if (~check.same).any() else check.head(8)

# %% [markdown]
# ## 2 · Every variant against the paper
#
# One row per trained model: what it changes against the bundled recipe, how
# well it describes fresh scenes and its lowest short-answer accuracy (the
# measurements only mean something for a model that answers; the bar is 0.95
# on every kind), the knockout F1 of each cut in every layer, the best
# layer's lens share and where that layer sits (a share of the model's
# depth; the paper: layer 26 of 33 hidden states, 0.79).

# %%
M.variants_table(rows)

# %% [markdown]
# **A checkpoint that looked like routing.** The rows above are finished
# models. Checkpoints measured during training are recorded too (a name with
# "@"): `organism-vit-m-lm@B2400` is the language-model variant at the end
# of its stage B. With image → generated cut in every layer it keeps an F1
# near the paper's 0.4, but cutting *both* edge sets keeps as much, and the
# exact-object F1 (colour, shape and place) is 0: cut off from the image it
# writes a fluent guess, and the paper's identity judge (shapes only)
# credits the shape. The "both" cut is the control that tells a language
# prior from routing; its stage C trained the guess away.

# %%
M.variants_table({m: r for m, r in data["rows"].items() if m not in rows})

# %% [markdown]
# ## 3 · Where each model reads the image, and what its patches say
#
# Left: the description's object F1 when image → generated edges are cut
# from a depth on (0: every layer; 1: none); a model that routes through the
# query would start well above 0 at depth 0, as LLaVA does (the star).
# Right: the lens share by depth, the paper's best layer as a star, the
# criterion dashed. Depth is a share of each model's layers, so 2-, 4- and
# 8-layer decoders share the axis.

# %%
plots.save(plots.mechanism_variants(rows, data["paper"]), figures_dir, "11_mechanisms")

# %% [markdown]
# ## What we found
#
# The papers' two mechanisms beside every measured organism
# (`organism.mechanisms.vs_paper`), then the same in words
# (`organism.mechanisms.what_we_found`), written from the rows above.

# %%
summary = M.write(figures_dir, rows, check)
Conclusion(M.vs_paper(rows), M.what_we_found(rows))

# %% [markdown]
# **Reading it.** Every organism, two, four or eight layers, with or
# without LLaVA's system message, with or without a language-model stage
# before it saw an image, reads the image straight from the generated
# positions, and nothing of the description passes through the query: cut
# image → generated in every layer and nothing is left; cut image → query
# and little or nothing is lost. The lens share rises with depth in the
# eight-layer model, the direction the paper reports, but stays a quarter of
# its level. So **neither depth, nor the system message, nor a pretrained
# language model makes either mechanism appear**. The language-model variant
# learns fastest and answers perfectly, and its alignment stage alone (the
# projector trained, the decoder frozen) already describes images at F1 0.94
# (docs/organism.md); the system message moves the image reading later and
# draws attention to the query, but the description still needs the image →
# generated edges. The honest answer is **"we could not make it appear"**;
# the suspects left (docs/organism.md) are questions about relations between
# objects, a larger image grid, and depth together with the language-model
# stage.
#
# To add a variant: train it (`python -m vlmscope organism train --model
# NAME --out DIR`), measure it (`benchmarks/organism_mechanisms.py --model
# DIR --name NAME --n 6 --ablation-n 3 --eval-n 50 --out
# benchmarks/results/organism-mechanisms.json`) and re-run this notebook.
