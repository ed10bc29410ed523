"""Rendering matches captum's visualize_image_attr semantics and yields PNGs of the input's size."""

from __future__ import annotations

import io

import numpy as np
import pytest
from captum.attr import visualization as captum_vis
from matplotlib import colormaps
from matplotlib.colors import LinearSegmentedColormap
from PIL import Image

from insights_app.page.render import (
    SIGNS,
    VIS_METHODS,
    RenderError,
    encode_png,
    normalize_attribution,
    render_attribution,
    to_display_image,
)

RNG = np.random.default_rng(0)


def _attr(h=24, w=40):
    return RNG.normal(size=(h, w)).astype(np.float32)


@pytest.mark.parametrize("sign", SIGNS)
@pytest.mark.parametrize("outlier", [0.0, 2.0, 10.0])
def test_normalization_equals_captum(sign, outlier):
    attr = _attr()
    ours = normalize_attribution(attr, sign, outlier)
    theirs = captum_vis._normalize_attr(attr, sign, outlier)
    assert np.allclose(ours, theirs, atol=1e-6)


@pytest.mark.parametrize(
    "sign,cmap", [("positive", "Greens"), ("negative", "Reds"), ("absolute_value", "Blues"), ("all", None)]
)
def test_heat_map_colours_are_captums_default_colormaps(sign, cmap):
    attr = _attr()
    norm = normalize_attribution(attr, sign, 2.0)
    got = render_attribution(attr, None, "heat_map", sign, 2.0)
    if cmap is None:
        cm = LinearSegmentedColormap.from_list("RdWhGn", ["red", "white", "green"])
        t = (norm + 1) / 2
    else:
        cm = colormaps[cmap]
        t = norm
    want = (cm(t)[..., :3] * 255).round().astype(int)
    assert got.shape == attr.shape + (3,)
    assert np.abs(got.astype(int) - want).max() <= 1


def test_sign_is_kept_in_the_all_view():
    attr = np.zeros((10, 10), np.float32)
    attr[:5] = 1.0
    attr[5:] = -1.0
    img = render_attribution(attr, None, "heat_map", "all")
    top, bottom = img[0, 0], img[9, 0]
    assert top[1] > top[0]  # positive -> green
    assert bottom[0] > bottom[1]  # negative -> red


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("hw", [(28, 28), (17, 45), (224, 224)])
@pytest.mark.parametrize("method", VIS_METHODS)
@pytest.mark.parametrize("sign", SIGNS)
def test_every_method_and_sign_gives_a_png_of_the_input_size(channels, hw, method, sign):
    image = to_display_image(RNG.random((channels,) + hw).astype(np.float32))
    attr = RNG.normal(size=hw).astype(np.float32)
    if method in ("masked_image", "alpha_scaling") and sign == "all":
        with pytest.raises(RenderError, match="sign"):
            render_attribution(attr, image, method, sign)
        return
    out = render_attribution(attr, image, method, sign)
    png = Image.open(io.BytesIO(encode_png(out)))
    assert png.size == (hw[1], hw[0])
    assert png.mode in ("L", "RGB", "RGBA")


def test_blended_heat_map_shows_the_image_under_the_heat():
    image = np.zeros((20, 20, 3), np.uint8)
    image[:, 10:] = 255
    attr = np.zeros((20, 20), np.float32)
    attr[0, 0] = 1.0  # nearly nothing attributed: the picture should show through
    out = render_attribution(attr, image, "blended_heat_map", "absolute_value").astype(int)
    assert out[10, 15].mean() > out[10, 5].mean() + 60


def test_masked_image_keeps_only_attributed_pixels():
    image = np.full((10, 10, 3), 200, np.uint8)
    attr = np.zeros((10, 10), np.float32)
    attr[:, :5] = 1.0
    out = render_attribution(attr, image, "masked_image", "positive", 0.0)
    assert out[:, :5].min() == 200 and out[:, 5:].max() == 0


def test_all_zero_attribution_renders_blank_not_error():
    out = render_attribution(np.zeros((8, 8), np.float32), None, "heat_map", "positive")
    assert out.shape == (8, 8, 3)
    assert len(np.unique(out.reshape(-1, 3), axis=0)) == 1


def test_grayscale_images_stay_grayscale():
    img = to_display_image(np.full((1, 5, 7), 0.5, np.float32))
    assert img.shape == (5, 7, 1) and img[0, 0, 0] == 127
    assert Image.open(io.BytesIO(encode_png(img))).mode == "L"


def test_images_in_0_255_are_not_rescaled():
    img = to_display_image(np.full((3, 4, 4), 100.0, np.float32))
    assert img.max() == 100


@pytest.mark.parametrize("kind", ["noise", "smooth", "thumbnail"])
def test_png_decodes_to_the_exact_pixels_and_compresses_only_what_compresses(kind):
    rng = np.random.default_rng(0)
    if kind == "noise":  # deflate cannot shrink it: stored as is, not spent time on
        img = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    elif kind == "smooth":  # a gradient: deflate shrinks it a lot
        img = np.repeat(np.linspace(0, 255, 224, dtype=np.uint8)[None, :, None], 224, axis=0).repeat(3, axis=2)
    else:  # 32x32: always stored
        img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    png = encode_png(img)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), img)
    raw_bytes = img.size + img.shape[0]  # pixels plus one filter byte per row
    if kind == "smooth":
        assert len(png) < 0.1 * raw_bytes
    else:
        assert raw_bytes < len(png) < 1.01 * raw_bytes + 200


def test_a_presenter_builds_the_default_palettes_tables_before_the_first_page():
    """Issue 29: the colour tables (matplotlib colormaps) were built by the first page in a process."""
    from insights_app.features import ImageFeature
    from insights_app.page.present import Presenter
    from insights_app.page.query import Visualization
    from insights_app.page.render import SIGNS, colormap_lut

    colormap_lut.cache_clear()
    try:
        Presenter([ImageFeature("image")], ["a", "b"], ["m"])
        built = colormap_lut.cache_info().currsize
        for sign in SIGNS:
            colormap_lut(sign, Visualization.palette)
        assert built == len(SIGNS) and colormap_lut.cache_info().currsize == built  # nothing left to build
    finally:
        colormap_lut.cache_clear()
