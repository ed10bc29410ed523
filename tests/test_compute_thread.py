"""Each model's tensor work runs on one thread, whichever server thread asked for it."""

from __future__ import annotations

import gc
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import torch
from engine_helpers import RandomImages, make_model

from insights_app import AttributionVisualizer
from insights_app.engine.worker import ComputeThread
from insights_app.features import ImageFeature


def test_calls_run_on_one_thread_and_nested_calls_do_not_deadlock():
    worker = ComputeThread("test compute")
    seen = []

    def inner():
        seen.append(threading.current_thread().name)
        return 2

    def outer():
        seen.append(threading.current_thread().name)
        return worker.run(inner) + 1

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: worker.run(outer), range(8)))
    assert results == [3] * 8
    assert set(seen) == {"test compute"}
    worker.close()


def test_an_exception_reaches_the_caller_and_the_thread_goes_on():
    worker = ComputeThread("test compute")
    with pytest.raises(ValueError, match="bad input"):
        worker.run(lambda: (_ for _ in ()).throw(ValueError("bad input")))
    assert worker.run(lambda: 5) == 5
    worker.close()
    with pytest.raises(RuntimeError, match="closed"):
        worker.run(lambda: 5)


def test_the_thread_ends_when_its_visualizer_is_gone():
    vis = AttributionVisualizer(
        make_model(), [str(i) for i in range(10)], [ImageFeature("image")], RandomImages(n_batches=1, batch_size=4)
    )
    vis.page({"method": "Saliency", "page": 0, "page_size": 4})
    name = vis.engines[0].compute.name
    assert any(t.name == name for t in threading.enumerate())
    del vis
    gc.collect()
    deadline = time.monotonic() + 5
    while any(t.name == name for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(t.name == name for t in threading.enumerate())


def test_concurrent_requests_run_the_model_on_a_single_thread():
    model = make_model()
    vis = AttributionVisualizer(
        model, [str(i) for i in range(10)], [ImageFeature("image")], RandomImages(n_batches=4, batch_size=4)
    )
    threads = set()
    model.register_forward_hook(lambda *a: threads.add(threading.current_thread().name))
    port = vis.serve(port=0, quiet=True, threads=4)
    try:
        bodies = [
            {"method": m, "page": p, "page_size": 4} for m in ("Saliency", "IntegratedGradients") for p in range(4)
        ]
        with ThreadPoolExecutor(4) as pool:
            answers = list(
                pool.map(
                    lambda b: requests.post(f"http://127.0.0.1:{port}/api/v1/examples", json=b, timeout=60), bodies
                )
            )
        assert all(a.status_code == 200 for a in answers)
        assert all(ex["models"][0]["error"] is None for a in answers for ex in a.json()["examples"])
    finally:
        vis.stop()
    assert threads == {vis.engines[0].compute.name}
    assert torch.is_grad_enabled()
