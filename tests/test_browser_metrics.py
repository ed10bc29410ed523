"""Can I trust this map? The quality metrics, the sanity check and the method report in Chromium.

Against a waitress server on the trained digits CNN of ui_helpers, with one more method that ignores
the model (an edge detector on the input), which the sanity check must flag "insensitive to the
model". Set INSIGHTS_SCREENSHOTS=/some/dir to keep screenshots (light, dark and narrow).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from engine_helpers import register_edge_map
from test_browser_a11y import axe_violations
from ui_helpers import fetch, make_digits_visualizer, open_app, serve, shot, wait_idle

from insights_app.transport.serving import ServerHandle

pytestmark = pytest.mark.slow

BADGE = re.compile(r"^del ([^\s▾]+) · ins ([^\s▾]+)")


@pytest.fixture(scope="module")
def server(digits_setup) -> Iterator[ServerHandle]:
    """The trained digits CNN with the edge map registered (its own visualizer: the shared one keeps its methods)."""
    vis = make_digits_visualizer([digits_setup.model], ["DigitsCNN"])
    register_edge_map(vis)
    handle = serve(vis)
    yield handle
    handle.close()


def number(text: str) -> float:
    return float(text.replace("−", "-"))


def badges(page) -> list[str]:
    return page.eval_on_selector_all(".ia-grid .ia-card .ia-metrics-badge", "els => els.map(e => e.textContent)")


def test_metrics_put_a_badge_under_every_map_that_opens_its_curves(ui, server):
    open_app(ui, server.url + "?method=Saliency&size=3")
    page = ui.page
    assert badges(page) == []
    slow = page.locator(".ia-metrics-fields input[name=metrics_slow]")
    assert slow.is_disabled()
    page.check(".ia-metrics-fields input[name=metrics]")
    assert page.locator(".ia-fetch.ia-attention").count() == 1  # the form differs from the page: Fetch applies it
    fetch(page)
    assert "metrics=1" in page.url
    texts = badges(page)
    assert len(texts) == 3 == page.locator(".ia-grid .ia-card .ia-attr img").count()
    for text in texts:
        m = BADGE.match(text)
        assert m, text
        assert 0 <= number(m.group(1)) <= 1 and 0 <= number(m.group(2)) <= 1
    badge = page.locator(".ia-grid .ia-card .ia-metrics-badge").first
    label = badge.get_attribute("aria-label")
    assert "deletion area (lower is better)" in label and "insertion area (higher is better)" in label
    assert badge.get_attribute("aria-expanded") == "false"
    badge.click()
    assert badge.get_attribute("aria-expanded") == "true"
    chart = page.locator(".ia-grid .ia-card .ia-metrics-chart svg.ia-curves").first
    chart.wait_for()
    assert chart.locator("path.ia-curve").count() == 2
    assert (
        chart.locator("path.ia-curve-deletion").count() == 1 and chart.locator("path.ia-curve-insertion").count() == 1
    )
    # 21 points per curve (steps 20): M plus 20 L.
    d = chart.locator("path.ia-curve-deletion").get_attribute("d")
    assert d.count("L") == 20
    dashes = page.evaluate("""() => [...document.querySelectorAll('.ia-metrics-chart path.ia-curve')].map(p => {
      const s = getComputedStyle(p); return [s.stroke, s.strokeDasharray]; })""")
    assert dashes[0] != dashes[1] and dashes[0][0] != dashes[1][0] and dashes[0][1] != dashes[1][1]  # colour AND dash
    assert (
        "score of" in chart.text_content()
        and page.locator(".ia-curves-legend").first.inner_text().count("(should") == 2
    )
    assert axe_violations(page) == [], "badges and a chart"
    shot(page, "metrics-badges-light")
    # The link keeps the option; re-targeting a class keeps the metrics on its new map.
    page.goto(page.url)
    wait_idle(page)
    assert page.locator(".ia-metrics-fields input[name=metrics]").is_checked()
    assert len(badges(page)) == 3
    card = page.locator(".ia-card").first
    first = card.locator(".ia-metrics-badge").inner_text()
    card.locator(".ia-pred").nth(1).click()
    page.wait_for_function(
        """(old) => { const b = document.querySelector('.ia-card .ia-metrics-badge');
      return b && b.textContent !== old && !document.querySelector('.ia-card .ia-model-busy'); }""",
        arg=first,
        timeout=20_000,
    )
    assert BADGE.match(card.locator(".ia-metrics-badge").inner_text())
    # Dark (the system's preference on the standalone page) and narrow.
    page.emulate_media(color_scheme="dark")
    page.locator(".ia-grid .ia-card .ia-metrics-badge").first.click()
    page.locator(".ia-metrics-chart svg").first.wait_for()
    assert axe_violations(page) == [], "dark"
    shot(page, "metrics-badges-dark")
    page.set_viewport_size({"width": 480, "height": 1000})
    shot(page, "metrics-badges-narrow")
    page.emulate_media(color_scheme="light")


def test_all_four_metrics(ui, server):
    open_app(ui, server.url + "?method=Saliency&size=1&metrics=all")
    page = ui.page
    assert page.locator(".ia-metrics-fields input[name=metrics_slow]").is_checked()
    (text,) = badges(page)
    assert re.match(r"^del \S+ · ins \S+ · infid \S+ · sens \S+", text), text
    assert "metrics=all" in page.url


def test_the_sanity_check_says_whether_the_map_depends_on_the_model(ui, server):
    open_app(ui, server.url + "?method=Saliency&size=2")
    page = ui.page
    page.locator(".ia-card").first.locator(".ia-sanity-btn").click()
    page.wait_for_selector(".ia-sanity-verdict", timeout=60_000)
    assert page.evaluate("() => document.activeElement.classList.contains('ia-sanity-title')")
    assert "sanity=" in page.url
    verdict = page.locator(".ia-sanity-verdict")
    assert verdict.inner_text().startswith("✓") or "The map depends on the model" in verdict.inner_text()
    assert "The map depends on the model" in verdict.inner_text()
    assert page.locator(".ia-sanity-insensitive").count() == 0
    steps = page.locator(".ia-sanity-step")
    assert steps.count() >= 3  # the original, then at least 2 randomized steps
    assert steps.first.inner_text().strip() == "Original model"
    captions = page.eval_on_selector_all(".ia-sanity-step figcaption", "els => els.map(e => e.textContent)")
    assert re.match(r"^fc \(Linear\) randomized:Spearman -?\d\.\d\d · SSIM -?\d\.\d\d$", captions[1]), captions
    assert all(re.search(r"randomized:Spearman", c) for c in captions[1:])
    assert page.locator(".ia-sanity-step img").count() == steps.count()
    assert "Sanity check done" in page.locator(".ia-sanity [role=status]").inner_text()
    assert axe_violations(page) == [], "sanity panel"
    shot(page, "sanity-depends")
    page.keyboard.press("Escape")
    assert page.locator(".ia-sanity").is_hidden()
    assert page.evaluate("() => document.activeElement.classList.contains('ia-sanity-btn')")

    # A map that ignores the model is flagged.
    page.goto(server.url + "?method=EdgeMap&size=2&sanity=1")
    page.wait_for_selector(".ia-sanity-verdict", timeout=60_000)
    warning = page.locator(".ia-sanity-insensitive")
    assert warning.count() == 1 and "ia-alert-warning" in warning.get_attribute("class")
    assert "Insensitive to the model: the map barely changes when the model is randomized" in warning.inner_text()
    assert "Example #1" in page.locator(".ia-sanity-title").inner_text()
    assert axe_violations(page) == [], "sanity panel, insensitive"
    shot(page, "sanity-insensitive")
    page.emulate_media(color_scheme="dark")
    shot(page, "sanity-insensitive-dark")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 480, "height": 1000})
    shot(page, "sanity-insensitive-narrow")


def test_compare_ranks_the_methods_by_a_metric(ui, server):
    open_app(ui, server.url + "?method=Saliency&size=2&metrics=1")
    page = ui.page
    page.locator(".ia-card").first.locator(".ia-compare-btn").click()
    page.wait_for_selector(".ia-compare-title")
    n = page.locator(".ia-compare-cell").count()
    assert n >= 3
    page.wait_for_function(
        f"() => document.querySelectorAll('.ia-compare-cell .ia-metrics-badge').length === {n}", timeout=60_000
    )
    picked = page.eval_on_selector_all(".ia-compare-colhead[data-method]", "els => els.map(e => e.dataset.method)")
    rank = page.locator("select[name=compare_rank]")

    def ranked():
        heads = page.eval_on_selector_all(
            ".ia-compare-colhead[data-method]",
            """els => els.map(e => [e.dataset.method,
          e.querySelector('.ia-rank').textContent, e.querySelector('.ia-rank').title])""",
        )
        cells = page.eval_on_selector_all(".ia-compare-cell", "els => els.map(e => e.dataset.method)")
        assert cells == [m for m, _, _ in heads]  # the maps move with their heads
        values = [float(title.rsplit(": ", 1)[1]) for _, _, title in heads]
        assert [chip.split(" · ")[0] for _, chip, _ in heads] == [f"#{i + 1}" for i in range(len(heads))]
        return [m for m, _, _ in heads], values

    rank.select_option("deletion")
    order, values = ranked()
    assert values == sorted(values) and sorted(order) == sorted(picked)
    assert "crank=deletion" in page.url
    shot(page, "compare-ranked-deletion")
    rank.select_option("insertion")
    order2, values2 = ranked()
    assert values2 == sorted(values2, reverse=True)
    # Each value is the one on that column's badge.
    badge_ins = page.eval_on_selector_all(".ia-compare-cell .ia-metrics-badge", "els => els.map(e => e.textContent)")
    assert [BADGE.match(t).group(2) for t in badge_ins] == [
        page.locator(f".ia-compare-colhead[data-method={m}] .ia-rank").inner_text().split(" · ")[1] for m in order2
    ]
    assert axe_violations(page) == [], "compare ranked"
    rank.select_option("")
    assert (
        page.eval_on_selector_all(".ia-compare-colhead[data-method]", "els => els.map(e => e.dataset.method)") == picked
    )
    assert page.locator(".ia-rank:visible").count() == 0


def test_the_method_report_table_and_its_cancel(ui, server):
    open_app(ui, server.url + "?method=Saliency&size=2&dataset=0")
    page = ui.page
    page.wait_for_selector(".ia-report-run")
    # Cancel aborts a long report; the button is back.
    page.fill("input[name=report_sample]", "200")
    page.click(".ia-report-run")
    page.wait_for_selector(".ia-report-cancel:visible")
    assert page.locator(".ia-report-run").is_disabled()
    page.click(".ia-report-cancel")
    page.wait_for_function(
        "() => document.querySelector('.ia-report-status').textContent === 'Method report cancelled.'"
    )
    assert page.locator(".ia-report-cancel").is_hidden() and page.locator(".ia-report-run").is_enabled()
    # Three methods on 8 examples, the sanity check on 2 of them.
    for box in page.locator("input[name=report_method]").all():
        box.uncheck()
    for name in ("Saliency", "InputXGradient", "EdgeMap"):
        page.check(f"input[name=report_method][value={name}]")
    page.fill("input[name=report_sample]", "8")
    page.fill("input[name=report_sanity]", "2")
    page.click(".ia-report-run")
    page.wait_for_selector(".ia-report-table", timeout=180_000)
    assert "Method report ready: 8 examples" in page.locator(".ia-report-status").inner_text()
    assert "Edge map" in page.locator(".ia-report-status").inner_text()
    rows = page.locator(".ia-report-table tbody tr")
    assert rows.count() == 3
    assert page.eval_on_selector_all(".ia-report-table tbody tr", "els => els.map(e => e.dataset.method)") == [
        "Saliency",
        "InputXGradient",
        "EdgeMap",
    ]
    heads = page.eval_on_selector_all(".ia-report-table thead th", "els => els.map(e => e.textContent)")
    assert heads[1] == "Deletion ↓(lower is better)" and heads[2] == "Insertion ↑(higher is better)"
    for col in (2, 3):  # one best value per metric column, bold and named for screen readers
        best = page.locator(f".ia-report-table tbody td:nth-child({col}).ia-best")
        assert best.count() == 1 and best.locator("strong").count() == 1 and "(best)" in best.inner_text()
    cells = page.eval_on_selector_all(".ia-report-table tbody tr td:nth-child(2)", "els => els.map(e => e.textContent)")
    assert all(re.match(r"^-?[\d.e+-]+ ± [\d.e+-]+", c) for c in cells), cells
    assert "insensitive to the model" in rows.nth(2).inner_text()
    assert rows.nth(0).locator(".ia-flag-insensitive").count() == 0
    assert "depends on the model" in rows.nth(0).inner_text()
    assert axe_violations(page) == [], "method report"
    page.locator(".ia-report").scroll_into_view_if_needed()
    shot(page, "method-report")
    page.emulate_media(color_scheme="dark")
    shot(page, "method-report-dark")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 480, "height": 1000})
    page.locator(".ia-report").scroll_into_view_if_needed()
    shot(page, "method-report-narrow")


def test_the_method_report_shows_progress_with_time_left_and_cancels(ui, server):
    """The report took 25.6 s with only a sentence on screen: a progress bar, the time left, and Cancel."""
    open_app(ui, server.url + "?method=Saliency&size=2&dataset=0")
    page = ui.page
    page.wait_for_selector(".ia-report-run")
    page.fill("input[name=report_sample]", "400")
    page.fill("input[name=report_sanity]", "0")
    page.click(".ia-report-run")
    bar = page.locator("progress.ia-report-progress")
    bar.wait_for(state="visible")
    # A step finished: the bar moved and the time left is said (the server's estimate, counted down).
    page.wait_for_function(
        "() => { const b = document.querySelector('progress.ia-report-progress');"
        " return b && b.value > 0 && /about \\d+ (s|min)[^·]* left/.test("
        "document.querySelector('.ia-report-elapsed').textContent); }",
        timeout=120_000,
    )
    value = float(bar.evaluate("b => b.value"))
    assert 0 < value < 1, value
    assert re.search(r"\d+% ?, about \d+", bar.get_attribute("aria-valuetext") or "") or "left" in (
        bar.get_attribute("aria-valuetext") or ""
    )
    page.click(".ia-report-cancel")
    page.wait_for_function(
        "() => document.querySelector('.ia-report-status').textContent === 'Method report cancelled.'"
    )
    assert bar.is_hidden() and page.locator(".ia-report-run").is_enabled()
    assert page.locator(".ia-report-elapsed").inner_text() == ""
