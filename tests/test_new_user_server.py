"""What a new user met on the server side (issue 29, item 4): a quiet terminal, the method report's
progress, names a user recognises (layers, pages), and an exported report that reads on its own."""

from __future__ import annotations

import logging
import threading
import urllib.request

import pytest
from reliability_helpers import make_visualizer, serving


def test_a_burst_of_requests_logs_no_queue_depth_warnings(caplog):
    """A page load and its polling arrive in bursts; waitress's "Task queue depth is N" (300 lines in five
    minutes of use) must not reach the terminal, and still shows with --debug (debug level)."""
    vis = make_visualizer()
    caplog.set_level(logging.DEBUG)
    with serving(vis) as url:
        paths = ["/api/v1/health", "/api/v1/config", "/", "/static/app.js"] * 10
        errors: list[BaseException] = []

        def get(path: str) -> None:
            try:
                with urllib.request.urlopen(url + path, timeout=30) as answer:
                    answer.read()
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=get, args=(p,)) for p in paths]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert not errors, errors[:3]
    queued = [r for r in caplog.records if "queue depth" in r.getMessage().lower()]
    assert queued, "the burst should have queued (40 requests, 2 threads)"
    assert all(r.levelno <= logging.DEBUG for r in queued), [(r.name, r.levelname) for r in queued[:3]]


def test_the_sanity_check_names_its_steps_by_the_models_layers():
    """A step said "13 randomized" (an index into nn.Sequential): it names the layer's kind and place."""
    import torch

    from insights_app.demos.digits import digits_cnn
    from insights_app.transport.server import create_app

    torch.manual_seed(0)
    vis = make_visualizer(digits_cnn())
    client = create_app(vis, token="").test_client()
    answer = client.post("/api/v1/sanity", json={"example_id": 0, "method": "Saliency"}).get_json()
    steps = [s["randomized"] for s in answer["sanity"]["steps"]]
    assert steps[0] == "Linear (layer 13)", steps
    assert any("Conv2d (layer 0)" in s for s in steps), steps
    assert not any(s.strip().isdigit() for s in " + ".join(steps).split(" + ")), steps


def test_the_exported_report_reads_on_its_own():
    """Each map has its target and a colour scale with numbers; the filter and the arguments are in words,
    with no raw JSON and no "None"."""
    import re

    from reliability_helpers import Digits

    from insights_app.page.export import html_report

    vis = make_visualizer(dataset=Digits(n=24, batch_size=8))
    body = {
        "method": "Occlusion",
        "arguments": {"window": None},
        "filter": {"prediction": "incorrect", "classes": ["3", "5"], "class_source": "label"},
        "visualization": {"sign": "all"},
    }
    text, n = html_report(vis, body, limit=3)
    assert n > 0
    assert "None" not in text and "{" not in text.split("<body>", 1)[1].split("<section", 1)[0]
    meta = re.search(r'<div class="meta">(.*?)</div>', text).group(1)
    assert "wrongly predicted examples, labelled 3, 5" in meta, meta
    figures = re.findall(r"<figure>.*?</figure>", text)
    assert len(figures) == n
    for fig in figures:
        assert re.search(r"target: \d", fig), fig[-400:]
        ends = re.findall(r'<span class="n">([^<]+)</span>', fig)
        assert len(ends) == 2 and float(ends[0].replace("−", "-")) < 0 < float(ends[1]), ends
        assert "linear-gradient(" in fig and 'aria-label="Colour scale: attribution from' in fig


def test_folder_pages_are_named_from_their_source(tmp_path):
    """from_folder over a model load_model read: the page is titled by the folder and the model named by its
    weights file (it said "Insights" and "ConvNet"); a given title or name still wins."""
    import sys
    from pathlib import Path

    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from adapters_helpers import digit_cnn, write_digit_folders

    from data_adapters import from_folder
    from data_adapters.weights import load_model

    folder = tmp_path / "handwriting"
    write_digit_folders(folder, n_train=0, n_valid=12)
    torch.manual_seed(0)
    torch.save(digit_cnn(10), tmp_path / "mnist_small.pt")
    model = load_model(str(tmp_path / "mnist_small.pt"))
    classes = [str(i) for i in range(10)]
    vis = from_folder(folder / "valid", model, classes, channels=1, size=16)
    assert vis.title == "Insights: valid"
    assert [e.name for e in vis.engines] == ["mnist_small"]
    named = from_folder(folder / "valid", model, classes, channels=1, size=16, title="Digits", name="cnn")
    assert named.title == "Digits" and [e.name for e in named.engines] == ["cnn"]
    # The command line names --model the same way: the weights file's stem (not --arch), or the callable's name.
    from data_adapters.weights import source_name

    assert source_name("weights/resnet18-pets.pt") == "resnet18-pets"
    assert source_name("mymodels:zoo.build_model") == "build_model"


def test_the_method_report_streams_its_progress_then_the_report():
    """With "stream": true the report answers progress events (share done, time left) before its result,
    and the result equals the plain answer's."""
    import json

    from reliability_helpers import without_timing

    from insights_app.transport.server import create_app

    vis = make_visualizer()
    client = create_app(vis, token="").test_client()
    body = {"methods": ["Saliency", "IntegratedGradients"], "sample": 8, "sanity": 2, "metrics": ["deletion"]}
    answer = client.post("/api/v1/method_report", json=dict(body, stream=True))
    assert answer.status_code == 200 and answer.mimetype == "application/x-ndjson"
    events = [json.loads(line) for line in answer.get_data(as_text=True).splitlines() if line.strip()]
    kinds = [e["type"] for e in events]
    assert kinds == ["progress"] * 5 + ["report", "done"], kinds
    progress = events[:5]
    assert [p["steps_done"] for p in progress] == [0, 1, 2, 3, 4] and all(p["steps"] == 4 for p in progress)
    assert [p["step"] for p in progress] == [
        "TinyCNN: Saliency",
        "TinyCNN: Saliency (sanity check)",
        "TinyCNN: Integrated Gradients",
        "TinyCNN: Integrated Gradients (sanity check)",
        None,
    ]
    shares = [p["done"] for p in progress]
    assert shares[0] == 0 and shares[-1] == 1 and shares == sorted(shares)
    assert progress[0]["left_ms"] is None and all(p["left_ms"] >= 0 for p in progress[1:])
    assert progress[-1]["left_ms"] == 0
    plain = client.post("/api/v1/method_report", json=body).get_json()
    assert without_timing(events[5]["report"]) == without_timing(plain)
    refused = client.post("/api/v1/method_report", json=dict(body, stream=True, methods=["Nope"]))
    assert refused.status_code == 400  # refused before any work, not as an event midway


@pytest.mark.slow
def test_the_pages_time_left_is_measured_on_the_chunks_after_the_first(ui):
    """The Occlusion page said "about 39 s left" with 50 s to go: the estimate took the first example (computed
    alone) as the rate for all. It is measured on the chunks after it, and counts down between them."""
    from ui_helpers import serve

    handle = serve(make_visualizer())
    try:
        page = ui.page
        page.goto(handle.url)
        got = page.evaluate(
            """async () => {
              const { TimeLeft } = await import("./static/lib/eta.js");
              const eta = new TimeLeft();
              eta.start(0);
              const before = eta.left(500, 64);
              eta.done(1000, 1);                         // the first example, alone: 1 s
              const afterFirst = eta.left(1000, 63);
              for (let i = 0; i < 7; i++) eta.done(15000 + i, 1);   // a chunk of 7: 2 s each
              return { before, afterFirst, now: eta.left(15006, 56), later: eta.left(25006, 56),
                       past: eta.left(500000, 56) };
            }"""
        )
    finally:
        handle.close()
    assert got["before"] is None
    assert got["afterFirst"] == 63_000  # only the first one is known: its time
    assert abs(got["now"] - 2000 * 56) < 50  # 2 s per example of the later chunk, not (15 s / 8) per example
    assert abs(got["later"] - (got["now"] - 10_000)) < 1  # counted down between events
    assert got["past"] == 0  # "finishing", never a negative or stale number


def test_the_readme_says_how_to_get_a_notebook_and_stays_short():
    """A new user reading the notebook section learns that a notebook is installed separately; the README stays
    within 700 lines (the manual's details live in docs/)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 700
    section = text.split("### 2. Embed the widget in a notebook", 1)[1].split("\n### ", 1)[0]
    assert re.search(r"pip install jupyterlab", section) and re.search(r"pip install notebook", section)
    assert "jupyter lab" in section
