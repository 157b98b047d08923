"""Plot functions take results and return figures with the panels they promise."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from vlmscope import plots
from vlmscope.tokens import TokenGeometry, grid_boxes


@pytest.fixture
def geometry():
    """A 4x4 grid of 8-px tokens over a 32x32 image."""
    boxes = grid_boxes(4, 4, lambda u, v: (u * 32, v * 32))
    cells = np.stack(np.divmod(np.arange(16), 4), axis=1)
    return TokenGeometry(boxes, np.zeros(16, dtype=int), cells, ((4, 4),), (32, 32))


def test_maps_across_layers_grid_is_tokens_by_layers_each_panel_normalised(geometry):
    rng = np.random.default_rng(0)
    maps = rng.random((5, 3, 16)) * np.arange(1, 6)[:, None, None]  # [layers, steps, n_image]
    image = np.full((32, 32, 3), 200, dtype=np.uint8)
    mask = np.zeros((32, 32), dtype=bool)
    mask[8:16, 8:16] = True
    fig = plots.maps_across_layers(image, geometry, maps, steps=[0, 2], labels=["red", "circle"],
                                   layers=[1, 2, 4], masks=[mask, None])
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2 * 3
    axes = np.array(fig.axes).reshape(2, 3)
    for r, step in enumerate([0, 2]):
        for c, layer in enumerate([1, 2, 4]):
            drawn = axes[r, c].images[1].get_array()
            v = maps[layer, step]
            want = geometry.to_pixels((v - v.min()) / (v.max() - v.min()))
            np.testing.assert_allclose(drawn, want)
            assert np.nanmin(drawn) == 0 and np.nanmax(drawn) == 1  # min-max per panel
    assert axes[0, 1].get_title() == "layer 2"
    assert len(axes[0, 0].collections) == 1 and len(axes[1, 0].collections) == 0  # mask outlined
    assert len(plots.maps_across_layers(image, geometry, maps, steps=[1]).axes) == 5


def test_localisation_by_layer_has_pointing_and_ratio_against_chance():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"image_id": np.repeat(range(4), 3), "layer": np.tile(range(3), 4),
                       "pointing": rng.random(12) > 0.5, "ratio": rng.random(12) * 3,
                       "mask_share": 0.2})
    fig = plots.localisation_by_layer(df)
    assert isinstance(fig, Figure)
    left, right = fig.axes
    assert "pointing" in left.get_ylabel() and "mask share" in right.get_ylabel()
    chance = [ln.get_ydata()[0] for ln in right.lines if ln.get_linestyle() == "--"]
    assert chance == [1.0]
    share = [ln.get_ydata()[0] for ln in left.lines if ln.get_linestyle() == "--"]
    assert share == [pytest.approx(0.2)]
    mean_line = next(ln for ln in right.lines if ln.get_linestyle() != "--")
    np.testing.assert_allclose(mean_line.get_ydata(), df.groupby("layer").ratio.mean())


def test_token_fractions_stacks_one_bar_per_layer():
    rows = pd.DataFrame({"layer": range(4), "image": [0.1, 0.2, 0.3, 0.4],
                         "query_no_bos": 0.1, "bos": 0.3, "generated": [0.5, 0.4, 0.3, 0.2]})
    fig = plots.token_fractions(rows, title="t")
    ax = fig.axes[0]
    assert len(ax.containers) == 4 and all(len(c) == 4 for c in ax.containers)
    tops = [sum(c[i].get_height() for c in ax.containers) for i in range(4)]
    np.testing.assert_allclose(tops, 1.0)


def test_attention_map_outlines_the_named_object_over_the_normalised_map(geometry):
    values = np.arange(16, dtype=float)
    image = np.full((32, 32, 3), 200, dtype=np.uint8)
    mask = np.zeros((32, 32), dtype=bool)
    mask[0:8, 24:32] = True
    fig = plots.attention_map(image, geometry, values, title="'red', layer 2", outline=mask)
    [ax] = fig.axes
    np.testing.assert_allclose(ax.images[1].get_array(), geometry.to_pixels(values / 15))
    assert ax.get_title() == "'red', layer 2" and len(ax.collections) == 1  # the cyan outline
    [path] = ax.collections[0].get_paths()
    x, y = path.vertices.T  # the contour at 0.5 runs round the mask's corner cell
    assert 23 <= x.min() <= 24 and y.max() <= 8
    assert not plots.attention_map(image, geometry, values).axes[0].collections  # no mask, no outline


def test_object_word_maps_label_and_outline_each_named_object(geometry):
    from types import SimpleNamespace

    maps = np.random.default_rng(2).random((3, 5, 16))  # [layers, steps, n_image]
    image = np.full((32, 32, 3), 200, dtype=np.uint8)
    mask = np.zeros((32, 32), dtype=bool)
    mask[8:16, 8:16] = True
    square = SimpleNamespace(name="red square", mask=mask)
    tokens = ["a", "red", "square", "at", "top"]
    fig = plots.object_word_maps(image, geometry, maps, tokens, [(1, square), (2, square)], title="t")
    axes = np.array(fig.axes).reshape(2, 3)  # one row per object word, one column per layer
    assert [t.get_text() for t in axes[0, 0].texts] == ["'red' (red square)"]
    assert [t.get_text() for t in axes[1, 0].texts] == ["'square' (red square)"]
    assert all(len(ax.collections) == 1 for ax in axes.flat)  # every panel outlines the object
    np.testing.assert_allclose(axes[1, 2].images[1].get_array(),
                               geometry.to_pixels((maps[2, 2] - maps[2, 2].min())
                                                  / np.ptp(maps[2, 2])))
    bare = plots.object_word_maps(image, geometry, maps, tokens, [])  # no object word: 3 tokens
    assert len(bare.axes) == 3 * 3 and not any(ax.collections for ax in bare.axes)
    assert [t.get_text() for t in bare.axes[3].texts] == ["'red'"]


# --------------------------------------------------------------- notebooks 05-09
def _drawn_lines(ax):
    """(x, y) of every data line seaborn drew (markers or solid), legend handles aside."""
    return [(np.asarray(ln.get_xdata(), float), np.asarray(ln.get_ydata(), float))
            for ln in ax.lines if len(ln.get_xdata()) > 0]


def test_baselines_shows_the_image_then_each_baseline_channels_last():
    import torch

    image = np.zeros((8, 10, 3), dtype=np.uint8)
    image[2, 3] = (255, 0, 0)
    blur = torch.rand(3, 8, 10)  # a pixel tensor, channels first
    fig = plots.baselines(image, {"blur": blur, "black": torch.zeros(3, 8, 10)})
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["image", "blur", "black"]
    np.testing.assert_array_equal(axes[0].images[0].get_array(), image)
    np.testing.assert_allclose(axes[1].images[0].get_array(), blur.permute(1, 2, 0).numpy())
    assert axes[2].images[0].get_array().shape == (8, 10, 3)


def test_igos_iterations_draws_one_inverted_upsampled_mask_per_iteration():
    from vlmscope.heatmaps import Heatmap, HeatmapConfig, Selection

    sel = Selection(["a"], [1], [0.0], [-2.0], [False], [0], "given")
    history = [np.full((4, 4), 0.5, np.float32), np.eye(4, dtype=np.float32)]
    hm = Heatmap(mask=history[-1], selection=sel, config=HeatmapConfig(), image_size=(16, 16),
                 history=history)
    target = np.zeros((16, 16), bool)
    target[:4, :4] = True
    fig = plots.igos_iterations(np.zeros((16, 16, 3), np.uint8), hm, target)
    assert [ax.get_title() for ax in fig.axes] == ["iteration 1", "iteration 2"]
    drawn = fig.axes[1].images[1].get_array()  # min-max normalised 1 - up(mask): high off-diagonal
    final = hm.importance()
    np.testing.assert_allclose(drawn, (final - final.min()) / (final.max() - final.min()))
    assert len(fig.axes[0].collections) == 1  # the target outlined
    with pytest.raises(ValueError, match="keep_history"):
        plots.igos_iterations(np.zeros((16, 16, 3)), Heatmap(None, sel, HeatmapConfig(), (16, 16)))


def test_heatmap_checks_puts_each_map_on_its_own_image():
    a, b = np.zeros((6, 6, 3), np.uint8), np.full((6, 6, 3), 255, np.uint8)
    imp = np.arange(36, dtype=float).reshape(6, 6)
    fig = plots.heatmap_checks({"trained": (a, imp, None), "moved": (b, imp[::-1], imp > 20)})
    left, right = fig.axes
    assert (left.get_title(), right.get_title()) == ("trained", "moved")
    np.testing.assert_array_equal(right.images[0].get_array(), b)
    np.testing.assert_allclose(right.images[1].get_array(), imp[::-1] / 35)
    assert len(left.collections) == 0 and len(right.collections) == 1


def test_focus_by_correctness_plots_mass_and_pointing_per_model_and_correctness():
    scored = pd.DataFrame({"model": ["a", "a", "a", "b", "b", "b"],
                           "correct": [True, True, False, True, False, False],
                           "igos_mass": [0.5, 0.7, 0.1, 0.4, 0.2, 0.3],
                           "igos_pointing": [1.0, 0.0, 0.0, 1.0, 1.0, 0.0]})
    fig = plots.focus_by_correctness(scored)
    left, right = fig.axes[:2]
    assert "mass" in left.get_ylabel() and "pointing" in right.get_ylabel()
    heights = sorted(round(p.get_height(), 6) for p in right.patches if p.get_height() > 0)
    want = scored.groupby(["model", "correct"]).igos_pointing.mean()
    assert heights == sorted(round(v, 6) for v in want if v > 0)


def test_design_vs_scale_draws_one_panel_per_measure_titled_with_its_test():
    from types import SimpleNamespace

    pairs = pd.DataFrame({"relation": ["same design, different scale"] * 3
                          + ["different design, same scale"] * 3,
                          "similarity": [0.8, 0.7, np.nan, 0.2, 0.3, 0.1]})
    tests = {"top-IoU": SimpleNamespace(pairs=pairs, observed=0.5, p_value=0.031),
             "Spearman": SimpleNamespace(pairs=pairs, observed=0.25, p_value=0.5)}
    fig = plots.design_vs_scale(tests)
    assert len(fig.axes) == 2
    assert fig.axes[0].get_title() == "top-IoU: observed difference 0.500, p = 0.031"
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == list(dict.fromkeys(pairs.relation))


def test_object_tokens_shades_exactly_the_given_tokens_per_ring(geometry):
    image = np.zeros((32, 32, 3), np.uint8)
    fig = plots.object_tokens(image, geometry, {0: [5], 1: [0, 1, 4, 5]}, name="red circle")
    assert [ax.get_title() for ax in fig.axes] == ["red circle: 1 tokens (rings 0)",
                                                   "red circle: 4 tokens (rings 1)"]
    shade = np.asarray(fig.axes[1].images[1].get_array())
    want = geometry.to_pixels([1.0 if i in (0, 1, 4, 5) else 0.0 for i in range(16)])
    np.testing.assert_allclose(shade, want)
    assert shade[:16, :16].min() == 1 and shade[16:, :].max() == 0


def test_loss_by_count_draws_lost_share_against_tokens_per_rule_and_task():
    table = pd.DataFrame({"rule": ["object"] * 3 + ["random"] * 3, "task": "vqa",
                          "rings": [0, 1, 2] * 2, "n_tokens": [2.0, 6.0, 12.0] * 2,
                          "lost": [0.3, 0.7, 0.9, 0.0, 0.1, 0.1]})
    fig = plots.loss_by_count(table, model="organism")
    ax = fig.axes[0]
    assert ax.get_title().startswith("organism: ") and "lost" in ax.get_ylabel()
    lines = _drawn_lines(ax)
    for rule, d in table.groupby("rule"):
        assert any(np.array_equal(y, d.lost.to_numpy()) and np.array_equal(x, d.n_tokens.to_numpy())
                   for x, y in lines), rule


def test_lens_layers_writes_each_layers_words_on_the_patches(geometry):
    image = np.zeros((32, 32, 3), np.uint8)
    words = [[f"w{layer}_{i}" for i in range(16)] for layer in range(3)]
    fig = plots.lens_layers(image, geometry, words, highlight=[2], title="t")
    assert [ax.get_title() for ax in fig.axes] == ["layer 0", "layer 1", "layer 2"]
    assert sorted(t.get_text() for t in fig.axes[2].texts) == sorted(words[2])
    assert len(fig.axes[1].patches) == 1  # the highlighted token boxed


def test_lens_score_plots_the_mean_share_per_layer_for_the_chosen_rings():
    df = pd.DataFrame({"object": ["a", "b"] * 4, "rings": [0, 0, 0, 0, 1, 1, 1, 1],
                       "layer": [0, 0, 1, 1] * 2, "share": [0.0, 0.2, 0.5, 0.7, 9, 9, 9, 9],
                       "share_color": 0.1, "share_shape": 0.0})
    fig = plots.lens_score(df, model="organism")
    ax = fig.axes[0]
    assert ax.get_title().startswith("organism: ")
    ys = [y for _, y in _drawn_lines(ax)]
    assert any(np.allclose(y, [0.1, 0.6]) for y in ys)  # 'share' over objects, rings 0 only
    assert not any(np.any(y == 9) for y in ys)


def test_lastpos_windows_plots_sliding_windows_by_first_layer_and_skips_the_others():
    from vlmscope.lastpos import sliding_windows

    windows = sliding_windows(4, width=2)  # 0-1, 1-2, 2-3
    table = pd.DataFrame({"condition": ["object"] * 4, "window": ["0-1", "1-2", "2-3", "all"],
                          "relative_accuracy": [0.5, 0.75, 1.0, 0.1], "p_drop": [0.3, 0.2, 0.0, 0.9]})
    fig = plots.lastpos_windows(table, windows, model="organism")
    left, right = fig.axes[:2]
    assert left.get_title() == "relative accuracy" and "width 2" in fig._suptitle.get_text()
    (x, y), = _drawn_lines(left)
    np.testing.assert_array_equal(x, [0, 1, 2])
    np.testing.assert_array_equal(y, [0.5, 0.75, 1.0])
    (_, y), = _drawn_lines(right)
    np.testing.assert_array_equal(y, [0.3, 0.2, 0.0])
    empty = plots.lastpos_windows(table.iloc[:0], windows)  # nothing answered right: empty axes
    assert len(empty.axes) == 2 and not _drawn_lines(empty.axes[0])


def test_save_writes_the_figure_into_a_new_folder_at_the_given_dpi(tmp_path):
    import matplotlib.pyplot as plt
    from PIL import Image

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, 1])
    path = plots.save(fig, tmp_path / "new" / "sub", "line.png", dpi=50)
    plt.close(fig)
    assert path == tmp_path / "new" / "sub" / "line.png"
    assert Image.open(path).size == (100, 50)
    assert plots.save(fig, tmp_path, "bare", dpi=50) == tmp_path / "bare.png"
    assert (tmp_path / "bare.png").stat().st_size > 0
