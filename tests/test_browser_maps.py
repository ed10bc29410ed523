"""Reading the maps, in headless Chromium: numeric legends, shared scaling, colour-blind colours,
the default sign per method, compare mode's use of the width, and the large view with its
value under the pointer and its downloads (a figure and the raw map)."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
from ui_helpers import decode_data_url, fetch, open_app, shot, wait_idle

pytestmark = pytest.mark.slow


def legend_ends(locator) -> list:
    return [float(x.replace("−", "-")) for x in locator.locator(".ia-legend-end").all_inner_texts()]


def test_each_map_has_numbers_and_a_shared_scale_gives_every_card_the_same(ui, digits_server):
    open_app(ui, digits_server.url + "?method=IntegratedGradients&size=3")
    page = ui.page
    cards = page.locator(".ia-card .ia-legend-compact")
    assert cards.count() == 3
    own = [legend_ends(cards.nth(i)) for i in range(3)]
    assert all(lo == -hi and hi > 0 for lo, hi in own) and len({hi for _, hi in own}) == 3
    assert "per map" in page.locator(".ia-toolbar .ia-legend").inner_text()
    page.select_option("select[name=vis_scale]", "page")
    fetch(page)
    shared = [legend_ends(cards.nth(i)) for i in range(3)]
    assert len({tuple(x) for x in shared}) == 1
    assert legend_ends(page.locator(".ia-toolbar .ia-legend")) == shared[0]
    assert "shared by the page" in page.locator(".ia-toolbar .ia-legend").inner_text()
    assert "scale=page" in page.url
    # A fixed value starts from the page's scale and is sent as a number.
    page.select_option("select[name=vis_scale]", "fixed")
    assert float(page.input_value("input[name=vis_scale_value]")) == pytest.approx(shared[0][1], rel=0.01)
    page.fill("input[name=vis_scale_value]", "0.5")
    fetch(page)
    assert [legend_ends(cards.nth(i)) for i in range(3)] == [[-0.5, 0.5]] * 3
    assert "fixed" in page.locator(".ia-toolbar .ia-legend").inner_text()


def test_the_default_sign_follows_the_method_unless_the_user_chose_one(ui, digits_server):
    open_app(ui, digits_server.url + "?method=IntegratedGradients&size=1")
    page = ui.page
    assert page.input_value("select[name=vis_sign]") == "all"
    page.select_option("select[name=method]", "Saliency")
    assert page.input_value("select[name=vis_sign]") == "absolute_value"
    page.select_option("select[name=method]", "LayerGradCam")
    assert page.input_value("select[name=vis_sign]") == "positive"
    page.select_option("select[name=method]", "Occlusion")
    assert page.input_value("select[name=vis_sign]") == "all"
    page.select_option("select[name=vis_sign]", "negative")
    page.select_option("select[name=method]", "Saliency")
    assert page.input_value("select[name=vis_sign]") == "negative"  # the user's choice stays
    # A link to a method opens on that method's sign.
    open_app(ui, digits_server.url + "?method=Saliency&size=1")
    assert page.input_value("select[name=vis_sign]") == "absolute_value"


def test_colours_are_colour_blind_safe_by_default_and_captums_on_request(ui, digits_server):
    open_app(ui, digits_server.url + "?method=IntegratedGradients&size=2&vis=heat_map")
    page = ui.page

    def green_share() -> float:
        srcs = page.eval_on_selector_all(".ia-card .ia-attr img", "els => els.map(e => e.src)")
        px = np.concatenate([decode_data_url(s).reshape(-1, 3) for s in srcs]).astype(int)
        return float(((px[:, 1] > px[:, 0] + 40) & (px[:, 1] > px[:, 2] + 40)).mean())

    bar = page.locator(".ia-toolbar .ia-legend-bar")
    assert "rgb(8, 81, 156)" in bar.evaluate("e => getComputedStyle(e).backgroundImage")  # blue ... orange
    assert green_share() == 0.0
    page.select_option("select[name=vis_palette]", "captum")
    fetch(page)
    assert "rgb(0, 128, 0)" in bar.evaluate("e => getComputedStyle(e).backgroundImage")  # red ... green
    assert green_share() > 0.01
    assert "pal=captum" in page.url


def test_compare_draws_each_method_with_its_sign_uses_the_width_and_keeps_legends(ui, digits_server):
    page = ui.page
    page.set_viewport_size({"width": 1920, "height": 1000})
    page.goto(
        digits_server.url + "?method=IntegratedGradients&size=1&compare=0&cmp=IntegratedGradients,Saliency,LayerGradCam"
    )
    page.wait_for_function(
        "() => document.querySelectorAll('.ia-compare-cell .ia-legend').length === 3", timeout=30_000
    )
    cells = {
        m: page.locator(f".ia-compare-cell[data-method='{m}']")
        for m in ("IntegratedGradients", "Saliency", "LayerGradCam")
    }
    assert legend_ends(cells["IntegratedGradients"])[0] < 0  # signed
    assert legend_ends(cells["Saliency"])[0] == 0 and legend_ends(cells["LayerGradCam"])[0] == 0  # unsigned
    width = cells["Saliency"].locator("img").evaluate("e => e.clientWidth")
    assert width >= 300, width  # four columns share 1920 px: not the card's 128 px
    shot(page, "compare-1920")
    page.set_viewport_size({"width": 800, "height": 900})
    page.click("text=‹ Back to examples")
    wait_idle(page)
    assert page.locator(".ia-toolbar .ia-legend").is_visible()  # the legend stays on a narrow screen
    right = page.locator(".ia-pager").evaluate("e => e.getBoundingClientRect().right")
    assert right <= 800


def test_the_large_view_shows_input_and_map_reads_values_and_exports(ui, digits_server, digits_visualizer, tmp_path):
    open_app(ui, digits_server.url + "?method=IntegratedGradients&size=2")
    page = ui.page
    opener = page.locator(".ia-card[data-example-id='1'] .ia-enlarge")
    opener.click()
    dialog = page.locator(".ia-large[role=dialog]")
    page.wait_for_selector(".ia-large-stack img.ia-large-heat", timeout=20_000)
    assert "#1 · Integrated Gradients →" in dialog.locator(".ia-large-title").inner_text()
    stacks = dialog.locator(".ia-large-stack")
    assert stacks.count() == 2
    box = stacks.nth(1).bounding_box()
    assert box["width"] >= 256 and box["width"] % 32 == 0  # 32 px scaled by a whole factor: crisp
    # The value under the pointer is the map's value at that pixel.
    expected = digits_visualizer.attribute({"example_id": 1, "method": "IntegratedGradients", "values": True})
    values = expected["example"]["models"][0]["attributions"][0]["values"]
    grid = np.frombuffer(base64.b64decode(values["data"]), dtype="<f4").reshape(values["shape"])
    page.mouse.move(box["x"] + box["width"] * (10.5 / 32), box["y"] + box["height"] * (20.5 / 32))
    read = float(dialog.locator(".ia-large-readout").get_attribute("data-value"))
    assert read == pytest.approx(float(grid[20, 10]), rel=1e-5, abs=1e-9)
    assert "x 10, y 20" in dialog.locator(".ia-large-readout").inner_text()
    # The opacity slider fades the map over the input.
    heat = dialog.locator("img.ia-large-heat")
    dialog.locator("input[type=range]").fill("25")
    assert heat.evaluate("e => e.style.opacity") == "0.25"
    shot(page, "large-view")
    # The raw map is what the server computed; the figure is readable and carries its legend.
    with page.expect_download() as raw:
        dialog.locator("text=Download raw map (.npy)").click()
    npy = np.load(io.BytesIO(Path(raw.value.path()).read_bytes()))
    assert npy.dtype == np.float32 and np.array_equal(npy, grid)
    with page.expect_download() as fig:
        dialog.locator("text=Download figure").click()
    assert re.search(r"insights-1-.*-IntegratedGradients-.*-figure\.png$", fig.value.suggested_filename)
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(Path(fig.value.path()).read_bytes())).convert("RGB"))
    assert image.shape[1] >= 640 and image.shape[0] >= 400
    legend_row = image[-40:-28]  # the colour bar: blue at its left end, orange at its right
    blues = (legend_row[..., 2] > legend_row[..., 0] + 60).any()
    oranges = (legend_row[..., 0] > legend_row[..., 2] + 60).any()
    assert blues and oranges
    # Escape closes it and gives the focus back to the map that opened it.
    page.keyboard.press("Escape")
    assert page.locator(".ia-large").count() == 0
    assert opener.evaluate("e => document.activeElement === e")
