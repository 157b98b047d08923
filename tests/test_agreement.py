"""Method agreement (notebook 10): each truth against a direct, independent computation, and the
finding's run through runner.run (resumable, ranked)."""

from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vlmscope import truths as T
from vlmscope.datasets.synthetic import World
from vlmscope.findings import agreement as AG


# ------------------------------------------------------------------ geometric truths
def _auroc_by_pairs(scores, inside):
    """Every (inside, outside) pair compared by hand: 1 when inside is higher, 1/2 on a tie."""
    s, m = np.ravel(scores), np.ravel(inside)
    pairs = [(a, b) for a, b in itertools.product(s[m], s[~m])]
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)


def test_geometric_truths_on_a_toy_map():
    values = np.array([[0.1, 0.9], [0.3, 0.2]])
    inside = np.array([[False, True], [False, False]])
    g = T.geometric(values, inside)
    assert g["pointing"] == 1.0 and g["auroc"] == 1.0
    assert g["mass_in_mask"] == pytest.approx(0.9 / 1.5)
    # the peak outside: pointing fails; the inside token beats one of three outside tokens
    g = T.geometric(np.array([[0.9, 0.2], [0.3, 0.1]]), inside)
    assert g["pointing"] == 0.0 and g["auroc"] == pytest.approx(1 / 3)
    # ties count one half; a tie at the peak that reaches outside does not point
    assert T.auroc([1, 1, 0, 0], np.array([True, False, True, False])) == 0.5
    assert T.geometric(np.array([1.0, 1.0, 0.0]), np.array([True, False, False]))["pointing"] == 0.0
    # no region: nothing to score
    assert all(np.isnan(v) for v in T.geometric(values, np.zeros((2, 2), bool)).values())


def test_auroc_matches_every_pair_compared_by_hand():
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = rng.integers(0, 5, size=30).astype(float)  # many ties
        inside = rng.random(30) < 0.3
        inside[0], inside[1] = True, False
        assert T.auroc(scores, inside) == pytest.approx(_auroc_by_pairs(scores, inside))


def test_inside_tokens_are_the_tokens_whose_boxes_overlap_the_mask(tiny):
    scene = World().scene(seed=7, n_objects=2)
    p = tiny.prepare(scene.image, "what color is the circle ?")
    mask = scene.objects[0].mask
    inside = T.inside_tokens(p.geometry, mask)
    for i, (x0, y0, x1, y1) in enumerate(p.geometry.boxes):  # pixel centres inside the box
        cols = np.arange(mask.shape[1]) + 0.5
        rows = np.arange(mask.shape[0]) + 0.5
        box = np.outer((rows >= y0) & (rows < y1), (cols >= x0) & (cols < x1))
        assert inside[i] == bool((mask & box).any()), i


# ------------------------------------------------------------------ causal truth
@pytest.fixture(scope="module")
def question(tiny):
    from vlmscope.ablation import mean_vector

    scene = World().scene(seed=11, n_objects=2)
    mean = mean_vector(tiny, [World().scene(seed=300 + i).image for i in range(2)])
    return scene, mean


def _direct_logprob(vlm, prepared, answer_ids, replace: dict) -> float:
    """The answer's log-probability from one forward with ``inputs_embeds``: the LM-input
    sequence (prompt + answer, image features merged) read once, positions in ``replace``
    overwritten by hand, no hook on the way in."""
    model = vlm.model
    ids = torch.cat([prepared.input_ids.to(vlm.device), answer_ids[None].to(vlm.device)], 1)
    seen = {}
    lm = model.model.language_model
    def keep(module, args, kwargs):
        seen["emb"] = kwargs["inputs_embeds"].detach()

    h = lm.register_forward_pre_hook(keep, with_kwargs=True)
    try:
        with torch.no_grad():
            model(input_ids=ids, pixel_values=prepared.inputs["pixel_values"],
                  attention_mask=torch.ones_like(ids))
    finally:
        h.remove()
    emb = seen["emb"].clone()
    for pos, vec in replace.items():
        emb[0, pos] = vec
    with torch.no_grad():
        logits = model(inputs_embeds=emb, attention_mask=torch.ones_like(ids)).logits[0].float()
    n = prepared.input_ids.shape[1]
    logp = torch.log_softmax(logits[n - 1:-1], -1)
    return float(logp.gather(1, answer_ids[:, None].to(logp.device)).sum())


def test_causal_map_equals_a_direct_forward_with_that_token_replaced(tiny, question):
    scene, mean = question
    p = tiny.prepare(scene.image, "what color is the circle ?")
    answer = "red"
    ids = tiny.answer_ids(answer, p)
    causal = T.causal_map(tiny, p, answer, mean.vector)
    assert causal.shape == (p.groups.image.numel(),) and np.isfinite(causal).all()
    clean = _direct_logprob(tiny, p, ids, {})
    for i in (0, 5, len(causal) - 1):
        pos = int(p.groups.image[i])
        direct = clean - _direct_logprob(tiny, p, ids, {pos: mean.vector})
        assert causal[i] == pytest.approx(direct, abs=1e-4)
    assert np.ptp(causal) > 0  # the tokens matter differently


def test_region_drop_replaces_the_whole_region_at_once(tiny, question):
    scene, mean = question
    p = tiny.prepare(scene.image, "what color is the circle ?")
    ids = tiny.answer_ids("red", p)
    toks = T.inside_tokens(p.geometry, scene.objects[1].mask).nonzero()[0]
    drops = T.region_drops(tiny, p, "red", mean.vector, {"obj": toks, "none": []})
    direct = (_direct_logprob(tiny, p, ids, {})
              - _direct_logprob(tiny, p, ids, {int(p.groups.image[t]): mean.vector for t in toks}))
    assert drops["obj"] == pytest.approx(direct, abs=1e-4) and np.isnan(drops["none"])


def test_token_values_read_each_token_at_its_grid_cell(tiny):
    scene = World().scene(seed=7)
    g = tiny.prepare(scene.image, "what color is the circle ?").geometry
    values = np.arange(len(g), dtype=float)
    assert np.array_equal(AG.token_values(g.to_grid(values), g), values)
    with pytest.raises(ValueError, match="does not match the grid"):
        AG.token_values(np.zeros((3, 5)), g)


# ------------------------------------------------------------------ the finding, end to end
def _stub_attribute(vlm, prepared, answer, method, seed=0, **options):
    """A stand-in method: the token index on the grid, plus seeded noise ("noisy") or a
    constant map ("flat"); enough to exercise the finding, not a real method."""
    g = prepared.geometry
    values = np.arange(len(g), dtype=float)
    if method == "noisy":
        values = values + np.random.default_rng(seed).normal(0, 5, len(g))
        if "random weights" in vlm.name:  # depends on the weights: reversed on the random copy
            values = -values
    if method == "flat":
        values = np.ones(len(g))
    return SimpleNamespace(method=method, tokens=g.to_grid(values), pixels=g.to_pixels(values),
                           seconds=0.01, peak_bytes=None, oracle=False, extra={})


@pytest.fixture
def stubbed(monkeypatch):
    monkeypatch.setattr(AG, "attribute", _stub_attribute)
    monkeypatch.setattr(AG, "takes_seed", lambda m: m == "noisy")


def test_run_agreement_resumes_and_ranks(tiny, tmp_path, stubbed):
    from vlmscope import runner

    cfg = AG.Config(methods=("noisy", "flat", "patching"), kinds=("color", "exists"),
                    noise_seeds=2, randomised=True, deletion=True)
    res = runner.run("agreement", tiny, n=2, seed=0, out=tmp_path, config=cfg, progress=False)
    s = res.summary
    assert s["computed"] == 2 and s["questions"] == 4
    df = res.df
    assert set(df.method) == {"causal", "random", "noisy", "flat", "patching"}
    assert set(df.truth) >= {*AG.GEOMETRIC, "causal_spearman", "deletion", "insertion",
                             "seed_spearman", "random_spearman"}
    assert set(df[df.truth == "seed_spearman"].method) == {"noisy"}
    # the stub's "patching" ignores the weights (the same map on the randomised copy): suspect
    assert (df[(df.method == "noisy") & (df.truth == "random_spearman")].value < 0).all()
    assert (df[(df.method == "patching") & (df.truth == "random_spearman")].value == 1).all()
    assert s["sanity_suspect"] == ["patching"]
    seeds = df[(df.method == "noisy") & (df.truth == "seed_spearman")].value
    assert ((seeds > 0) & (seeds < 1)).all()  # another seed: a similar map, not the same
    # the causal reference map scores geometry only; patching is not ranked on causal truths
    assert set(df[df.method == "causal"].truth) <= set(AG.GEOMETRIC)
    r = AG.ranking(res.df)
    assert "causal" not in r.index and np.isnan(r.loc["patching", "causal"])
    assert s["ranking_causal"] == r["causal"].dropna().sort_values().index.tolist()
    assert "patching" in s["ranking_geometric"] and "patching" not in s["ranking_causal"]
    assert set(s["ranking_geometric"]) == {"random", "noisy", "flat", "patching"}
    written = json.loads((tmp_path / "agreement.summary.json").read_text())
    assert written["leaderboard"] == s["leaderboard"]
    again = runner.run("agreement", tiny, n=2, seed=0, out=tmp_path, config=cfg, progress=False)
    assert again.summary["computed"] == 0 and again.summary["reused"] == 2
    assert again.summary["leaderboard"] == s["leaderboard"]


def test_leaderboard_has_bootstrap_intervals_around_the_mean():
    import pandas as pd

    rng = np.random.default_rng(1)
    df = pd.DataFrame({"model": "m", "method": np.repeat(["a", "b"], 40), "truth": "auroc",
                       "value": np.r_[rng.normal(0.8, 0.05, 40), rng.normal(0.5, 0.05, 40)]})
    t = AG.leaderboard(df, n_resamples=500)
    assert list(t.method) == ["a", "b"] and (t.n == 40).all()
    assert ((t.low < t["mean"]) & (t["mean"] < t.high)).all()
    assert (t.high - t.low < 0.06).all() and t.loc[0, "low"] > t.loc[1, "high"]


def test_agreement_refuses_an_annotated_image(tiny, question):
    scene, mean = question
    record = SimpleNamespace(image=scene.image, objects=[], file="x.png")
    with pytest.raises(ValueError, match="synthetic scenes"):
        AG.run(tiny, record, AG.Config(randomised=False), mean=mean)


def test_vs_paper_is_empty_no_paper_has_this():
    assert AG.PAPER.empty and list(AG.vs_paper({}).columns)[:3] == ["quantity", "ours", "paper"]


def test_example_scores_every_map_and_draws_them(tiny, question, stubbed):
    from vlmscope import plots

    scene, mean = question
    ex = AG.example(tiny, scene, "color", mean, methods=("noisy", "flat"))
    assert list(ex.tokens) == ["causal", "noisy", "flat"]
    assert ex.scores.loc["causal", "causal_spearman"] != ex.scores.loc["causal", "causal_spearman"]
    direct = T.rank_correlation(ex.tokens["noisy"], ex.question.causal)
    assert ex.scores.loc["noisy", "causal_spearman"] == pytest.approx(direct)
    fig = plots.method_maps(ex)
    assert len([a for a in fig.axes if a.images]) == 4  # mask, causal, two methods


def test_worked_examples_pick_the_questions_methods_disagree_on():
    import pandas as pd

    rows = []
    for seed, spread in ((1, 0.0), (2, 0.4), (3, 0.2)):
        for m, v in (("a", 0.5 - spread), ("b", 0.5 + spread)):
            for truth in ("auroc", "causal_spearman"):
                rows.append({"model": "m", "scene_seed": seed, "kind": "color", "question": "q",
                             "answer": "x", "method": m, "reference": False, "oracle": False,
                             "truth": truth, "value": v})
    picked = AG.worked_examples(pd.DataFrame(rows), k=2)
    assert picked.scene_seed.tolist() == [2, 3]


def test_ranking_leaves_out_oracles_references_and_a_method_on_its_own_truth():
    import pandas as pd

    rows = []
    for method, oracle, causal, v in (("a", False, False, 0.9), ("b", False, False, 0.1),
                                      ("best", True, False, 1.0), ("patch", False, True, 1.0),
                                      ("causal", False, True, 1.0), ("random", False, False, 0.5)):
        for truth in ("auroc", "causal_spearman"):
            rows.append({"method": method, "oracle": oracle, "causal": causal,
                         "reference": method in AG.REFERENCES, "truth": truth, "value": v})
    r = AG.ranking(pd.DataFrame(rows))
    assert set(r.index) == {"a", "b", "patch", "random"}  # no oracle, no causal reference map
    assert np.isnan(r.loc["patch", "causal_spearman"]) and r.loc["patch", "auroc"] == 1
    assert r.loc["a", "causal_spearman"] == 1 and r.loc["b", "causal_spearman"] == 3


def test_the_leaderboard_figure_has_a_panel_per_truth():
    import pandas as pd

    from vlmscope import plots

    lb = pd.DataFrame({"model": "m", "method": ["a", "b", "a", "b"],
                       "truth": ["auroc", "auroc", "deletion", "deletion"],
                       "mean": [0.8, 0.6, 0.2, 0.4], "low": [0.7, 0.5, 0.1, 0.3],
                       "high": [0.9, 0.7, 0.3, 0.5]})
    fig = plots.agreement_leaderboard(lb, truths=("auroc", "deletion", "insertion"))
    assert [a.get_title() for a in fig.axes] == ["auroc", "deletion (lower better)"]


def test_an_unknown_method_or_kind_is_refused_in_the_config():
    with pytest.raises(ValueError, match="unknown attribution method 'no-such-method'; known: "):
        AG.Config(methods=("gradient", "no-such-method"))
    with pytest.raises(ValueError, match="kinds: \\['describe'\\]"):
        AG.Config(kinds=("color", "describe"))


def test_the_patching_method_reproduces_the_causal_truth(tiny, question):
    """Two independent computations of one quantity: the method (batched, its own edit) and the
    truth (a forward per token through ``ablation.ablated``)."""
    from vlmscope import attribution

    scene, mean = question
    q = AG.ask(tiny, scene, "color", mean)
    a = attribution.attribute(tiny, q.prepared, q.answer, "patching", **AG.options("patching", q))
    assert a.causal and not a.oracle
    np.testing.assert_allclose(AG.token_values(a.tokens, q.prepared.geometry), q.causal, atol=1e-4)


def test_a_method_that_refuses_an_answer_is_recorded_not_fatal(tiny, question, monkeypatch):
    scene, mean = question

    def refuse_where(vlm, prepared, answer, method, **options):
        if method == "picky" and "where" in prepared.question:
            raise ValueError("'top left' is 2 tokens in this vocabulary")
        return _stub_attribute(vlm, prepared, answer, method, **options)

    monkeypatch.setattr(AG, "attribute", refuse_where)
    monkeypatch.setattr(AG, "takes_seed", lambda m: False)
    cfg = AG.Config(methods=("picky",), kinds=("color", "where"), randomised=False, deletion=False)
    df = AG.run(tiny, scene, cfg, mean=mean)
    skipped = df[df.truth == "skipped"]
    assert len(skipped) == 1 and skipped.kind.iloc[0] == "where" and "2 tokens" in skipped.note.iloc[0]
    assert set(df[(df.method == "picky") & (df.truth != "skipped")].kind) == {"color"}
    s = AG.summarise(df)
    assert s["skipped"] == {"picky": 1} and "skipped" not in s["leaderboard"]
    assert "skipped" not in AG.ranking(df).columns
