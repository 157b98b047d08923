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
    if name.startswith("igos"):  # small settings: the shapes, not the optimum
        return {"iterations": 2, "ig_iter": 3}
    if name == "integrated_gradients":
        return {"steps": 8}
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
    logp = torch.log_softmax(model.lm_head(hidden[:, rows]).double(), -1)  # [B, n, V]
    total = logp[:, torch.arange(len(ids)), ids].sum(-1)
    return total[0] if len(total) == 1 else total


# ---------------------------------------------------------------------- interface
def test_registry_and_unknown_name(organism, prepared):
    for name in ("attention", "attention@best", "rollout", "attention_x_gradient", "gradient",
                 "integrated_gradients", "igos+", "igos++", "igos+_ls", "relevancy", "lens",
                 "patching"):
        assert name in A.names() and A.get(name) is A.METHODS[name]
    with pytest.raises(ValueError, match="unknown attribution method 'nope'.*gradient"):
        A.get("nope")
    with pytest.raises(ValueError, match="'gradient' has no option.*steps.*its options: none"):
        A.attribute(organism, prepared, ANSWER, "gradient", steps=3)
    with pytest.raises(ValueError, match="target must be"):
        A.attribute(organism, prepared, ANSWER, "relevancy", target="prob")


def test_cost_measure_sees_an_allocation(organism):
    import time

    with A.measure(organism) as cost:
        block = torch.ones(64, 1024, 1024)  # 256 MiB, held for a while
        time.sleep(0.05)
        del block
    assert cost["seconds"] >= 0.05
    if cost["peak_bytes"] is not None:  # glibc present: the heap's peak held the block
        assert cost["peak_bytes"] >= 256 * 2 ** 20, cost
        assert "mallinfo2" in cost["how"]
    with A.measure(organism) as idle:
        time.sleep(0.02)
    if idle["peak_bytes"] is not None:
        assert idle["peak_bytes"] < 16 * 2 ** 20, idle


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
    assert len(p.geometry.grids) > 1
    for name, options in [("gradient", {}), ("rollout", {}), ("relevancy", {}), ("lens", {}),
                          ("integrated_gradients", {"steps": 4}),
                          ("igos+", {"iterations": 1, "ig_iter": 2})]:
        a = A.attribute(vlm, p, "red", name, **options)
        assert a.tokens.shape == (p.groups.image.numel(),), name
        np.testing.assert_array_equal(a.tokens_1d, a.tokens)
        assert a.pixels.shape == p.image.size[::-1] and np.isfinite(a.pixels).all(), name
    # the processor's own batch of the same prompt patches exactly as one forward per token
    sets = [[0], [5], [40], [1, 2]]
    np.testing.assert_allclose(A.patch_drops(vlm, p, "red", sets, batch=3),
                               A.patch_drops(vlm, p, "red", sets, batch=1), rtol=1e-4, atol=1e-6)


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
    d = E.shape[-1]
    for tok in toks:  # all 2d perturbed copies of E in one batch
        E2 = E.repeat(2 * d, 1, 1)
        coords = torch.arange(d)
        E2[coords, img[tok], coords] += h
        E2[d + coords, img[tok], coords] -= h
        with torch.no_grad():
            f = _answer_logprob_from_embeds(vlm.model, E2, mask.repeat(2 * d, 1), ids, rows)
        norms.append(float(((f[:d] - f[d:]) / (2 * h)).norm()))
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


# ------------------------------------------------------------ attention x gradient
def _eager_attention_grads(model, E, mask, ids, rows, target="logprob"):
    """Each layer's eager attention and its gradient of the answer's summed log-probability
    (or summed logits, the released relevancy code's target), by hand."""
    E = E.clone().requires_grad_(True)
    out = model.model.language_model(inputs_embeds=E, attention_mask=mask, output_attentions=True)
    for a in out.attentions:
        a.retain_grad()
    logits = model.lm_head(out.last_hidden_state[0, rows]).double()
    scores = torch.log_softmax(logits, -1) if target == "logprob" else logits
    scores[torch.arange(len(ids)), ids].sum().backward()
    return [(a[0].detach().double().numpy(), a.grad[0].double().numpy()) for a in out.attentions]


def _one_layer(vlm):
    """A copy of ``vlm`` with only its first decoder layer."""
    model = copy.deepcopy(vlm.model)
    lm = model.model.language_model
    lm.layers = lm.layers[:1]
    for cfg in (lm.config, model.config.text_config):
        cfg.num_hidden_layers = 1
        if getattr(cfg, "layer_types", None):
            cfg.layer_types = cfg.layer_types[:1]
    return vlmscope.wrap(model, vlm.processor)


@pytest.mark.parametrize("depth", ["one layer", "all layers"])
def test_relevancy_is_chefers_rule_by_hand(organism, prepared, depth):
    vlm = _one_layer(organism) if depth == "one layer" else organism
    p = vlm.prepare(prepared.image, prepared.question)
    input_ids, mask, pix, ids, rows = _teacher_forced(vlm, p, ANSWER)
    E = _lm_inputs_embeds(vlm.model, input_ids, mask, pix)
    img, T = p.groups.image.numpy(), E.shape[1]

    def by_hand(pairs, clamp=True):
        R = np.eye(T)
        for A_, G in pairs:
            R = R + (np.maximum(G * A_, 0) if clamp else G * A_).mean(0) @ R
        return R[rows.numpy()][:, img].mean(0)

    logit_pairs = _eager_attention_grads(vlm.model, E, mask, ids, rows, target="logit")
    assert len(logit_pairs) == (1 if depth == "one layer" else 2)
    a = A.attribute(vlm, p, ANSWER, "relevancy")  # the released target: the logit
    np.testing.assert_allclose(a.tokens_1d, by_hand(logit_pairs), rtol=1e-5, atol=1e-9)
    # without the positive part the map differs: the test can fail
    assert not np.allclose(a.tokens_1d, by_hand(logit_pairs, clamp=False), rtol=1e-3)
    pairs = _eager_attention_grads(vlm.model, E, mask, ids, rows)
    lp = A.attribute(vlm, p, ANSWER, "relevancy", target="logprob")
    np.testing.assert_allclose(lp.tokens_1d, by_hand(pairs), rtol=1e-5, atol=1e-9)
    assert not np.allclose(lp.tokens_1d, a.tokens_1d, rtol=1e-3)  # and so would the wrong target
    if depth == "all layers":
        axg = A.attribute(vlm, p, ANSWER, "attention_x_gradient")
        per = np.stack([np.maximum((A_ * G).mean(0), 0)[rows.numpy()][:, img].mean(0)
                        for A_, G in pairs])
        np.testing.assert_allclose(axg.tokens_1d, per.sum(0), rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(np.stack([g.reshape(-1) for g in axg.extra["layers"]]), per,
                                   rtol=1e-5, atol=1e-9)
        assert not np.allclose(axg.tokens_1d, per[::-1].sum(0) - per[0], atol=1e-9)


# ------------------------------------------------------------------------ logit lens
def test_lens_is_lm_head_of_the_normed_hidden_state(organism, prepared):
    with torch.no_grad():
        out = organism.model(**prepared.inputs, output_hidden_states=True)
    lm, img = organism.model.model.language_model, prepared.groups.image
    word = organism.tokenizer.convert_tokens_to_ids(ANSWER)
    with torch.no_grad():
        first = torch.softmax(organism.model.lm_head(lm.norm(out.hidden_states[1][0, img])).double(), -1)
        last = torch.softmax(out.logits[0, img].double(), -1)  # the last layer: the model's own output
    a = A.attribute(organism, prepared, ANSWER, "lens")
    layers = np.stack([g.reshape(-1) for g in a.extra["layers"]])
    np.testing.assert_allclose(layers[0], first[:, word].numpy(), rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(layers[1], last[:, word].numpy(), rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(a.tokens_1d, np.maximum(layers[0], layers[1]))
    assert not np.allclose(layers[0], last[:, word].numpy(), rtol=1e-2)  # the layers differ
    other = organism.tokenizer.convert_tokens_to_ids("red")
    assert not np.allclose(layers[1], last[:, other].numpy(), rtol=1e-2)  # and the words
    one = A.attribute(organism, prepared, ANSWER, "lens", layer=0)
    assert one.method == "lens@L0"
    np.testing.assert_allclose(one.tokens_1d, first[:, word].numpy(), rtol=1e-4, atol=1e-8)
    assert A.attribute(organism, prepared, ANSWER, "lens", word="red").extra["word"] == "red"


# -------------------------------------------------------------------------- patching
def test_patching_is_a_direct_forward_with_the_patched_embeddings(organism, prepared, scene):
    input_ids, mask, pix, ids, rows = _teacher_forced(organism, prepared, ANSWER)
    E = _lm_inputs_embeds(organism.model, input_ids, mask, pix)
    img = prepared.groups.image
    vec = E[0, img].double().mean(0).float()  # the mean of this image's visual tokens
    with torch.no_grad():
        clean = float(_answer_logprob_from_embeds(organism.model, E, mask, ids, rows))

    def drop(tokens):
        E2 = E.clone()
        E2[0, img[tokens]] = vec
        with torch.no_grad():
            return clean - float(_answer_logprob_from_embeds(organism.model, E2, mask, ids, rows))

    obj = prepared.geometry.tokens_for_mask(scene.objects[0].mask)
    a = A.attribute(organism, prepared, ANSWER, "patching", batch=7,
                    regions={"object": scene.objects[0].mask, "first": [0, 1]})
    assert a.causal and not a.oracle
    toks = [0, 5, 27, 63]
    want = [drop([t]) for t in toks]
    np.testing.assert_allclose(a.tokens_1d[toks], want, rtol=1e-4, atol=1e-5)
    assert not np.allclose(a.tokens_1d[toks[::-1]], want, rtol=1e-2, atol=1e-4)
    assert a.extra["regions"]["object"] == pytest.approx(drop(list(obj)), rel=1e-4, abs=1e-5)
    assert a.extra["regions"]["first"] == pytest.approx(drop([0, 1]), rel=1e-4, abs=1e-5)
    np.testing.assert_array_equal(a.extra["region_tokens"]["object"], obj)
    # one forward per replacement gives the same map as the batches
    single = A.patch_drops(organism, prepared, ANSWER, [[t] for t in toks], batch=1)
    np.testing.assert_allclose(single, a.tokens_1d[toks], rtol=1e-4, atol=1e-5)
    with pytest.raises(IndexError, match="0..63"):
        A.patch_drops(organism, prepared, ANSWER, [[64]])


# ---------------------------------------------------------------- integrated gradients
def test_integrated_gradients_are_complete(organism, prepared):
    from PIL import Image

    a = A.attribute(organism, prepared, ANSWER, "integrated_gradients", steps=24)
    # f through the processor's own preprocessing (not the torch pixel pipeline IG runs on)
    f_image = organism.score(prepared, ANSWER).total
    black = Image.new("RGB", prepared.image.size)
    f_black = organism.score(organism.prepare(black, prepared.question), ANSWER).total
    assert a.pixels.sum() == pytest.approx(f_image - f_black, abs=0.02 * abs(f_image - f_black) + 1e-3)
    assert abs(f_image - f_black) > 0.1  # a test of something: the baseline changes the answer
    assert a.pixels.sum() != pytest.approx(f_black - f_image, abs=0.02 * abs(f_image - f_black))
    coarse = A.attribute(organism, prepared, ANSWER, "integrated_gradients", steps=4)
    assert abs(coarse.pixels.sum() - (f_image - f_black)) > abs(a.pixels.sum() - (f_image - f_black))
    # tokens are the means of the pixels over each token's box
    x0, y0, x1, y1 = prepared.geometry.boxes[10]
    box = a.pixels[int(round(y0)):int(round(y1)), int(round(x0)):int(round(x1))]
    assert a.tokens_1d[10] == pytest.approx(box.mean())
    with pytest.raises(ValueError, match="baseline"):
        A.attribute(organism, prepared, ANSWER, "integrated_gradients", baseline="white")


# ----------------------------------------------------------------------------- iGOS
def _independent_igos():
    """``benchmarks/igos_reference.py``: iGOS+/iGOS++ written again, sharing no code with
    ``vlmscope.heatmaps``."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "igos_reference.py"
    spec = importlib.util.spec_from_file_location("igos_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name,method", [("igos+", "igos+"), ("igos++", "igos++")])
def test_igos_is_the_released_algorithm(organism, prepared, name, method):
    from scipy.stats import spearmanr

    R = _independent_igos()
    settings = dict(iterations=2, ig_iter=3, noise=0.0)
    a = A.attribute(organism, prepared, ANSWER, name, **settings)
    ids = organism.answer_ids(ANSWER, prepared).tolist()
    ref = R.igos(organism, prepared, ids, list(range(len(ids))), method=method, **settings)
    assert ref.min() < 1 and a.extra["config"].btv == "released"  # the reference preset
    rho = spearmanr(a.extra["mask"].ravel(), ref.ravel()).statistic
    print(f"{name}: Spearman rho against the independent reference {rho:.4f}")
    assert rho >= 0.99, rho
    assert spearmanr(a.extra["mask"].ravel(), ref.T.ravel()).statistic < 0.9  # a transposed map fails
    # the pixels are 1 - the mask upsampled; the tokens their means over the token boxes
    assert a.pixels.shape == prepared.image.size[::-1] and 0 <= a.pixels.min() <= a.pixels.max() <= 1
    x0, y0, x1, y1 = prepared.geometry.boxes[20]
    box = a.pixels[int(round(y0)):int(round(y1)), int(round(x0)):int(round(x1))]
    assert a.tokens_1d[20] == pytest.approx(box.mean())


def test_igos_line_search_variant(organism, prepared):
    a = A.attribute(organism, prepared, ANSWER, "igos+_ls", iterations=2, ig_iter=3)
    assert a.extra["config"].step == "armijo" and a.extra["config"].btv == "released"
    assert all("step" in row and row["trials"] >= 1 for row in a.extra["trace"])
    plain = A.attribute(organism, prepared, ANSWER, "igos+", iterations=2, ig_iter=3)
    assert "step" not in plain.extra["trace"][0]
    ref = A.attribute(organism, prepared, ANSWER, "igos+", iterations=2, ig_iter=3,
                      selection="reference")
    assert ref.extra["selection"].startswith(("reference rule", "every answer position (the"))
    with pytest.raises(ValueError, match="selection"):
        A.attribute(organism, prepared, ANSWER, "igos+", selection="best")
