"""Qwen2-VL and Qwen2.5-VL adapters on tiny random-weight models (no downloads)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import vlmscope
from vlmscope.adapters import adapter_class_for
from vlmscope.adapters.qwen2_vl import Qwen2VLAdapter, Qwen25VLAdapter, image_only_processors
from vlmscope.testing.selftest import check_locality, run_selftest
from vlmscope.testing.templates import QWEN_TEMPLATE
from vlmscope.testing.tiny import build_tiny
from vlmscope.tokens import TokenGeometry

torch.set_num_threads(1)

FAMILIES = [Qwen2VLAdapter, Qwen25VLAdapter]
IDS = [c.family for c in FAMILIES]


def _image(width, height, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(90, 170, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module", params=FAMILIES, ids=IDS)
def pair(request, tmp_path_factory):
    """(adapter class, default tiny VLM, local tiny VLM) for one family."""
    cls = request.param
    root = tmp_path_factory.mktemp(cls.family)
    vlm = vlmscope.load(build_tiny(cls, root / "tiny"), device="cpu")
    local = vlmscope.load(build_tiny(cls, root / "local", local=True), device="cpu")
    return cls, vlm, local


@pytest.mark.parametrize("cls", FAMILIES, ids=IDS)
def test_selftest_passes(cls, tmp_path):
    res = run_selftest(cls, device="cpu", workdir=tmp_path)
    assert res.passed, res.checks
    assert all(v == "ok" for v in res.checks.values()), res.checks


def test_parts_and_registry(pair):
    cls, vlm, _ = pair
    a = vlm.adapter
    assert type(a) is cls and adapter_class_for(vlm.model.config) is cls
    assert a.language_model is vlm.model.model.language_model
    assert a.n_layers == 2 and a.final_norm is a.language_model.norm
    assert a.unembedding is vlm.model.lm_head
    assert a.image_token_id == vlm.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert vlm.tokenizer.bos_token_id is None  # Qwen has no BOS
    # AutoProcessor's silent fallback to a bare tokenizer is refused with a clear error
    with pytest.raises(TypeError, match="load_processor"):
        cls(vlm.model, vlm.tokenizer)


@pytest.mark.parametrize("size", [(150, 100), (61, 200), (200, 61), (97, 45), (30, 20),
                                  (400, 90), (41, 333), (28, 28)])
def test_token_count_equals_geometry(pair, size):
    _, vlm, _ = pair
    p = vlm.prepare(_image(*size), "what is this ?")
    n = p.groups.image.numel()
    t, gh, gw = p.inputs["image_grid_thw"][0].tolist()
    assert n == len(p.geometry) == t * gh * gw // 4
    ids = p.input_ids[0]
    tok = vlm.tokenizer
    img = p.groups.image
    # image tokens are one contiguous run between <|vision_start|> and <|vision_end|>
    assert torch.equal(img, torch.arange(int(img[0]), int(img[0]) + n))
    assert ids[img[0] - 1] == tok.convert_tokens_to_ids("<|vision_start|>")
    assert ids[img[-1] + 1] == tok.convert_tokens_to_ids("<|vision_end|>")
    # the resize rule alone predicts the same grid, and resized sides are multiples of 28
    rw, rh = vlm.adapter.resized_size(*size)
    assert (rh, rw) == (gh * 14, gw * 14) and rh % 28 == 0 and rw % 28 == 0
    assert np.allclose(vlm.adapter.geometry(size).boxes, p.geometry.boxes)
    # boxes tile the original image row-major; cells match
    geo = p.geometry
    rows, cols = geo.grids[0]
    assert (rows, cols) == (gh // 2, gw // 2)
    w, h = size
    assert np.allclose(geo.boxes[0, :2], 0) and np.allclose(geo.boxes[-1, 2:], (w, h))
    assert np.allclose(geo.boxes[:, 2] - geo.boxes[:, 0], w / cols)
    assert np.allclose(geo.boxes[:, 3] - geo.boxes[:, 1], h / rows)
    assert np.array_equal(geo.cells, np.stack(np.divmod(np.arange(n), cols), 1))


def test_load_processor_reads_native_qwen_files(pair, tmp_path):
    """A checkpoint laid out like the hub's (native processor_class, min/max_pixels keys)."""
    cls, vlm, _ = pair
    native = {"qwen2-vl": "Qwen2VLProcessor", "qwen2.5-vl": "Qwen2_5_VLProcessor"}[cls.family]
    vlm.processor.tokenizer.save_pretrained(tmp_path)
    (tmp_path / "chat_template.jinja").write_text(QWEN_TEMPLATE)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({
        "processor_class": native, "image_processor_type": "Qwen2VLImageProcessor",
        "min_pixels": 56 * 56, "max_pixels": 28 * 28 * 24, "patch_size": 14,
        "temporal_patch_size": 2, "merge_size": 2, "do_resize": True, "resample": 3,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711]}))
    proc = cls.load_processor(tmp_path)  # native with torchvision, image-only without
    assert type(proc).__name__ in (native, image_only_processors()[cls.family].__name__)
    text = vlm.chat_text("what is this ?")
    a = proc(text=text, images=_image(97, 45), return_tensors="pt")
    b = vlm.processor(text=text, images=_image(97, 45), return_tensors="pt")
    for k in ("input_ids", "mm_token_type_ids", "image_grid_thw"):
        assert torch.equal(a[k], b[k]), k
    assert a["pixel_values"].shape == b["pixel_values"].shape
    if type(proc).__name__ != native:  # the PIL backend, as in the tiny checkpoint
        assert torch.allclose(a["pixel_values"], b["pixel_values"], atol=1e-4)


def test_min_and_max_pixels_are_honoured(pair):
    _, vlm, _ = pair
    for size in [(30, 20), (400, 90), (900, 700)]:
        w, h = vlm.adapter.resized_size(*size)
        assert 56 * 56 <= w * h <= 28 * 28 * 24, (size, w, h)


BOXES = [(2, 2, 12, 12), (135, 85, 148, 98), (40, 30, 50, 45), (85, 58, 100, 70),
         (100, 45, 110, 56), (55, 45, 65, 55)]


def test_locality_in_different_places(pair):
    _, vlm, local = pair
    image = _image(150, 100)  # -> 4x5 tokens of 30x25 original px
    for box in BOXES:
        changed, covering, near = check_locality(local, image, box)
        assert covering and covering <= changed <= near, (box, changed, covering, near)
    # the default tiny tower mixes patches: the check is not trivially local
    changed, covering, _ = check_locality(vlm, image, BOXES[2])
    assert len(changed) > len(covering)
    # a tall image: 7x3 tokens
    tall = _image(90, 200, seed=1)
    for box in [(65, 150, 80, 165), (5, 5, 20, 20), (25, 95, 35, 105)]:
        changed, covering, near = check_locality(local, tall, box)
        assert covering and covering <= changed <= near, (box, changed, covering, near)


def _transposed(geometry):
    """A wrong geometry: the same boxes read column-major instead of row-major."""
    def wrong(image_size, inputs=None):
        g = geometry(image_size, inputs)
        rows, cols = g.grids[0]
        order = np.arange(rows * cols).reshape(rows, cols).T.reshape(-1)  # [n] column-major
        return TokenGeometry(boxes=g.boxes[order], views=g.views, cells=g.cells[order],
                             grids=g.grids, image_size=g.image_size)
    return wrong


def test_wrong_geometry_fails_locality(pair, monkeypatch):
    _, _, local = pair
    image = _image(150, 100)
    monkeypatch.setattr(local.adapter, "geometry", _transposed(local.adapter.geometry))
    changed, covering, near = check_locality(local, image, (40, 30, 50, 45))
    assert not (covering <= changed <= near), (changed, covering)


def test_qwen25_window_permutation_keeps_token_order(tmp_path):
    """With 2x2-token windows in every block, a painted token changes exactly its window."""
    vlm = vlmscope.load(build_tiny(Qwen25VLAdapter, tmp_path / "local", local=True), device="cpu")
    visual = vlm.model.model.visual
    visual.window_size = 56  # windows of 2x2 merged tokens; fullatt_block_indexes is empty
    assert list(visual.fullatt_block_indexes) == []
    image = _image(150, 100)  # 4x5 tokens: windows pad the 5 columns to 6
    for box in [(40, 30, 50, 45), (130, 80, 140, 90), (95, 5, 110, 15)]:
        changed, covering, _ = check_locality(vlm, image, box)
        (tok,) = covering
        geo = vlm.prepare(image, "what is this ?").geometry
        window = set(np.nonzero((geo.cells // 2 == geo.cells[tok] // 2).all(1))[0].tolist())
        assert changed == window, (box, changed, window)


def test_generate_and_score_match_stepwise_decoding(pair):
    _, vlm, _ = pair
    p = vlm.prepare(_image(150, 100), "what color is the object ?")
    assert isinstance(vlm.generate(p, max_new_tokens=3).text, str)
    n = p.input_ids.shape[1]
    with torch.no_grad():  # cached step-by-step decoding: positions from rope_deltas
        out = vlm.model.generate(**p.inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False,
                                 output_logits=True, return_dict_in_generate=True,
                                 pad_token_id=vlm.tokenizer.pad_token_id)
    new = out.sequences[0, n:]  # [4]
    step = torch.stack([torch.log_softmax(lg[0].float(), -1)[t] for lg, t in zip(out.logits, new)])
    s = vlm.score(p, new)  # one teacher-forced forward through adapter.extend_inputs
    assert torch.allclose(s.logprobs, step, atol=1e-4), (s.logprobs, step)

    # the appended tokens continue the M-RoPE text positions (max + 1, ...), and the
    # prompt's positions do not move
    ext = vlm.adapter.extend_inputs(p.inputs, new[None])
    assert not ext["mm_token_type_ids"][0, n:].any()  # appended tokens are text
    kw = {k: ext[k] for k in ("mm_token_type_ids", "image_grid_thw", "attention_mask")}
    pos, _ = vlm.model.model.get_rope_index(ext["input_ids"], **kw)  # [3, 1, n + 4]
    pos0, _ = vlm.model.model.get_rope_index(p.input_ids, **{k: p.inputs[k] for k in kw})
    assert torch.equal(pos[:, :, :n], pos0)
    assert torch.equal(pos[:, 0, n:], (pos0.max() + 1 + torch.arange(4)).expand(3, 4))
    assert pos0.max() + 1 < n  # positions are not token indices
    # plain 1-D positions give different log-probs: the comparison above is sensitive
    with torch.no_grad():
        flat = vlm.model(**ext, position_ids=torch.arange(n + 4)[None]).logits[0, n - 1:-1]
    flat_lp = torch.log_softmax(flat.float(), -1).gather(1, new[:, None])[:, 0]
    assert not torch.allclose(flat_lp, step, atol=1e-4)
