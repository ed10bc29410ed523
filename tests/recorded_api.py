"""A recorded set of API requests and the answers they got, to hold the API to what it answered.

``python tests/recorded_api.py`` records every request below (through Flask's test client, so
no port is opened) and writes ``tests/data/recorded_api.json``; ``test_recorded_api.py``
replays them and compares. ``python tests/recorded_api.py --update /config`` records the
answers of one route again and keeps the others. Re-record only on purpose: the file is the
API's memory of how it answered, and a change to it is a change of behaviour that a commit
message has to explain.

The scenarios cover every route and method, filters, paging, visualization options, several
models and features, failing models and datasets, and the validation errors.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(__file__))

from reliability_helpers import (  # noqa: E402
    Digits,
    FailingDigits,
    make_faulty_model,
    make_model,
    make_visualizer,
    without_timing,
)

RECORDING = Path(__file__).with_name("data") / "recorded_api.json"
API = "/api/v1"
# Every method with its defaults, plus the arguments a user is most likely to change.
METHOD_ARGUMENTS: list[tuple[str, dict[str, Any]]] = [
    ("IntegratedGradients", {}),
    ("IntegratedGradients", {"n_steps": 7, "method": "riemann_left", "baseline": "blur"}),
    ("NoiseTunnel(IntegratedGradients)", {"nt_samples": 3, "n_steps": 4, "seed": 5}),
    ("NoiseTunnel(Saliency)", {}),
    ("NoiseTunnel(Saliency)", {"nt_type": "vargrad", "abs": False}),
    ("GradientShap", {}),
    ("GradientShap", {"baseline": "uniform", "n_baselines": 3, "stdevs": 0.1}),
    ("DeepLift", {}),
    ("DeepLift", {"baseline": "gaussian"}),
    ("DeepLiftShap", {}),
    ("Saliency", {}),
    ("Saliency", {"abs": False}),
    ("InputXGradient", {}),
    ("Deconvolution", {}),
    ("GuidedBackprop", {}),
    ("GuidedGradCam", {}),
    ("GuidedGradCam", {"layer": "conv1"}),
    ("LayerGradCam", {}),
    ("LayerGradCam", {"layer": "conv1", "relu_attributions": False}),
    ("Occlusion", {}),
    ("Occlusion", {"window": [3, 3], "stride": [2, 1], "baseline": "uniform"}),
    ("FeatureAblation", {}),
    ("FeatureAblation", {"patch": 3, "perturbations_per_eval": 2}),
    ("ShapleyValueSampling", {}),
    ("ShapleyValueSampling", {"patch": 4, "n_samples": 2, "seed": 1}),
]
VISUALIZATIONS = [
    {"method": m, "sign": s, "outlier_perc": o}
    for m, s, o in [
        ("heat_map", "all", 2.0),
        ("heat_map", "positive", 0.0),
        ("blended_heat_map", "negative", 10.0),
        ("masked_image", "absolute_value", 2.0),
        ("alpha_scaling", "positive", 5.0),
        ("original_image", "all", 2.0),
    ]
]


def _requests_single() -> Iterator[tuple[str, str, Any]]:
    """(HTTP method, path, JSON body) against a one-model digits visualizer."""
    yield "GET", "/health", None
    yield "GET", "/config", None
    yield "GET", "/openapi.json", None
    yield "POST", "/examples", None
    yield "POST", "/examples", {}
    for name, args in METHOD_ARGUMENTS:
        yield "POST", "/examples", {"method": name, "arguments": args, "page_size": 2}
    for vis in VISUALIZATIONS:
        yield "POST", "/examples", {"method": "Saliency", "visualization": vis, "page_size": 2, "top_k": 2}
    for flt in [
        {"prediction": "correct"},
        {"prediction": "incorrect"},
        {"classes": ["3", 5]},
        {"classes": ["1"], "class_source": "label"},
        {"classes": ["7"], "prediction": "incorrect"},
        {"classes": [9], "class_source": "label", "prediction": "correct"},
    ]:
        for page in (0, 1):
            yield "POST", "/examples", {"method": "Saliency", "filter": flt, "page": page, "page_size": 3}
    for page, size in [(1, 4), (5, 4), (11, 4), (12, 4), (100, 4), (0, 64), (2, 7)]:
        yield "POST", "/examples", {"method": "InputXGradient", "page": page, "page_size": size}
    yield "POST", "/examples", {"method": "Saliency", "stream": True, "page_size": 3}
    yield (
        "POST",
        "/examples",
        {
            "method": "IntegratedGradients",
            "arguments": {"n_steps": 5},
            "stream": True,
            "page_size": 4,
            "filter": {"prediction": "incorrect"},
        },
    )
    yield "POST", "/examples", {"method": "Saliency", "stream": True, "page": 50}
    for top_k in (1, 3, 10, 20):
        yield "POST", "/examples", {"method": "Saliency", "top_k": top_k, "page_size": 1}
    for body in [
        {"example_id": 0},
        {"example_id": 3, "target": 7},
        {"example_id": 3, "target": "7"},
        {"example_id": 5, "method": "Occlusion", "arguments": {"window": [2, 2]}, "target": 1},
        {"example_id": 40, "method": "GradientShap", "top_k": 6},
        {"example_id": 47, "method": "LayerGradCam", "visualization": {"method": "heat_map", "sign": "all"}},
        {"example_id": 2, "target": None, "method": "NoiseTunnel(Saliency)", "arguments": {"seed": 3}},
    ]:
        yield "POST", "/attribute", body
    # validation errors
    for body in [
        [],
        "x",
        3,
        {"nope": 1},
        {"method": "Nope"},
        {"method": 3},
        {"page": -1},
        {"page": 1.5},
        {"page": True},
        {"page": 10**7},
        {"page_size": 0},
        {"page_size": 65},
        {"top_k": 0},
        {"top_k": 21},
        {"stream": "yes"},
        {"filter": []},
        {"filter": {"classes": "3"}},
        {"filter": {"classes": ["eleven"]}},
        {"filter": {"classes": [10]}},
        {"filter": {"prediction": "x"}},
        {"filter": {"class_source": "x"}},
        {"filter": {"what": 1}},
        {"visualization": []},
        {"visualization": {"method": "x"}},
        {"visualization": {"sign": "x"}},
        {"visualization": {"outlier_perc": 51}},
        {"visualization": {"outlier_perc": "2"}},
        {"visualization": {"method": "masked_image", "sign": "all"}},
        {"visualization": {"extra": 1}},
        {"arguments": []},
        {"arguments": {"nope": 1}},
        {"arguments": {"n_steps": 0}},
        {"arguments": {"n_steps": 1001}},
        {"arguments": {"n_steps": "5"}},
        {"arguments": {"n_steps": 2.5}},
        {"arguments": {"method": "x"}},
        {"arguments": {"baseline": "x"}},
        {"method": "Occlusion", "arguments": {"window": [9, 9]}},
        {"method": "Occlusion", "arguments": {"window": [2, 2], "stride": [3, 3]}},
        {"method": "Occlusion", "arguments": {"window": [1, 1], "stride": [1, 1], "perturbations_per_eval": 1}},
        {"method": "Occlusion", "arguments": {"window": [2]}},
        {"method": "FeatureAblation", "arguments": {"patch": 9}},
        {"method": "NoiseTunnel(IntegratedGradients)", "arguments": {"nt_samples": 200, "n_steps": 1000}},
        {"method": "LayerGradCam", "arguments": {"layer": "no.such"}},
        {"method": "LayerGradCam", "arguments": {"layer": "fc"}},
        {"method": "GuidedGradCam", "arguments": {"layer": "fc"}},
        {"method": "LayerGradCam", "arguments": {"layer": 3}},
        {"method": "GradientShap", "arguments": {"baseline": "blur"}},
        {"method": "Saliency", "arguments": {"abs": 1}},
    ]:
        yield "POST", "/examples", body
    for body in [
        {},
        {"example_id": -1},
        {"example_id": 48},
        {"example_id": 2**41},
        {"example_id": "3"},
        {"example_id": 1, "model": 1},
        {"example_id": 1, "target": 10},
        {"example_id": 1, "target": "x"},
        {"example_id": 1, "target": True},
        {"example_id": 1, "page": 0},
    ]:
        yield "POST", "/attribute", body
    # The export view's refusals (its reports carry the date they were made, so only refusals are recorded).
    for body in [
        [],
        {"format": "xlsx"},
        {"format": None},
        {"limit": 0},
        {"limit": 501},
        {"limit": 2.5},
        {"page": 0},
        {"stream": True},
        {"filter": {"prediction": "x"}},
        {"method": "Nope"},
    ]:
        yield "POST", "/export", body
    # Quality metrics and the sanity check (their values are deterministic: seeded perturbations).
    yield (
        "POST",
        "/examples",
        {"method": "Saliency", "page_size": 2, "metrics": ["deletion", "insertion"], "metric_arguments": {"steps": 4}},
    )
    yield (
        "POST",
        "/attribute",
        {
            "example_id": 1,
            "method": "IntegratedGradients",
            "arguments": {"n_steps": 4},
            "metrics": ["infidelity", "sensitivity"],
            "metric_arguments": {"samples": 2},
        },
    )
    yield "POST", "/sanity", {"example_id": 1, "method": "Saliency"}
    for body in [
        {"metrics": ["x"]},
        {"metrics": "deletion"},
        {"metric_arguments": {"steps": 4}},
        {"metrics": ["deletion"], "metric_arguments": {"steps": 0}},
        {"metrics": ["deletion"], "metric_arguments": {"nope": 1}},
    ]:
        yield "POST", "/examples", body
    for body in [
        {"sample": 0},
        {"sample": 2, "sanity": 3},
        {"methods": []},
        {"methods": ["Nope"]},
        {"arguments": {"Nope": {}}},
    ]:
        yield "POST", "/method_report", body


def _requests_two_models() -> Iterator[tuple[str, str, Any]]:
    yield "GET", "/config", None
    yield "POST", "/examples", {"method": "Saliency", "page_size": 3}
    yield (
        "POST",
        "/examples",
        {
            "method": "IntegratedGradients",
            "arguments": {"n_steps": 4},
            "filter": {"prediction": "incorrect"},
            "page_size": 3,
        },
    )
    yield "POST", "/examples", {"method": "Occlusion", "filter": {"prediction": "correct"}, "page_size": 2}
    yield "POST", "/examples", {"method": "Saliency", "filter": {"classes": ["2"]}, "page_size": 2}
    yield "POST", "/attribute", {"example_id": 4, "model": 1, "target": 2}
    yield "POST", "/attribute", {"example_id": 4, "model": 0}
    yield "POST", "/attribute", {"example_id": 4, "model": 2}


def _requests_faulty() -> Iterator[tuple[str, str, Any]]:
    for name in ("Saliency", "IntegratedGradients", "Occlusion", "GradientShap"):
        yield "POST", "/examples", {"method": name, "page_size": 8}
        yield "POST", "/examples", {"method": name, "page_size": 8, "stream": True}
    yield "POST", "/examples", {"method": "Saliency", "filter": {"prediction": "correct"}, "page_size": 8}
    yield "POST", "/attribute", {"example_id": 2}
    yield "POST", "/attribute", {"example_id": 3, "method": "Occlusion"}


def _requests_failing_dataset() -> Iterator[tuple[str, str, Any]]:
    yield "POST", "/examples", {"method": "Saliency", "page": 0, "page_size": 8}
    yield "POST", "/examples", {"method": "Saliency", "page": 2, "page_size": 8}
    yield "POST", "/examples", {"method": "Saliency", "page": 2, "page_size": 8, "stream": True}
    yield "POST", "/examples", {"method": "Saliency", "filter": {"prediction": "correct"}, "page_size": 8}
    yield "POST", "/attribute", {"example_id": 20}


def _requests_mixed() -> Iterator[tuple[str, str, Any]]:
    yield "GET", "/config", None
    for name in (
        "IntegratedGradients",
        "Saliency",
        "Occlusion",
        "FeatureAblation",
        "GradientShap",
        "LayerGradCam",
        "DeepLift",
    ):
        yield "POST", "/examples", {"method": name, "page_size": 2}
    yield "POST", "/attribute", {"example_id": 5, "model": 1, "target": "three"}
    yield "POST", "/examples", {"method": "Saliency", "page_size": 2, "page": 7}


def _mixed_visualizer() -> Any:
    from ui_helpers import make_mixed_visualizer

    return make_mixed_visualizer()


def scenarios() -> dict[str, tuple[Any, Iterator[tuple[str, str, Any]]]]:
    """Each scenario: a visualizer factory and its requests (in order: caches make order matter)."""
    poison = (2, 5)
    return {
        "single": (lambda: make_visualizer(), _requests_single),
        "two_models": (
            lambda: make_visualizer([make_model(0), make_model(3)], model_names=["a", "b"]),
            _requests_two_models,
        ),
        "faulty": (lambda: make_visualizer(make_faulty_model(), Digits(n=16, poison=poison)), _requests_faulty),
        "failing_dataset": (lambda: make_visualizer(dataset=FailingDigits(fail_at=2)), _requests_failing_dataset),
        "mixed": (_mixed_visualizer, _requests_mixed),
    }


def answer(client: Any, method: str, path: str, body: Any) -> dict[str, Any]:
    """One request through the app; the answer as status, type and JSON (NDJSON: a list of events)."""
    if method == "GET":
        resp = client.get(API + path)
    else:
        data = b"" if body is None else json.dumps(body).encode()
        resp = client.post(API + path, data=data, content_type="application/json")
    text = resp.get_data(as_text=True)
    if resp.mimetype == "application/x-ndjson":
        payload: Any = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        payload = json.loads(text)
    return {"status": resp.status_code, "type": resp.mimetype, "json": without_timing(payload)}


def record_all(only_path: str | None = None, previous: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every scenario's answers; with ``only_path``, the other routes' answers are kept from ``previous``."""
    from insights_app.transport.server import create_app

    out = []
    kept = iter(previous or [])
    for name, (factory, requests) in scenarios().items():
        torch.manual_seed(0)
        client = create_app(factory()).test_client()
        for method, path, body in requests():
            old = next(kept, None)
            if only_path is not None and old is not None and path != only_path:
                out.append(old)
                answer(client, method, path, body)  # caches fill as they did when recorded
                continue
            out.append(
                {"scenario": name, "method": method, "path": path, "body": body, **answer(client, method, path, body)}
            )
    return out


def main() -> None:
    torch.set_num_threads(1)
    only = sys.argv[2] if len(sys.argv) > 2 and sys.argv[1] == "--update" else None
    records = record_all(only, json.loads(RECORDING.read_text()) if only else None)
    RECORDING.parent.mkdir(exist_ok=True)
    RECORDING.write_text(json.dumps(records, separators=(",", ":")))
    print(f"recorded {len(records)} answers in {RECORDING} ({RECORDING.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
