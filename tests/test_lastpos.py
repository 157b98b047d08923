"""Last-position knockout: windows scaled to depth, batch rows independent, cut edges cut."""

import pandas as pd
import pytest
import torch

from vlmscope import lastpos as LP
from vlmscope.attention import Edge, Knockout, attention
from vlmscope.datasets.synthetic import World


def test_windows_are_the_papers_at_32_layers_and_scale():
    w = LP.paper_windows(32)
    assert w["0-9"] == tuple(range(0, 10)) and w["21-31"] == tuple(range(21, 32))
    assert w["11-20"] == tuple(range(11, 21)) and w["all"] == tuple(range(32))
    w4 = LP.paper_windows(4)
    assert w4["0-9"] == (0, 1) and w4["11-20"] == (1, 2) and w4["21-31"] == (2, 3)
    assert all(len(v) >= 1 for v in LP.paper_windows(2).values())
    assert LP.sliding_windows(4, 2) == {"0-1": (0, 1), "1-2": (1, 2), "2-3": (2, 3)}
    with pytest.raises(ValueError, match="width"):
        LP.sliding_windows(4, 5)


@pytest.fixture(scope="module")
def case(tiny):
    scene = World().scene(seed=5, n_objects=2)
    obj = scene.objects[0]
    p = tiny.prepare(scene.image, f"what color is the {obj.shape} ?")
    return p, obj, tiny.tokenizer.convert_tokens_to_ids(obj.color)


def test_condition_tokens_nest_and_cover(case):
    p, obj, _ = case
    t = LP.condition_tokens(p, obj.mask)
    assert set(t["object"]) <= set(t["object+1"]) <= set(t["object+2"])
    n = p.groups.image.numel()
    assert sorted(set(t["object"]) | set(t["other image, object only"])) == list(range(n))
    # released "other image": everything outside object+1 (the object and one ring stay visible)
    assert sorted(set(t["object+1"]) | set(t["other image"])) == list(range(n))
    assert not set(t["object+1"]) & set(t["other image"])
    assert len(t["last row"]) == p.geometry.grids[0][1]
    grid_rows = p.geometry.cells[:, 0]  # direct: the tokens of the largest grid row
    assert list(t["last row"]) == [i for i in range(n) if grid_rows[i] == grid_rows.max()]


def _p_alone(vlm, p, answer_id, edges):
    ko = Knockout(p.groups, [edges], vlm.adapter.n_layers)
    with attention(vlm, knockout=ko), torch.no_grad():
        logits = vlm.model(**p.inputs).logits[0, -1].float()
    return float(torch.softmax(logits, -1)[answer_id])


def test_rows_equal_single_runs_and_the_baseline_is_plain(tiny, case):
    p, obj, aid = case
    df = LP.lastpos_knockout(tiny, p, aid, obj.mask, batch_size=5)
    with torch.no_grad():
        plain = float(torch.softmax(tiny.model(**p.inputs).logits[0, -1].float(), -1)[aid])
    assert df.iloc[0].condition == "none" and df.iloc[0].p == pytest.approx(plain, abs=1e-6)
    toks = LP.condition_tokens(p, obj.mask)
    img = p.groups.image

    def pos(name):
        return tuple(img[toks[name]].tolist())

    # who is cut from whom, written out per condition (the released presets)
    spec = {c: ("prompt_last", pos(c)) for c in ("object", "object+1", "object+2", "other image")}
    spec["last row: object+1"] = (pos("last row"), pos("object+1"))
    spec["last row: rest"] = (pos("last row"), tuple(sorted(set(img.tolist()) - set(pos("last row")))))
    for r in df.iloc[1:].itertuples():
        edges = (Edge(*spec[r.condition], tuple(r.layers)),)
        assert r.p == pytest.approx(_p_alone(tiny, p, aid, edges), abs=1e-5), (r.condition, r.window)
    assert len(df) == 1 + len(LP.CONDITIONS) * len(LP.paper_windows(tiny.adapter.n_layers))
    assert (df.p_drop_answer == df.p.iloc[0] - df.p).all()
    assert (df.p_drop == df.p_top.iloc[0] - df.p_top).all()  # the released drop: the top token's


def test_probability_drops_are_the_top_and_the_answer_tokens(tiny, case):
    p, obj, aid = case
    L = tiny.adapter.n_layers
    df = LP.lastpos_knockout(tiny, p, aid, obj.mask, windows={"all": tuple(range(L))},
                             conditions=("object", "other image, object only", "last row -> last"))
    for r in df.iloc[1:].itertuples():  # direct: the softmax of one unbatched forward
        toks = LP.condition_tokens(p, obj.mask)[{"object": "object",
                                                 "other image, object only": "other image, object only",
                                                 "last row -> last": "last row"}[r.condition]]
        ko = Knockout(p.groups, [(Edge("prompt_last", tuple(p.groups.image[toks].tolist())),)], L)
        with attention(tiny, knockout=ko), torch.no_grad():
            probs = torch.softmax(tiny.model(**p.inputs).logits[0, -1].float(), -1)
        assert r.p_top == pytest.approx(float(probs.max()), abs=1e-6)
        assert r.p == pytest.approx(float(probs[aid]), abs=1e-6)
        assert r.top1 == int(probs.argmax())


def test_object_plus_other_in_all_layers_is_the_whole_image_cut(tiny, case):
    p, obj, aid = case
    L = tiny.adapter.n_layers
    df = LP.lastpos_knockout(tiny, p, aid, obj.mask, windows={"all": tuple(range(L))},
                             conditions=("object",))
    toks = LP.condition_tokens(p, obj.mask)
    both = (Edge("prompt_last", tuple(p.groups.image[toks["object"]].tolist())),
            Edge("prompt_last", tuple(p.groups.image[toks["other image, object only"]].tolist())))
    assert _p_alone(tiny, p, aid, both) == pytest.approx(
        _p_alone(tiny, p, aid, (Edge("prompt_last", "image"),)), abs=1e-6)
    assert df.iloc[1].p == pytest.approx(_p_alone(tiny, p, aid, both[:1]), abs=1e-6)
    with pytest.raises(ValueError, match="unknown conditions"):
        LP.lastpos_knockout(tiny, p, aid, obj.mask, conditions=("nose",))


def test_summary_table_uses_right_answers_only():
    rows = []
    for q, right in (("a", True), ("b", False)):
        rows.append({"question": q, "condition": "none", "window": "-", "correct": right,
                     "p_drop": 0.0, "n_blocked": 0})
        rows.append({"question": q, "condition": "object", "window": "all", "correct": False,
                     "p_drop": 0.5, "n_blocked": 3})
    t = LP.summary_table(pd.DataFrame(rows))
    assert len(t) == 1 and t.iloc[0].n_questions == 1 and t.iloc[0].relative_accuracy == 0.0


@pytest.mark.slow
def test_organism_reads_the_colour_from_the_object_not_from_elsewhere():
    import vlmscope
    from vlmscope.models import organisms

    if "organism" not in organisms():
        pytest.fail("the bundled organism is missing from data/organism")
    vlm = vlmscope.load("organism")
    frames = []
    for s in range(8):
        scene = World().scene(seed=s)
        o = scene.objects[0]
        p = vlm.prepare(scene.image, f"what color is the {o.shape} ?")
        df = LP.lastpos_knockout(vlm, p, vlm.tokenizer.convert_tokens_to_ids(o.color), o.mask,
                                 conditions=("object", "other image, object only", "last row -> last",
                                             "other image", "last row: rest"))
        frames.append(df.assign(question=s))
    t = LP.summary_table(pd.concat(frames)).set_index(["condition", "window"])
    assert t.loc[("object", "all"), "relative_accuracy"] <= 0.2
    assert t.loc[("other image, object only", "all"), "relative_accuracy"] >= 0.9
    assert t.loc[("last row -> last", "all"), "relative_accuracy"] >= 0.9
