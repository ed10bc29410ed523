"""The Dataset view in Chromium: from "where is it wrong" (the confusion matrix, the most confused
pairs, the largest losses) to "why" (the cards with their maps) in one click, and back by link."""

from __future__ import annotations

import torch
from test_browser_a11y import axe_violations
from ui_helpers import DIGIT_NAMES, card_ids, open_app, serve, shot, wait_idle

from insights_app import AttributionVisualizer, Batch
from insights_app.features import GeneralFeature


def open_dataset(page, examples: int) -> None:
    """Open the Dataset view and wait for the summary of the complete pass."""
    page.click(".ia-dataset-btn")
    page.wait_for_selector(".ia-pass-line:has-text('complete')", timeout=30_000)
    page.wait_for_function(
        f"""() => {{ const t = document.querySelector('.ia-tile .ia-tile-value');
      return t && t.textContent === '{examples}'; }}""",
        timeout=10_000,
    )


def test_a_confusion_cell_opens_its_cards_with_their_maps(ui, digits_server, digits_visualizer):
    open_app(ui, digits_server.url + "?method=Saliency&size=4")
    page = ui.page
    interp = digits_visualizer.interpretation(progress=False)
    open_dataset(page, interp.n_examples)
    assert page.locator(".ia-tile:has-text('Accuracy') .ia-tile-value").inner_text() == f"{interp.accuracy * 100:.1f}%"
    assert page.evaluate("() => document.activeElement.classList.contains('ia-dataset-title')")
    assert "dataset=0" in page.url
    assert axe_violations(page) == []
    shot(page, "dataset-10-classes")
    # The most confused pair's cell: its count is on the button, and it opens exactly its examples.
    actual, predicted, count = interp.most_confused()[0]
    cell = page.locator(f".ia-cm-cell[aria-label='{actual} predicted as {predicted}: {count}']")
    assert cell.inner_text() == str(count)
    cell.click()
    wait_idle(page)
    want = interp.ids_where(actual=DIGIT_NAMES.index(actual), predicted=DIGIT_NAMES.index(predicted)).tolist()
    assert card_ids(page) == want[:4]
    assert page.locator(".ia-card .ia-badge-bad").count() == len(want[:4])
    assert page.locator(".ia-card .ia-attr img, .ia-card .ia-attr canvas").count() >= len(want[:4])
    assert page.locator(".ia-pair-chip").inner_text().startswith(f"{actual} → predicted {predicted}")
    assert f"pair={DIGIT_NAMES.index(actual)}-{DIGIT_NAMES.index(predicted)}" in page.url
    assert f"of {count}" in page.locator(".ia-status-text").inner_text()
    shot(page, "dataset-pair-cards")
    # The link reopens the same cards; removing the chip and fetching goes back to every example.
    page.goto(page.url)
    wait_idle(page)
    assert card_ids(page) == want[:4]
    page.click(".ia-pair-chip .ia-chip-x")
    page.click(".insights-app .ia-fetch")
    wait_idle(page)
    assert card_ids(page) == [0, 1, 2, 3]


def test_largest_losses_first_and_the_per_class_table(ui, digits_server, digits_visualizer):
    open_app(ui, digits_server.url + "?method=Saliency&size=4&dataset=0")
    page = ui.page
    page.wait_for_selector(".ia-per-class")
    interp = digits_visualizer.interpretation(progress=False)
    # Sorting the per-class table by recall puts the worst-recalled class... last (descending first).
    page.click(".ia-per-class th button:has-text('Recall')")
    names = page.eval_on_selector_all(".ia-per-class tbody tr td:first-child", "els => els.map(e => e.textContent)")
    by_recall = sorted(interp.per_class(), key=lambda c: (-c.recall, DIGIT_NAMES.index(c.name)))
    assert names == [c.name for c in by_recall]
    assert page.locator(".ia-per-class th[aria-sort=descending]").inner_text().startswith("Recall")
    page.click("button:has-text('All cards, largest loss first')")
    wait_idle(page)
    assert card_ids(page) == interp.top_losses(4)[1].tolist()
    losses = page.eval_on_selector_all(
        ".ia-card .ia-loss", "els => els.map(e => Number(e.textContent.replace('Loss ', '')))"
    )
    assert losses == sorted(losses, reverse=True) and len(losses) == 4
    assert "order=loss" in page.url
    assert page.locator(".ia-seg[data-name=order] input[value=loss]").is_checked()


def test_a_hundred_classes_and_no_labels(ui):
    """Readable at 100 classes (a heat map you can walk with the keyboard); without labels, what needs them says so."""
    torch.manual_seed(0)
    n = 100
    x = torch.randn(1000, 16)
    w = torch.randn(16, n)
    y = (x @ w + 2 * torch.randn(1000, n)).argmax(1)
    model = torch.nn.Linear(16, n)
    with torch.no_grad():
        model.weight.copy_(w.T)
        model.bias.zero_()
    feature = [GeneralFeature("f", [f"f{i}" for i in range(16)])]
    classes = [f"class {i:03d}" for i in range(n)]
    labeled = AttributionVisualizer(
        model,
        classes,
        feature,
        [Batch((x[i : i + 100],), y[i : i + 100]) for i in range(0, 1000, 100)],
        score_func=lambda o: torch.softmax(o, 1),
        title="100 classes",
    )
    unlabeled = AttributionVisualizer(
        model, classes, feature, [Batch((x[:200],))], score_func=lambda o: torch.softmax(o, 1)
    )
    servers = [serve(labeled), serve(unlabeled)]
    try:
        page = ui.page
        page.goto(servers[0].url + "?method=Saliency&size=2&dataset=0")
        page.wait_for_selector(".ia-cm-canvas", timeout=30_000)
        page.focus(".ia-cm-canvas")
        page.keyboard.press("ArrowRight")
        cm = labeled.interpretation(progress=False).confusion_matrix()
        assert page.locator(".ia-cm-readout").inner_text() == f"class 000 predicted as class 001: {cm[0, 1]}"
        shot(page, "dataset-100-classes")
        # Walk to a non-empty off-diagonal cell of row 0 and open it.
        j = int(next(k for k in range(1, n) if cm[0, k]))
        for _ in range(j - 1):
            page.keyboard.press("ArrowRight")
        page.keyboard.press("Enter")
        page.wait_for_function(f"() => location.search.includes('pair=0-{j}')", timeout=10_000)
        wait_idle(page)
        assert page.locator(".ia-dataset").is_hidden() and len(card_ids(page)) == min(2, int(cm[0, j]))
        page.goto(servers[1].url + "?method=Saliency&size=2&dataset=0")
        page.wait_for_selector(".ia-hist", timeout=30_000)
        page.wait_for_selector(".ia-pass-line:has-text('complete')", timeout=30_000)
        assert "need labels" in page.locator(".ia-alert-warning").inner_text()
        assert page.locator(".ia-confusion, .ia-cm-canvas").count() == 0
        assert page.locator(".ia-tile:has-text('Labeled') .ia-tile-value").inner_text() == "0"
    finally:
        for s in servers:
            s.close()


def test_the_pass_is_cancelled_and_resumed_from_the_page(ui):
    """Progress from the first second; Cancel pauses it (and it stays paused), Resume continues it."""
    from reliability_helpers import Digits, make_visualizer

    from insights_app.testing import SlowNet, seeded

    vis = make_visualizer(models=seeded(SlowNet, 0.04, n_classes=10), dataset=Digits(n=200, batch_size=4))
    server = serve(vis)
    try:
        page = ui.page
        page.goto(server.url + "?method=Saliency&size=2&dataset=0")
        page.wait_for_selector(".ia-pass-cancel", timeout=20_000)
        page.wait_for_function(
            "() => /per second/.test(document.querySelector('.ia-pass-line').textContent)", timeout=20_000
        )
        page.click(".ia-pass-cancel")
        page.wait_for_selector(".ia-pass-line:has-text('paused')", timeout=20_000)
        done = vis.dataset_pass.progress().done
        assert 0 < done < 200 and page.locator(".ia-pass-start").inner_text() == "Resume"
        page.wait_for_timeout(1500)  # the summary keeps refreshing; the pass stays paused
        assert vis.dataset_pass.progress().state == "paused" and vis.dataset_pass.progress().done == done
        page.click(".ia-pass-start")
        page.wait_for_selector(".ia-pass-line:has-text('complete')", timeout=60_000)
        assert vis.dataset_pass.progress().done == 200
        page.wait_for_function(
            "() => document.querySelector('.ia-tile .ia-tile-value').textContent === '200'", timeout=10_000
        )
    finally:
        server.close()
        vis.dataset_pass.halt()
