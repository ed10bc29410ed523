"""Extending a visualizer: a user's own method, view, quality metric and feature kind, served like the
built-in ones, and the one error table that answers alike over HTTP, in a stream and in the notebook widget."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients
from engine_helpers import RandomImages, make_model

from insights_app import AttributionVisualizer
from insights_app.errors import ComputationError, DatasetError, RenderError, ValidationError
from insights_app.features import BaseFeature, ImageFeature
from insights_app.methods import Param, method
from insights_app.page.feature_kinds import FeatureRenderer, renderer_for
from insights_app.transport.notebook import handle_request
from insights_app.transport.server import create_app
from insights_app.views import Stream, View

CLASSES = [f"c{i}" for i in range(10)]


def visualizer(**kw: Any) -> AttributionVisualizer:
    return AttributionVisualizer(
        [make_model()],
        CLASSES,
        [ImageFeature("image")],
        RandomImages(n_batches=2),
        score_func=lambda o: torch.softmax(o, 1),
        **kw,
    )


def widget_replies(vis: AttributionVisualizer, kind: str, body: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    handle_request(vis, kind, body, out.append)
    return out


def test_a_registered_method_is_offered_validated_and_computed_like_a_built_in_one():
    vis = visualizer()
    steps = Param("steps", "int", 8, "Path steps", minimum=1, maximum=64, label="Path steps")

    @vis.method(
        "MyIG",
        label="My Integrated Gradients",
        help="IG with a fixed zero baseline.",
        params=(steps,),
        cost=lambda p, hw: p["steps"],
    )
    def my_ig(ctx):
        return IntegratedGradients(ctx.forward).attribute(
            ctx.inputs, baselines=ctx.baselines("zeros"), target=ctx.targets, n_steps=ctx.params["steps"]
        )

    client = create_app(vis).test_client()
    config = client.get("/api/v1/config").get_json()
    mine = next(m for m in config["methods"] if m["name"] == "MyIG")
    assert mine["label"] == "My Integrated Gradients" and mine["params"][0]["label"] == "Path steps"
    page = client.post("/api/v1/examples", json={"method": "MyIG", "arguments": {"steps": 4}, "page_size": 2})
    assert page.status_code == 200
    models = [e["models"][0] for e in page.get_json()["examples"]]
    assert all(m["error"] is None and m["attributions"][0]["image"].startswith("data:image/png") for m in models)
    refused = client.post("/api/v1/examples", json={"method": "MyIG", "arguments": {"steps": 65}})
    assert refused.status_code == 400 and refused.get_json()["error"].startswith("arguments.steps:")
    assert "MyIG" in json.dumps(client.get("/api/v1/openapi.json").get_json())
    with pytest.raises(ValueError, match="already registered"):
        vis.register_method(my_ig)
    assert "MyIG" not in visualizer().methods  # registries belong to one visualizer


def test_a_method_registered_in_place_of_another_never_serves_its_results():
    vis = visualizer()
    first = vis.page({"method": "Saliency", "page_size": 1})["examples"][0]["models"][0]["attributions"][0]
    saliency = vis.methods["Saliency"]

    @vis.method("Saliency", label="Saliency", params=saliency.params, replace=True)
    def nothing(ctx):
        return tuple(torch.zeros_like(x) for x in ctx.inputs)

    again = vis.page({"method": "Saliency", "page_size": 1})["examples"][0]["models"][0]["attributions"][0]
    assert first["contribution"] == pytest.approx(1.0) and again["contribution"] == 0.0
    assert again["image"] != first["image"]
    vis.register_method(saliency, replace=True)  # the same method again: its cached results are its own
    misses = vis.engines[0].results.misses
    assert vis.page({"method": "Saliency", "page_size": 1})["examples"][0]["models"][0]["attributions"][0] == first
    assert vis.engines[0].results.misses == misses


def test_a_method_that_fails_fails_only_its_examples_with_its_label():
    vis = visualizer()

    @method("Broken", label="Broken method")
    def broken(ctx):
        raise RuntimeError("no gradient here")

    vis.register_method(broken)
    doc = vis.page({"method": "Broken", "page_size": 2})
    assert [m["error"] for e in doc["examples"] for m in e["models"]] == [
        "Broken method failed for SmallCNN: RuntimeError: no gradient here"
    ] * 2
    assert all(m["predictions"] for e in doc["examples"] for m in e["models"])  # the predictions still show


def test_the_constructors_top_k_is_the_apis_default():
    vis = visualizer(top_k=2)
    assert vis.config()["top_k"] == 2
    page = vis.page({"method": "Saliency", "page_size": 1})
    assert len(page["examples"][0]["models"][0]["predictions"]) == 2
    assert (
        len(vis.page({"method": "Saliency", "page_size": 1, "top_k": 5})["examples"][0]["models"][0]["predictions"])
        == 5
    )


ERRORS = [
    (ValidationError("arguments.x", "must be at least 1"), 400, "arguments.x: must be at least 1"),
    (RenderError("masked_image needs one sign"), 400, "masked_image needs one sign"),
    (ValueError("a bad value"), 400, "a bad value"),
    (DatasetError("the dataset raised OSError after example 16"), 500, "the dataset raised OSError after example 16"),
    (ComputationError("the model failed"), 500, "the model failed"),
    (KeyError("secret"), 500, "internal error: KeyError"),
]


@pytest.mark.parametrize("exc,status,message", ERRORS, ids=[type(e[0]).__name__ for e in ERRORS])
def test_one_error_table_answers_over_http_in_streams_and_in_the_widget(exc, status, message):
    vis = visualizer()

    def fails(vis: Any, body: Any) -> Any:
        if body and body.get("stream"):

            def events():
                yield {"type": "page"}
                raise exc

            return Stream(events())
        raise exc

    vis.register_view(View("fails", fails, "Always fails", streams=True))
    vis.register_view(View("fails_at_once", fails, "Always fails, never streams"))
    client = create_app(vis).test_client()
    resp = client.post("/api/v1/fails", json={})
    assert (resp.status_code, resp.get_json()) == (status, {"error": message})
    streamed = client.post("/api/v1/fails", json={"stream": True})
    lines = [json.loads(line) for line in streamed.get_data(as_text=True).splitlines()]
    assert lines == [{"type": "page"}, {"type": "error", "error": message}]
    assert widget_replies(vis, "fails_at_once", {}) == [{"error": message}]
    # Over the comm a streaming view always streams (stream=false or not).
    for body in ({}, {"stream": False}, None):
        assert widget_replies(vis, "fails", body) == [
            {"event": {"type": "page"}},
            {"event": {"type": "error", "error": message}},
            {"result": None},
        ]


def test_a_registered_view_is_a_route_a_widget_kind_and_documented():
    vis = visualizer()
    vis.register_view(
        View("classes", lambda v, body: {"classes": v.classes}, "The class names", takes_body=False, errors=(401, 403))
    )
    client = create_app(vis).test_client()
    assert client.get("/api/v1/classes").get_json() == {"classes": CLASSES}
    assert client.post("/api/v1/classes", json={}).status_code == 405
    assert widget_replies(vis, "classes", None) == [{"result": {"classes": CLASSES}}]
    assert "get" in client.get("/api/v1/openapi.json").get_json()["paths"]["/api/v1/classes"]


def test_a_metric_registered_from_outside_is_published_and_computed_for_a_page():
    import extra_metric

    from insights_app.metrics.options import MetricOptions

    # The one registration line (in the package: a line in BUILTIN_METRICS of metrics/registered.py).
    vis = visualizer()
    vis.register_metric(extra_metric.PEAK)
    other = visualizer()  # another visualizer in the same process does not get it
    assert "peak" not in [
        m["name"] for m in create_app(other).test_client().get("/api/v1/config").get_json()["metrics"]
    ]
    client = create_app(vis).test_client()
    config = client.get("/api/v1/config").get_json()
    assert [m["name"] for m in config["metrics"]] == ["deletion", "insertion", "infidelity", "sensitivity", "peak"]
    assert config["metrics"][-1] == {
        "name": "peak",
        "label": "peak attribution",
        "short": "peak",
        "help": "The mean of the map's largest magnitudes",
        "direction": "higher",
        "settings": [
            {
                "name": "top",
                "type": "integer",
                "default": 1,
                "minimum": 1,
                "maximum": 100,
                "help": "peak: how many of the largest magnitudes are averaged",
            }
        ],
        "passes": 0,
        "sets": ["all"],
        "curve": "",
    }
    schema = client.get("/api/v1/openapi.json").get_json()
    page_schema = schema["paths"]["/api/v1/examples"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "peak" in page_schema["properties"]["metrics"]["items"]["enum"]
    assert page_schema["properties"]["metric_arguments"]["properties"]["top"]["maximum"] == 100

    body = {"method": "Saliency", "page_size": 2, "metrics": ["peak", "deletion"], "metric_arguments": {"top": 3}}
    page = client.post("/api/v1/examples", json=body).get_json()
    engine, spec = vis.engines[0], vis.methods["Saliency"]
    examples = [vis.store.get(ex["id"]) for ex in page["examples"]]
    results = engine.run(examples, spec, spec.validate({}))
    for ex, result in zip(page["examples"], results):
        got = ex["models"][0]["metrics"]
        assert list(got) == ["deletion", "peak"]  # in the registry's order
        top3 = np.sort(np.abs(result.explanation.maps[0]).ravel())[::-1][:3].mean()
        assert got["peak"] == pytest.approx(top3, rel=1e-5)
    assert MetricOptions(("peak",), registry=vis.metrics, top=3).key("peak") == 'peak:v1:{"top": 3}'

    bad = client.post("/api/v1/examples", json={**body, "metric_arguments": {"top": 0}})
    assert bad.status_code == 400 and "metric_arguments.top" in bad.get_json()["error"]
    unknown = client.post("/api/v1/examples", json={**body, "metric_arguments": {"nope": 1}})
    assert unknown.get_json()["error"].endswith("choose among steps, patch, samples, noise, radius, seed, top")
    refused = create_app(other).test_client().post("/api/v1/examples", json=body)
    assert refused.status_code == 400 and "unknown metric 'peak'" in refused.get_json()["error"]


class Waveform(BaseFeature):
    """A feature of a kind the package does not know."""

    kind = "waveform"


class XRay(ImageFeature):
    """A user's image feature naming a kind of its own: shown as an image."""

    kind = "xray"


class WaveformRenderer(FeatureRenderer):
    kind = "waveform"

    def original(self, feature, ex, i, shown):
        return {"samples": int(ex.inputs[i].numel())}

    def render(self, feature, ex, i, attr_map, vis, scale, values, shown):
        return {"peak": float(np.abs(attr_map).max()), "scale": [-scale, scale]}


def waveform_visualizer() -> AttributionVisualizer:
    torch.manual_seed(0)
    return AttributionVisualizer(
        [torch.nn.Sequential(torch.nn.Linear(16, 10))],
        CLASSES,
        [Waveform("wave")],
        RandomImages(n_batches=1, shape=(16,)),
        score_func=lambda o: torch.softmax(o, 1),
    )


def test_a_feature_kind_registered_by_kind_is_used_by_the_presenter():
    body = {"method": "Saliency", "page_size": 2}
    plain = create_app(waveform_visualizer()).test_client().post("/api/v1/examples", json=body).get_json()
    shown = plain["examples"][0]
    # No renderer for the kind: the base renderer, as before (no input shown, the values as a list).
    assert shown["features"][0]["original"] is None and len(shown["models"][0]["attributions"][0]["scores"]) == 16

    vis = waveform_visualizer()
    vis.register_feature_kind(WaveformRenderer())
    with pytest.raises(ValueError, match="already registered"):
        vis.register_feature_kind(WaveformRenderer())
    page = create_app(vis).test_client().post("/api/v1/examples", json=body).get_json()
    ex = page["examples"][0]
    assert ex["features"][0] == {"name": "wave", "type": "waveform", "original": {"samples": 16}}
    attribution = ex["models"][0]["attributions"][0]
    assert set(attribution) == {"name", "type", "peak", "scale", "contribution"}
    assert attribution["type"] == "waveform" and attribution["peak"] > 0


def test_a_subclass_of_a_feature_naming_its_own_kind_is_shown_as_its_parent():
    vis = AttributionVisualizer(
        [make_model()],
        CLASSES,
        [XRay("scan")],
        RandomImages(n_batches=1),
        score_func=lambda o: torch.softmax(o, 1),
    )
    assert renderer_for(vis.features[0], vis.presenter.renderers).kind == "image"
    page = create_app(vis).test_client().post("/api/v1/examples", json={"method": "Saliency", "page_size": 1})
    attribution = page.get_json()["examples"][0]["models"][0]["attributions"][0]
    assert attribution["type"] == "xray" and attribution["image"].startswith("data:image/png;base64,")
