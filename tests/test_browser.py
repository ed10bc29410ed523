"""The web page in headless Chromium against a real waitress server on 127.0.0.1.

The server shows a small CNN trained on scikit-learn's digits (see ui_helpers), so
predictions are meaningful and both correct and misclassified examples exist. Set
INSIGHTS_SCREENSHOTS=/some/dir to keep 1280x800 screenshots of what the tests saw.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
from ui_helpers import (
    DIGIT_NAMES,
    Page,
    card_ids,
    decode_data_url,
    fetch,
    is_blank,
    make_digits_visualizer,
    make_mixed_visualizer,
    open_app,
    serve,
    shot,
    wait_idle,
)

from insights_app import AttributionVisualizer, Batch
from insights_app.features import ImageFeature

pytestmark = pytest.mark.slow


def attribution_srcs(page) -> list[str]:
    return page.eval_on_selector_all(".ia-grid .ia-card .ia-attr img", "els => els.map(e => e.src)")


def wait_src_change(page, selector: str, old: str) -> None:
    """Wait until the first element matching ``selector`` (re-queried: rows are rebuilt) shows another image."""
    page.wait_for_function(
        "([sel, old]) => { const e = document.querySelector(sel); return !!e && e.src !== old; }",
        arg=[selector, old],
        timeout=20_000,
    )


def test_page_loads_and_fetch_shows_cards_with_real_images(ui, digits_server):
    open_app(ui, digits_server.url)
    page = ui.page
    assert page.title() == "Digits"
    assert len(card_ids(page)) == 4  # the first page is fetched on load
    page.fill("input[name=page_size]", "3")
    page.select_option("select[name=method]", "Saliency")
    fetch(page)
    assert card_ids(page) == [0, 1, 2]
    originals = page.eval_on_selector_all(".ia-grid .ia-card .ia-inputs img", "els => els.map(e => e.src)")
    attributions = attribution_srcs(page)
    assert len(originals) == 3 and len(attributions) == 3
    for src in originals + attributions:
        assert not is_blank(decode_data_url(src))
    # The images are actually drawn (decoded and laid out), not just present in the DOM.
    sizes = page.eval_on_selector_all(".ia-grid img", "els => els.map(e => [e.naturalWidth, e.clientWidth])")
    assert all(nw == 32 and cw >= 64 for nw, cw in sizes), sizes
    preds = page.locator(".ia-card").first.locator(".ia-pred")
    assert preds.count() == 4 and "%" in preds.first.inner_text()
    shot(page, "cards")


def test_clicking_another_class_changes_the_attribution(ui, digits_server):
    open_app(ui, digits_server.url + "?method=IntegratedGradients&size=2")
    page = ui.page
    card = page.locator(".ia-card").first
    img = card.locator(".ia-attr img")
    before = img.get_attribute("src")
    second = card.locator(".ia-pred").nth(1)
    target_name = second.locator(".ia-pred-label").inner_text()
    second.click()
    wait_src_change(page, ".ia-card[data-example-id='0'] .ia-attr img", before)
    assert card.locator(".ia-pred").nth(1).get_attribute("aria-pressed") == "true"
    assert card.locator(".ia-pred").nth(0).get_attribute("aria-pressed") == "false"
    assert target_name in card.locator(".ia-attr-target").inner_text()
    assert not is_blank(decode_data_url(img.get_attribute("src")))
    # The true label chip attributes to the true label.
    truth = card.locator(".ia-chip-truth").inner_text()
    card.locator(".ia-chip-truth").click()
    page.wait_for_function(
        "([sel, name]) => document.querySelector(sel).textContent.includes(name)",
        arg=[".ia-card[data-example-id='0'] .ia-attr-target", truth],
        timeout=20_000,
    )


def test_correct_and_incorrect_filters_change_the_cards(ui, digits_server):
    open_app(ui, digits_server.url + "?method=Saliency&size=4")
    page = ui.page
    page.click(".ia-seg[data-name=prediction] label:has-text('Incorrect')")
    fetch(page)
    wrong = card_ids(page)
    assert len(wrong) == 4
    assert page.locator(".ia-card .ia-badge-bad").count() == 4
    assert "pred=incorrect" in page.url
    page.click(".ia-seg[data-name=prediction] label:has-text('Correct')")
    fetch(page)
    right = card_ids(page)
    assert len(right) == 4 and not set(right) & set(wrong)
    assert page.locator(".ia-card .ia-badge-good").count() == 4
    shot(page, "filter-correct")


def test_class_picker_filters_by_class(ui, digits_server):
    open_app(ui, digits_server.url + "?method=Saliency&size=3")
    page = ui.page
    page.click(".ia-seg[data-name=class_source] label:has-text('True label')")
    search = page.locator(".ia-ms-search")
    search.click()
    search.fill("sev")
    options = page.locator(".ia-ms-option")
    assert options.count() == 1 and options.first.inner_text() == "seven"
    search.press("Enter")
    assert page.locator(".ia-chips .ia-chip").inner_text().startswith("seven")
    search.press("Escape")
    fetch(page)
    labels = page.eval_on_selector_all(".ia-card .ia-chip-truth", "els => els.map(e => e.textContent)")
    assert labels == ["seven"] * 3
    assert "classes=7" in page.url and "src=label" in page.url


def test_next_and_previous_page(ui, digits_server):
    open_app(ui, digits_server.url + "?method=Saliency&size=4")
    page = ui.page
    assert card_ids(page) == [0, 1, 2, 3]
    assert page.locator(".ia-pager button:has-text('Previous')").is_disabled()
    page.click(".ia-pager button:has-text('Next')")
    wait_idle(page)
    assert card_ids(page) == [4, 5, 6, 7]
    assert page.locator(".ia-page-label").inner_text() == "Page 2" and "page=1" in page.url
    page.click(".ia-pager button:has-text('Previous')")
    wait_idle(page)
    assert card_ids(page) == [0, 1, 2, 3] and "page=" not in page.url


def test_bad_parameter_shows_an_error_and_no_spinner(ui, digits_server):
    open_app(ui, digits_server.url + "?method=IntegratedGradients&size=2")
    page = ui.page
    page.fill("input[name=n_steps]", "5000")
    page.click(".insights-app .ia-fetch")
    alert = page.locator(".ia-alert-error")
    alert.wait_for(timeout=10_000)
    assert "n_steps" in alert.inner_text() and "1000" in alert.inner_text()
    assert page.locator(".ia-field.ia-invalid[data-field='arguments.n_steps']").count() == 1
    wait_idle(page)
    assert page.locator(".ia-spinner:visible").count() == 0
    shot(page, "error")
    # Fixing the value clears the error.
    page.fill("input[name=n_steps]", "20")
    fetch(page)
    assert page.locator(".ia-alert-error").count() == 0 and len(card_ids(page)) == 2


def test_a_copied_url_restores_the_same_view(ui, chromium, digits_server):
    open_app(ui, digits_server.url)
    page = ui.page
    page.select_option("select[name=method]", "NoiseTunnel(Saliency)")
    page.fill("input[name=nt_samples]", "3")
    page.select_option("select[name=nt_type]", "vargrad")
    page.click(".ia-seg[data-name=prediction] label:has-text('Incorrect')")
    page.select_option("select[name=vis_method]", "heat_map")
    page.select_option("select[name=vis_sign]", "positive")
    page.fill("input[name=page_size]", "2")
    fetch(page)
    page.click(".ia-pager button:has-text('Next')")
    wait_idle(page)
    url, ids = page.url, card_ids(page)
    images = attribution_srcs(page)
    other = Page(chromium)
    try:
        open_app(other, url)
        again = other.page
        assert card_ids(again) == ids
        assert again.input_value("select[name=method]") == "NoiseTunnel(Saliency)"
        assert again.input_value("input[name=nt_samples]") == "3"
        assert again.input_value("select[name=nt_type]") == "vargrad"
        assert again.input_value("select[name=vis_method]") == "heat_map"
        assert again.input_value("select[name=vis_sign]") == "positive"
        assert again.is_checked(".ia-seg[data-name=prediction] input[value=incorrect]")
        assert again.locator(".ia-page-label").inner_text().startswith("Page 2 of ")
        assert attribution_srcs(again) == images  # seeded noise: the same maps
        assert not other.errors, other.errors
    finally:
        other.close()


def test_compare_mode_shows_methods_side_by_side_and_is_linkable(ui, chromium, digits_server):
    open_app(ui, digits_server.url + "?method=Saliency&size=2")
    page = ui.page
    page.locator(".ia-card").nth(1).locator(".ia-compare-btn").click()
    cells = page.locator(".ia-compare-cell")
    page.wait_for_function(
        "() => document.querySelectorAll('.ia-compare-cell img').length === "
        "document.querySelectorAll('.ia-compare-cell').length",
        timeout=30_000,
    )
    n = cells.count()
    assert n >= 3
    methods = [cells.nth(i).get_attribute("data-method") for i in range(n)]
    assert methods[0] == "Saliency" and len(set(methods)) == n
    srcs = page.eval_on_selector_all(".ia-compare-cell img", "els => els.map(e => e.src)")
    assert len(set(srcs)) == n and not any(is_blank(decode_data_url(s)) for s in srcs)
    assert "compare=1" in page.url
    shot(page, "compare")
    other = Page(chromium)
    try:
        other.page.goto(page.url)
        other.page.wait_for_function(
            "() => document.querySelectorAll('.ia-compare-cell img').length >= " + str(n), timeout=30_000
        )
        assert other.page.locator(".ia-compare-title").inner_text().startswith("Example #1")
        assert not other.errors, other.errors
    finally:
        other.close()
    page.click("button:has-text('Back to examples')")
    assert page.locator(".ia-grid .ia-card").count() == 2 and "compare=" not in page.url


def test_download_gives_the_attribution_png(ui, digits_server):
    open_app(ui, digits_server.url + "?method=Saliency&size=1")
    page = ui.page
    link = page.locator(".ia-card .ia-download").first
    assert link.get_attribute("download").endswith(".png")
    with page.expect_download() as info:
        link.click()
    data = Path(info.value.path()).read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert info.value.suggested_filename.startswith("insights-0-")


def test_empty_filter_result_says_how_many_were_scanned(ui, digits_setup):
    vis = make_digits_visualizer([digits_setup.model], ["DigitsCNN"], classes=DIGIT_NAMES + ["never"])
    handle = serve(vis)
    try:
        open_app(ui, handle.url + "?method=Saliency&classes=10")
        empty = ui.page.locator(".ia-empty")
        assert "497 examples scanned" in empty.inner_text()
        assert card_ids(ui.page) == []
        shot(ui.page, "empty")
    finally:
        handle.close()


class FlakyNet(nn.Module):
    """Predicts fine, but its attribution fails for inputs whose corner pixel is 1."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad and bool((x[:, 0, 0, 0] == 1).any()):
            raise RuntimeError("this example cannot be attributed")
        return self.model(x)


def test_a_failing_example_shows_its_error_in_its_card(ui, digits_setup):
    x = torch.zeros(3, 1, 32, 32)
    x[:, :, 8:24, 12:20] = 0.8
    x[1, 0, 0, 0] = 1.0
    vis = AttributionVisualizer(
        FlakyNet(digits_setup.model),
        DIGIT_NAMES,
        [ImageFeature("digit")],
        [Batch(x, torch.tensor([1, 1, 1]))],
        score_func=lambda o: o.softmax(-1),
    )
    handle = serve(vis)
    try:
        open_app(ui, handle.url + "?method=Saliency&size=3")
        page = ui.page
        cards = page.locator(".ia-card")
        assert cards.count() == 3
        assert "cannot be attributed" in cards.nth(1).locator(".ia-inline-error").inner_text()
        assert cards.nth(0).locator(".ia-attr img").count() == 1 and cards.nth(2).locator(".ia-attr img").count() == 1
        assert page.locator(".ia-spinner:visible").count() == 0
    finally:
        handle.close()


def test_several_models_and_text_and_general_features(ui):
    handle = serve(make_mixed_visualizer())
    try:
        open_app(ui, handle.url + "?size=2")
        page = ui.page
        card = page.locator(".ia-card").first
        assert card.locator(".ia-model").count() == 2
        assert card.locator(".ia-model-name").all_inner_texts() == ["mixed-0", "mixed-1"]
        row = card.locator(".ia-model").first
        tokens = row.locator(".ia-text-attr .ia-token-scored")
        assert tokens.count() == 5
        title = tokens.first.get_attribute("title")
        assert title.split(":")[0] == tokens.first.inner_text() and float(title.split(":")[1]) == pytest.approx(
            float(tokens.first.get_attribute("data-score")), rel=0.01, abs=1e-3
        )
        colours = {tokens.nth(i).evaluate("e => getComputedStyle(e).backgroundColor") for i in range(5)}
        assert len(colours) > 1
        bars = row.locator(".ia-barchart-row")
        assert bars.count() == 4 and bars.first.locator(".ia-barchart-label").inner_text() == "ink"
        widths = [
            float(bars.nth(i).locator(".ia-barchart-bar").evaluate("e => e.getBoundingClientRect().width"))
            for i in range(4)
        ]
        assert max(widths) > 0
        contrib = row.locator(".ia-contrib-row")
        assert contrib.count() == 3
        shares = [float(t.rstrip("%").lstrip("<")) for t in contrib.locator(".ia-contrib-value").all_inner_texts()]
        assert sum(shares) == pytest.approx(100, abs=1.5)
        # Each model row re-attributes on its own.
        second = card.locator(".ia-model").nth(1)
        before = second.locator(".ia-attr img").get_attribute("src")
        second.locator(".ia-pred").nth(2).click()
        wait_src_change(page, ".ia-card[data-example-id='0'] .ia-model[data-model='1'] .ia-attr img", before)
        assert row.locator(".ia-pred").nth(0).get_attribute("aria-pressed") == "true"
        shot(page, "mixed")
    finally:
        handle.close()


def test_token_server_page_works_from_the_printed_url_and_hides_the_token(ui, digits_visualizer):
    handle = serve(digits_visualizer, token="browser-token-1")
    try:
        open_app(ui, handle.url)
        page = ui.page
        assert len(card_ids(page)) == 4
        assert "token" not in page.url
        page.click(".ia-pager button:has-text('Next')")
        wait_idle(page)
        assert card_ids(page) == [4, 5, 6, 7]
    finally:
        handle.close()


def test_layout_has_no_overlaps_at_1280x800(ui, digits_server):
    open_app(ui, digits_server.url + "?method=Saliency")
    page = ui.page
    boxes = page.evaluate("""() => {
      const box = (e) => { const b = e.getBoundingClientRect(); return [b.left, b.top, b.right, b.bottom]; };
      const all = (root, sel) => [...root.querySelectorAll(sel)].map(box);
      return {cards: all(document, '.ia-grid .ia-card'), sidebar: all(document, '.ia-sidebar'),
              docWidth: document.documentElement.scrollWidth,
              parts: [...document.querySelectorAll('.ia-card')].map(
                c => all(c, '.ia-inputs img, .ia-preds, .ia-attr img, .ia-card-head > *'))};
    }""")
    assert boxes["docWidth"] <= 1280

    def overlap(a, b):
        return min(a[2], b[2]) - max(a[0], b[0]) > 1 and min(a[3], b[3]) - max(a[1], b[1]) > 1

    cards = boxes["cards"]
    assert len(cards) == 4 and len({round(c[1]) for c in cards}) == 2  # a 2 x 2 grid
    for i, a in enumerate(cards):
        assert a[0] >= boxes["sidebar"][0][2] and a[2] <= 1280
        for b in cards[i + 1 :]:
            assert not overlap(a, b)
    for parts in boxes["parts"]:
        for i, a in enumerate(parts):
            for b in parts[i + 1 :]:
                assert not overlap(a, b), (a, b)


def test_mount_works_with_any_transport_and_without_url_state(ui, digits_server):
    """The notebook widget reuses app.js with its own transport: check that contract here."""
    open_app(ui, digits_server.url + "?method=Saliency&size=2")
    page = ui.page
    url_before = page.url
    result = page.evaluate("""async () => {
      document.getElementById('app').remove();
      const {mount, httpTransport} = await import('./static/app.js');
      const http = httpTransport('');
      const calls = [];
      const transport = {
        request: async (kind, body, options) => {
          calls.push(kind === 'examples' ? 'examples:' + body.page_size : kind);
          if (kind === 'attribute') throw new Error('kernel went away');
          return http.request(kind, body, options);
        },
      };
      const root = document.createElement('div');
      document.body.append(root);
      const handle = mount(root, transport, {urlState: false});
      await handle.ready;
      const sleep = () => new Promise(r => setTimeout(r, 100));
      const ready = () => root.querySelectorAll('.ia-card').length === 4 && !root.querySelector('.ia-card-loading');
      for (let i = 0; i < 200 && !ready(); i++) await sleep();
      root.querySelectorAll('.ia-card')[0].querySelectorAll('.ia-pred')[1].click();
      for (let i = 0; i < 50 && !root.querySelector('.ia-card .ia-inline-error'); i++) await sleep();
      const error = root.querySelector('.ia-card .ia-inline-error');
      return {calls, cards: root.querySelectorAll('.ia-card').length, height: root.style.height,
              error: error && error.textContent, isApp: root.classList.contains('insights-app')};
    }""")
    assert result["calls"][:2] == ["config", "examples:4"] and "attribute" in result["calls"]
    assert result["cards"] == 4 and result["isApp"] and result["height"] == "820px"
    assert result["error"] == "kernel went away"
    assert page.url == url_before  # urlState: false leaves the address bar alone
