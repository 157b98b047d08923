"""Per-architecture adapters, chosen by config class: per-family facts only.

One module per family (or pair of families sharing a pipeline); grid and
geometry helpers they share live in ``_grid``, and no adapter imports another
adapter module. Tiny-model builders and the selftest are ``vlmscope.testing``.
"""

from .base import (CAPABILITIES, Adapter, UnsupportedArchitecture, adapter_class,
                   adapter_class_for, capability_matrix, supported_families)
from . import gemma, idefics3, internvl, llava, llava_next, qwen2_vl  # noqa: F401  (each import registers its families)

__all__ = ["CAPABILITIES", "Adapter", "UnsupportedArchitecture", "adapter_class", "adapter_class_for",
           "capability_matrix", "supported_families"]
