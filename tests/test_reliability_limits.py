"""Resource limits: no single request can run for hours or exhaust memory.

The work of a request is bounded in model evaluations (per example: the method's declared
cost, at most MAX_EVALS_PER_EXAMPLE; per page: PAGE_SIZE_MAX examples; per filter scan:
max_scan examples), in bytes (bounded caches, a body limit, images shrunk to
MAX_DISPLAY_SIDE), and these bounds are published where clients read them. The cost model
is checked against the model evaluations captum really makes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from reliability_helpers import CLASSES, Digits, digits, make_visualizer

from insights_app import Batch
from insights_app.cache import LRUCache
from insights_app.errors import ValidationError
from insights_app.limits import MAX_BODY_BYTES, MAX_DISPLAY_SIDE, MAX_EVALS_PER_EXAMPLE, PAGE_SIZE_MAX, TOP_K_MAX
from insights_app.methods import build_registry
from insights_app.testing import TinyCNN
from insights_app.transport.server import create_app

METHODS = list(build_registry())


class CountingCNN(TinyCNN):
    """Counts the examples (rows) that go through the model, i.e. the model evaluations."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        super().__init__()
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += int(x.shape[0])
        return super().forward(x)


def most_expensive_arguments(spec: Any, hw: tuple) -> dict[str, Any]:
    """The costliest arguments validation accepts for this image size (every knob at its top)."""
    args: dict[str, Any] = {}
    for p in spec.params:
        if p.type == "shape":
            args[p.name] = [1, 1]
        elif p.name == "patch":
            args[p.name] = 1
        elif p.type == "int" and p.maximum is not None and p.name != "seed":
            args[p.name] = int(p.maximum)  # perturbations_per_eval too: the largest batches, the most memory
    while True:
        try:
            spec.validate(args, hw)
            return args
        except ValidationError as exc:
            assert "forward passes" in str(exc), exc
            name = max(
                (k for k, v in args.items() if isinstance(v, int) and k not in ("patch", "perturbations_per_eval")),
                key=lambda k: args[k],
            )
            args[name] = max(1, int(args[name] * 0.9))


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_the_costliest_accepted_request_stays_within_the_evaluation_bound(method):
    model = CountingCNN().eval()
    vis = make_visualizer(model, Digits(n=4, batch_size=4))
    client = create_app(vis).test_client()
    vis.predictions(vis.store.get_many(range(4)))  # predictions cached: what is counted below is attribution
    spec = vis.methods[method]
    args = most_expensive_arguments(spec, vis.image_hw)
    declared = spec.cost(spec.validate(args, vis.image_hw), vis.image_hw)
    assert declared <= MAX_EVALS_PER_EXAMPLE
    model.rows = 0
    t0 = time.perf_counter()
    r = client.post("/api/v1/examples", json={"method": method, "arguments": args, "page_size": 4})
    elapsed = time.perf_counter() - t0
    assert r.status_code == 200, r.get_data(as_text=True)[:300]
    assert all(m["error"] is None for e in r.get_json()["examples"] for m in e["models"])
    per_example = model.rows / 4
    assert per_example >= declared  # the count is real: the bound below is not vacuous
    # Declared cost counts forward passes; DeepLift-style methods run input and baseline together
    # (2 rows) and perturbation methods add one unperturbed pass.
    assert per_example <= 2 * declared + 1, (method, args, declared, per_example)
    print(f"{method}: {args} -> {per_example:.0f} evaluations per example (declared {declared}), {elapsed:.2f}s")


@pytest.mark.parametrize("method", METHODS)
def test_declared_cost_matches_the_evaluations_at_default_arguments(method):
    model = CountingCNN().eval()
    vis = make_visualizer(model, Digits(n=8, batch_size=8))
    spec = vis.methods[method]
    params = spec.validate({}, vis.image_hw)
    examples = vis.store.get_many(range(8))
    vis.predictions(examples)  # predictions cached: what is counted below is attribution
    model.rows = 0
    vis.engines[0].run(examples, spec, params, [3] * 8)
    declared = spec.cost(params, vis.image_hw)
    assert declared <= model.rows / 8 <= 2 * declared + 1


@pytest.mark.parametrize(
    "method,arguments",
    [
        ("IntegratedGradients", {"n_steps": 1001}),
        ("NoiseTunnel(Saliency)", {"nt_samples": 201}),
        ("NoiseTunnel(IntegratedGradients)", {"nt_samples": 200, "n_steps": 101}),
        ("GradientShap", {"n_samples": 501}),
        ("DeepLiftShap", {"n_baselines": 65}),
        ("ShapleyValueSampling", {"n_samples": 101}),
        ("Occlusion", {"perturbations_per_eval": 513}),
        ("Occlusion", {"window": [4097, 1]}),
    ],
)
def test_arguments_beyond_a_bound_are_refused(method, arguments):
    client = create_app(make_visualizer(dataset=Digits(n=8))).test_client()
    r = client.post("/api/v1/examples", json={"method": method, "arguments": arguments, "page_size": 1})
    assert r.status_code == 400 and "arguments" in r.get_json()["error"]


def test_evaluation_bound_scales_with_the_image_size():
    """Occlusion with a 1-pixel window is fine on 8x8 digits and refused on a 224x224 photo."""
    spec = build_registry()["Occlusion"]
    assert spec.cost(spec.validate({"window": [1, 1], "stride": [1, 1]}, (8, 8)), (8, 8)) == 64
    with pytest.raises(ValidationError, match="forward passes"):
        spec.validate({"window": [1, 1], "stride": [1, 1]}, (224, 224))
    shap = build_registry()["ShapleyValueSampling"]
    with pytest.raises(ValidationError, match="forward passes"):
        shap.validate({"patch": 1, "n_samples": 100}, (64, 64))


class EndlessDigits:
    """A dataset that never ends, every label 0: a filter for another label never matches."""

    def __init__(self) -> None:
        self.pulled = 0

    def __iter__(self) -> Iterator[Batch]:
        x, _ = digits(8)
        while True:
            self.pulled += 8
            yield Batch(x, torch.zeros(8, dtype=torch.long))


def test_a_filter_that_never_matches_scans_a_bounded_number_of_examples():
    data = EndlessDigits()
    vis = make_visualizer(dataset=data, max_scan=200, max_cached_examples=64)
    client = create_app(vis).test_client()
    body = {"method": "Saliency", "filter": {"classes": ["9"], "class_source": "label"}, "page_size": 4}
    for round_ in (1, 2):
        r = client.post("/api/v1/examples", json=body)
        page = r.get_json()["page"]
        assert r.status_code == 200 and page["ids"] == [] and page["has_next"] and not page["exhausted"]
        assert "scanned" in page["message"] and page["scanned"] == 200 * round_
        assert data.pulled <= 200 * round_ + 64  # read at most one batch beyond the bound


def test_page_size_and_top_k_bound_the_answer():
    vis = make_visualizer(dataset=Digits(n=PAGE_SIZE_MAX + 16, batch_size=16))
    r = (
        create_app(vis)
        .test_client()
        .post("/api/v1/examples", json={"method": "Saliency", "page_size": PAGE_SIZE_MAX, "top_k": TOP_K_MAX})
    )
    examples = r.get_json()["examples"]
    assert len(examples) == PAGE_SIZE_MAX
    assert all(len(m["predictions"]) == min(TOP_K_MAX, len(CLASSES)) for e in examples for m in e["models"])


def test_result_cache_is_bounded_by_entries_and_bytes():
    cache = LRUCache(max_entries=5, max_bytes=1000)
    for i in range(50):
        cache.put(i, object(), size=150)
        assert len(cache) <= 5 and cache.nbytes <= 1000
    assert len(cache) == 5 and cache.get(49) is not None and cache.get(0) is None
    cache.put("huge", object(), size=5000)  # larger than the whole budget: not kept, nothing evicted
    assert cache.get("huge") is None and len(cache) == 5
    vis = make_visualizer(dataset=Digits(n=48), cache_entries=10)
    client = create_app(vis).test_client()
    for page in range(6):
        client.post("/api/v1/examples", json={"method": "Saliency", "page": page, "page_size": 8})
    results = vis.engines[0].results
    assert len(results) == 10 and results.nbytes <= results.max_bytes
    assert results.max_bytes <= 512 * 2**20


@pytest.mark.parametrize("h,w", [(1500, 700), (700, 2000), (513, 513)])
def test_large_images_are_sent_at_most_max_display_side(h, w):
    import base64
    import io

    from PIL import Image

    g = torch.Generator().manual_seed(0)
    data = [Batch(torch.rand(2, 3, h, w, generator=g), torch.tensor([1, 2]))]
    torch.manual_seed(0)
    vis = make_visualizer(TinyCNN(in_channels=3).eval(), data)
    client = create_app(vis).test_client()
    r = client.post("/api/v1/examples", json={"method": "Saliency", "page_size": 2})
    assert r.status_code == 200
    expected = (round(h * MAX_DISPLAY_SIDE / max(h, w)), round(w * MAX_DISPLAY_SIDE / max(h, w)))
    for ex in r.get_json()["examples"]:
        images = [ex["features"][0]["original"], ex["models"][0]["attributions"][0]["image"]]
        for url in images:
            img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
            assert (img.height, img.width) == expected
    assert len(r.data) < 2 * 2 * MAX_DISPLAY_SIDE**2 * 4 * 4 / 3 + 100_000  # bounded whatever the input size
    cfg = create_app(vis).test_client().get("/api/v1/config").get_json()
    assert cfg["image_size"] == [h, w] and cfg["limits"]["max_display_side"] == MAX_DISPLAY_SIDE


def test_small_images_are_sent_at_their_own_size():
    import base64
    import io

    from PIL import Image

    r = (
        create_app(make_visualizer(dataset=Digits(n=8)))
        .test_client()
        .post("/api/v1/examples", json={"method": "Saliency", "page_size": 1})
    )
    ex = r.get_json()["examples"][0]
    for url in (ex["features"][0]["original"], ex["models"][0]["attributions"][0]["image"]):
        assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size == (8, 8)


def test_shrunk_maps_keep_sign_and_mass():
    from insights_app.page.render import shrink_map

    rng = np.random.default_rng(0)
    attr = rng.normal(size=(1024, 2048)).astype(np.float32)
    attr[:512, :1024] += 3.0  # a strongly positive quadrant
    small = shrink_map(attr)
    assert small.shape == (256, 512)
    assert abs(float(small.mean()) - float(attr.mean())) < 1e-3
    assert small[:128, :256].min() > 1.5 and small[128:, 256:].mean() < 0.5


def test_the_limits_are_published():
    vis = make_visualizer(dataset=Digits(n=8))
    client = create_app(vis).test_client()
    limits = client.get("/api/v1/config").get_json()["limits"]
    assert limits == {
        "page_size_max": PAGE_SIZE_MAX,
        "top_k_max": TOP_K_MAX,
        "max_scan": vis.max_scan,
        "max_evals_per_example": MAX_EVALS_PER_EXAMPLE,
        "max_display_side": MAX_DISPLAY_SIDE,
    }
    doc = client.get("/api/v1/openapi.json").get_json()
    assert str(MAX_BODY_BYTES) not in json.dumps(limits)  # the body limit is a server setting (413)
    args = doc["paths"]["/api/v1/examples"]["post"]["requestBody"]["content"]["application/json"]["schema"][
        "properties"
    ]["arguments"]["properties"]
    assert args["n_steps"]["maximum"] == 1000 and args["nt_samples"]["maximum"] == 200


def test_reading_forward_is_bounded_like_a_scan():
    """On a dataset that never ends, a page a million pages ahead or an example id of 2**40 is an answer
    at once, saying how far the dataset has been read, not minutes at 100 % CPU."""
    data = EndlessDigits()
    vis = make_visualizer(dataset=data, max_scan=200, max_cached_examples=64)
    client = create_app(vis).test_client()
    t0 = time.monotonic()
    far = client.post("/api/v1/examples", json={"method": "Saliency", "page": 1_000_000, "page_size": 4})
    assert far.status_code == 200
    page = far.get_json()["page"]
    assert page["ids"] == [] and not page["exhausted"] and "read so far" in page["message"]
    one = client.post("/api/v1/attribute", json={"example_id": 2**40})
    assert one.status_code == 400 and one.get_json()["error"].startswith("example_id:")
    assert "read so far" in one.get_json()["error"]
    assert time.monotonic() - t0 < 10 and data.pulled <= 400
    near = client.post("/api/v1/examples", json={"method": "Saliency", "page": 40, "page_size": 4})  # example 160
    assert [e["id"] for e in near.get_json()["examples"]] == [160, 161, 162, 163]


class SlowEndlessDigits(EndlessDigits):
    """Endless, and each batch takes 50 ms to read (a network share)."""

    def __iter__(self) -> Iterator[Batch]:
        for batch in super().__iter__():
            time.sleep(0.05)
            yield batch


def test_reading_forward_does_not_block_pages_already_read():
    import threading

    data = SlowEndlessDigits()
    vis = make_visualizer(dataset=data, max_scan=1000, max_cached_examples=2000)
    client = create_app(vis).test_client()
    assert client.post("/api/v1/examples", json={"method": "Saliency", "page_size": 4}).status_code == 200
    far = threading.Thread(
        target=lambda: (
            create_app(vis).test_client().post("/api/v1/attribute", json={"example_id": 990, "method": "Saliency"})
        )
    )  # ~120 batches: ~6 s of reading
    far.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    again = client.post("/api/v1/examples", json={"method": "Saliency", "page_size": 4})
    waited = time.monotonic() - t0
    far.join(60)
    assert again.status_code == 200 and waited < 2.0, waited


def test_the_cost_bound_holds_for_each_example_at_its_own_size():
    """The first images are 8x8, later ones 160x160: a 1x1 occlusion window is 64 passes on the first
    (accepted) and 25,600 on the others, which get the error; a page mixing sizes is computed per size."""
    g = torch.Generator().manual_seed(0)
    data = [
        Batch(torch.rand(4, 1, 8, 8, generator=g), torch.tensor([0, 1, 2, 3])),
        Batch(torch.rand(4, 1, 160, 160, generator=g), torch.tensor([4, 5, 6, 7])),
    ]
    vis = make_visualizer(dataset=data)
    client = create_app(vis).test_client()
    r = client.post(
        "/api/v1/examples",
        json={"method": "Occlusion", "page_size": 8, "arguments": {"window": [1, 1], "stride": [1, 1]}},
    )
    assert r.status_code == 200, r.get_data(as_text=True)[:300]
    errors = [e["models"][0]["error"] for e in r.get_json()["examples"]]
    assert errors[:4] == [None] * 4
    assert (
        errors[4:] == ["arguments: Occlusion would cost 25600 forward passes per example at 160x160 (limit 20000)"] * 4
    )
    assert all(e["models"][0]["predictions"] for e in r.get_json()["examples"])  # still predicted
    mixed = client.post("/api/v1/examples", json={"method": "Saliency", "page_size": 8})
    assert mixed.status_code == 200
    assert [e["models"][0]["error"] for e in mixed.get_json()["examples"]] == [None] * 8
    sizes = [e["features"][0]["original"] for e in mixed.get_json()["examples"]]
    assert len(set(sizes)) == 8
    scan = client.post(
        "/api/v1/examples", json={"method": "Saliency", "page_size": 8, "filter": {"prediction": "incorrect"}}
    )
    assert scan.status_code == 200
