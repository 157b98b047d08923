"""vlmscope: where does a vision-language model look, and what does it do with what it sees?

The library behind the notebooks: loading (``load``), token groups and image
geometry (``tokens``), per-architecture adapters, and the analyses.
"""

from .adapters import UnsupportedArchitecture, supported_families
from .models import (VLM, Generation, ImageConversionWarning, ImageError, ModelLoadError,
                     Prepared, Score, load, organisms, to_rgb, wrap)
from .tokens import TokenGeometry, TokenGroups

__version__ = "0.1.0"

__all__ = ["load", "wrap", "VLM", "Prepared", "Generation", "Score", "TokenGroups", "TokenGeometry",
           "ModelLoadError", "ImageError", "ImageConversionWarning", "UnsupportedArchitecture",
           "organisms", "supported_families", "to_rgb"]
