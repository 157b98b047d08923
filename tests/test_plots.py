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
