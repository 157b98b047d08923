"""Attribution methods behind one interface: which image tokens (and pixels) an answer rests on.

``attribute(vlm, prepared, answer, method, **options) -> Attribution`` runs one
registered method and records its cost; ``METHODS`` (name -> function
``fn(vlm, prepared, answer, **options)``), ``get(name)`` and ``names()`` are the
registry. ``answer`` is the answer text (or ids, or a ``Generation``); the
score explained is the answer's teacher-forced log-probability, the sum over its
tokens (``vlm.score(prepared, answer).total``) unless a method says otherwise.

One module per family:

- ``raw_attention``: ``"attention"`` (mean over layers, every layer in
  ``extra["layers"]``; ``layer=`` picks one), ``"attention@best"`` (the layer
  that agrees best with a ``truth=``; ``oracle=True``), ``"rollout"``
  (Abnar & Zuidema 2020);
- ``gradients``: ``"gradient"`` (saliency at the LM input's image embeddings),
  ``"integrated_gradients"`` (in the original pixels, Captum's ``IntegratedGradients``);
- ``igos``: ``"igos+"``, ``"igos++"`` (the heatmaps' ``"reference"`` preset) and
  ``"igos+_ls"`` (the same with the Armijo line search);
- ``relevancy``: ``"attention_x_gradient"``, ``"relevancy"`` (Chefer et al. 2021; it
  differentiates the answer's logits, as the released code does: ``target=``);
- ``logit_lens``: ``"lens"`` (the object word's probability at each image token; the
  word is the answer text unless ``word=``);
- ``patching``: ``"patching"`` (mean-vector replacement per token and per region at the
  LM input; ``causal=True``: it is the study's causal truth; ``vector=`` the
  mean visual-token vector, by default this image's own), ``patch_drops``.

An ``Attribution`` holds ``tokens`` (the image-token grid, or ``[n_image]`` on
tiled models: see its docstring), ``pixels`` ``[H, W]`` of the original image,
``seconds``, ``peak_bytes`` (CUDA's allocator peak, or the CPU heap's sampled
peak: ``_base.measure``), ``oracle``, ``causal`` and ``extra``.

>>> a = attribute(vlm, prepared, "red", "gradient")     # doctest: +SKIP
>>> a.tokens.shape, a.pixels.shape, a.seconds            # doctest: +SKIP
((8, 8), (64, 64), 0.04)
"""

from __future__ import annotations

from ._base import (METHODS, Attribution, answer_pass, attribute, forward, from_pixels,
                    from_tokens, get, measure, names, paint, pool, single_grid)
# each family registers its methods on import, in this order (``names()``)
from . import raw_attention, relevancy, gradients, igos, logit_lens, patching  # noqa: F401, E402, I001
from .patching import patch_drops  # noqa: E402

__all__ = ["Attribution", "METHODS", "get", "names", "attribute", "measure", "answer_pass",
           "forward", "from_tokens", "from_pixels", "paint", "pool", "single_grid",
           "patch_drops"]
