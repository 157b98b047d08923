"""vlmscope: where does a vision-language model look, and what does it do with what it sees?

The library behind the notebooks: loading (``load``), token groups and image
geometry (``tokens``), per-architecture adapters, and the analyses.
"""

from .adapters import UnsupportedArchitecture, supported_families
from .images import ImageConversionWarning, ImageError, to_rgb
from .loading import ModelLoadError, organisms
from .models import VLM, Generation, Prepared, Score, load, wrap
from .tokens import TokenGeometry, TokenGroups

__version__ = "0.1.0"

__all__ = ["load", "wrap", "VLM", "Prepared", "Generation", "Score", "TokenGroups", "TokenGeometry",
           "ModelLoadError", "ImageError", "ImageConversionWarning", "UnsupportedArchitecture",
           "organisms", "supported_families", "to_rgb"]
