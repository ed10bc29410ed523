"""What a new user meets first, in headless Chromium: every method from the form, cards that say
which method drew them, counts that are the filter's, the last page, and slow pages (previews,
time left, Cancel, a new Fetch while one computes)."""

from __future__ import annotations

import re
import time

import pytest
import torch
from ui_helpers import DIGIT_NAMES, card_ids, decode_data_url, fetch, is_blank, open_app, serve, shot, wait_idle

from insights_app import AttributionVisualizer, Batch
from insights_app.features import ImageFeature
from insights_app.testing import SlowNet, seeded

pytestmark = pytest.mark.slow


def alert_text(page) -> str:
    return " ".join(page.eval_on_selector_all(".ia-alert-error", "els => els.map(e => e.textContent)"))


def test_every_method_fetches_from_the_form_with_its_defaults(ui, digits_server, digits_visualizer):
    open_app(ui, digits_server.url + "?method=Saliency&size=1")
    page = ui.page
    labels = {name: spec.label for name, spec in digits_visualizer.methods.items()}
    assert len(labels) >= 15
    for name, label in labels.items():
        page.select_option("select[name=method]", name)
        fetch(page)
        assert alert_text(page) == "", f"{name}: {alert_text(page)}"
        assert page.locator(".ia-card .ia-card-method").inner_text() == label, name
        srcs = page.eval_on_selector_all(".ia-card .ia-attr img", "els => els.map(e => e.src)")
        assert len(srcs) == 1, name
        assert not is_blank(decode_data_url(srcs[0])), name


def test_a_shared_gradcam_link_opens_on_its_maps(ui, digits_server):
    for method in ("LayerGradCam", "GuidedGradCam"):
        open_app(ui, digits_server.url + f"?method={method}&size=2")
        page = ui.page
        assert alert_text(page) == ""
        assert card_ids(page) == [0, 1]
        assert page.locator(".ia-card .ia-attr img").count() == 2


def test_cards_say_which_method_drew_them_and_go_stale_when_the_form_changes(ui, digits_server):
    open_app(ui, digits_server.url + "?method=Saliency&size=2")
    page = ui.page
    made = page.locator(".ia-card").first.locator(".ia-card-made")
    assert "Saliency" in made.inner_text() and "abs=true" in made.get_attribute("title")
    assert page.locator(".ia-card.ia-stale").count() == 0
    page.select_option("select[name=method]", "LayerGradCam")
    assert page.locator(".ia-card.ia-stale").count() == 2
    assert "made with other settings" in made.inner_text()
    # A refused Fetch keeps the Saliency cards, still marked as not matching the form.
    page.select_option("select[name=method]", "IntegratedGradients")
    page.fill("input[name=n_steps]", "0")
    fetch(page)
    assert "n_steps" in alert_text(page)
    assert page.locator(".ia-card .ia-card-method").first.inner_text() == "Saliency"
    assert page.locator(".ia-card.ia-stale").count() == 2
    # Back to the settings that drew them: no longer stale.
    page.select_option("select[name=method]", "Saliency")
    assert page.locator(".ia-card.ia-stale").count() == 0


def test_a_filter_counts_all_its_matches_not_the_page(ui, digits_server, digits_visualizer):
    page_json = digits_visualizer.page({"method": "Saliency", "filter": {"prediction": "incorrect"}, "page_size": 3})
    matched = page_json["page"]["matched"]
    assert page_json["page"]["exhausted"] and matched > 3  # the digits CNN is wrong on more than a page
    open_app(ui, digits_server.url + "?method=Saliency&size=3&pred=incorrect")
    page = ui.page
    status = page.locator(".ia-status-text").inner_text()
    assert f"Matches 1–3 of {matched}" in status, status
    assert "whole dataset scanned" in status
    last = (matched - 1) // 3 + 1
    assert page.locator(".ia-page-label").inner_text() == f"Page 1 of {last}"
    page.click("text=Next ›")
    wait_idle(page)
    assert f"Matches 4–{min(6, matched)} of {matched}" in page.locator(".ia-status-text").inner_text()


def test_a_page_past_the_end_offers_the_last_page(ui, digits_server, digits_visualizer):
    total = digits_visualizer.store.length
    open_app(ui, digits_server.url + "?method=Saliency&size=4&page=500")
    page = ui.page
    last = (total - 1) // 4
    assert card_ids(page) == []
    assert f"past the last page, {last + 1}" in page.locator(".ia-empty").inner_text()
    page.click(f"text=Go to the last page ({last + 1})")
    wait_idle(page)
    assert card_ids(page) == list(range(last * 4, total))
    assert page.locator(".ia-page-label").inner_text() == f"Page {last + 1} of {last + 1}"
    assert f"page={last}" in page.url


def slow_visualizer(delay: float = 0.1) -> AttributionVisualizer:
    """Every forward pass sleeps ``delay`` s: Integrated Gradients with 16 steps and 4 rows per
    call costs 4 passes per example, so a page of 4 takes about two seconds."""
    torch.manual_seed(0)
    return AttributionVisualizer(
        seeded(SlowNet, delay=delay),
        DIGIT_NAMES,
        [ImageFeature("img")],
        [Batch(torch.rand(4, 1, 12, 12), torch.tensor([1, 2, 3, 4]))],
        internal_batch_size=4,
    )


def test_a_slow_page_shows_inputs_and_predictions_first_then_each_map_and_the_time_left(ui):
    handle = serve(slow_visualizer())
    try:
        page = ui.page
        page.goto(handle.url + "?method=IntegratedGradients&a.n_steps=16&size=4")
        # Every card shows its input and predictions while attributions are still being computed.
        page.wait_for_function("() => document.querySelectorAll('.ia-card .ia-pred').length >= 4 * 4", timeout=30_000)
        assert page.locator(".ia-card-pending").count() >= 2
        assert page.locator(".ia-card .ia-inputs img").count() == 4
        assert page.locator(".ia-card-pending .ia-attr-pending .ia-spinner").count() >= 2
        # Once the first map has arrived, the status says how long the rest should take.
        page.wait_for_function(
            "() => /about \\d+ s left/.test(document.querySelector('.ia-status').textContent)", timeout=30_000
        )
        shot(page, "slow-page")
        wait_idle(page)
        assert page.locator(".ia-card .ia-attr img").count() == 4
        assert page.locator(".ia-card-pending").count() == 0
        assert "left" not in page.locator(".ia-status").inner_text()
    finally:
        handle.close()


def test_cancel_stops_the_computation_on_the_server_and_keeps_what_arrived(ui):
    vis = slow_visualizer(delay=0.2)
    handle = serve(vis)
    try:
        page = ui.page
        # 64 steps: 16 passes of 0.2 s per example, about 13 s for the page.
        page.goto(handle.url + "?method=IntegratedGradients&a.n_steps=64&size=4")
        page.wait_for_selector(".ia-card .ia-pred", timeout=30_000)
        assert page.locator(".ia-cancel").is_visible()
        page.click(".ia-cancel")
        t0 = time.monotonic()
        wait_idle(page, timeout=5_000)
        assert vis.engines[0].compute.wait_idle(2.0)  # the model's thread stopped, within a pass or two
        assert time.monotonic() - t0 < 5.0
        assert not page.locator(".ia-cancel").is_visible()
        assert "Cancelled" in page.locator(".ia-status").inner_text()
        cancelled = page.locator(".ia-card-cancelled")
        assert cancelled.count() >= 3
        assert "Cancelled before its attribution was computed" in cancelled.first.inner_text()
        # The cancelled cards keep their input and predictions.
        assert page.locator(".ia-card-cancelled .ia-pred").count() == cancelled.count() * 4
        assert page.locator(".ia-alert-error").count() == 0
    finally:
        handle.close()


def test_a_new_fetch_while_a_page_computes_replaces_it(ui):
    vis = slow_visualizer(delay=0.2)
    handle = serve(vis)
    try:
        page = ui.page
        page.goto(handle.url + "?method=IntegratedGradients&a.n_steps=64&size=4")
        page.wait_for_selector(".ia-card .ia-pred", timeout=30_000)
        # The form and Fetch stay usable while the page computes.
        page.select_option("select[name=method]", "Saliency")
        assert page.locator(".ia-fetch").is_enabled()
        page.click(".ia-fetch")
        wait_idle(page, timeout=20_000)
        methods = page.eval_on_selector_all(".ia-card .ia-card-method", "els => els.map(e => e.textContent)")
        assert methods == ["Saliency"] * 4
        assert page.locator(".ia-card .ia-attr img").count() == 4
        assert re.search(r"method=Saliency", page.url)
        assert vis.engines[0].compute.wait_idle(5.0)
    finally:
        handle.close()
