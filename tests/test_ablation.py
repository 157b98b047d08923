"""Visual-token ablation: exact no-op, exactly the chosen positions, cache with provenance."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from vlmscope import ablation as A
from vlmscope.datasets.synthetic import World
from vlmscope.hooks import capture_lm_inputs


@pytest.fixture(scope="module")
def scene():
    return World().scene(seed=7, n_objects=2)


@pytest.fixture(scope="module")
def prepared(tiny, scene):
    return tiny.prepare(scene.image, "describe the image .")


@pytest.fixture(scope="module")
def mean(tiny):
    w = World()
    return A.mean_vector(tiny, [w.scene(seed=100 + i).image for i in range(3)])


def test_ablating_nothing_changes_nothing(tiny, prepared, mean):
    with torch.no_grad():
        plain = tiny.model(**prepared.inputs).logits
        with A.ablated(tiny, prepared, [], vector=mean.vector):
            same = tiny.model(**prepared.inputs).logits
    assert torch.equal(plain, same)


@pytest.mark.parametrize("mode", ["mean", "zeros"])
def test_exactly_the_chosen_positions_change(tiny, prepared, mean, mode):
    toks = [0, 5, 9]
    with capture_lm_inputs(tiny) as before, torch.no_grad():
        tiny.model(**prepared.inputs)
    # pre-hooks run in registration order: the capture (registered second) sees the edit
    with A.ablated(tiny, prepared, toks, vector=mean.vector, mode=mode), \
            capture_lm_inputs(tiny) as seen, torch.no_grad():
        tiny.model(**prepared.inputs)
    emb, orig = seen[0][0], before[0][0]
    pos = prepared.groups.image[toks]
    want = torch.zeros_like(emb[0]) if mode == "zeros" else mean.vector.to(emb)
    for p in pos.tolist():
        assert torch.equal(emb[p], want)
    keep = torch.ones(emb.shape[0], dtype=torch.bool)
    keep[pos] = False
    assert torch.equal(emb[keep], orig[keep])
    assert not torch.equal(emb, orig)


def test_decoding_steps_are_left_alone(tiny, prepared, mean):
    toks = list(range(0, 20))
    with A.ablated(tiny, prepared, toks, vector=mean.vector):
        cached = tiny.generate(prepared, max_new_tokens=6)
        uncached = tiny.generate(prepared, max_new_tokens=6, use_cache=False)
    assert cached.token_ids.tolist() == uncached.token_ids.tolist()


def test_bad_arguments_are_clear(tiny, prepared, mean):
    with pytest.raises(ValueError, match="mode"):
        with A.ablated(tiny, prepared, [0], vector=mean.vector, mode="noise"):
            pass
    with pytest.raises(ValueError, match="mean vector"):
        with A.ablated(tiny, prepared, [0]):
            pass
    with pytest.raises(IndexError, match="0..63"):
        with A.ablated(tiny, prepared, [64], vector=mean.vector):
            pass


def test_mean_vector_is_the_mean_and_is_cached_with_provenance(tiny, tmp_path):
    w = World()
    images = [w.scene(seed=200 + i).image for i in range(2)]
    path = tmp_path / "mean.safetensors"
    mv = A.mean_vector(tiny, images, cache=path)
    embs = []
    for im in images:
        p = tiny.prepare(im, "describe the image .")
        with capture_lm_inputs(tiny) as seen, torch.no_grad():
            tiny.model(**p.inputs)
        embs.append(seen[0][0, p.groups.image].double())
    torch.testing.assert_close(mv.vector.double(), torch.cat(embs).mean(0), atol=1e-6, rtol=0)
    assert mv.n_images == 2 and mv.n_tokens == 128
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a matching cache is reused silently
        again = A.mean_vector(tiny, images, cache=path)
    assert torch.equal(again.vector, mv.vector)
    with pytest.warns(UserWarning, match="other images"):
        A.mean_vector(tiny, images[:1], cache=path)
    path.write_bytes(b"damaged")
    with pytest.warns(UserWarning, match="damaged"):
        fixed = A.mean_vector(tiny, images, cache=path)
    torch.testing.assert_close(fixed.vector, mv.vector)
    with pytest.raises(ValueError, match="at least one"):
        A.mean_vector(tiny, [])


def test_choose_tokens_rules():
    norms = np.array([1.0, 5.0, 2.0, 9.0, 3.0])
    assert A.choose_tokens("high-norm", 2, norms=norms, n_image=5).tolist() == [1, 3]
    assert A.choose_tokens("ig", 1, attribution=-norms, n_image=5).tolist() == [0]
    assert A.choose_tokens("object", 2, object_tokens=[4, 2], n_image=5).tolist() == [2, 4]
    r1 = A.choose_tokens("random", 3, n_image=5, seed=1)
    assert len(set(r1.tolist())) == 3 and np.array_equal(r1, A.choose_tokens("random", 3, n_image=5, seed=1))
    with pytest.raises(ValueError, match="unknown rule"):
        A.choose_tokens("edges", 1, n_image=5)
    with pytest.raises(ValueError, match="cannot choose"):
        A.choose_tokens("random", 6, n_image=5)


def test_ig_attribution_is_complete(tiny, prepared, mean):
    """Integrated gradients sum to f(x) - f(baseline) (Riemann error shrinks with steps)."""
    answer = tiny.answer_ids("red")
    att = A.ig_attribution(tiny, prepared, answer, steps=64, baseline=mean.vector, rule="ours")
    from vlmscope.hooks import hooked

    img = prepared.groups.image
    n = prepared.input_ids.shape[1]

    def f(zero: bool):
        def edit(module, args, kwargs):
            emb = kwargs["inputs_embeds"]
            if zero and emb.shape[1] >= n:
                emb = emb.clone()
                emb[0, img] = mean.vector.to(emb)
            return args, {**kwargs, "inputs_embeds": emb}

        inputs = tiny.adapter.extend_inputs(prepared.inputs, answer[None])
        with hooked(tiny.adapter.language_model, edit, pre=True), torch.no_grad():
            logits = tiny.model(**inputs).logits[0, n - 1]
        return float(torch.log_softmax(logits.float(), -1)[answer[0]])

    assert att.shape == (img.numel(),)
    assert att.sum() == pytest.approx(f(False) - f(True), rel=0.05, abs=1e-4)


def _direct_ig(vlm, prepared, answer, baseline, alphas, absolute):
    """Integrated gradients written out: gradients of the answer's log-probability w.r.t. the
    image embeddings along the given path points, averaged, times (x - x0)."""
    from vlmscope.hooks import capture_lm_inputs, hooked

    with capture_lm_inputs(vlm) as seen, torch.no_grad():
        vlm.model(**prepared.inputs)
    img = prepared.groups.image
    x = seen[0][0, img].float()
    x0 = baseline.float().expand_as(x)
    n = prepared.input_ids.shape[1]
    inputs = vlm.adapter.extend_inputs(prepared.inputs, answer[:1][None])
    total = torch.zeros_like(x)
    for a in alphas:
        z = (x0 + a * (x - x0)).detach().requires_grad_(True)

        def put(module, args, kwargs, z=z):
            emb = kwargs["inputs_embeds"].clone()
            emb[0, img] = z.to(emb.dtype)
            return args, {**kwargs, "inputs_embeds": emb}

        with hooked(vlm.adapter.language_model, put, pre=True):
            lp = torch.log_softmax(vlm.model(**inputs).logits[0, n - 1].float(), -1)[answer[0]]
        (g,) = torch.autograd.grad(lp, z)
        total += g
    per = (x - x0) * total / len(alphas)
    return (per.abs() if absolute else per).sum(-1).numpy()


def test_ig_rules_released_and_ours(tiny, prepared, mean):
    answer = tiny.answer_ids("red")
    rel = A.ig_attribution(tiny, prepared, answer, steps=3, baseline=mean.vector)  # released default
    ours = A.ig_attribution(tiny, prepared, answer, steps=3, baseline=mean.vector, rule="ours")
    np.testing.assert_allclose(rel, _direct_ig(tiny, prepared, answer, mean.vector, [0, 0.5, 1], True),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ours, _direct_ig(tiny, prepared, answer, mean.vector, [1 / 3, 2 / 3, 1],
                                                False), rtol=1e-4, atol=1e-6)
    assert (rel >= 0).all() and (ours < 0).any()  # absolute values against signed ones
    assert A.IG_RULES["released"]["steps"] == 50 and A.IG_RULES["ours"]["steps"] == 8
    with pytest.raises(ValueError, match="unknown IG rule"):
        A.ig_attribution(tiny, prepared, answer, rule="signed")


def test_ig_path_points_batched_equal_the_direct_computation(tiny, prepared, mean, monkeypatch):
    """Path points several to a forward (5 points in batches of 2: a partial last batch) give
    the one-point-at-a-time integrated gradients; out of memory, the batch halves."""
    answer = tiny.answer_ids("red")
    direct = _direct_ig(tiny, prepared, answer, mean.vector, [0, 0.25, 0.5, 0.75, 1], True)
    rows, chunk = [], A._ig_chunk

    def counting(vlm, p, inputs, alphas, *rest):
        rows.append((inputs["input_ids"].shape[0], len(alphas)))
        return chunk(vlm, p, inputs, alphas, *rest)

    monkeypatch.setattr(A, "_ig_chunk", counting)
    got = A.ig_attribution(tiny, prepared, answer, steps=5, baseline=mean.vector, batch=2)
    np.testing.assert_allclose(got, direct, rtol=1e-4, atol=1e-6)
    assert rows == [(2, 2), (2, 2), (2, 1)]  # batched forwards, not one point each

    def tight(vlm, p, inputs, alphas, *rest):  # an accelerator that fits two rows
        if inputs["input_ids"].shape[0] > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return chunk(vlm, p, inputs, alphas, *rest)

    monkeypatch.setattr(A, "_ig_chunk", tight)
    with pytest.warns(RuntimeWarning, match="out of memory with 4 IG path points"):
        got = A.ig_attribution(tiny, prepared, answer, steps=5, baseline=mean.vector, batch=4)
    np.testing.assert_allclose(got, direct, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="batch must be"):
        A.ig_attribution(tiny, prepared, answer, batch=0)


def test_high_norm_count_uses_the_unbiased_std():
    norms = np.r_[np.zeros(10), 1.0, 0.87]  # 0.87 lies between the two thresholds
    t = torch.tensor(norms)
    assert A.high_norm_count(norms) == int((t > t.mean() + 2 * t.std()).sum()) == 1  # torch: ddof=1
    assert A.high_norm_count(norms, ddof=0) == 2


def test_noise_rules_patches_and_pixels(tiny, scene):
    obj = scene.objects[0]
    img = np.asarray(scene.image.convert("RGB"))
    h, w = obj.mask.shape
    geo = tiny.prepare(scene.image, "describe the image .").geometry
    rows, cols = geo.grids[0]
    ch, cw = h // rows, w // cols
    assert (ch * rows, cw * cols) == (h, w)  # the tiny model's cells tile the image exactly
    cells = np.zeros((h, w), bool)  # by hand: every cell the mask touches, whole
    for r in range(rows):
        for c in range(cols):
            if obj.mask[r * ch:(r + 1) * ch, c * cw:(c + 1) * cw].any():
                cells[r * ch:(r + 1) * ch, c * cw:(c + 1) * cw] = True
    patched = np.asarray(A.noised(tiny, scene.image, obj.mask, rule="patches", seed=1))
    pixels = np.asarray(A.noised(tiny, scene.image, obj.mask, rule="pixels", seed=1))
    changed_p = (patched != img).any(-1)
    changed_x = (pixels != img).any(-1)
    assert not changed_p[~cells].any() and changed_p[cells].mean() > 0.9
    assert not changed_x[~obj.mask].any() and changed_x[obj.mask].mean() > 0.9
    assert (cells & ~obj.mask).any() and not changed_x[cells & ~obj.mask].any()  # the outline stays
    # released: one noise patch, the same in every cell
    first = None
    for r in range(rows):
        for c in range(cols):
            if cells[r * ch, c * cw]:
                block = patched[r * ch:(r + 1) * ch, c * cw:(c + 1) * cw]
                first = block if first is None else first
                assert np.array_equal(block, first)
    with pytest.raises(ValueError, match="unknown noise rule"):
        A.noised(tiny, scene.image, obj.mask, rule="blur")


def test_ablate_object_reports_top_and_answer_probabilities(tiny, scene, mean):
    from vlmscope.hooks import hooked

    obj = scene.objects[0]
    tasks = {"vqa": (f"what color is the {obj.shape} ?", lambda t: t.strip() == obj.color)}
    df = A.ablate_object(tiny, scene.image, obj.mask, tasks, mean, rings=(0,), rules=("object",),
                         max_new_tokens=2)
    r = df.iloc[0]
    p = tiny.prepare(scene.image, tasks["vqa"][0])
    toks = p.geometry.tokens_for_mask(obj.mask)
    pos = p.groups.image[torch.as_tensor(toks)]

    def put(module, args, kwargs):
        emb = kwargs["inputs_embeds"].clone()
        emb[:, pos] = mean.vector.to(emb)
        return args, {**kwargs, "inputs_embeds": emb}

    with torch.no_grad():
        before = torch.softmax(tiny.model(**p.inputs).logits[0, -1].float(), -1)
        with hooked(tiny.adapter.language_model, put, pre=True):
            after = torch.softmax(tiny.model(**p.inputs).logits[0, -1].float(), -1)
    first = int(before.argmax())  # greedy: the un-ablated answer's first token
    assert r.p_top_before == pytest.approx(float(before.max()), abs=1e-5)
    assert r.p_top_after == pytest.approx(float(after.max()), abs=1e-5)
    assert r.p_before == pytest.approx(float(before[first]), abs=1e-5)
    assert r.p_after == pytest.approx(float(after[first]), abs=1e-5)


def _explicit_ablated_greedy(vlm, prepared, positions, vector, steps):
    """Reference for ``ablated_answers``: a pre-hook on the language model writing ``vector`` at
    ``positions`` of the prompt's embeddings, then a plain greedy loop without a cache (the
    whole sequence each step, ablated each time); returns (ids, p of the first step)."""
    from vlmscope.hooks import hooked

    def put(module, args, kwargs):
        emb = kwargs["inputs_embeds"].clone()
        emb[:, positions] = vector.to(emb)
        return args, {**kwargs, "inputs_embeds": emb}

    stop = {vlm.tokenizer.eos_token_id}
    inputs, ids, first = dict(prepared.inputs), [], None
    with torch.no_grad(), hooked(vlm.adapter.language_model, put, pre=True):
        for _ in range(steps):
            probs = torch.softmax(vlm.model(**inputs).logits[0, -1].float(), -1)
            first = probs if first is None else first
            t = int(probs.argmax())
            if t in stop:
                break
            ids.append(t)
            step = torch.tensor([[t]], device=inputs["input_ids"].device)
            inputs["input_ids"] = torch.cat([inputs["input_ids"], step], 1)
            inputs["attention_mask"] = torch.cat([inputs["attention_mask"],
                                                  torch.ones_like(step)], 1)
    return ids, first


def test_ablations_as_batch_rows_equal_one_explicit_ablation_each(tiny, scene, mean,
                                                                 monkeypatch):
    """Several token sets as batch rows of one generation (5 sets in rows of 2: a partial
    last batch; one set empty) give what each ablation gives alone in an explicit greedy loop:
    the answer, p(first token) and the top probability; out of memory, the batch halves."""
    p = tiny.prepare(scene.image, "describe the image .")
    first = tiny.generate(p, max_new_tokens=1).token_ids
    n = p.groups.image.numel()
    sets = [[0, 1, 2], [], list(range(n)), [n - 1], list(range(0, n, 2))]
    calls, rows = [], A._rows_ablated

    def counting(vlm, prep, inputs, positions, *rest):
        calls.append(len(positions))
        return rows(vlm, prep, inputs, positions, *rest)

    monkeypatch.setattr(A, "_rows_ablated", counting)
    got = A.ablated_answers(tiny, p, sets, first, vector=mean.vector, max_new_tokens=6, batch=2)
    assert calls == [2, 2, 1]  # batched generations, not one per set
    assert len(got) == len(sets)
    for toks, g in zip(sets, got):
        ids, probs = _explicit_ablated_greedy(tiny, p, p.groups.image[torch.as_tensor(
            toks, dtype=torch.long)], mean.vector, 6)
        assert g["answer"].token_ids.tolist() == ids, toks
        assert g["p_first"] == pytest.approx(float(probs[int(first[0])]), abs=1e-5)
        assert g["p_top"] == pytest.approx(float(probs.max()), abs=1e-5)

    def tight(vlm, prep, inputs, positions, *rest):  # an accelerator that fits one row
        if len(positions) > 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return rows(vlm, prep, inputs, positions, *rest)

    monkeypatch.setattr(A, "_rows_ablated", tight)
    with pytest.warns(RuntimeWarning, match="out of memory with 2 ablations"):
        again = A.ablated_answers(tiny, p, sets[:3], first, vector=mean.vector,
                                  max_new_tokens=6, batch=2)
    assert [a["answer"].token_ids.tolist() for a in again] == [
        g["answer"].token_ids.tolist() for g in got[:3]]
    with pytest.raises(IndexError, match="token indices"):
        A.ablated_answers(tiny, p, [[n]], first, vector=mean.vector)
    with pytest.raises(ValueError, match="batch must be at least 1"):
        A.ablated_answers(tiny, p, sets, first, vector=mean.vector, batch=0)
    with pytest.raises(ValueError, match="needs the mean vector"):
        A.ablated_answers(tiny, p, sets, first)

    # a processor that cannot repeat the prompt: one ablation at a time, the same results
    monkeypatch.setattr(A, "_rows_ablated", rows)
    monkeypatch.setattr(type(tiny), "repeated_inputs", lambda self, prepared, size: None)
    alone = A.ablated_answers(tiny, p, sets, first, vector=mean.vector, max_new_tokens=6, batch=2)
    for g, a in zip(got, alone):
        assert a["answer"].token_ids.tolist() == g["answer"].token_ids.tolist()
        assert a["p_first"] == pytest.approx(g["p_first"], abs=1e-5)
        assert a["p_top"] == pytest.approx(g["p_top"], abs=1e-5)


def test_loss_table_counts_and_intervals():
    df = pd.DataFrame({"task": ["vqa"] * 5, "rule": ["object"] * 5, "rings": [0] * 5,
                       "n_tokens": [4, 4, 6, 6, 5],
                       "correct_before": [True, True, True, True, False],
                       "correct_after": [False, False, True, False, False]})
    t = A.loss_table(df).iloc[0]
    assert (t.n_correct_before, t.n_lost) == (4, 3) and t.lost == 0.75
    assert 0.2 < t.ci_low < 0.75 < t.ci_high <= 1.0
    assert t.n_tokens == 5.0


@pytest.mark.slow
def test_organism_object_ablation_hurts_far_more_than_random():
    import vlmscope
    from vlmscope.models import organisms

    if "organism" not in organisms():
        pytest.fail("the bundled organism is missing from data/organism")
    vlm = vlmscope.load("organism")
    w = World()
    mv = A.mean_vector(vlm, [w.scene(seed=10**6 + i).image for i in range(8)])
    df = pd.concat([A.ablate_scene(vlm, w.scene(seed=s), mv, rings=(1,), rules=("object", "random"),
                                   tasks=("polling", "vqa")) for s in range(4)])
    t = A.loss_table(df, by=("rule",)).set_index("rule")
    assert t.loc["object", "n_correct_before"] >= 10
    assert t.loc["object", "lost"] >= 0.8 and t.loc["random", "lost"] <= 0.3
    assert t.loc["object", "ci_low"] > t.loc["random", "ci_high"]


def test_coco_tasks_match_whole_words():
    t = A.coco_tasks("cat")
    q, names = t["generative"]
    assert q == "Describe this image." and names("Two cats sit on a sofa.")
    assert not names("A photo of a location in town.")  # "cat" inside "location" does not count
    q, yes = t["polling"]
    assert q == "Is there a cat in this image?"
    assert yes("Yes, there is.") and not yes("No. The eyes are closed.")


@pytest.mark.slow
def test_noise_filter_keeps_objects_the_model_stops_naming():
    import vlmscope
    from vlmscope.models import organisms

    if "organism" not in organisms():
        pytest.fail("the bundled organism is missing from data/organism")
    vlm = vlmscope.load("organism")
    kept = []
    for s in range(4):
        scene = World().scene(seed=300 + s, n_objects=2)
        o = scene.objects[0]
        names = A.organism_tasks(o)["generative"][1]
        r = A.noise_filter(vlm, scene.image, o.mask, names, seed=s)
        assert r["keep"] == (r["named"] and not r["named_with_noise"])
        kept.append(r)
    assert all(r["named"] for r in kept)  # the organism describes its scenes right
    assert sum(r["keep"] for r in kept) >= 3  # and noise removes the object for it
