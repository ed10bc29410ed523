"""A tabular and a text learner in Chromium: the demos' pages show the row's values (category
names, unnormalized numbers) with a bar per column, and the sentence's tokens coloured by their
attribution."""

from __future__ import annotations

import pytest
from ui_helpers import open_app, serve, shot


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("demo-cache")


def test_a_tabular_learner_shows_its_columns_and_their_attributions(ui, cache):
    from insights_app.demos import tabular as demo_tabular

    vis = demo_tabular.demo_visualizer(cache=cache, progress=lambda _msg: None)
    server = serve(vis)
    try:
        open_app(ui, server.url + "?method=IntegratedGradients&size=2")
        page = ui.page
        card = page.locator(".ia-card").first
        cells = card.locator(".ia-values td").all_inner_texts()
        heads = card.locator(".ia-values th").all_inner_texts()
        assert "size" in heads and "texture" in heads
        shown = dict(zip(heads, cells))
        assert not shown["size"].replace(".", "").lstrip("-").isdigit()  # a category name, not its code
        rows = card.locator(".ia-barchart-row")
        assert rows.count() >= len(heads) - 1 and rows.count() > 2
        values = [float(v) for v in card.locator(".ia-barchart-value").all_inner_texts()]
        assert any(v != 0 for v in values)
        shot(page, "tabular-demo")
    finally:
        server.close()


def test_a_text_classifier_colours_its_tokens(ui, cache):
    from insights_app.demos import text as demo_text

    vis = demo_text.demo_visualizer(cache=cache, progress=lambda _msg: None)
    server = serve(vis)
    try:
        open_app(ui, server.url + "?method=IntegratedGradients&size=2")
        page = ui.page
        card = page.locator(".ia-card").first
        words = card.locator(".ia-text-input .ia-token").all_inner_texts()
        assert len(words) >= 4 and any(w.isalpha() for w in words)
        scored = card.locator(".ia-text-attr .ia-token-scored")
        assert scored.count() == len(words)
        scores = [float(s) for s in scored.evaluate_all("els => els.map(e => e.dataset.score)")]
        assert any(s != 0 for s in scores)
        backgrounds = set(scored.evaluate_all("els => els.map(e => getComputedStyle(e).backgroundColor)"))
        assert len(backgrounds) > 1  # coloured by attribution, not one colour
        shot(page, "text-demo")
    finally:
        server.close()
