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
# # 10a · Playground: sites, capture, intervene, patch
#
# The findings of notebooks 07-09 each reach into the model in their own
# way; underneath they use one small API that you can use directly:
#
# - `vlm.sites()`: the named places of the loaded model (`lm.input`,
#   `lm.layer.{i}.in|attn|mlp|out`, `projector`, `vision.layer.{i}`, ...);
# - `vlm.capture(prepared, sites)`: one forward, the activations there (on the
#   CPU, one row per position: index them with the token groups);
# - `vlm.intervene(prepared, {site: fn})`: a block in which every forward,
#   `generate` and `score` passes the site's tensor through `fn`;
# - `patching.patch` / `patch_sweep`: the clean run's activations written into
#   a corrupt run; `attribution_patch`: the same, estimated for every position
#   from one backward pass.
#
# The experiment: the object's colour question on a scene (clean) and on the
# same scene with the object replaced by noise (corrupt: the noise filter's
# image from notebook 07). Writing the clean run's object tokens into the
# corrupt run should bring the answer back where those tokens still matter:
# at the language model's input and early layers, not after the layers where
# the last position reads them, which notebook 09 measures by cutting that
# attention. Both measurements are made below and set side by side.

# %% tags=["parameters"]
model_id = "organism"
seed = 2
n_objects = 3  # objects (over consecutive scenes) in the patching sweep
rings = 1  # buffer rings around the object's tokens (notebook 09's object+1)
n_reference = 8  # scenes for the mean visual-token vector (notebook 07's ablation)
figures_dir = "../figures"

# %%
from pathlib import Path

import numpy as np
import pandas as pd

import vlmscope
from vlmscope import ablation, lastpos, plots
from vlmscope.datasets.synthetic import World
from vlmscope.findings import nothing_to_report, write_summary
from vlmscope.hooks import set_at
from vlmscope.lens import image_lens
from vlmscope.maps import image_token_norms
from vlmscope.patching import attribution_patch, patch_sweep

figures = Path(figures_dir)
figures.mkdir(parents=True, exist_ok=True)
vlm = vlmscope.load(model_id)
L = vlm.adapter.n_layers
world = World()

# %% [markdown]
# ## 1 · Sites
# A wrong name is an error that lists the valid ones.

# %%
print(len(vlm.sites()), "sites:", ", ".join(vlm.sites()[:6]), "...", vlm.sites()[-1])
try:
    vlm.capture(None, f"lm.layer.{L}.out")
except KeyError as e:
    print(e)

# %% [markdown]
# ## 2 · Capture
# One forward; `cache[site]` is `[positions, d]`, `cache.at(site, "image")` the
# image tokens' rows. The logit lens of notebook 08 is the final norm and the
# unembedding applied to `lm.layer.{i}.out`, and the image-token norms of
# notebook 02 are the norms at `lm.layer.{i}.in`: computed here by hand from
# the cache and compared with the library's functions.

# %%
scene = world.scene(seed=seed)
obj = scene.objects[0]
p = vlm.prepare(scene.image, f"what color is the {obj.shape} ?")
cache = vlm.capture(p, ["lm.layer.*.in", "lm.layer.*.out"])
lens_by_hand = np.stack([vlm.adapter.lens(cache.at(f"lm.layer.{l}.out", "image")).argmax(-1).numpy()
                         for l in range(L)])
lens_agreement = float((lens_by_hand == image_lens(vlm, p, k=1).top_ids[..., 0]).mean())
norms_by_hand = np.stack([cache.at(f"lm.layer.{l}.in", "image").norm(dim=-1).numpy() for l in range(L)])
norms_agree = bool(np.allclose(norms_by_hand, image_token_norms(vlm, p), rtol=1e-5))
print(f"logit lens top-1 by hand = lens.image_lens at {lens_agreement:.0%} of (layer, token); "
      f"norms by hand = maps.image_token_norms: {norms_agree}")

# %% [markdown]
# ## 3 · Intervene
# Notebook 07's ablation is one edit at `lm.input`: the object's tokens set to
# the mean visual-token vector during prefill. The same edit by hand and
# through `ablation.ablated`:

# %%
mean = ablation.mean_vector(vlm, [world.scene(seed=10_000 + i).image for i in range(n_reference)])
tokens = p.geometry.tokens_for_mask(obj.mask, rings=rings)
with vlm.intervene(p, {"lm.input": set_at(p.groups.image[tokens], mean.vector)}):
    by_hand = vlm.generate(p, max_new_tokens=4).text, vlm.score(p, obj.color).total
with ablation.ablated(vlm, p, tokens, vector=mean.vector):
    library = vlm.generate(p, max_new_tokens=4).text, vlm.score(p, obj.color).total
pd.DataFrame([("none", vlm.generate(p, max_new_tokens=4).text, vlm.score(p, obj.color).total),
              ("intervene by hand", *by_hand), ("ablation.ablated", *library)],
             columns=["edit", "answer", f"log p({obj.color})"])

# %% [markdown]
# ## 4 · Patch: where do the object's tokens still carry the answer?
# For each object: the clean run's object tokens (with `rings` of buffer)
# written into the corrupt run at `lm.input` and after each layer. `restored`
# is the share of the clean run's log-probability advantage that comes back.
# Beside it, notebook 09's measurement on the clean run: the last position cut
# from the same tokens in every layer after the patched one (`p_relative`: the
# answer's probability under the cut over without it). If the answer is read
# from the object's tokens in those later layers, patching there restores it
# AND cutting there hurts: `restored` should follow `1 - p_relative`.

# %%
objects = [(s, o) for s in (world.scene(seed=seed + i) for i in range(n_objects)) for o in s.objects]
rows = []
for sc, o in objects[:n_objects]:
    q = f"what color is the {o.shape} ?"
    clean = vlm.prepare(sc.image, q)
    corrupt = vlm.prepare(ablation.noised(vlm, sc.image, o.mask, seed=sc.seed), q)
    pos = clean.groups.image[clean.geometry.tokens_for_mask(o.mask, rings=rings)]
    sweep = patch_sweep(vlm, clean, corrupt, pos, o.color)
    windows = {"all": tuple(range(L)), **{f"{l + 1}-{L - 1}": tuple(range(l + 1, L)) for l in range(L - 1)}}
    cut = lastpos.lastpos_knockout(vlm, clean, int(vlm.answer_ids(o.color, clean)[0]), o.mask, windows,
                                   conditions=[f"object+{rings}" if rings else "object"])
    sweep["p_relative"] = cut.p_relative.iloc[1:].tolist() + [1.0]  # after the last layer: no cut
    rows.append(sweep.assign(object=o.name))
patched = pd.concat(rows, ignore_index=True)
by_site = patched.groupby("site", sort=False)[["restored", "p_relative"]].mean()
by_site

# %%
gap = patched.clean - patched.corrupt
nonsense = None if (gap > 0.5).any() else nothing_to_report(
    "the corrupt image does not lower the answer's log-probability: there is nothing to restore")
agreement = float(np.corrcoef(patched.restored, 1 - patched.p_relative)[0, 1]) if nonsense is None \
    else float("nan")
print(f"restored at lm.input: {by_site.restored.iloc[0]:.2f}, after the last layer: "
      f"{by_site.restored.iloc[-1]:.2f}; correlation of restored with 1 - p_relative over "
      f"(object, site): {agreement:.2f}")

# %% [markdown]
# ## 5 · Attribution patching
# `(clean - corrupt) · gradient` at `lm.input`, for every image token from one
# backward pass: an estimate of patching each token alone. Where does it put
# the effect, for the last object above?

# %%
attr = attribution_patch(vlm, clean, corrupt, "lm.input", o.color)
on_object = clean.geometry.tokens_for_mask(o.mask, rings=rings)
share_on_object = float(attr.clamp(min=0)[on_object].sum() / attr.clamp(min=0).sum().clamp(min=1e-12))
print(f"{share_on_object:.0%} of the positive attribution lies on the {len(on_object)} object "
      f"tokens ({len(on_object) / attr.numel():.0%} of the image tokens)")
fig = plots.attention_map(sc.image, clean.geometry, attr.clamp(min=0).numpy(),
                          title=f"attribution patching: {o.name}")
fig.savefig(figures / "10a_attribution.png", dpi=120)

# %%
summary = write_summary(figures / "10a_summary.json", {
    "n_objects": len(rows), "lens_agreement": lens_agreement, "norms_agree": norms_agree,
    "ablation_by_hand_equals_library": by_hand == library,
    "restored_by_site": by_site.restored.to_dict(), "p_relative_by_site": by_site.p_relative.to_dict(),
    "agreement": agreement, "attribution_share_on_object": share_on_object}, nonsense)
