"""Explorers driven on a tiny model: each draws exactly what the library computes."""

import html

import numpy as np
import pandas as pd
import pytest

from vlmscope.datasets.synthetic import World
from vlmscope.knockout import SweepConfig, knockout_sweep
from vlmscope.maps import localisation, record_generation
from vlmscope.widgets import fractions_explorer, knockout_explorer, map_explorer


@pytest.fixture(scope="module")
def scene():
    return World().scene(seed=4, n_objects=3)


@pytest.fixture(scope="module")
def recorded(tiny, scene):
    rec = record_generation(tiny, scene.image, max_new_tokens=5, maps="heads")
    assert rec.generation.token_ids.numel() >= 2
    return rec


def _drawn(fig) -> np.ndarray:
    """The overlay an attention map figure shows (the second image on its axes)."""
    return np.asarray(fig.axes[0].images[1].get_array().filled(np.nan))


def _expected_overlay(rec, values) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    return rec.prepared.geometry.to_pixels((v - v.min()) / (v.max() - v.min()))


def test_layer_slider_draws_exactly_that_layers_map(tiny, recorded):
    ex = map_explorer(recorded)
    maps = recorded.maps()
    assert not np.allclose(maps[0, 0], maps[1, 0])  # layers differ, so a wrong layer is caught
    for layer in range(tiny.adapter.n_layers):
        ex.controls["layer"].value = layer  # as a reader dragging the slider
        assert ex.state["layer"] == layer
        np.testing.assert_array_equal(ex.state["values"], maps[layer, ex.state["step"]])
        np.testing.assert_allclose(_drawn(ex.state["figure"]),
                                   _expected_overlay(recorded, maps[layer, ex.state["step"]]))


def test_head_slider_shows_one_head_or_their_mean(recorded):
    ex = map_explorer(recorded)
    heads = recorded.head_maps()  # [L, S, H, n]
    assert list(ex.controls["head"].options) == ["mean"] + list(range(heads.shape[2]))
    ex.update(layer=1, step=1, head=2)
    np.testing.assert_array_equal(ex.state["values"], heads[1, 1, 2])
    assert not np.allclose(heads[1, 1, 2], heads[1, 1].mean(0))
    ex.update(head="mean")
    np.testing.assert_allclose(ex.state["values"], heads[1, 1].mean(0), rtol=1e-6)


def test_token_slider_labels_and_localisation_numbers(recorded, scene):
    masks = {o.name: o.mask for o in scene.objects}
    ex = map_explorer(recorded, masks=masks, layer=0)
    tokens = recorded.generation.tokens
    assert [label for label, _ in ex.controls["step"].options] == \
        [f"{s}: {t}" for s, t in enumerate(tokens)]
    ex.update(step=1)
    assert ex.state["token"] == tokens[1]
    table = ex.state["localisation"]
    assert list(table.index) == list(masks)
    for name, mask in masks.items():
        want = localisation(recorded, [(1, mask)]).query("layer == 0").iloc[0]
        got = table.loc[name]
        assert got.mass_in_mask == pytest.approx(want.mass_in_mask)
        assert bool(got.pointing) == bool(want.pointing)
    ex.update(layer=1, head=0)
    want = localisation(recorded, [(1, masks[scene.objects[0].name])], head=0)
    assert ex.state["localisation"].iloc[0].mass_in_mask == \
        pytest.approx(want[want.layer == 1].iloc[0].mass_in_mask)


def test_map_explorer_without_head_maps_and_bad_values(tiny, scene):
    rec = record_generation(tiny, scene.image, max_new_tokens=3, maps="mean")
    ex = map_explorer(rec)
    assert list(ex.controls["head"].options) == ["mean"] and ex.controls["head"].disabled
    with pytest.raises(KeyError, match="no control named"):
        ex.update(heads=1)
    with pytest.raises(ValueError, match="out of range"):
        ex.update(layer=tiny.adapter.n_layers)
    with pytest.raises(ValueError, match="per-head maps"):
        rec.map(0, 0, head=0)


def test_knockout_explorer_regenerates_what_the_sweep_gives(tiny, scene):
    sweep = knockout_sweep(tiny, scene.image, SweepConfig(max_new_tokens=6))
    L = tiny.adapter.n_layers
    assert sweep.text.nunique() > 1  # cuts change the text, so a wrong cut is caught
    ex = knockout_explorer(tiny, scene.image, max_new_tokens=6)
    assert ex.baseline == sweep.baseline.iloc[0]
    for cut in ("img->gen", "img->txt", "img->txt+gen"):
        for start in range(L + 1):
            ex.update(cut=cut, start=start)
            row = sweep[(sweep.config == cut) & (sweep.start == start)].iloc[0]
            assert (ex.state["cut"], ex.state["start"]) == (cut, start)
            assert ex.state["text"] == row.text
            assert ex.state["f1"] == pytest.approx(row.f1)
            assert html.escape(row.text) in ex.texts.value
            if start < L:  # the header names the paper's layer number too (cut in layers > l)
                assert f"l = {row.l}: layers &gt; l" in ex.texts.value  # (HTML-escaped)


def test_knockout_explorer_button_and_auto_update(tiny, scene):
    sweep = knockout_sweep(tiny, scene.image, SweepConfig(max_new_tokens=6))
    text = {(r.config, r.start): r.text for r in sweep.itertuples()}
    ex = knockout_explorer(tiny, scene.image, max_new_tokens=6, cut="img->txt")
    assert ex.state["text"] == text[("img->txt", 0)]  # the initial setting is drawn
    ex.controls["cut"].value = "img->gen"  # without auto-update: nothing regenerates yet
    assert ex.state["cut"] == "img->txt" and "press regenerate" in ex.texts.value
    ex.button.click()
    assert ex.state["cut"] == "img->gen" and ex.state["text"] == text[("img->gen", 0)]
    ex.controls["auto"].value = True
    ex.controls["start"].value = 1
    assert ex.state["start"] == 1 and ex.state["text"] == text[("img->gen", 1)]


def test_fractions_explorer_shows_one_tokens_split(tiny, scene):
    frames = []
    for i, seed in enumerate((4, 9)):
        rec = record_generation(tiny, World().scene(seed=seed).image, max_new_tokens=4, maps="none")
        frames.append(rec.fractions().assign(image_id=i))
    df = pd.concat(frames, ignore_index=True)
    ex = fractions_explorer(df)
    ex.update(image_id=1, step=2)
    want = df[(df.image_id == 1) & (df.step == 2)].sort_values("layer")
    assert ex.state["token"] == want.token.iloc[0]
    ax = ex.state["figure"].axes[0]
    image_bars = [p.get_height() for p in ax.containers[0]]  # first stack: the image share
    np.testing.assert_allclose(image_bars, want.image.to_numpy())
    assert len(ax.containers) == 4
    ex.controls["image_id"].value = 0  # dragging the image slider keeps the token where it can
    assert ex.state["image_id"] == 0
    np.testing.assert_allclose([p.get_height() for p in ex.state["figure"].axes[0].containers[0]],
                               df[(df.image_id == 0) & (df.step == ex.state["step"])]
                               .sort_values("layer").image.to_numpy())


def test_heatmap_explorer_draws_what_igos_computes(tiny, scene):
    from vlmscope import heatmaps as H
    from vlmscope.widgets import heatmap_explorer

    obj = scene.objects[0]
    prepared = tiny.prepare(scene.image, f"what color is the {obj.shape} ?")
    answer = tiny.answer_ids("red circle")
    cfg = H.HeatmapConfig(threshold=-1e9, iterations=3, ig_iter=2, size=6)
    ex = heatmap_explorer(tiny, prepared, answer, target=obj.mask, config=cfg)
    last = ex.state["importance"]
    direct = H.igos(tiny, prepared, answer, cfg)
    np.testing.assert_allclose(last, direct.importance(), atol=1e-6)
    assert ex.state["plausibility"] == H.plausibility(direct.importance(), obj.mask)
    ex.update(iteration=1)
    first = ex.state["importance"]
    assert not np.allclose(first, last)  # an earlier mask, not the final one
    ex.update(baseline="black", l1=0.0)
    black = H.igos(tiny, prepared, answer, H.HeatmapConfig(**{**cfg.__dict__, "baseline": "black",
                                                              "l1": 0.0}), keep_history=True)
    np.testing.assert_allclose(ex.state["importance"],
                               1 - H.upsample(__import__("torch").from_numpy(black.history[0]).float(),
                                              *scene.image.size[::-1]).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        ex.update(iteration=9)


def test_lens_explorer_shows_the_lens_top_words(tiny, scene):
    from vlmscope.lens import image_lens
    from vlmscope.widgets import lens_explorer

    p = tiny.prepare(scene.image, "describe the image .")
    res = image_lens(tiny, p, k=1)
    obj = p.geometry.tokens_for_mask(scene.objects[0].mask)
    ex = lens_explorer(res, p, highlight=obj)
    assert ex.state["layer"] == res.n_layers - 1
    ex.update(layer=0)
    assert ex.state["tokens"] == res.top_tokens(0)
    texts = [t.get_text() for t in ex.state["figure"].axes[0].texts]
    assert texts == [t.lstrip("▁Ġ") for t in res.top_tokens(0)]
    red = [t for t in ex.state["figure"].axes[0].texts if t.get_color() == "crimson"]
    assert len(red) == len(obj)
    with pytest.raises(ValueError, match="out of range"):
        ex.update(layer=res.n_layers)


def test_heatmap_explorer_shows_a_computed_result_without_rerunning(tiny, scene):
    from dataclasses import replace

    from vlmscope import heatmaps as H
    from vlmscope.widgets import heatmap_explorer

    obj = scene.objects[0]
    prepared = tiny.prepare(scene.image, f"what color is the {obj.shape} ?")
    answer = tiny.answer_ids("red circle")
    cfg = H.HeatmapConfig(threshold=-1e9, iterations=2, ig_iter=2, size=5)
    hm = H.igos(tiny, prepared, answer, cfg, keep_history=True)
    ex = heatmap_explorer(tiny, prepared, answer, target=obj.mask, config=cfg, computed=hm)
    assert ex.heatmap(cfg.baseline, cfg.l1, cfg.l3) is hm
    np.testing.assert_array_equal(ex.state["importance"], hm.importance())
    with pytest.raises(ValueError, match="computed="):
        heatmap_explorer(tiny, prepared, answer, config=replace(cfg, l1=0.0), computed=hm)


def test_compression_explorer_answers_from_the_chosen_pruned_cache(tiny):
    from vlmscope import compression as C
    from vlmscope.widgets import compression_explorer

    scenes = [World().scene(seed=s) for s in (1, 2)]
    cfg = C.CompressionConfig(describe_tokens=4, max_new_tokens=3)
    ex = compression_explorer(tiny, scenes, cfg, k_frac=0.25, question="what color is the circle ?")
    assert ex.state["image"] == 0 and ex.state["variant"] == "both"
    ex.update(image=1, k_frac=0.5, variant="image")
    ctx = C.describe(tiny, scenes[1].image, cfg)
    want = C.answer(tiny, ctx, "what color is the circle ?", "image", 0.5, cfg)
    assert (ex.state["text"], ex.state["kept_tokens"], ex.state["k"]) == (want.text, want.kept_tokens,
                                                                          want.k)
    assert ex.state["description"] == ctx.generation.text and set(ex.contexts) == {0, 1}
    ex.update(variant="full")
    assert ex.state["kept_tokens"] == ex.state["full_tokens"] > want.kept_tokens
    assert html.escape(repr(ex.state["text"])) in ex.text.value


def test_knockout_explorer_opens_on_a_cut_that_changes_the_text(tiny, scene):
    sweep = knockout_sweep(tiny, scene.image, SweepConfig(max_new_tokens=6))
    at0 = sweep[sweep.start == 0].set_index("config").text
    baseline = sweep.baseline.iloc[0]
    changed = [c for c in ("img->gen", "img->txt", "img->txt+gen") if at0[c] != baseline]
    assert changed  # the tiny model's text moves under some cut, so the choice is checked
    ex = knockout_explorer(tiny, scene.image, max_new_tokens=6)
    assert (ex.state["cut"], ex.state["start"]) == (changed[0], 0)
    assert ex.state["text"] == at0[changed[0]] != ex.baseline
    ex = knockout_explorer(tiny, scene.image, max_new_tokens=6, start=tiny.adapter.n_layers)
    assert ex.state["text"] == ex.baseline and ex.state["cut"] == "img->gen"  # none changes: first


def _px(width: str) -> int:
    assert width.endswith("px"), width
    return int(width[:-2])


def _explorers(tiny, scene, recorded):
    from vlmscope import compression as C
    from vlmscope import heatmaps as H
    from vlmscope.lens import image_lens
    from vlmscope.widgets import compression_explorer, heatmap_explorer, lens_explorer

    p = tiny.prepare(scene.image, "describe the image .")
    obj = scene.objects[0]
    q = tiny.prepare(scene.image, f"what color is the {obj.shape} ?")
    return {
        "map": map_explorer(recorded, masks={o.name: o.mask for o in scene.objects}),
        "knockout": knockout_explorer(tiny, scene.image, max_new_tokens=4),
        "fractions": fractions_explorer(recorded.fractions()),
        "heatmap": heatmap_explorer(tiny, q, tiny.answer_ids("red"), target=obj.mask,
                                    config=H.HeatmapConfig(threshold=-1e9, iterations=2, ig_iter=1,
                                                           size=4)),
        "lens": lens_explorer(image_lens(tiny, p, k=1), p,
                              highlight=p.geometry.tokens_for_mask(obj.mask)),
        "compression": compression_explorer(tiny, [scene], C.CompressionConfig(describe_tokens=3,
                                                                               max_new_tokens=2)),
    }


def test_every_explorer_reads_at_first_sight(tiny, scene, recorded):
    import ipywidgets as w

    from vlmscope import widgets as W

    made = _explorers(tiny, scene, recorded)
    factories = {n for n in W.__all__ if n.endswith("_explorer")}
    assert {f"{k}_explorer" for k in made} == factories  # every explorer the module offers
    for name, ex in made.items():
        caption = ex.caption.value
        assert caption.startswith("<b>Try:</b> ") and len(caption) > 40, name
        assert ex.widget.children[0] is ex.caption  # the caption is the first thing shown
        for cname, c in ex.controls.items():
            if isinstance(c, w.Checkbox):
                continue
            label = _px(c.style.description_width)
            assert label >= 7 * len(c.description), (name, cname)  # the label is never cut short
            if not isinstance(c, w.ToggleButtons):  # past the label: a track of 250 px or more,
                assert _px(c.layout.width) - label >= 250, (name, cname)  # not 35 px
            assert c.description and c.description != cname or cname == "question", (name, cname)
        for c in ex.controls.values():  # numbered layers say what the number means
            if "layer" in c.description:
                assert "0 = first of" in c.description, (name, c.description)
    ko = made["knockout"]
    options = ko.widget.children[1].children
    assert ko.button not in options and ko.button.button_style == "primary"  # an action, apart
    assert ko.controls["cut"].button_style != ko.button.button_style  # options look unlike it
    assert "baseline (no cut)" in ko.texts.value
    assert all(label != value for label, value in made["heatmap"].controls["baseline"].options)
