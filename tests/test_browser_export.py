"""The examples view's "Export report" button in Chromium: the page on screen saved as one HTML file
that opens from disk with every request to anywhere refused, and still shows its images."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from ui_helpers import card_ids, open_app, shot

pytestmark = pytest.mark.slow

# Every text the button's live region shows, in order (a MutationObserver, installed before the click).
WATCH_STATUS = """() => {
  window.__exportStatus = [];
  const el = document.querySelector('.ia-export-status');
  new MutationObserver(() => window.__exportStatus.push(el.textContent)).observe(el, { childList: true, characterData: true, subtree: true });
}"""


def test_export_report_downloads_the_page_on_screen_as_a_self_contained_file(
    ui, digits_server, digits_visualizer, tmp_path
):
    open_app(ui, digits_server.url + "?method=Saliency&size=4&pred=incorrect")
    page = ui.page
    interp = digits_visualizer.interpretation(progress=False)
    wrong = np.flatnonzero(interp.predicted != interp.labels).tolist()
    assert card_ids(page) == wrong[:4]
    button = page.locator(".ia-toolbar button.ia-export-btn")
    assert button.inner_text() == "Export report"
    status = page.locator(".ia-export-status")
    assert status.get_attribute("role") == "status" and status.get_attribute("aria-live") == "polite"
    # Keyboard reachable: Tab from the Dataset overview button lands on it, Enter presses it.
    page.focus(".ia-dataset-btn")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.classList.contains('ia-export-btn')")
    page.evaluate(WATCH_STATUS)
    requests = []
    page.on("request", lambda r: requests.append((r.method, r.url, r.post_data)))
    with page.expect_download(timeout=60_000) as info:
        page.keyboard.press("Enter")
    download = info.value
    page.wait_for_function("() => document.querySelector('.ia-export-status').textContent === 'Report downloaded'")
    assert page.evaluate("() => window.__exportStatus")[0] == "Making the report…"
    assert not page.locator(".ia-export-btn[aria-disabled]").count()
    shot(page, "export-report-downloaded")
    # It asked for the view on screen: its filter, method, arguments and display, no page.
    posted = [json.loads(body) for method, url, body in requests if url.endswith("/api/v1/export")]
    assert len(posted) == 1
    assert posted[0]["format"] == "html" and posted[0]["method"] == "Saliency"
    assert posted[0]["filter"]["prediction"] == "incorrect" and "page" not in posted[0] and "page_size" not in posted[0]
    # The file: named by date, every example of the filter (up to the default 100), images inline.
    assert re.fullmatch(r"insights-report-\d{4}-\d{2}-\d{2}\.html", download.suggested_filename)
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    text = saved.read_text(encoding="utf-8")
    assert re.findall(r'<div class="id">#(\d+)</div>', text) == [str(i) for i in wrong[:100]]
    srcs = re.findall(r'<img [^>]*src="([^"]+)"', text)
    assert len(srcs) == 2 * len(wrong[:100]) and all(s.startswith("data:image/png;base64,") for s in srcs)

    # Opened from disk with every request to anywhere but the file itself and data: refused.
    report = ui.context.new_page()
    asked, refused = [], []

    def only_local(route):
        url = route.request.url
        asked.append(url)
        if url.startswith(("file://", "data:")):
            route.continue_()
        else:
            refused.append(url)
            route.abort()

    report.route("**/*", only_local)
    report.goto(saved.as_uri())
    report.wait_for_function("() => [...document.images].every((i) => i.complete)")
    assert refused == [] and all(u.startswith(("file://", "data:")) for u in asked)
    assert [u for u in asked if u.startswith("file://")] == [saved.as_uri()]
    images = report.evaluate("() => [...document.images].map((i) => [i.naturalWidth, i.naturalHeight])")
    assert len(images) == len(srcs) and all(w > 0 and h > 0 for w, h in images)
    assert report.locator("section.card").count() == len(wrong[:100])
    assert "Saliency" in report.locator(".meta").inner_text()
    shot(report, "export-report-opened")
    report.close()


def test_a_refused_export_says_why(ui, digits_server):
    open_app(ui, digits_server.url + "?method=Saliency&size=4")
    page = ui.page
    page.route(
        "**/api/v1/export",
        lambda route: route.fulfill(
            status=503, content_type="application/json", body=json.dumps({"error": "the server is busy: try again"})
        ),
    )
    page.click(".ia-export-btn")
    page.wait_for_function("() => document.querySelector('.ia-export-status').textContent.startsWith('Report failed')")
    assert page.locator(".ia-export-status").inner_text() == "Report failed: the server is busy: try again"
    assert page.locator(".ia-export-status").get_attribute("data-kind") == "error"
    assert not page.locator(".ia-export-btn[aria-disabled]").count()  # ready for another try
