"""Heatmaps for free-form answers: iGOS+ / iGOS++ mask optimisation (Xing et al. 2025).

A mask ``M`` on a coarse grid (32x32 by default; low = important) is
optimised in the ORIGINAL image's pixel space. Each model sees it through its
adapter's differentiable preprocessing (``Adapter.pixel_inputs``), so one
mask explains every architecture on the same picture.

Two sets of definitions: ``HeatmapConfig.preset("reference")`` follows the
released code (bytedance/LVLM_Interpretation; checked against the
independent ``benchmarks/igos_reference.py``), ``HeatmapConfig()`` (the
preset "vlmscope") this library's choices; each difference is a field,
listed with its measured effect in docs/fidelity.md.

The pieces, each usable alone:

- ``make_baseline``: the blurred (the reference's kernel rule; float, or 8-bit
  and rounded as the released code), black or noise image;
- ``select_tokens``: the visually relevant answer positions,
  log p(y_t | image) - log p(y_t | baseline) > 1, stop tokens derived from the
  tokenizer in use, first position dropped or not (``drop_first``), the
  single-token rule; a sample with none is reported as skipped with the reason;
- ``Objective``: teacher-forced sum of the selected tokens' log-probabilities
  as a function of a batch of images (log_softmax in float32, logits only at
  the selected rows);
- ``igos``: the optimisation (integrated-gradient deletion and insertion
  terms, L1 + bilateral TV + decaying L2, Nesterov steps or an Armijo line
  search). The path images run in batches of at most ``batch`` with a
  backward per batch, so at most ``batch`` path graphs are alive at once (the
  reference keeps all of them). The noise comes from a seed per path image
  or from one generator drawn in path order, so the mask does not depend on
  ``batch`` either way; a batch that runs out of memory is split and rerun;
- ``faithfulness``: deletion and insertion curves and scores (ours or the
  released definition; ties by a stated rule, ``cell_order``);
- ``gradient_saliency`` and ``attention_saliency``: simple baselines;
- ``plausibility``: pointing game and mass in a ground-truth mask;
- ``compare_configs``: heatmaps of one question under several configs, side by side.

Conventions: images are ``[3, H, W]`` float tensors in 0..1
(``vlmscope.pixels.image_tensor``); maps returned to users are importance maps
``[H, W]`` where HIGH means important (``1 - upsampled mask`` for iGOS).

The package, one concept a module: ``config`` (``HeatmapConfig``, ``PRESETS``),
``baselines``, ``objective``, ``selection``, ``penalties`` (the regulariser),
``optimiser`` (``igos``), ``result`` (``Heatmap``), ``deletion``
(faithfulness), ``saliency`` (simple baselines, ``randomised``) and
``compare`` (``plausibility``, ``compare_configs``). Every public name is
importable from ``vlmscope.heatmaps`` itself.
"""

from .baselines import blur_kernel_size, config_baseline, gaussian_blur, make_baseline
from .compare import compare_configs, plausibility, rank_agreement
from .config import PRESETS, HeatmapConfig
from .deletion import Faithfulness, cell_order, faithfulness, metric_steps
from .objective import Objective
from .optimiser import igos, line_search, noise_seed, out_of_memory, path_gradient
from .penalties import bilateral_tv, edge_image, regulariser, upsample
from .result import Heatmap
from .saliency import attention_saliency, gradient_saliency, randomised
from .selection import STOP_WORDS, Selection, select_tokens, stop_token_mask

__all__ = ["STOP_WORDS", "PRESETS", "HeatmapConfig", "blur_kernel_size", "gaussian_blur",
           "make_baseline", "config_baseline", "Objective", "stop_token_mask", "Selection",
           "select_tokens", "upsample", "bilateral_tv", "edge_image", "regulariser", "Heatmap",
           "noise_seed", "out_of_memory", "path_gradient", "line_search", "igos", "Faithfulness",
           "cell_order", "metric_steps", "faithfulness", "gradient_saliency", "attention_saliency",
           "randomised", "plausibility", "rank_agreement", "compare_configs"]
