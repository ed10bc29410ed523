"""The server under the pressure an adversarial pass put on it: stopping mid-computation, a slow model,
clients that hang up, huge bodies, idle sockets, and the errors waitress answers itself.

Every server listens on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import torch
from reliability_helpers import CLASSES, raw_http, serving, status_of

from insights_app import AttributionVisualizer, Batch
from insights_app.features import ImageFeature
from insights_app.limits import MAX_BODY_BYTES
from insights_app.testing import SlowNet, seeded

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


class CountingSlowNet(SlowNet):
    """SlowNet that counts its forward passes."""

    def __init__(self, delay: float) -> None:
        super().__init__(delay)
        self.passes = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.passes += 1
        return super().forward(x)


def slow_visualizer(delay: float, **kwargs) -> AttributionVisualizer:
    torch.manual_seed(0)
    data = [Batch(torch.rand(8, 1, 12, 12), torch.randint(0, 10, (8,))) for _ in range(4)]
    return AttributionVisualizer(
        seeded(CountingSlowNet, delay),
        CLASSES,
        [ImageFeature("img")],
        data,
        score_func=lambda o: o.softmax(1),
        **kwargs,
    )


# ---------------------------------------------------------------------- stopping


def _image_folder(root: Path, n: int = 16, side: int = 96) -> Path:
    from PIL import Image

    folder = root / "images" / "a"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((side, side, 3)) * 255).astype("uint8")).save(folder / f"{i}.png")
    return root / "images"


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_while_pages_compute_exits_0_cleanly(tmp_path, signum):
    """Ten streamed pages keep torch busy; the signal stops the server, cancels them and exits 0
    (before: waitress 'Bad file descriptor' tracebacks, then 'terminate called without an active
    exception' and SIGABRT)."""
    data = _image_folder(tmp_path)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-u",
            str(ROOT / "launch.py"),
            "--model",
            "launch_helpers:busy_net",
            "--data",
            str(data),
            "--labels",
            "none",
            "--port",
            "0",
        ],
        cwd=TESTS,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: [lines.append(line) for line in proc.stdout], daemon=True).start()
    try:
        deadline = time.monotonic() + 120
        while not any("running at" in line for line in lines):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
        url = re.search(r"(http://\S+)", "".join(lines)).group(1)

        def page() -> None:
            try:
                requests.post(
                    url + "api/v1/examples",
                    timeout=60,
                    json={
                        "method": "IntegratedGradients",
                        "arguments": {"n_steps": 32},
                        "page_size": 8,
                        "stream": True,
                    },
                )
            except requests.RequestException:
                pass

        for _ in range(10):
            threading.Thread(target=page, daemon=True).start()
        time.sleep(3)
        t0 = time.monotonic()
        proc.send_signal(signum)
        code = proc.wait(timeout=30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.3)
    output = "".join(lines)
    assert code == 0, output[-2000:]
    assert took < 15
    for bad in ("Traceback", "Bad file descriptor", "terminate called", "Exception"):
        assert bad not in output, output[-2000:]
    assert output.rstrip().endswith("stopped")


def test_vis_stop_cancels_what_computes_and_waits_for_the_models():
    vis = slow_visualizer(0.2, internal_batch_size=2)
    port = vis.serve(quiet=True)

    def page() -> None:
        try:
            requests.post(
                f"http://127.0.0.1:{port}/api/v1/examples",
                timeout=60,
                json={"method": "IntegratedGradients", "arguments": {"n_steps": 16}, "page_size": 8},
            )
        except requests.RequestException:  # the server stops under it
            pass

    threading.Thread(target=page).start()
    time.sleep(1.0)
    model = vis.models[0]
    assert model.passes > 0  # it was computing
    t0 = time.monotonic()
    assert vis.stop(timeout=10) is True
    assert time.monotonic() - t0 < 5
    passes = model.passes
    time.sleep(1.0)
    assert model.passes == passes  # nothing computes any more
    assert passes < 8 * 16 // 2  # far from the whole page (64 passes)


# ---------------------------------------------------------------------- a slow model


def test_health_and_config_answer_while_a_slow_model_is_busy_and_extra_work_is_refused():
    """24 pages of a model that takes a second per pass, served by two threads: 2 computing, 16 waiting,
    the rest refused at once; health, config and the page never wait."""
    vis = slow_visualizer(1.0)
    answers: list[requests.Response] = []
    with serving(vis, threads=2) as url:

        def page(i: int) -> None:
            try:
                answers.append(
                    requests.post(
                        url + "/api/v1/examples", timeout=60, json={"method": "Saliency", "page": i % 4, "page_size": 8}
                    )
                )
            except requests.RequestException:  # cancelled when the server stops
                pass

        workers = [threading.Thread(target=page, args=(i,)) for i in range(24)]
        for w in workers:
            w.start()
        time.sleep(2.0)
        for path in ("/api/v1/health", "/api/v1/config", "/"):
            t0 = time.monotonic()
            assert requests.get(url + path, timeout=5).status_code == 200
            assert time.monotonic() - t0 < 1.0, path
        refused = [r for r in answers if r.status_code == 503]
        assert len(refused) >= 5, [r.status_code for r in answers]
        assert all(
            r.json()["error"].startswith("the server is busy: 16 requests are waiting for the models") for r in refused
        )
    for w in workers:  # stopping the server cancelled the rest
        w.join(30)
    assert not any(w.is_alive() for w in workers)


def _hang_up_after(port: int, body: dict, seconds: float) -> None:
    data = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            b"POST /api/v1/examples HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(data), data)
        )
        time.sleep(seconds)


@pytest.mark.parametrize(
    "stream, method",
    [(False, "IntegratedGradients"), (True, "IntegratedGradients"), (False, "DeepLiftShap")],
    ids=["json", "stream", "module-method"],
)
def test_a_client_that_hangs_up_cancels_the_work_it_asked_for(stream, method):
    """Integrated Gradients runs the forward function many times per captum call (asked before each pass);
    DeepLift SHAP runs the module itself, one pass per call (asked before each call)."""
    vis = slow_visualizer(0.1, internal_batch_size=2)
    model = vis.models[0]
    with serving(vis) as url:
        port = int(url.rsplit(":", 1)[1])
        arguments = {"n_steps": 16} if method == "IntegratedGradients" else {"n_baselines": 64}
        body = {"method": method, "arguments": arguments, "page_size": 8, "stream": stream}
        _hang_up_after(port, body, 1.0)  # the whole page is 1 + 8 * 8 = 65 passes: 6.5 s
        time.sleep(0.5)
        passes = model.passes
        assert vis.engines[0].compute.wait_idle(5)
        assert model.passes <= passes + 1 and model.passes < 30, model.passes
        assert requests.get(url + "/api/v1/health", timeout=5).status_code == 200


def test_requests_without_the_token_never_wait_for_a_model():
    """While the one model thread computes, 24 requests without the token are refused at once (401) and do
    not take the queue's places: a request with the token, sent meanwhile, waits and is answered."""
    vis = slow_visualizer(3.0)
    auth = {"Authorization": "Bearer s3cret"}
    body = {"method": "Saliency", "page_size": 8}
    with serving(vis, threads=1, token="s3cret") as url:
        first: list[int] = []
        busy = threading.Thread(
            target=lambda: first.append(
                requests.post(url + "/api/v1/examples", json=body, headers=auth, timeout=60).status_code
            )
        )
        busy.start()
        time.sleep(0.5)
        anonymous: list[float] = []

        def knock() -> None:
            t0 = time.monotonic()
            status = requests.post(url + "/api/v1/examples", json=body, timeout=30).status_code
            anonymous.append(time.monotonic() - t0 if status == 401 else float("inf"))

        flood = [threading.Thread(target=knock) for _ in range(24)]
        for t in flood:
            t.start()
        time.sleep(0.3)
        second = requests.post(url + "/api/v1/examples", json=dict(body, page=1), headers=auth, timeout=60)
        for t in flood:
            t.join(30)
        busy.join(60)
    assert len(anonymous) == 24 and max(anonymous) < 1.5, anonymous
    assert second.status_code == 200, second.text
    assert first == [200]


def test_queued_work_per_model_is_bounded():
    from insights_app.engine.worker import ComputeThread
    from insights_app.errors import Busy

    thread = ComputeThread("insights-app compute: slow", max_waiting=2)
    release = threading.Event()
    results: list[str] = []

    def submit() -> None:
        try:
            thread.run(release.wait, 10)
            results.append("ran")
        except Busy as exc:
            results.append(str(exc))

    callers = [threading.Thread(target=submit) for _ in range(5)]
    for c in callers:
        c.start()
        time.sleep(0.05)
    release.set()
    for c in callers:
        c.join(10)
    assert results.count("ran") == 3  # one running, two waiting
    assert [r for r in results if r != "ran"] == [
        "slow is busy: 2 computations are waiting for it; try again shortly"
    ] * 2
    thread.close()


# ---------------------------------------------------------------------- bodies, sockets, waitress's own errors


def test_a_body_over_the_limit_is_refused_from_its_length_before_it_is_sent():
    vis = slow_visualizer(0.0)
    with serving(vis) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(
                b"POST /api/v1/examples HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % (300 * 2**20) + b" " * 1024
            )
            t0 = time.monotonic()
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
            took = time.monotonic() - t0
        head, _, body = answer.partition(b"\r\n\r\n")
        assert status_of(answer) == 413 and took < 5
        assert b"application/json" in head
        assert json.loads(body)["error"] == f"request body too large (limit {MAX_BODY_BYTES} bytes)"


def test_idle_connections_do_not_keep_others_out():
    vis = slow_visualizer(0.0)
    with serving(vis) as url:
        port = int(url.rsplit(":", 1)[1])
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(150)]
        try:
            t0 = time.monotonic()
            assert requests.get(url + "/api/v1/health", timeout=5).status_code == 200
            assert time.monotonic() - t0 < 2
        finally:
            for s in idle:
                s.close()


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"GET /api/v1/config HTTP/1.1\r\nHost: localhost\r\nX: " + b"a" * 300_000 + b"\r\n\r\n", 431),
        (
            b"POST /api/v1/examples HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
            400,
        ),
        (b"POST /api/v1/examples HTTP/1.1\r\nHost: localhost\r\nContent-Length: -5\r\n\r\n", 400),
    ],
    ids=["headers-too-large", "bad-chunk", "bad-length"],
)
def test_errors_waitress_answers_itself_are_json(request_bytes, status):
    vis = slow_visualizer(0.0)
    with serving(vis) as url:
        answer = raw_http(int(url.rsplit(":", 1)[1]), request_bytes, timeout=10)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert status_of(answer) == status and b"Content-Type: application/json" in head, head
    message = json.loads(body)["error"]
    assert isinstance(message, str) and message and "Traceback" not in message
