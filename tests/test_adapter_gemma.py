"""Gemma 3 and PaliGemma adapters on tiny random models.

Geometry is checked through the real processor and model (a SigLIP tower of
zero layers makes each token depend only on its own patches); the attention
quirks (Gemma 3's bidirectional image block, PaliGemma's bidirectional
prefix and causal suffix) are checked through the forward pass.
"""

import numpy as np
import pytest
import torch
from PIL import Image

import vlmscope
from vlmscope.adapters.gemma import Gemma3Adapter, PaliGemmaAdapter
from vlmscope.testing.selftest import check_locality, run_selftest
from vlmscope.testing.tiny import build_tiny
from vlmscope.hooks import hooked

torch.set_num_threads(1)
# transformers' PaliGemmaProcessor builds its labels with np.array(copy=False) semantics
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def noise(w, h, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(90, 170, (h, w, 3), dtype=np.uint8))


def coord_image(w, h):
    """An image whose pixels spell their own (x, y): R = x % 256, G = y % 256, B = high bits."""
    x, y = np.meshgrid(np.arange(w), np.arange(h))
    rgb = np.stack([x % 256, y % 256, (x // 256) * 16 + y // 256], -1)
    return Image.fromarray(rgb.astype(np.uint8))


def sampling_overshoot(vlm, size, extra=None):
    """How far (px) any processed pixel's source lies outside its token's box; 0 = exact.

    Runs a copy of the processor with nearest resampling and no rescale/normalise on a
    coordinate image, so each processed pixel names the original pixel it came from.
    Tokens are laid out row-major per view, views in ``pixel_values`` order.
    """
    import copy

    from transformers.image_utils import PILImageResampling

    proc = copy.deepcopy(vlm.processor)
    ip = proc.image_processor
    ip.resample, ip.do_rescale, ip.do_normalize = PILImageResampling.NEAREST, False, False
    if extra:
        proc.images_kwargs = {**type(proc).images_kwargs, **extra}
    adapter = type(vlm.adapter)(vlm.model, proc)
    inputs = proc(text=vlm.chat_text("what ?"), images=coord_image(*size), return_tensors="pt")
    geo = adapter.geometry(size, inputs)
    pv = inputs["pixel_values"].numpy().astype(np.int64)  # [views, 3, H, W]
    per_view = len(geo) // pv.shape[0]
    g = int(round(per_view ** 0.5))
    bh, bw = pv.shape[-2] // g, pv.shape[-1] // g
    worst = 0.0
    for t, (x0, y0, x1, y1) in enumerate(geo.boxes):
        v, (i, j) = t // per_view, divmod(t % per_view, g)
        blk = pv[v, :, i * bh:(i + 1) * bh, j * bw:(j + 1) * bw]
        xs = blk[0] + 256 * (blk[2] // 16) + 0.5  # source pixel centres
        ys = blk[1] + 256 * (blk[2] % 16) + 0.5
        worst = max(worst, x0 - xs.min(), xs.max() - x1, y0 - ys.min(), ys.max() - y1)
    return worst


def near_tokens(geo, box, margin):
    """Tokens overlapping ``box`` grown by ``margin`` px (the resampling filter's reach)."""
    x0, y0, x1, y1 = box
    w, h = geo.image_size
    m = np.zeros((h, w), bool)
    m[max(y0 - margin, 0):y1 + margin, max(x0 - margin, 0):x1 + margin] = True
    return set(geo.tokens_for_mask(m, view=None).tolist())


def assert_local(vlm, size, box, support):
    """Painting ``box`` changes every covering token and only tokens within the filter's reach."""
    image = noise(*size)
    changed, covering, _ = check_locality(vlm, image, box)
    geo = vlm.prepare(image, "what ?").geometry
    side = vlm.processor.image_processor.size["height"]
    margin = 2 + int(np.ceil(support * max(size) / side))
    near = near_tokens(geo, box, margin)
    assert covering and covering <= changed, sorted(covering - changed)
    assert changed <= near, sorted(changed - near)
    return geo, covering


def layer0_out(vlm, inputs):
    """``[T, d]`` output of the first decoder layer."""
    out = {}

    def grab(module, args, kwargs, output):
        out["h"] = (output[0] if isinstance(output, tuple) else output).detach()

    with hooked(vlm.adapter.layers[0], grab), torch.no_grad():
        vlm.model(**inputs)
    return out["h"][0]


def assert_score_matches_generate(vlm, p):
    """Teacher-forced scores equal the log-probs of Hugging Face's own greedy decoding."""
    with torch.no_grad():
        out = vlm.model.generate(**p.inputs, max_new_tokens=3, do_sample=False, output_logits=True,
                                 return_dict_in_generate=True, pad_token_id=vlm.tokenizer.pad_token_id)
    ids = out.sequences[0, p.input_ids.shape[1]:]
    ref = torch.stack([torch.log_softmax(l[0].float(), -1)[t] for l, t in zip(out.logits, ids)])
    s = vlm.score(p, ids)
    assert torch.allclose(s.logprobs, ref, atol=1e-4), (s.logprobs, ref)


def without_model(adapter_cls, config, processor):
    """An adapter over a config only: enough for geometry at real checkpoint settings."""
    from types import SimpleNamespace

    return adapter_cls(SimpleNamespace(config=config), processor)


# ----------------------------------------------------------------------- Gemma 3


@pytest.fixture(scope="module")
def g3(tmp_path_factory):
    return vlmscope.load(build_tiny(Gemma3Adapter, tmp_path_factory.mktemp("gemma3")))


@pytest.fixture(scope="module")
def g3_local(tmp_path_factory):
    return vlmscope.load(build_tiny(Gemma3Adapter, tmp_path_factory.mktemp("gemma3-local"), local=True))


def pan_and_scan(vlm, on=True, min_crop=8):
    """Turn pan-and-scan on where it counts: the processor's images_kwargs."""
    vlm.processor.images_kwargs = {**type(vlm.processor).images_kwargs, "do_pan_and_scan": on,
                                   "pan_and_scan_min_crop_size": min_crop}


def test_gemma3_selftest_passes():
    res = run_selftest(Gemma3Adapter)
    assert res.passed, res.checks
    assert res.checks["painted square -> covering tokens"] == "ok"


@pytest.mark.parametrize("pas", [False, True])
@pytest.mark.parametrize("size", [(32, 32), (96, 64), (130, 40), (40, 130), (33, 32), (300, 20)])
def test_gemma3_token_count_matches_processor(g3, size, pas):
    pan_and_scan(g3, pas)
    try:
        p = g3.prepare(noise(*size), "what is this ?")  # raises on a count mismatch
    finally:
        pan_and_scan(g3, False)
    n_views = p.inputs["pixel_values"].shape[0]
    assert p.groups.image.numel() == len(p.geometry) == n_views * 16
    tt = p.inputs["token_type_ids"][0]
    assert torch.equal(tt.nonzero()[:, 0], p.groups.image)  # token_type_ids 1 = image tokens
    geo = p.geometry
    assert (n_views > 1) == (len(geo.grids) == 2)
    if pas and max(size) / min(size) >= 1.2 and min(size) >= 8:
        assert n_views > 1
    for v, (r, c) in enumerate(geo.grids):
        sel = geo.views == v
        assert len({tuple(x) for x in geo.cells[sel]}) == sel.sum() == r * c
        b = geo.boxes[sel]
        assert np.isclose(((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).sum(), size[0] * size[1])
    assert (geo.views[:16] == 0).all()  # the whole image comes first


@pytest.mark.parametrize("pas", [False, True])
@pytest.mark.parametrize("size", [(96, 64), (130, 40), (40, 130), (97, 33), (300, 20), (33, 300)])
def test_gemma3_boxes_follow_the_processor_pixel_by_pixel(g3, size, pas):
    """Every processed pixel of a token comes from inside that token's box (crops included)."""
    extra = {"do_pan_and_scan": True, "pan_and_scan_min_crop_size": 8} if pas else None
    assert sampling_overshoot(g3, size, extra) <= 1e-9


def test_gemma3_image_processor_attribute_is_overridden(g3):
    """The processor passes do_pan_and_scan=False itself; the attribute alone does nothing."""
    g3.processor.image_processor.do_pan_and_scan = True
    try:
        p = g3.prepare(noise(130, 40), "what ?")
    finally:
        g3.processor.image_processor.do_pan_and_scan = None
    assert p.inputs["pixel_values"].shape[0] == 1 and len(p.geometry) == 16


@pytest.mark.parametrize("size,box,pas", [((96, 64), (52, 20, 62, 28), False),
                                          ((40, 36), (20, 2, 28, 10), False),
                                          ((130, 40), (60, 12, 70, 22), True),
                                          ((130, 40), (100, 25, 108, 33), True),
                                          ((40, 130), (5, 95, 15, 105), True)])
def test_gemma3_painted_square_changes_exactly_the_covering_tokens(g3_local, size, box, pas):
    pan_and_scan(g3_local, pas)
    try:
        geo, covering = assert_local(g3_local, size, box, support=1)  # bilinear
    finally:
        pan_and_scan(g3_local, False)
    assert set(geo.views[sorted(covering)]) == set(range(len(geo.grids)))


def test_gemma3_locality_check_catches_a_wrong_geometry(g3_local):
    real = g3_local.adapter.geometry

    def shifted(size, inputs=None):
        g = real(size, inputs)
        g.boxes[:, [1, 3]] += 16  # one token row at 64 px high
        return g

    g3_local.adapter.geometry = shifted
    try:
        changed, covering, near = check_locality(g3_local, noise(96, 64), (52, 20, 62, 28))
    finally:
        del g3_local.adapter.geometry
    assert not (covering <= changed and changed <= near)


def test_gemma3_crop_order_matters(g3_local):
    """Reversing the pan-and-scan crops must fail the check (crops follow the original)."""
    real = g3_local.adapter.geometry

    def reversed_crops(size, inputs=None):
        g = real(size, inputs)
        order = np.r_[np.arange(16), np.arange(16, len(g)).reshape(-1, 16)[::-1].ravel()]
        return type(g)(g.boxes[order], g.views[order], g.cells[order], g.grids, g.image_size)

    pan_and_scan(g3_local)
    g3_local.adapter.geometry = reversed_crops
    try:
        changed, covering, near = check_locality(g3_local, noise(130, 40), (10, 12, 20, 22))
    finally:
        del g3_local.adapter.geometry
        pan_and_scan(g3_local, False)
    assert not (covering <= changed and changed <= near)


def test_gemma3_image_block_is_bidirectional(g3_local):
    """A patch under the LAST image token changes the FIRST image token's layer-0 output."""
    image = noise(96, 64)
    painted = np.asarray(image).copy()
    painted[52:64, 80:96] = (255, 0, 255)  # bottom-right token only
    a = g3_local.prepare(image, "what ?")
    b = g3_local.prepare(Image.fromarray(painted), "what ?")
    ha, hb = layer0_out(g3_local, a.inputs), layer0_out(g3_local, b.inputs)
    diff = (ha - hb).abs().amax(-1)
    img = a.groups.image
    assert diff[img[0]] > 1e-5  # bidirectional within the image block
    assert (diff[: img[0]] == 0).all()  # text before the image is causal


def test_gemma3_generate_score_and_bos(g3):
    p = g3.prepare(noise(96, 64), "what is this ?")
    assert_score_matches_generate(g3, p)
    # the template renders <bos>; vlmscope then adds no second one (as HF tokenize=True does)
    assert p.groups.bos.tolist() == [0]
    assert g3.adapter.prompt_text("what ?") is None
    assert g3.adapter.unembedding.weight.shape[0] >= len(g3.tokenizer)


def test_gemma3_real_checkpoint_settings():
    """gemma-3-4b-it's preprocessing (896 px, 14-px patches, 4x4 pooling -> 256 tokens)."""
    from transformers import (Gemma3Config, Gemma3ImageProcessorPil, Gemma3Processor,
                              SiglipVisionConfig)

    from vlmscope.testing.templates import GEMMA3_TEMPLATE
    from vlmscope.testing.tokenizers import word_tokenizer

    tok = word_tokenizer(bos="<bos>", eos="<eos>", pad="<pad>",
                         named={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                                "image_token": "<image_soft_token>"},
                         specials=("<start_of_turn>", "<end_of_turn>"), add_bos=True)
    ip = Gemma3ImageProcessorPil(size={"height": 896, "width": 896}, image_mean=[0.5] * 3,
                                 image_std=[0.5] * 3)
    proc = Gemma3Processor(image_processor=ip, tokenizer=tok, chat_template=GEMMA3_TEMPLATE)
    cfg = Gemma3Config(vision_config=SiglipVisionConfig(image_size=896, patch_size=14),
                       image_token_index=tok.convert_tokens_to_ids("<image_soft_token>"))
    adapter = without_model(Gemma3Adapter, cfg, proc)
    proc.images_kwargs = {**Gemma3Processor.images_kwargs, "do_pan_and_scan": True}
    for size in [(640, 480), (1800, 600), (300, 700)]:
        text = "<start_of_turn>user\n<start_of_image>what ?<end_of_turn>\n"
        inputs = proc(text=text, images=noise(*size), return_tensors="pt")
        geo = adapter.geometry(size, inputs)
        n = int((inputs["input_ids"] == cfg.image_token_id).sum())
        assert n == len(geo) == 256 * inputs["pixel_values"].shape[0]
        assert geo.grids[0] == (16, 16)
        # a token is a 56x56-px block of the 896-px square
        assert np.isclose(geo.boxes[0, 2], size[0] * 56 / 896)
    assert len(geo.grids) == 2 and geo.grids[1] == (32, 16)  # 2 crops stacked vertically


# --------------------------------------------------------------------- PaliGemma


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    return vlmscope.load(build_tiny(PaliGemmaAdapter, tmp_path_factory.mktemp("paligemma")))


@pytest.fixture(scope="module")
def pg_local(tmp_path_factory):
    return vlmscope.load(build_tiny(PaliGemmaAdapter, tmp_path_factory.mktemp("paligemma-local"),
                                    local=True))


# "gemma": the same family with a Gemma-1 decoder (paligemma-3b-*)
@pytest.mark.parametrize("text", ["gemma2", "gemma"])
def test_paligemma_selftest_passes(text):
    res = run_selftest(PaliGemmaAdapter, options={"text": text})
    assert res.passed, res.checks
    assert res.checks["painted square -> covering tokens"] == "ok"


@pytest.mark.parametrize("size", [(32, 32), (96, 64), (20, 200), (333, 31)])
def test_paligemma_token_count_and_layout(pg, size):
    p = pg.prepare(noise(*size), "what is this ?")
    ids = p.input_ids[0]
    n = pg.processor.image_seq_length
    assert p.groups.image.tolist() == list(range(n)) == list(range(len(p.geometry)))
    assert ids[n] == pg.tokenizer.bos_token_id and p.groups.bos.tolist() == [n]  # image BEFORE bos
    assert pg.tokenizer.convert_ids_to_tokens(int(ids[-1])) == "\n"
    assert (p.inputs["token_type_ids"] == 0).all()  # the whole prompt is prefix
    assert p.geometry.grids == ((8, 8),)
    b = p.geometry.boxes
    assert np.isclose(((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).sum(), size[0] * size[1])


@pytest.mark.parametrize("size", [(96, 64), (40, 130), (97, 33), (300, 20)])
def test_paligemma_boxes_follow_the_processor_pixel_by_pixel(pg, size):
    assert sampling_overshoot(pg, size) <= 1e-9


def test_paligemma_prompt_text_matches_the_template(pg):
    """prompt_text (for real checkpoints, which have no chat template) gives the same inputs."""
    image = noise(96, 64)
    a = pg.prepare(image, "what is this ?")
    text = pg.adapter.prompt_text("what is this ?")
    b = pg.processor(text=text, images=image, return_tensors="pt")
    assert torch.equal(a.input_ids, b["input_ids"])
    assert text == pg.chat_text("what is this ?")


@pytest.mark.parametrize("size,box", [((96, 64), (52, 20, 60, 28)), ((96, 64), (4, 44, 12, 52)),
                                      ((40, 36), (20, 2, 28, 10)), ((50, 120), (30, 90, 40, 100))])
def test_paligemma_painted_square_changes_exactly_the_covering_tokens(pg_local, size, box):
    assert_local(pg_local, size, box, support=2)  # bicubic


def test_paligemma_locality_check_catches_a_wrong_geometry(pg_local):
    real = pg_local.adapter.geometry

    def transposed(size, inputs=None):
        g = real(size, inputs)
        order = np.arange(len(g)).reshape(8, 8).T.ravel()  # column-major instead of row-major
        return type(g)(g.boxes[order], g.views, g.cells, g.grids, g.image_size)

    pg_local.adapter.geometry = transposed
    try:
        changed, covering, near = check_locality(pg_local, noise(96, 64), (52, 20, 60, 28))
    finally:
        del pg_local.adapter.geometry
    assert not (covering <= changed and changed <= near)


def test_paligemma_prefix_is_bidirectional(pg):
    """Image tokens see LATER prompt tokens: a different question changes their layer-0 output."""
    image = noise(96, 64)
    a, b = pg.prepare(image, "what is this ?"), pg.prepare(image, "where is this ?")
    diff = (layer0_out(pg, a.inputs) - layer0_out(pg, b.inputs)).abs().amax(-1)
    assert (diff[a.groups.image] > 1e-6).all()


def test_paligemma_suffix_is_causal_when_scoring(pg):
    """extend_inputs marks answer tokens as suffix (1): an answer token does not see later ones."""
    p = pg.prepare(noise(96, 64), "what is this ?")
    ids = pg.tokenizer("yes no", add_special_tokens=False)["input_ids"]
    ext = pg.adapter.extend_inputs(p.inputs, torch.tensor([ids]))
    assert ext["token_type_ids"][0, -2:].tolist() == [1, 1] and "labels" not in ext
    first = pg.score(p, [ids[0], ids[1]]).logprobs[0]
    other = pg.score(p, [ids[0], pg.tokenizer.convert_tokens_to_ids("red")]).logprobs[0]
    assert torch.allclose(first, other)
    assert_score_matches_generate(pg, p)


def test_paligemma_real_checkpoint_settings():
    """paligemma2-3b-mix-224's preprocessing: 224 px, 14-px patches, 256 tokens."""
    from transformers import PaliGemmaConfig, PaliGemmaProcessor, SiglipImageProcessorPil

    from vlmscope.testing.tokenizers import word_tokenizer

    tok = word_tokenizer(bos="<bos>", eos="<eos>", pad="<pad>", named={"image_token": "<image>"},
                         add_bos=True)
    ip = SiglipImageProcessorPil(size={"height": 224, "width": 224})
    ip.image_seq_length = 256
    proc = PaliGemmaProcessor(image_processor=ip, tokenizer=tok)  # no chat template, as on the Hub
    cfg = PaliGemmaConfig(image_token_index=tok.convert_tokens_to_ids("<image>"))
    adapter = without_model(PaliGemmaAdapter, cfg, proc)
    for size in [(640, 480), (100, 700)]:
        inputs = proc(text=adapter.prompt_text("answer en what ?"), images=noise(*size),
                      return_tensors="pt")
        geo = adapter.geometry(size, inputs)
        assert int((inputs["input_ids"] == cfg.image_token_id).sum()) == len(geo) == 256
        assert geo.grids == ((16, 16),) and np.isclose(geo.boxes[0, 2], size[0] / 16)
