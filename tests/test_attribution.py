"""Attribution methods: every method gives the documented shapes and cost, and each map is
the one it claims, checked against an independent computation (plain torch / numpy on the
model's own modules, sharing no code with ``vlmscope.attribution``)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import vlmscope
from vlmscope import attribution as A
from vlmscope.datasets.synthetic import World, question


@pytest.fixture(scope="module")
def organism():
    return vlmscope.load("organism-vit-s")


@pytest.fixture(scope="module")
def scene():
    return World().scene(seed=3)


@pytest.fixture(scope="module")
def prepared(organism, scene):
    return organism.prepare(scene.image, question("color", scene.objects[0]))


ANSWER = "purple"


def _options(name, prepared, scene):
    if name == "attention@best":
        return {"truth": prepared.geometry.mask_coverage(scene.objects[0].mask)}
    return {}


# ----------------------------------------------------------------- reference pieces
def _teacher_forced(vlm, prepared, answer):
    """(input_ids, attention_mask, pixel_values, answer ids, predicting rows), built by hand."""
    ids = vlm.answer_ids(answer, prepared)
    n = prepared.input_ids.shape[1]
    input_ids = torch.cat([prepared.input_ids, ids[None]], 1)
    mask = torch.ones_like(input_ids)
    return input_ids, mask, prepared.inputs["pixel_values"], ids, torch.arange(n - 1, n - 1 + len(ids))


def _lm_inputs_embeds(model, input_ids, mask, pixel_values):
    """The language model's ``inputs_embeds`` grabbed by a plain torch pre-hook."""
    got = {}

    def grab(module, args, kwargs):
        got["e"] = kwargs["inputs_embeds"].detach().clone()

    h = model.model.language_model.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            model(input_ids=input_ids, attention_mask=mask, pixel_values=pixel_values)
    finally:
        h.remove()
    return got["e"]


def _answer_logprob_from_embeds(model, embeds, mask, ids, rows):
    """Sum of the answer's log-probabilities from the language model run on ``embeds``."""
    hidden = model.model.language_model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    logp = torch.log_softmax(model.lm_head(hidden[0, rows]).double(), -1)
    return logp[torch.arange(len(ids)), ids].sum()


# ---------------------------------------------------------------------- interface
def test_registry_and_unknown_name():
    for name in ("attention", "attention@best", "rollout", "gradient"):
        assert name in A.names() and A.get(name) is A.METHODS[name]
    with pytest.raises(ValueError, match="unknown attribution method 'nope'.*gradient"):
        A.get("nope")


@pytest.mark.parametrize("name", A.names())
def test_every_method_returns_the_documented_shapes(organism, prepared, scene, name):
    a = A.attribute(organism, prepared, ANSWER, name, **_options(name, prepared, scene))
    w, h = prepared.image.size
    assert a.tokens.shape == prepared.geometry.grids[0]
    assert a.pixels.shape == (h, w)
    assert np.isfinite(a.tokens).all() and np.isfinite(a.pixels).all()
    assert a.tokens.std() > 0
    assert a.seconds > 0 and (a.peak_bytes is None or a.peak_bytes >= 0)
    assert a.method.startswith(name.split("@")[0])
    np.testing.assert_allclose(a.tokens_1d, a.tokens.reshape(-1))
    # the pixels are the tokens painted on their boxes (or, for pixel methods, pool back to them)
    geo = prepared.geometry
    if "native_pixels" not in a.extra:
        for i in (0, 9, 40):
            x0, y0, x1, y1 = geo.boxes[i]
            cy, cx = int((y0 + y1) / 2), int((x0 + x1) / 2)
            assert a.pixels[cy, cx] == pytest.approx(a.tokens_1d[i])


def test_tiled_model_gives_tokens_in_sequence_order(tmp_path):
    from vlmscope.testing.tiny import build_tiny

    vlm = vlmscope.load(build_tiny("llava-next", tmp_path / "next"))
    p = vlm.prepare(World().scene(seed=1).image, "what color is the circle ?")
    a = A.attribute(vlm, p, "red", "gradient")
    assert len(p.geometry.grids) > 1
    assert a.tokens.shape == (p.groups.image.numel(),)
    assert a.pixels.shape == p.image.size[::-1] and np.isfinite(a.pixels).all()


# ------------------------------------------------------------------------ gradient
def test_gradient_matches_a_central_finite_difference(organism, prepared):
    vlm = vlmscope.wrap(copy.deepcopy(organism.model).double(), organism.processor)
    p = vlm.prepare(prepared.image, prepared.question)
    a = A.attribute(vlm, p, ANSWER, "gradient")
    input_ids, mask, pix, ids, rows = _teacher_forced(vlm, p, ANSWER)
    E = _lm_inputs_embeds(vlm.model, input_ids, mask, pix)
    img = p.groups.image
    h = 1e-2  # the decoder's RMSNorm computes in float32 even in a float64 model: no smaller h
    toks = [0, 27, 63]
    norms = []
    for tok in toks:
        fd = torch.zeros(E.shape[-1], dtype=torch.float64)
        for j in range(E.shape[-1]):
            vals = []
            for s in (1, -1):
                E2 = E.clone()
                E2[0, img[tok], j] += s * h
                with torch.no_grad():
                    vals.append(_answer_logprob_from_embeds(vlm.model, E2, mask, ids, rows))
            fd[j] = (vals[0] - vals[1]) / (2 * h)
        norms.append(float(fd.norm()))
    np.testing.assert_allclose(a.tokens_1d[toks], norms, rtol=0.01)
    assert not np.allclose(a.tokens_1d[toks[::-1]], norms, rtol=0.01)  # another token's would fail


# ----------------------------------------------------------------------- attention
def _eager_attentions(vlm, prepared, answer):
    input_ids, mask, pix, ids, rows = _teacher_forced(vlm, prepared, answer)
    with torch.no_grad():
        out = vlm.model(input_ids=input_ids, attention_mask=mask, pixel_values=pix,
                        output_attentions=True)
    return [a[0].double().numpy() for a in out.attentions], rows.numpy(), prepared.groups.image.numpy()


def test_attention_is_eager_output_attentions(organism, prepared):
    att, rows, img = _eager_attentions(organism, prepared, ANSWER)
    a = A.attribute(organism, prepared, ANSWER, "attention")
    by_hand = np.stack([w.mean(0)[rows][:, img].mean(0) for w in att])  # [layers, n_image]
    got = np.stack([g.reshape(-1) for g in a.extra["layers"]])
    np.testing.assert_allclose(got, by_hand, atol=1e-6)
    np.testing.assert_allclose(a.tokens_1d, by_hand.mean(0), atol=1e-6)
    assert not np.allclose(got[0], by_hand[1], atol=1e-3)  # a wrong layer would fail
    one = A.attribute(organism, prepared, ANSWER, "attention", layer=1)
    assert one.method == "attention@L1"
    np.testing.assert_allclose(one.tokens_1d, by_hand[1], atol=1e-6)


def test_best_layer_is_the_truths_choice_and_flagged(organism, prepared, scene):
    att, rows, img = _eager_attentions(organism, prepared, ANSWER)
    by_hand = np.stack([w.mean(0)[rows][:, img].mean(0) for w in att])
    for target in (0, 1):  # a truth equal to one layer's map must choose that layer
        a = A.attribute(organism, prepared, ANSWER, "attention@best", truth=by_hand[target])
        assert a.oracle and a.extra["layer"] == target
        np.testing.assert_allclose(a.tokens_1d, by_hand[target], atol=1e-6)
    assert not A.attribute(organism, prepared, ANSWER, "attention").oracle
    with pytest.raises(ValueError, match="truth="):
        A.attribute(organism, prepared, ANSWER, "attention@best")


def test_rollout_is_the_numpy_product(organism, prepared):
    att, rows, img = _eager_attentions(organism, prepared, ANSWER)
    T = att[0].shape[-1]
    joint = np.eye(T)
    for w in att:
        aug = w.mean(0) + np.eye(T)
        aug = aug / aug.sum(-1, keepdims=True)
        joint = aug @ joint
    want = joint[rows][:, img].mean(0)
    a = A.attribute(organism, prepared, ANSWER, "rollout")
    np.testing.assert_allclose(a.tokens_1d, want, atol=1e-8)
    wrong = np.eye(T)
    for w in att:  # the product taken in the wrong order is a different map
        aug = w.mean(0) + np.eye(T)
        wrong = wrong @ (aug / aug.sum(-1, keepdims=True))
    assert not np.allclose(a.tokens_1d, wrong[rows][:, img].mean(0), atol=1e-6)
