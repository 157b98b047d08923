"""Shared fixtures: tiny random-weight models built from configs (no downloads)."""

from __future__ import annotations

import os
import warnings

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore", message=".*requires torchvision.*")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A tiny random LLaVA with the organism's tokenizer, template and image processor."""
    from vlmscope.testing.tiny import build_llava

    return build_llava(tmp_path_factory.mktemp("tiny-llava"), image_processor="organism")


@pytest.fixture(scope="session")
def tiny(tiny_dir):
    import vlmscope

    return vlmscope.load(tiny_dir)


@pytest.fixture(scope="session")
def standin_cache():
    """Where the real-geometry stand-ins are cached: ``$VLMSCOPE_STANDIN_CACHE`` or the system's
    temporary folder (keyed by a fingerprint of the builder code, so edits rebuild them)."""
    from vlmscope.testing.standins import default_cache_dir

    return default_cache_dir()


@pytest.fixture(scope="session")
def standin(standin_cache):
    """``standin(name_or_family, local=False)`` -> the loaded stand-in (one load per session)."""
    import vlmscope
    from vlmscope.testing.standins import standin_path

    loaded = {}

    def get(name, local=False):
        key = (name, local)
        if key not in loaded:
            loaded[key] = vlmscope.load(standin_path(name, standin_cache, local=local))
        return loaded[key]

    return get


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")
