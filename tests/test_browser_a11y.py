"""Accessibility in Chromium: axe-core finds no serious or critical violation in any view, and the
page works from the keyboard (the class picker, re-targeting, compare).

axe-core is vendored from the npm registry as a test asset (tests/assets/axe-core); it is run
in the page with ``page.evaluate`` because the page's Content-Security-Policy refuses injected
script tags.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from ui_helpers import open_app, serve, shot, wait_idle

from insights_app import AttributionVisualizer, Batch
from insights_app.features import GeneralFeature
from insights_app.transport.serving import ServerHandle

AXE_SOURCE = (Path(__file__).parent / "assets" / "axe-core" / "axe.min.js").read_text(encoding="utf-8")
AXE_RUN = """async () => {
  const r = await axe.run(document.querySelector('.insights-app'), {resultTypes: ['violations']});
  return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                 nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
}"""
# The document-level rules axe checks on the whole page (one h1, unique landmarks).
AXE_PAGE_RUN = AXE_RUN.replace("document.querySelector('.insights-app')", "document")


def axe_violations(page, whole_page: bool = True) -> list[dict]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE_SOURCE)
    found = page.evaluate(AXE_PAGE_RUN if whole_page else AXE_RUN)
    return [v for v in found if v["impact"] in ("serious", "critical")]


def focused(page) -> str:
    """A short description of the focused element (tag, class, text)."""
    return page.evaluate("""() => { const e = document.activeElement;
      return e ? `${e.tagName.toLowerCase()}.${e.className} ${(e.textContent || e.value || '').trim().slice(0, 40)}` : 'none'; }""")


@pytest.fixture(scope="module")
def many_classes_server() -> Iterator[ServerHandle]:
    """1,000 classes over a handful of tabular examples: the class picker at ImageNet's size."""
    torch.manual_seed(0)
    model = nn.Linear(4, 1000)
    classes = [f"class {i:03d}" for i in range(1000)]
    x = torch.rand(8, 4)
    y = torch.arange(8) * 111
    batches = [Batch((x[i : i + 4],), y[i : i + 4]) for i in (0, 4)]
    vis = AttributionVisualizer(
        [model],
        classes,
        [GeneralFeature("stats", ["a", "b", "c", "d"])],
        batches,
        score_func=lambda out: torch.softmax(out, dim=-1),
        title="Many classes",
    )
    handle = serve(vis)
    yield handle
    handle.close()


def test_no_serious_axe_violation_in_any_view(ui, digits_server):
    open_app(ui, digits_server.url + "?method=Saliency&size=4")
    page = ui.page
    assert axe_violations(page) == [], "cards"
    assert page.locator("h1.ia-brand").count() == 1
    # The grid is not a live region (a screen reader would read every streamed card); one status line is.
    assert page.locator(".ia-grid[aria-live]").count() == 0
    assert "Examples #" in page.locator(".ia-sr-only[role=status]").inner_text()

    page.click(".ia-ms-search")
    page.wait_for_selector(".ia-ms-option")
    assert axe_violations(page) == [], "class picker open"
    page.keyboard.press("Escape")

    page.click(".ia-card .ia-compare-btn")
    page.wait_for_selector(".ia-compare-cell img, .ia-compare-cell canvas")
    assert axe_violations(page) == [], "compare"
    page.keyboard.press("Escape")
    wait_idle(page)

    page.click(".ia-card .ia-enlarge")
    page.wait_for_selector(".ia-large-heat")
    assert axe_violations(page) == [], "large view"
    shot(page, "a11y-large")


def test_the_class_picker_is_a_combobox_tab_passes_it_at_once(ui, many_classes_server):
    open_app(ui, many_classes_server.url + "?method=Saliency&size=4")
    page = ui.page
    search = page.locator(".ia-ms-search")
    assert search.get_attribute("role") == "combobox" and search.get_attribute("aria-expanded") == "false"
    # From the control before the picker to the one after it: Tab, Tab (1,000 classes in the list).
    search.focus()
    page.keyboard.press("Shift+Tab")
    assert not page.evaluate("() => !!document.activeElement.closest('.ia-ms')"), focused(page)
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.classList.contains('ia-ms-search')")
    page.keyboard.press("Tab")
    assert not page.evaluate("() => !!document.activeElement.closest('.ia-ms')"), focused(page)

    # ArrowDown opens the list and makes its first option active; Enter chooses it.
    search.focus()
    page.keyboard.press("ArrowDown")
    assert search.get_attribute("aria-expanded") == "true"
    assert page.locator(".ia-ms-option").count() == 300  # the rest is reached by searching
    active = search.get_attribute("aria-activedescendant")
    assert active and page.locator(f"#{active}").inner_text() == "class 000"
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    active = search.get_attribute("aria-activedescendant")
    assert page.locator(f"#{active}").inner_text() == "class 002"
    page.keyboard.press("Enter")
    assert page.locator(f"#{active}").get_attribute("aria-selected") == "true"
    assert page.locator(".ia-chips .ia-chip").inner_text().startswith("class 002")
    assert page.evaluate("() => document.activeElement.classList.contains('ia-ms-search')")
    # Typing narrows the list; Escape closes it and keeps the focus in the input.
    page.keyboard.type("99")
    assert page.locator(".ia-ms-option").count() == 19  # 099, 199, ..., 990-999
    assert axe_violations(page, whole_page=False) == []
    page.keyboard.press("Escape")
    assert search.get_attribute("aria-expanded") == "false"
    assert page.evaluate("() => document.activeElement.classList.contains('ia-ms-search')")
    shot(page, "a11y-picker")


def test_focus_stays_where_the_user_is(ui, digits_server):
    open_app(ui, digits_server.url + "?method=Saliency&size=2")
    page = ui.page
    # Re-targeting redraws the card's predictions: the focus stays on the pressed class.
    second = page.locator(".ia-card").first.locator(".ia-pred").nth(1)
    cls = second.get_attribute("data-class-index")
    second.focus()
    page.keyboard.press("Enter")
    page.wait_for_function(f"""() => {{ const b = document.querySelector('.ia-card .ia-pred[data-class-index="{cls}"]');
      return b && b.getAttribute('aria-pressed') === 'true'; }}""")
    assert page.evaluate("() => document.activeElement.dataset.classIndex") == cls, focused(page)

    # Opening compare moves the focus to its title; a method box keeps it when toggled; Escape
    # closes compare and gives the focus back to the card's Compare button.
    page.locator(".ia-card").first.locator(".ia-compare-btn").focus()
    page.keyboard.press("Enter")
    page.wait_for_selector(".ia-compare-title")
    assert page.evaluate("() => document.activeElement.classList.contains('ia-compare-title')"), focused(page)
    box = page.locator(".ia-method-picker input[value=InputXGradient]")
    box.focus()
    page.keyboard.press("Space")
    assert page.evaluate("() => document.activeElement.value") == "InputXGradient", focused(page)
    assert page.locator(".ia-method-picker input[value=InputXGradient]").is_checked()
    page.keyboard.press("Escape")
    assert page.locator(".ia-compare").is_hidden()
    assert page.evaluate("() => document.activeElement.classList.contains('ia-compare-btn')"), focused(page)
    assert page.evaluate("() => document.activeElement.closest('.ia-card').dataset.exampleId") == "0"


def test_no_serious_axe_violation_on_the_text_demo(ui, tmp_path):
    """The text demo's tokens are coloured by attribution: their text must read on every colour (axe's
    color-contrast failed on them at 2.04:1 and 2.26:1)."""
    from insights_app.demos import text as demo_text

    server = serve(demo_text.demo_visualizer(cache=tmp_path, progress=lambda _msg: None))
    try:
        open_app(ui, server.url + "?method=IntegratedGradients&size=4")
        page = ui.page
        assert page.locator(".ia-text-attr .ia-token-scored").count() >= 8
        assert axe_violations(page) == [], "text demo"
        shot(page, "a11y-text-demo")
    finally:
        server.close()
