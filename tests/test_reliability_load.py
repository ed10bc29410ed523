"""Load: 20 concurrent clients on 127.0.0.1 for a bounded time, mixing every kind of request.

Every answer under load must be exactly the answer the same request gets alone (from a fresh
server that has seen nothing else), there must be no error at all, and memory must stay
bounded: the result cache is made small so that results are evicted and recomputed all the
time, which is what a long session over a large dataset does.
"""

from __future__ import annotations

import gc
import json
import random
import threading
import time
from typing import Any

import psutil
import pytest
import requests
from reliability_helpers import (
    Digits,
    answer_differences,
    digits,
    make_model,
    make_visualizer,
    ndjson_events,
    serving,
    without_timing,
)

from insights_app.dataset import ExampleBatch
from insights_app.transport.server import create_app

CLIENTS = 20
DURATION_S = 20.0
MAX_REQUESTS_PER_CLIENT = 60
CACHE_ENTRIES = 16

# (method, path, body): page fetches (plain and streamed, filtered), re-attributions, config reads.
REQUESTS: list[tuple[str, str, Any]] = [
    ("GET", "/api/v1/config", None),
    ("GET", "/api/v1/health", None),
    ("POST", "/api/v1/examples", {"method": "Saliency", "page": 0, "page_size": 8}),
    (
        "POST",
        "/api/v1/examples",
        {"method": "IntegratedGradients", "arguments": {"n_steps": 8}, "page": 1, "page_size": 6},
    ),
    (
        "POST",
        "/api/v1/examples",
        {
            "method": "Occlusion",
            "arguments": {"window": [2, 2], "stride": [2, 2]},
            "page": 2,
            "page_size": 5,
            "stream": True,
        },
    ),
    (
        "POST",
        "/api/v1/examples",
        {"method": "LayerGradCam", "page": 0, "page_size": 4, "visualization": {"method": "heat_map", "sign": "all"}},
    ),
    (
        "POST",
        "/api/v1/examples",
        {"method": "NoiseTunnel(Saliency)", "arguments": {"nt_samples": 4, "seed": 3}, "page": 3, "page_size": 4},
    ),
    (
        "POST",
        "/api/v1/examples",
        {"method": "GradientShap", "arguments": {"n_samples": 5, "seed": 1}, "page": 1, "page_size": 4, "stream": True},
    ),
    (
        "POST",
        "/api/v1/examples",
        {"method": "DeepLift", "filter": {"prediction": "incorrect"}, "page": 0, "page_size": 4},
    ),
    (
        "POST",
        "/api/v1/examples",
        {
            "method": "Saliency",
            "filter": {"classes": ["3", "7"], "class_source": "label"},
            "page": 0,
            "page_size": 3,
            "top_k": 2,
        },
    ),
    (
        "POST",
        "/api/v1/attribute",
        {"example_id": 5, "model": 1, "target": "2", "method": "IntegratedGradients", "arguments": {"n_steps": 6}},
    ),
    ("POST", "/api/v1/attribute", {"example_id": 17, "model": 0, "target": 9, "method": "GuidedBackprop"}),
    (
        "POST",
        "/api/v1/attribute",
        {
            "example_id": 30,
            "model": 1,
            "method": "ShapleyValueSampling",
            "arguments": {"n_samples": 2, "patch": 2, "seed": 5},
        },
    ),
    (
        "POST",
        "/api/v1/attribute",
        {
            "example_id": 40,
            "model": 0,
            "target": 1,
            "method": "NoiseTunnel(Saliency)",
            "arguments": {"nt_samples": 3, "seed": 9},
        },
    ),
]


def fresh_visualizer():
    # Two models: each computes under its own lock, so both compute at the same time under load.
    return make_visualizer(
        [make_model(0), make_model(1)], Digits(n=48, batch_size=8), cache_entries=CACHE_ENTRIES, max_cached_examples=24
    )


def normalized(mimetype: str, body: bytes) -> Any:
    data = ndjson_events(body) if mimetype == "application/x-ndjson" else json.loads(body)
    return without_timing(data)


def answers_alone() -> list[Any]:
    """Each request sent alone to its own fresh server: the reference answers."""
    out = []
    for method, path, body in REQUESTS:
        client = create_app(fresh_visualizer()).test_client()
        resp = client.open(path, method=method, json=body)
        assert resp.status_code == 200, (path, body, resp.get_data(as_text=True)[:300])
        out.append(normalized(resp.mimetype, resp.get_data()))
    return out


@pytest.mark.slow
def test_twenty_concurrent_clients_get_what_each_request_gets_alone():
    expected = answers_alone()
    vis = fresh_visualizer()
    proc = psutil.Process()
    errors: list[str] = []
    counts: dict[int, int] = {}
    lock = threading.Lock()
    with serving(vis, threads=8) as url:
        with requests.Session() as s:  # warm up: imports, first allocations
            for method, path, body in REQUESTS:
                s.request(method, url + path, json=body, timeout=60).raise_for_status()
        gc.collect()
        rss_before = proc.memory_info().rss
        start = threading.Barrier(CLIENTS)
        deadline = time.monotonic() + DURATION_S

        def client(cid: int) -> None:
            rng = random.Random(cid)
            done = 0
            with requests.Session() as s:
                start.wait()
                while time.monotonic() < deadline and done < MAX_REQUESTS_PER_CLIENT:
                    i = rng.randrange(len(REQUESTS))
                    method, path, body = REQUESTS[i]
                    try:
                        r = s.request(method, url + path, json=body, timeout=120)
                        if r.status_code != 200:
                            raise AssertionError(f"HTTP {r.status_code}: {r.text[:200]}")
                        diff = answer_differences(
                            expected[i], normalized(r.headers["Content-Type"].split(";")[0], r.content)
                        )
                        if diff:
                            raise AssertionError(f"answer differs from the same request made alone: {diff[:3]}")
                    except Exception as exc:  # collected and reported below, with the request
                        with lock:
                            errors.append(f"client {cid}, request {i} {path} {body}: {exc}")
                    done += 1
            with lock:
                counts[cid] = done

        threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(CLIENTS)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(DURATION_S + 120)
        elapsed = time.monotonic() - t0
        gc.collect()
        rss_after = proc.memory_info().rss
        with requests.Session() as s:  # still serving after the storm
            assert s.get(url + "/api/v1/health", timeout=10).json() == {"status": "ok"}
    total = sum(counts.values())
    print(
        f"\n{total} requests from {CLIENTS} clients in {elapsed:.1f}s; RSS {rss_before / 2**20:.0f} -> "
        f"{rss_after / 2**20:.0f} MiB; result caches {[len(e.results) for e in vis.engines]}"
    )
    assert not any(t.is_alive() for t in threads), "a client is stuck"
    assert len(counts) == CLIENTS and total >= CLIENTS * 3, counts
    assert not errors, f"{len(errors)} of {total} failed; first: " + "\n".join(errors[:5])
    for engine in vis.engines:  # the bounds held
        assert len(engine.results) <= CACHE_ENTRIES and engine.results.nbytes <= engine.results.max_bytes
        assert engine.results.misses > CACHE_ENTRIES  # evicted and recomputed under load, not all served cached
    assert len(vis.store._cache) <= 24
    assert rss_after - rss_before < 200 * 2**20, f"memory grew by {(rss_after - rss_before) / 2**20:.0f} MiB"


@pytest.mark.parametrize(
    "method,arguments",
    [
        ("NoiseTunnel(Saliency)", {"nt_samples": 4, "seed": 7}),
        ("GradientShap", {"n_samples": 5, "seed": 3}),
        ("ShapleyValueSampling", {"n_samples": 2, "patch": 2, "seed": 11}),
    ],
)
def test_a_randomized_map_depends_only_on_the_example_and_the_seed(method, arguments):
    """The same map whatever the batch-mates, cached or not, page or re-attribution, and as captum alone."""
    import numpy as np
    import torch
    from captum.attr import GradientShap, NoiseTunnel, Saliency

    x, _ = digits(8)
    maps = []
    for ids in ([0, 1, 2, 3, 4, 5, 6, 7], [5], [1, 5, 2]):
        vis = make_visualizer(make_model(0), Digits(n=16))
        spec = vis.methods[method]
        params = spec.validate(arguments, vis.image_hw)
        results = vis.engines[0].run(ExampleBatch(ids, (x[ids],)), spec, params, [3] * len(ids))
        maps.append(results[ids.index(5)].explanation.maps[0])
    assert np.array_equal(maps[0], maps[1]) and np.array_equal(maps[1], maps[2])
    if method == "ShapleyValueSampling":
        return
    model = make_model(0)
    torch.manual_seed(arguments["seed"])
    np.random.seed(arguments["seed"])
    if method == "NoiseTunnel(Saliency)":
        want = NoiseTunnel(Saliency(model)).attribute(
            x[5:6], target=3, nt_type="smoothgrad", nt_samples=4, stdevs=0.15, abs=True, nt_samples_batch_size=4
        )
    else:
        base = torch.zeros((8,) + tuple(x.shape[1:]))  # the "zeros" baseline distribution, 8 baselines
        want = GradientShap(model).attribute(x[5:6], baselines=base, target=3, n_samples=5, stdevs=0.0)
    assert np.allclose(want[0].sum(0).detach().numpy(), maps[0], atol=1e-6)
