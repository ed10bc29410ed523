"""What a new user met on the demos' pages (issue 29, item 4), in Chromium: token colours that read,
a map of zeros that says so, one bar scale per tabular card without the image-only controls, plain
numbers, a layout that holds at 420 px, and a Dataset view whose matrix, histogram and loss table say
what they show.

Set INSIGHTS_SCREENSHOTS=/some/dir to keep screenshots of what the tests saw.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from ui_helpers import DIGIT_NAMES, digits_batches, make_digits_visualizer, open_app, serve, shot, wait_idle

from insights_app import AttributionVisualizer
from insights_app.features import GeneralFeature, ImageFeature
from insights_app.transport.serving import ServerHandle

pytestmark = pytest.mark.slow

# WCAG contrast of an element's text on its own background (both opaque on these elements).
CONTRAST_JS = """(els) => els.map((e) => {
  const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = (c) => { const [r, g, b] = rgb(c).map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
                       return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const s = getComputedStyle(e);
  const [a, b] = [lum(s.color), lum(s.backgroundColor)].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
})"""


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo-cache")


@pytest.fixture(scope="module")
def text_server(cache: Path) -> Iterator[ServerHandle]:
    from insights_app.demos import text as demo_text

    handle = serve(demo_text.demo_visualizer(cache=cache, progress=lambda _msg: None))
    yield handle
    handle.close()


@pytest.fixture(scope="module")
def tabular_server(cache: Path) -> Iterator[ServerHandle]:
    from insights_app.demos import tabular as demo_tabular

    handle = serve(demo_tabular.demo_visualizer(cache=cache, progress=lambda _msg: None))
    yield handle
    handle.close()


# ---------------------------------------------------------------- the text demo's tokens


def test_every_token_of_the_text_demo_reads_at_wcag_aa(ui, text_server):
    open_app(ui, text_server.url + "?method=IntegratedGradients&size=4")
    page = ui.page
    tokens = page.locator(".ia-text-attr .ia-token-scored")
    assert tokens.count() >= 8
    ratios = tokens.evaluate_all(CONTRAST_JS)
    assert min(ratios) >= 4.5, sorted(ratios)[:5]  # was 2.04:1 (dark text on #0c569f)
    # The colour still says the attribution: the backgrounds differ, the strongest is not washed out.
    backgrounds = set(tokens.evaluate_all("els => els.map(e => getComputedStyle(e).backgroundColor)"))
    assert len(backgrounds) > 3
    shot(page, "new-user-text-tokens")


# ---------------------------------------------------------------- a map of zeros


class ConstantModel(nn.Module):
    """A model whose outputs ignore its inputs (as an untrained LIME surrogate can): every map is zeros."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.linspace(-1.0, 1.0, 10))

    def forward(self, image: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(len(image), -1) + 0.0 * (
            image.flatten(1).sum(1, keepdim=True) + stats.sum(1, keepdim=True)
        )


@pytest.fixture(scope="module")
def zero_server() -> Iterator[ServerHandle]:
    from insights_app import Batch

    images = [b.inputs for b in digits_batches(4, limit=8)]
    labels = [b.labels for b in digits_batches(4, limit=8)]
    batches = [Batch((x, x.mean(dim=(2, 3)).repeat(1, 3)), y) for x, y in zip(images, labels)]
    vis = AttributionVisualizer(
        [ConstantModel()],
        DIGIT_NAMES,
        [ImageFeature("digit"), GeneralFeature("stats", ["a", "b", "c"])],
        batches,
        score_func=lambda out: torch.softmax(out, dim=-1),
        title="Zeros",
    )
    handle = serve(vis)
    yield handle
    handle.close()


def test_a_map_of_zeros_says_so_on_the_card(ui, zero_server):
    open_app(ui, zero_server.url + "?method=Saliency&size=2")
    page = ui.page
    card = page.locator(".ia-card").first
    # The image map: a word instead of a blank picture with a "0 … 0" scale.
    figure = card.locator(".ia-attr")
    assert "All attributions are zero" in figure.locator(".ia-zero-note").inner_text()
    assert figure.locator(".ia-legend").count() == 0
    # The bars of a tabular feature: the same word.
    bars = card.locator(".ia-general-attr")
    assert "All attributions are zero" in bars.locator(".ia-zero-note").inner_text()
    shot(page, "new-user-zero-map")


# ---------------------------------------------------------------- tabular cards


def test_a_tabular_card_draws_all_its_bars_on_one_scale_without_image_controls(ui, tabular_server):
    open_app(ui, tabular_server.url + "?method=IntegratedGradients&size=2")
    page = ui.page
    card = page.locator(".ia-card").first
    rows = card.locator(".ia-barchart-row")
    got = rows.evaluate_all("""els => els.map(e => ({
      value: Number(e.querySelector('.ia-barchart-value').textContent),
      width: e.querySelector('.ia-barchart-bar').getBoundingClientRect().width,
      group: e.closest('.ia-general-attr').dataset.feature}))""")
    assert len({g["group"] for g in got}) >= 2  # the demo's columns come in two groups
    peak = max(got, key=lambda g: abs(g["value"]))
    for g in got:  # each bar's length is its value's share of the card's largest, across the groups
        want = abs(g["value"]) / abs(peak["value"]) * peak["width"]
        assert abs(g["width"] - want) <= 2.0, (g, peak)
    # The image-only controls are left out: no image size, no way to draw a map, no map legend.
    assert page.locator("select[name=zoom]").count() == 0
    assert page.locator("select[name=vis_method]").count() == 0
    assert page.locator(".ia-toolbar .ia-legend").count() == 0
    # Numbers in plain notation (a tumour's worst area of 1330, not 1.33e+3).
    texts = page.locator(".ia-values td").all_inner_texts() + page.locator(".ia-barchart-value").all_inner_texts()
    assert texts and not [t for t in texts if "e+" in t or "e-" in t], texts
    assert any(t.isdigit() and int(t) >= 1000 for t in texts), texts
    shot(page, "new-user-tabular")


# ---------------------------------------------------------------- 420 px wide


def test_at_420px_the_title_wraps_the_form_folds_and_the_toolbar_covers_no_card(ui, tabular_server):
    page = ui.page
    page.set_viewport_size({"width": 420, "height": 800})
    open_app(ui, tabular_server.url + "?method=IntegratedGradients&size=2")
    brand = page.evaluate("""() => { const b = document.querySelector('.ia-brand'), r = b.getBoundingClientRect();
      return {scroll: b.scrollWidth, client: b.clientWidth, right: r.right, width: innerWidth}; }""")
    assert brand["scroll"] <= brand["client"] + 1 and brand["right"] <= brand["width"], brand  # not clipped mid-word
    sidebar = page.locator(".ia-sidebar")
    assert sidebar.bounding_box()["height"] <= 80  # the form folds away: Fetch and Settings stay (was ~330 px)
    assert page.locator(".ia-fetch").is_visible()
    toggle = page.locator(".ia-settings-toggle")
    toggle.click()
    assert toggle.get_attribute("aria-expanded") == "true" and page.locator("input[name=page_size]").is_visible()
    assert sidebar.bounding_box()["height"] <= 0.6 * 800 + 1
    toggle.click()
    assert not page.locator("input[name=page_size]").is_visible()
    # The first card's head, scrolled to the top of the cards' area, is not under the toolbar.
    head = page.locator(".ia-card .ia-card-head").first
    head.evaluate("e => e.scrollIntoView({block: 'start'})")
    hit = head.evaluate("""e => { const r = e.getBoundingClientRect();
      const at = document.elementFromPoint(r.left + 8, r.top + r.height / 2); return !!at && e.contains(at); }""")
    assert hit, "the toolbar covers the first card's head"
    # The card's parts stack: nothing of it is cut off at the right.
    card = page.locator(".ia-card").first.bounding_box()
    right = page.locator(".ia-card").first.evaluate(
        "e => Math.max(...[...e.querySelectorAll('.ia-barchart-value, .ia-pred')].map(x => x.getBoundingClientRect().right))"
    )
    assert right <= card["x"] + card["width"], (right, card)
    tracks = (
        page.locator(".ia-card")
        .first.locator(".ia-barchart-track")
        .evaluate_all("els => els.map(e => e.getBoundingClientRect().width)")
    )
    assert min(tracks) >= 120, tracks  # the bars have room to be read
    shot(page, "new-user-420-cards")

    page.goto(tabular_server.url + "?dataset=0")
    page.wait_for_selector(".ia-dcard-matrix .ia-cm-wrap", timeout=60_000)  # drawn once the pass has counts
    box = page.evaluate("""() => { const c = document.querySelector('.ia-dcard-matrix'), w = c.querySelector('.ia-cm-wrap');
      const r = c.getBoundingClientRect(), m = document.querySelector('.ia-main').getBoundingClientRect();
      return {card: [r.left, r.right], wrap: w.getBoundingClientRect().right, main: m.right}; }""")
    assert box["wrap"] <= box["card"][1] and box["card"][1] <= box["main"], box  # the matrix stays in its box
    shot(page, "new-user-420-dataset")


# ---------------------------------------------------------------- the Dataset view


@pytest.fixture(scope="module")
def short_names_server(digits_setup) -> Iterator[ServerHandle]:
    vis = make_digits_visualizer([digits_setup.model], classes=[str(i) for i in range(10)])
    handle = serve(vis)
    yield handle
    handle.close()


def open_dataset(page, url: str) -> None:
    page.goto(url + "?dataset=0")
    page.wait_for_selector(".ia-hist", timeout=60_000)
    page.wait_for_function("() => /complete/.test(document.querySelector('.ia-pass').textContent)", timeout=120_000)
    page.wait_for_selector(".ia-hist-col", timeout=30_000)
    wait_idle(page)


def test_one_character_class_names_stay_level_over_the_matrix(ui, short_names_server):
    page = ui.page
    open_dataset(page, short_names_server.url)
    heads = page.locator(".ia-confusion th.ia-cm-col span")
    assert heads.count() == 10
    modes = set(heads.evaluate_all("els => els.map(e => getComputedStyle(e).writingMode)"))
    assert modes == {"horizontal-tb"}, modes
    band = page.locator(".ia-confusion thead").bounding_box()["height"]
    assert band <= 30, band  # no empty band above the columns (was 90 px)
    shot(page, "new-user-dataset-short-names")


def test_the_dataset_view_counts_its_histogram_and_marks_right_and_wrong_losses(ui, tabular_server):
    page = ui.page
    open_dataset(page, tabular_server.url)
    # Long names still stand on end, and the band is no taller than the longest of them.
    modes = set(
        page.locator(".ia-confusion th.ia-cm-col span").evaluate_all(
            "els => els.map(e => getComputedStyle(e).writingMode)"
        )
    )
    assert modes == {"vertical-rl"}
    examples = int(page.locator(".ia-tile-value").first.inner_text().replace(",", ""))
    counts = [
        int(t) for t in page.locator(".ia-hist-count").evaluate_all("els => els.map(e => e.firstChild.textContent)")
    ]
    wrong = page.locator(".ia-hist-count-bad").all_inner_texts()
    assert wrong and all(w.startswith("✗") for w in wrong)
    assert sum(counts) == examples and counts  # each bin says its count
    ticks = page.locator(".ia-hist-yaxis span").all_inner_texts()
    assert ticks[-1] == "0" and int(ticks[0]) >= max(counts)  # a count axis
    assert page.locator(".ia-hist-xaxis span").all_inner_texts() == ["0", "0.25", "0.5", "0.75", "1"]
    legend = page.locator(".ia-hist-legend").inner_text()
    assert "Correct" in legend and "Incorrect" in legend
    incorrect = int(legend.split("Incorrect")[1].split()[0].replace(",", ""))
    assert sum(int(w[1:]) for w in wrong) == incorrect > 0  # each bin says how many of it are wrong
    # The few wrong predictions are visible: at least 4 px high, at 3:1 or more on the card's panel.
    bad = page.locator(".ia-hist-bad")
    assert bad.count() >= 1
    heights = bad.evaluate_all("els => els.map(e => e.getBoundingClientRect().height)")
    assert min(heights) >= 4, heights
    ratio = page.evaluate(
        """() => { const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
      const lum = (c) => { const [r, g, b] = rgb(c).map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
                           return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
      const bar = getComputedStyle(document.querySelector('.ia-hist-bad')).backgroundColor;
      const panel = getComputedStyle(document.querySelector('.ia-dcard')).backgroundColor;
      const [a, b] = [lum(bar), lum(panel)].sort((x, y) => y - x); return (a + 0.05) / (b + 0.05); }"""
    )
    assert ratio >= 3.0, ratio
    # Largest losses: each row says whether the prediction was right.
    rows = page.locator(".ia-dcard table.ia-table").first.locator("tbody tr")
    marked = rows.evaluate_all(
        "els => els.map(e => [e.children[1].textContent, e.children[2].textContent, e.children[3].textContent])"
    )
    assert marked and all(("Correct" in r) == (a == p) and ("Wrong" in r) == (a != p) for a, p, r in marked), marked
    assert any("Correct" in r for _, _, r in marked) and any("Wrong" in r for _, _, r in marked)
    page.locator(".ia-hist").scroll_into_view_if_needed()
    shot(page, "new-user-dataset")
