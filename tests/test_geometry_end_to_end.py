"""Token boxes checked through the real processor and model (LLaVA family).

With the tower read at its patch embeddings, each image token's language-model
input depends only on its own patch: painting a square must change exactly the
tokens whose boxes cover it (``testing.selftest.check_locality``).
"""

import numpy as np
import pytest
from PIL import Image

import vlmscope
from vlmscope.adapters.llava import LlavaAdapter
from vlmscope.testing.selftest import check_locality, run_selftest
from vlmscope.testing.tiny import build_tiny


@pytest.mark.parametrize("size,box,pad", [((64, 64), (20, 30, 27, 38), False),
                                          ((96, 64), (50, 10, 60, 20), False),
                                          ((96, 64), (10, 40, 22, 52), True),
                                          ((64, 100), (5, 70, 15, 80), True)])
def test_painted_square_changes_exactly_the_covering_tokens(tmp_path, size, box, pad):
    build_tiny(LlavaAdapter, tmp_path, local=True)
    vlm = vlmscope.load(tmp_path)
    vlm.processor.image_processor.do_pad = pad
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(100, 160, (size[1], size[0], 3), dtype=np.uint8))
    changed, covering, near = check_locality(vlm, image, box)
    assert covering and covering <= changed <= near
    assert ("pad to square" in vlm.prepare(image, "what ?").geometry.note) == pad


def test_locality_check_catches_a_shifted_geometry(tmp_path):
    """The check can fail: shift every box by one patch and it must object."""
    build_tiny(LlavaAdapter, tmp_path, local=True)
    vlm = vlmscope.load(tmp_path)
    real = vlm.adapter.geometry

    def shifted(size, inputs=None):
        g = real(size, inputs)
        g.boxes[:, [0, 2]] += 16
        return g

    vlm.adapter.geometry = shifted
    image = Image.fromarray(np.full((64, 64, 3), 128, np.uint8))
    changed, covering, near = check_locality(vlm, image, (20, 30, 27, 38))
    assert not covering <= changed


def test_llava_selftest_passes():
    res = run_selftest(LlavaAdapter)
    assert res.passed, res.checks
    assert res.checks["painted square -> covering tokens"] == "ok"
