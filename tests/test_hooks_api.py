"""Named hook sites, capture, intervene and patching, on the organism and every family's stand-in.

References share no code with what they check: captured tensors are compared
with ``output_hidden_states`` / ``logits`` of a plain forward and with the
input embedding table; whether hooks are gone is read from the modules' own
hook dictionaries; the attribution gradient is compared with a finite
difference.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vlmscope.hooks import SiteError, set_at, zero_at
from vlmscope.patching import attribution_patch, patch
from vlmscope.testing.standins import STANDINS

MODELS = ["organism", *STANDINS]
# image sizes giving few tokens where 64x48 gives thousands (InternVL: 13 tiles of 256 -> 1 tile)
SIZE = {"standin-internvl3": (48, 48), "standin-idefics3": (32, 96)}


@pytest.fixture(scope="module")
def organism():
    import vlmscope

    return vlmscope.load("organism")


@pytest.fixture
def model(request, organism, standin):
    vlm = organism if request.param == "organism" else standin(request.param)
    return vlm, SIZE.get(request.param, (64, 48))


def picture(seed: int, size=(64, 48)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _hook_count(vlm) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in vlm.model.modules())


@pytest.mark.parametrize("model", MODELS, indirect=True)
def test_sites_capture_and_intervene(model):
    vlm, size = model
    L = vlm.adapter.n_layers
    names = vlm.sites()
    expected = {"projector", "lm.input", "lm.final_norm", "logits", "vision.layer.0"}
    expected |= {f"lm.layer.{i}.{part}" for i in range(L) for part in ("in", "attn", "out")}
    assert expected <= set(names), expected - set(names)
    assert names.index("projector") < names.index("lm.input") < names.index("lm.layer.0.in") \
        < names.index(f"lm.layer.{L - 1}.out") < names.index("logits")
    with pytest.raises(SiteError, match=r"no site 'lm.layer.99.out'.*lm\.layer\.\{0\.\." ):
        vlm.capture(None, "lm.layer.99.out")
    with pytest.raises(SiteError, match="no site 'resid'"):
        vlm.intervene(None, {"resid": lambda x: x}).__enter__()

    p = vlm.prepare(picture(0, size), "what is it ?")
    cache = vlm.capture(p, ["lm.*", "logits", "projector", "vision.layer.0"])
    T = p.input_ids.shape[1]
    with torch.no_grad():
        ref = vlm.model(**p.inputs, output_hidden_states=True)
    hs = ref.hidden_states
    assert len(hs) == L + 1
    for i in range(L):
        assert cache[f"lm.layer.{i}.in"].shape == (T, hs[i].shape[-1])  # the batch of one dropped
        torch.testing.assert_close(cache[f"lm.layer.{i}.in"], hs[i][0].cpu(), rtol=0, atol=0)
        if i < L - 1:  # Hugging Face's last entry is the normed one
            torch.testing.assert_close(cache[f"lm.layer.{i}.out"], hs[i + 1][0].cpu(), rtol=0, atol=0)
    torch.testing.assert_close(cache["lm.final_norm"], hs[-1][0].cpu(), rtol=0, atol=0)
    torch.testing.assert_close(cache["logits"], ref.logits[0].cpu(), rtol=0, atol=0)
    # the LM input at text positions is the embedding table's row for each id
    text = torch.ones(T, dtype=torch.bool)
    text[p.groups.image] = False
    table = vlm.model.get_input_embeddings()(p.input_ids)[0].cpu()
    torch.testing.assert_close(cache["lm.input"][text], table[text])
    assert cache.at("lm.input", "image").shape == (p.groups.image.numel(), table.shape[-1])
    assert torch.equal(cache.at("lm.layer.0.out", "image"), cache["lm.layer.0.out"][p.groups.image])
    assert all(t.device.type == "cpu" and not t.requires_grad for t in cache.values())

    # intervene: identity changes nothing; zeroing changes the logits; hooks go afterwards
    before = _hook_count(vlm)
    with vlm.intervene(p, {"lm.layer.*.out": lambda x: x, "lm.input": lambda x, call: None}), \
            torch.no_grad():
        same = vlm.model(**p.inputs).logits
    torch.testing.assert_close(same, ref.logits, rtol=0, atol=0)
    with vlm.intervene(p, {"lm.layer.0.out": zero_at(p.groups.image)}), torch.no_grad():
        assert _hook_count(vlm) == before + 1
        zeroed = vlm.model(**p.inputs).logits
    assert not torch.allclose(zeroed[0, -1], ref.logits[0, -1])
    assert _hook_count(vlm) == before
    with pytest.raises(RuntimeError, match="inside"):
        with vlm.intervene(p, {"lm.layer.0.out": zero_at(p.groups.image)}):
            raise RuntimeError("inside")
    assert _hook_count(vlm) == before
    with torch.no_grad():
        torch.testing.assert_close(vlm.model(**p.inputs).logits, ref.logits, rtol=0, atol=0)


@pytest.mark.parametrize("model", MODELS, indirect=True)
def test_patching_at_the_lm_input_recovers_either_run(model):
    vlm, size = model
    clean, corrupt = (vlm.prepare(picture(s, size), "what is it ?") for s in (1, 2))
    answer = vlm.tokenizer("yes", add_special_tokens=False)["input_ids"][:1]
    s_clean, s_corrupt = vlm.score(clean, answer), vlm.score(corrupt, answer)
    assert not torch.allclose(s_clean.logprobs, s_corrupt.logprobs)  # the images matter
    every = torch.arange(clean.input_ids.shape[1] + 1)  # the prompt and the answer token
    torch.testing.assert_close(patch(vlm, clean, corrupt, "lm.input", every, answer).logprobs,
                               s_clean.logprobs, rtol=0, atol=1e-5)
    torch.testing.assert_close(patch(vlm, corrupt, corrupt, "lm.input", "image", answer).logprobs,
                               s_corrupt.logprobs, rtol=0, atol=0)


def test_attribution_patching_approximates_patching(tiny):
    # a small corruption (pixel noise of +-16 levels): the regime where the first-order estimate
    # holds (with unrelated images the correlation on this random model falls to about 0.8)
    a = np.asarray(picture(3, (40, 40)), dtype=np.int16)
    b = np.clip(a + np.random.default_rng(4).integers(-16, 17, a.shape), 0, 255)
    clean, corrupt = (tiny.prepare(Image.fromarray(x.astype(np.uint8)), "what color is it ?")
                      for x in (a, b))
    answer = [tiny.tokenizer.convert_tokens_to_ids("▁red")]
    base = tiny.score(corrupt, answer).total
    attr = attribution_patch(tiny, clean, corrupt, "lm.input", answer)
    img = corrupt.groups.image
    assert attr.shape == (img.numel(),)
    actual = torch.tensor([patch(tiny, clean, corrupt, "lm.input", [int(j)], answer).total - base
                           for j in img])
    r = np.corrcoef(attr.numpy(), actual.numpy())[0, 1]
    assert r > 0.95, r

    # the gradient behind it, against a central finite difference along (clean - corrupt) at one position
    j = int(img[int(actual.abs().argmax())])
    c = tiny.capture(clean, "lm.input")["lm.input"][j]
    x = tiny.capture(corrupt, "lm.input")["lm.input"][j]
    h = 1e-2

    def f(t):
        with tiny.intervene(corrupt, {"lm.input": set_at([j], x + t * (c - x))}):
            return tiny.score(corrupt, answer).total

    fd = (f(h) - f(-h)) / (2 * h)
    assert abs(fd - float(attr[int(actual.abs().argmax())])) <= 1e-3 * max(1.0, abs(fd)), fd


def test_vision_sites_equal_the_towers_own_hidden_states(organism):
    p = organism.prepare(picture(0), "what is it ?")
    cache = organism.capture(p, ["vision.layer.*", "projector", "lm.input"])
    n = len([s for s in organism.sites() if s.startswith("vision.layer.")])
    with torch.no_grad():
        ref = organism.model.model.vision_tower(p.inputs["pixel_values"], output_hidden_states=True)
    assert n == len(ref.hidden_states) - 1 > 0
    for i in range(n):
        torch.testing.assert_close(cache[f"vision.layer.{i}"], ref.hidden_states[i + 1], rtol=0, atol=0)
    # the projector's rows are the image tokens' LM input, in order
    proj = cache["projector"].reshape(-1, cache["projector"].shape[-1])
    torch.testing.assert_close(proj, cache.at("lm.input", "image"), rtol=0, atol=0)


def test_intervene_in_generate_edits_prefill_only_and_reports_calls(organism):
    p = organism.prepare(picture(5), "what color is the circle ?")
    calls = []
    with organism.intervene(p, {"lm.input": lambda x, call: calls.append((call.prefill, x.shape[1]))}):
        organism.generate(p, max_new_tokens=3)
    assert calls[0] == (True, p.input_ids.shape[1])
    assert all(pre is False and n == 1 for pre, n in calls[1:]) and len(calls) > 1
    with pytest.raises(IndexError, match="pass the prepared example"):  # no prepared: steps unknown
        with organism.intervene(None, {"lm.input": zero_at(p.groups.image)}):
            organism.generate(p, max_new_tokens=2)
    with pytest.raises(ValueError, match="must return None or a tensor of shape"):
        with organism.intervene(p, {"lm.layer.0.out": lambda x: x[:, :1]}):
            organism.model(**p.inputs)


def test_patch_refuses_mismatched_layouts_and_sites_without_positions(organism):
    a = organism.prepare(picture(1), "what is it ?")
    b = organism.prepare(picture(1), "what color is the big circle ?")
    with pytest.raises(ValueError, match="differ in length"):
        patch(organism, a, b, "lm.input", "image", "red")
    with pytest.raises(ValueError, match="no position axis"):
        patch(organism, a, a, "projector", "image", "red")
    with pytest.raises(ValueError, match="unknown token group"):
        patch(organism, a, a, "lm.input", "objects", "red")
