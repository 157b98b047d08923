"""Shared fixtures: tiny random-weight LLaVA models built from configs (no downloads)."""

from __future__ import annotations

import os
import warnings

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore", message=".*requires torchvision.*")


def build_tiny(path, vision="clip", image_processor=None, seed=0):
    """Save a tiny random LLaVA (organism tokenizer and template) to ``path``; return it."""
    from transformers import LlavaForConditionalGeneration

    from vlmscope.organism.build import DecoderSpec, VisionSpec, make_config, make_processor

    torch.manual_seed(seed)
    vspec = VisionSpec(vision, hidden=32, layers=1, heads=2)
    proc = make_processor(vspec)
    if image_processor is not None:
        proc.image_processor = image_processor
    dspec = DecoderSpec(hidden=32, layers=2, heads=4, kv_heads=2, intermediate=64)
    model = LlavaForConditionalGeneration(make_config(vspec, dspec, len(proc.tokenizer),
                                                      proc.tokenizer))
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return build_tiny(tmp_path_factory.mktemp("tiny-llava"))


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
