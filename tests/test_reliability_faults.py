"""Faults: a model that raises, a dataset that raises, a corrupt image, a client that hangs up.

Each fault must show up where it happened (as that example's error, or as that request's
JSON error) and nowhere else: the other examples on the page are still explained, and the
server goes on answering every other request.
"""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import torch
from reliability_helpers import (
    CLASSES,
    POISON,
    Digits,
    FailingDigits,
    digits,
    make_faulty_model,
    make_model,
    make_visualizer,
    ndjson_events,
    raw_http,
    serving,
)

from insights_app.testing import TinyCNN
from insights_app.transport.server import create_app

POISONED = [2, 5, 11]


def model_errors(example):
    return [m["error"] for m in example["models"]]


def assert_served(url: str) -> None:
    """Still serving: health, config and a real page."""
    assert requests.get(url + "/api/v1/health", timeout=30).json() == {"status": "ok"}
    assert requests.get(url + "/api/v1/config", timeout=30).json()["classes"] == CLASSES
    r = requests.post(url + "/api/v1/examples", json={"method": "Saliency", "page_size": 2}, timeout=60)
    assert r.status_code == 200 and len(r.json()["examples"]) == 2


# ------------------------------------------------------------------ a model that raises on some inputs


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_model_raising_on_some_inputs_fails_only_those_examples(stream):
    vis = make_visualizer(make_faulty_model(), Digits(n=16, poison=POISONED))
    with serving(vis) as url:
        r = requests.post(
            url + "/api/v1/examples",
            json={"method": "IntegratedGradients", "arguments": {"n_steps": 4}, "page_size": 8, "stream": stream},
            timeout=60,
        )
        assert r.status_code == 200
        examples = (
            [e["example"] for e in ndjson_events(r.content) if e["type"] == "example"]
            if stream
            else r.json()["examples"]
        )
        assert [e["id"] for e in examples] == list(range(8))
        for ex in examples:
            (model,) = ex["models"]
            if ex["id"] in POISONED:
                assert "poisoned input" in model["error"] and model["predictions"] == []
                assert model["attributions"] == []
            else:
                assert model["error"] is None, model["error"]
                assert len(model["predictions"]) == 4 and model["attributions"][0]["image"].startswith("data:image/png")
            assert ex["features"][0]["original"].startswith("data:image/png")  # the input is still shown
        # Re-attributing a poisoned example reports the error; a healthy one works.
        bad = requests.post(url + "/api/v1/attribute", json={"example_id": 5, "target": 1}, timeout=60)
        assert bad.status_code == 200 and "poisoned input" in bad.json()["example"]["models"][0]["error"]
        good = requests.post(url + "/api/v1/attribute", json={"example_id": 4, "target": 1}, timeout=60)
        assert good.json()["example"]["models"][0]["target"]["index"] == 1
        # A filter needs predictions: examples the model cannot predict match no filter.
        r = requests.post(
            url + "/api/v1/examples",
            json={"method": "Saliency", "page_size": 16, "filter": {"classes": CLASSES}},
            timeout=60,
        )
        ids = [e["id"] for e in r.json()["examples"]]
        assert ids == [i for i in range(16) if i not in POISONED]
        assert_served(url)


class FailsUnderGradients(TinyCNN):
    """Predicts fine (no_grad) but raises while attributing poisoned examples: the backward path fails."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and bool((x[:, 0, 0, 0] <= POISON + 1e-6).any()):
            raise RuntimeError("gradient computation failed")
        return super().forward(x)


def test_a_model_failing_only_during_attribution_fails_only_those_examples():
    torch.manual_seed(0)
    vis = make_visualizer(FailsUnderGradients().eval(), Digits(n=16, poison=POISONED))
    page = create_app(vis).test_client().post("/api/v1/examples", json={"method": "Saliency", "page_size": 8})
    assert page.status_code == 200
    for ex in page.get_json()["examples"]:
        (model,) = ex["models"]
        assert len(model["predictions"]) == 4  # predicted in every case
        if ex["id"] in POISONED:
            assert "gradient computation failed" in model["error"] and model["attributions"] == []
        else:
            assert model["error"] is None and model["attributions"]


# ------------------------------------------------------------------ a dataset that raises mid-iteration


def test_a_dataset_raising_mid_iteration_fails_that_request_only():
    data = FailingDigits(n=48, batch_size=8, fail_at=3)  # examples 0..23 readable, then it raises, every time
    vis = make_visualizer(dataset=data, max_cached_examples=64)
    with serving(vis) as url:
        ok = requests.post(url + "/api/v1/examples", json={"method": "Saliency", "page": 2, "page_size": 8}, timeout=60)
        assert ok.status_code == 200 and [e["id"] for e in ok.json()["examples"]] == list(range(16, 24))
        for body in ({"page": 3, "page_size": 8}, {"filter": {"prediction": "correct"}, "page": 5, "page_size": 8}):
            bad = requests.post(url + "/api/v1/examples", json=dict(body, method="Saliency"), timeout=60)
            assert bad.status_code == 500 and bad.headers["Content-Type"].startswith("application/json")
            msg = bad.json()["error"]
            assert "OSError" in msg and "cannot read shard 3" in msg and "Traceback" not in bad.text
        bad = requests.post(
            url + "/api/v1/examples", json={"method": "Saliency", "page": 3, "page_size": 8, "stream": True}, timeout=60
        )
        events = ndjson_events(bad.content)
        assert events[-1]["type"] == "error" and "cannot read shard 3" in events[-1]["error"]
        bad = requests.post(url + "/api/v1/attribute", json={"example_id": 30}, timeout=60)
        assert bad.status_code == 500 and "cannot read shard 3" in bad.json()["error"]
        assert data.raised >= 4
        assert_served(url)
        again = requests.post(
            url + "/api/v1/examples", json={"method": "Saliency", "page": 2, "page_size": 8}, timeout=60
        )
        assert again.json()["examples"] == ok.json()["examples"]


def test_a_transient_dataset_failure_heals_on_the_next_request():
    data = FailingDigits(n=48, batch_size=8, fail_at=2, failures=1)  # fails once, then reads fine
    client = create_app(make_visualizer(dataset=data, max_cached_examples=64)).test_client()
    first = client.post("/api/v1/examples", json={"method": "Saliency", "page": 2, "page_size": 8})
    assert first.status_code == 500 and "cannot read shard 2" in first.get_json()["error"]
    second = client.post("/api/v1/examples", json={"method": "Saliency", "page": 2, "page_size": 8})
    assert second.status_code == 200 and [e["id"] for e in second.get_json()["examples"]] == list(range(16, 24))


def test_a_dataset_yielding_garbage_is_a_json_error():
    class Garbage:
        def __iter__(self):
            yield from Digits(n=8).batches
            yield {"not": "a batch"}

    client = create_app(make_visualizer(dataset=Garbage())).test_client()
    bad = client.post("/api/v1/examples", json={"page": 1, "page_size": 8, "method": "Saliency"})
    assert bad.status_code == 500 and "must yield insights_app.Batch" in bad.get_json()["error"]
    good = client.post("/api/v1/examples", json={"page_size": 8, "method": "Saliency"})
    assert good.status_code == 200 and len(good.get_json()["examples"]) == 8


# ------------------------------------------------------------------ a corrupt image file


def test_corrupt_image_files_are_skipped_with_a_warning(tmp_path: Path, caplog):
    from PIL import Image

    from data_adapters import from_folder

    x, y = digits(12)
    for i in range(12):
        folder = tmp_path / str(int(y[i]))
        folder.mkdir(exist_ok=True)
        Image.fromarray((x[i, 0].numpy() * 255).astype(np.uint8)).save(folder / f"img{i:02d}.png")
    (tmp_path / "3" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)  # a header, then noise
    good = (tmp_path / "0" / "img00.png").read_bytes()
    (tmp_path / "5" / "truncated.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "7" / "empty.jpg").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        vis = from_folder(tmp_path, make_model(), classes=CLASSES, channels=1)
        with serving(vis) as url:
            r = requests.post(url + "/api/v1/examples", json={"method": "Saliency", "page_size": 32}, timeout=60)
            assert r.status_code == 200
            examples = r.json()["examples"]
            assert len(examples) == 12  # every readable image, and only those
            assert all(m["error"] is None for e in examples for m in e["models"])
            assert sorted(e["label"]["index"] for e in examples) == sorted(int(v) for v in y)
            assert_served(url)
    skipped = {p.name for p in vis.store.dataset.skipped}
    assert skipped == {"corrupt.png", "truncated.png", "empty.jpg"}
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert all(name in warned for name in skipped)


# ------------------------------------------------------------------ a client that disconnects mid-request


def test_clients_that_disconnect_mid_request_do_not_hurt_the_server():
    vis = make_visualizer(dataset=Digits(n=48))
    with serving(vis, threads=4) as url:
        port = int(url.rsplit(":", 1)[1])
        slow_page = b'{"method": "IntegratedGradients", "arguments": {"n_steps": 400}, "page_size": 48, "stream": true}'
        head = (
            b"POST /api/v1/examples HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n"
        )
        # 1. The body never arrives in full: a half-sent request, then the connection drops.
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(head % 1000 + b'{"page": ')
        # 2. A slow streamed page: hang up after the first line, and without reading anything.
        for read_first_line in (True, False, True):
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                s.sendall(head % len(slow_page) + slow_page)
                if read_first_line:
                    buf = b""
                    while b"\n{" not in buf:
                        chunk = s.recv(4096)
                        assert chunk, "the server closed the connection"
                        buf += chunk
                    assert b'"type": "page"' in buf
        # 3. A request line and nothing else; a garbage request line.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /api/v1/config HTTP/1.1\r\n")
        answer = raw_http(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", timeout=5)
        assert not answer or answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0]
        # The server answers everything else, promptly, with correct results.
        t0 = time.monotonic()
        assert_served(url)
        page = requests.post(
            url + "/api/v1/examples",
            json={"method": "IntegratedGradients", "arguments": {"n_steps": 400}, "page_size": 4},
            timeout=120,
        )
        assert page.status_code == 200 and all(m["error"] is None for e in page.json()["examples"] for m in e["models"])
        assert time.monotonic() - t0 < 90


def test_a_one_shot_generator_that_raised_keeps_saying_so():
    """After a generator raised at example 16, every read past it says so (not 'the dataset is empty')."""

    def generator():
        yield from Digits(n=16, batch_size=8).batches
        raise OSError("the tape broke")

    client = create_app(make_visualizer(dataset=generator())).test_client()
    first = client.post("/api/v1/examples", json={"method": "Saliency", "page": 2, "page_size": 8})
    assert first.status_code == 500 and "after example 16: the tape broke" in first.get_json()["error"]
    for body in (
        {"page": 2, "page_size": 8},
        {"page": 5, "page_size": 8},
        {"filter": {"prediction": "correct"}, "page": 3, "page_size": 8},
    ):
        again = client.post("/api/v1/examples", json=dict(body, method="Saliency"))
        assert again.status_code == 500 and "after example 16: the tape broke" in again.get_json()["error"], body
    stream = ndjson_events(
        client.post("/api/v1/examples", json={"method": "Saliency", "page": 2, "page_size": 8, "stream": True}).data
    )
    assert stream[-1]["type"] == "error" and "the tape broke" in stream[-1]["error"]
    ok = client.post("/api/v1/examples", json={"method": "Saliency", "page": 1, "page_size": 8})
    assert ok.status_code == 200 and [e["id"] for e in ok.get_json()["examples"]] == list(range(8, 16))
