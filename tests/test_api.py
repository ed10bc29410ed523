"""The HTTP API: every route, every validation error, the token rules, streaming and serving.

Most tests use Flask's test client on ``create_app``; the few that are about serving
(waitress, ports, concurrency) start real servers on 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import numpy as np
import pytest
import requests
import torch
from ui_helpers import DIGIT_NAMES, decode_data_url, is_blank, serve

from insights_app import AttributionVisualizer, Batch
from insights_app.features import ImageFeature
from insights_app.testing import SlowNet
from insights_app.transport.access import access_token, host_is_loopback, token_cookie_name
from insights_app.transport.server import create_app

FAST = {"method": "Saliency"}
API = "/api/v1"


@pytest.fixture(scope="module")
def client(digits_visualizer):
    return create_app(digits_visualizer).test_client()


def post(client, path: str, body: Any, **kw):
    return client.post(API + path, data=json.dumps(body), content_type="application/json", **kw)


def events(resp) -> list[dict[str, Any]]:
    return [json.loads(line) for line in resp.get_data(as_text=True).splitlines() if line.strip()]


# ---------------------------------------------------------------- routes


def test_index_and_static_files_are_served_with_javascript_types(client):
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert 'src="static/main.js"' in html and 'href="static/style.css"' in html
    assert "<script>" not in html  # no inline script: the CSP forbids it
    for path, mime in [
        ("/static/app.js", "text/javascript"),
        ("/static/main.js", "text/javascript"),
        ("/static/style.css", "text/css"),
    ]:
        resp = client.get(path)
        assert resp.status_code == 200 and resp.mimetype == mime, path
    assert "export function mount" in client.get("/static/app.js").get_data(as_text=True)
    assert client.get("/static/../server.py").status_code == 404
    assert client.get("/static/nope.js").status_code == 404


def test_security_headers_on_every_response(client):
    for resp in (client.get("/"), client.get(API + "/config"), client.get(API + "/nope")):
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'self'" in csp
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


def test_health(client):
    resp = client.get(API + "/health")
    assert resp.status_code == 200 and resp.get_json() == {"status": "ok"}


def test_config_describes_classes_models_features_and_method_schemas(client):
    cfg = client.get(API + "/config").get_json()
    assert cfg["classes"] == DIGIT_NAMES
    assert [m["name"] for m in cfg["models"]] == ["DigitsCNN"]
    assert cfg["models"][0]["conv_layers"] == ["conv1", "conv2"]
    assert cfg["features"] == [{"name": "digit", "type": "image"}]
    methods = {m["name"]: m for m in cfg["methods"]}
    assert cfg["default_method"] in methods
    steps = next(p for p in methods["IntegratedGradients"]["params"] if p["name"] == "n_steps")
    assert steps["type"] == "int" and steps["minimum"] >= 1 and steps["maximum"] <= 10_000
    assert methods["IntegratedGradients"]["defaults"]["n_steps"] == steps["default"]
    assert set(cfg["visualization"]["signs"]) == {"all", "positive", "negative", "absolute_value"}
    assert cfg["image_size"] == [32, 32]


def test_examples_page_has_predictions_and_non_blank_attributions(client):
    resp = post(client, "/examples", dict(FAST, page_size=3, top_k=3))
    assert resp.status_code == 200
    data = resp.get_json()
    assert data["page"]["ids"] == [0, 1, 2] and data["page"]["has_next"] and not data["page"]["has_prev"]
    assert [e["id"] for e in data["examples"]] == [0, 1, 2]
    for ex in data["examples"]:
        assert ex["label"]["name"] == DIGIT_NAMES[ex["label"]["index"]]
        (model,) = ex["models"]
        assert len(model["predictions"]) == 3 and model["error"] is None
        scores = [p["score"] for p in model["predictions"]]
        assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0001
        assert model["target"]["index"] == model["predictions"][0]["index"]
        (attr,) = model["attributions"]
        assert not is_blank(decode_data_url(attr["image"]))
        assert not is_blank(decode_data_url(ex["features"][0]["original"]))


def test_examples_second_page_continues_the_first(client):
    first = post(client, "/examples", dict(FAST, page_size=2)).get_json()
    second = post(client, "/examples", dict(FAST, page_size=2, page=1)).get_json()
    assert second["page"]["ids"] == [2, 3] and second["page"]["has_prev"]
    assert not set(first["page"]["ids"]) & set(second["page"]["ids"])


def test_prediction_filters_split_correct_and_incorrect(client, digits_setup):
    correct = post(client, "/examples", dict(FAST, page_size=6, filter={"prediction": "correct"})).get_json()
    wrong = post(client, "/examples", dict(FAST, page_size=6, filter={"prediction": "incorrect"})).get_json()
    assert correct["examples"] and wrong["examples"]
    for ex in correct["examples"]:
        assert ex["models"][0]["predictions"][0]["index"] == ex["label"]["index"]
    for ex in wrong["examples"]:
        assert ex["models"][0]["predictions"][0]["index"] != ex["label"]["index"]


def test_class_filter_by_label_and_by_name(client):
    data = post(
        client, "/examples", dict(FAST, page_size=4, filter={"classes": ["seven", 3], "class_source": "label"})
    ).get_json()
    assert data["examples"] and {e["label"]["index"] for e in data["examples"]} <= {3, 7}


def test_a_filtered_page_counts_every_match_and_knows_its_last_page(digits_setup):
    labels = torch.arange(200) % 4  # 50 examples of each of the classes 0-3
    vis = AttributionVisualizer(
        digits_setup.model,
        DIGIT_NAMES,
        [ImageFeature("digit")],
        [Batch(torch.rand(8, 1, 32, 32), labels[i : i + 8]) for i in range(0, 200, 8)],
    )
    client = create_app(vis).test_client()
    body = dict(FAST, page_size=3, filter={"classes": ["two"], "class_source": "label"})
    # The stream shows the page as soon as its three matches are found (in the first 64 examples
    # scanned), then scans on for the count.
    streamed = events(post(client, "/examples", dict(body, stream=True)))
    assert [e["type"] for e in streamed] == ["page"] + ["example"] * 3 + ["count", "done"]
    page, count = streamed[0], streamed[-2]
    assert page["ids"] == [2, 6, 10] and not page["exhausted"] and page["matched"] == 16 and page["last_page"] is None
    assert count["ids"] == page["ids"] and count["exhausted"] and count["matched"] == 50 and count["first"] == 0
    assert count["last_page"] == 16 and count["dataset_size"] == 200
    # Past the last page: empty, and the message names the last page.
    past = post(client, "/examples", dict(body, page=20)).get_json()["page"]
    assert past["ids"] == [] and past["last_page"] == 16 and "past the last page, 17" in past["message"]
    last = post(client, "/examples", dict(body, page=16)).get_json()["page"]
    assert last["ids"] == [194, 198] and last["first"] == 48 and not last["has_next"]


def test_an_unfiltered_page_past_the_end_names_the_last_page(digits_setup):
    vis = AttributionVisualizer(
        digits_setup.model,
        DIGIT_NAMES,
        [ImageFeature("digit")],
        [Batch(torch.rand(8, 1, 32, 32), torch.zeros(8, dtype=torch.long))] * 5,
        max_scan=64,
    )
    client = create_app(vis).test_client()
    last = post(client, "/examples", dict(FAST, page_size=6, page=6)).get_json()["page"]  # reads to the end
    assert last["ids"] == [36, 37, 38, 39] and last["last_page"] == 6 and last["first"] == 36
    past = post(client, "/examples", dict(FAST, page_size=6, page=500)).get_json()["page"]
    assert past["ids"] == [] and past["matched"] == 40 and past["dataset_size"] == 40 and past["last_page"] == 6
    assert "The dataset has 40 examples: page 501 is past the last page, 7." == past["message"]


def test_each_method_has_a_default_sign_and_maps_carry_their_colour_scale(client):
    methods = {m["name"]: m for m in client.get(API + "/config").get_json()["methods"]}
    assert methods["Saliency"]["default_sign"] == "absolute_value"
    assert methods["LayerGradCam"]["default_sign"] == "positive"
    assert methods["IntegratedGradients"]["default_sign"] == methods["Occlusion"]["default_sign"] == "all"
    # A request that names no sign gets its method's: signed methods show both signs.
    signed = post(client, "/examples", {"method": "IntegratedGradients", "page_size": 2}).get_json()
    unsigned = post(client, "/examples", {"method": "Saliency", "page_size": 2}).get_json()
    for ex in signed["examples"]:
        scale = ex["models"][0]["attributions"][0]["scale"]
        assert scale["low"] == -scale["high"] and scale["high"] > 0
    for ex in unsigned["examples"]:
        scale = ex["models"][0]["attributions"][0]["scale"]
        assert scale["low"] == 0 and scale["high"] > 0
    # Masking needs one sign: a signed method without a sign named falls back to absolute values.
    masked = post(
        client,
        "/examples",
        {"method": "IntegratedGradients", "page_size": 1, "visualization": {"method": "masked_image"}},
    )
    assert (
        masked.status_code == 200
        and masked.get_json()["examples"][0]["models"][0]["attributions"][0]["scale"]["low"] == 0
    )


def test_a_shared_scale_is_the_pages_and_a_fixed_one_is_the_number_sent(client, digits_visualizer):
    from insights_app.page.render import attribution_scale, shrink_map

    body = {"method": "IntegratedGradients", "page_size": 3, "visualization": {"sign": "all", "outlier_perc": 2}}
    own = post(client, "/examples", body).get_json()["examples"]
    highs = [ex["models"][0]["attributions"][0]["scale"]["high"] for ex in own]
    assert len(set(highs)) == 3  # each map on its own scale
    shared = post(client, "/examples", dict(body, visualization=dict(body["visualization"], scale="page"))).get_json()
    scales = [ex["models"][0]["attributions"][0]["scale"] for ex in shared["examples"]]
    assert len({(s["low"], s["high"]) for s in scales}) == 1
    # The page's scale is captum's rule over the page's maps together.
    engine = digits_visualizer.engines[0]
    spec = digits_visualizer.methods["IntegratedGradients"]
    results = engine.run(digits_visualizer.store.get_many([0, 1, 2]), spec, spec.validate({}))
    expected = attribution_scale([shrink_map(r.explanation.maps[0]) for r in results], "all", 2.0)
    assert abs(scales[0]["high"] - expected) <= 1e-6 * expected
    # The streamed page computes every map first, then draws them together.
    streamed = events(
        post(client, "/examples", dict(body, stream=True, visualization=dict(body["visualization"], scale="page")))
    )
    kinds = [e["type"] for e in streamed if e["type"] in ("progress", "example")]
    assert kinds[-3:] == ["example"] * 3 and "example" not in kinds[:-3] and "progress" in kinds
    fixed = post(client, "/examples", dict(body, visualization=dict(body["visualization"], scale=0.05))).get_json()
    for ex in fixed["examples"]:
        assert ex["models"][0]["attributions"][0]["scale"] == {"low": -0.05, "high": 0.05}
    bad = post(client, "/examples", dict(body, visualization={"scale": -1}))
    assert bad.status_code == 400 and bad.get_json()["error"].startswith("visualization.scale:")


def test_the_colour_blind_palette_is_the_default_and_captums_is_one_request_away(client):
    body = {"method": "IntegratedGradients", "page_size": 2, "visualization": {"method": "heat_map", "sign": "all"}}

    def greens(data) -> float:
        px = np.concatenate(
            [decode_data_url(ex["models"][0]["attributions"][0]["image"]).reshape(-1, 3) for ex in data["examples"]]
        ).astype(int)
        return float(((px[:, 1] > px[:, 0] + 40) & (px[:, 1] > px[:, 2] + 40)).mean())

    default = post(client, "/examples", body).get_json()
    captum = post(
        client, "/examples", dict(body, visualization=dict(body["visualization"], palette="captum"))
    ).get_json()
    assert greens(default) == 0.0  # blue-white-orange: no green anywhere
    assert greens(captum) > 0.01  # captum's red-white-green
    bad = post(client, "/examples", dict(body, visualization={"palette": "rainbow"}))
    assert bad.status_code == 400 and bad.get_json()["error"].startswith("visualization.palette:")


def test_attribute_sends_the_map_values_when_asked(client):
    import base64

    plain = post(client, "/attribute", {"example_id": 3, "method": "Saliency"}).get_json()
    assert "values" not in plain["example"]["models"][0]["attributions"][0]
    data = post(client, "/attribute", {"example_id": 3, "method": "Saliency", "values": True}).get_json()
    attr = data["example"]["models"][0]["attributions"][0]
    values = np.frombuffer(base64.b64decode(attr["values"]["data"]), dtype="<f4").reshape(attr["values"]["shape"])
    assert values.shape == decode_data_url(attr["image"]).shape[:2] == (32, 32)
    assert values.min() >= 0 and 0 < attr["scale"]["high"] <= values.max()  # |gradients|, clipped at the scale
    assert post(client, "/attribute", {"example_id": 3, "values": "yes"}).status_code == 400


def test_empty_filter_result_says_how_many_examples_were_scanned(digits_setup):
    # A class no model ever predicts (a fresh visualizer so the filter index starts empty).
    vis = AttributionVisualizer(
        digits_setup.model,
        DIGIT_NAMES + ["never"],
        [ImageFeature("digit")],
        [Batch(torch.rand(8, 1, 32, 32), torch.zeros(8, dtype=torch.long))],
        max_scan=64,
    )
    data = post(create_app(vis).test_client(), "/examples", dict(FAST, filter={"classes": ["never"]})).get_json()
    assert data["examples"] == [] and data["page"]["scanned"] == 8 and data["page"]["exhausted"]
    assert "8 examples scanned" in data["page"]["message"]


def test_streamed_page_sends_page_examples_then_done(client):
    resp = post(client, "/examples", dict(FAST, page_size=3, stream=True))
    assert resp.status_code == 200 and resp.mimetype == "application/x-ndjson"
    evs = events(resp)
    assert [e["type"] for e in evs] == ["page", "example", "example", "example", "done"]
    assert evs[0]["ids"] == [e["example"]["id"] for e in evs[1:4]]


def test_stream_yields_the_first_example_before_computing_the_rest(digits_visualizer, monkeypatch):
    from insights_app.page import service as examples_view

    calls: list[list[int]] = []
    original = examples_view.explained

    def recording(vis, q, examples, cancel=None):
        calls.append([e.id for e in examples])
        return original(vis, q, examples, cancel)

    monkeypatch.setattr(examples_view, "explained", recording)
    app = create_app(digits_visualizer)
    resp = app.test_client().post(API + "/examples", json=dict(FAST, page_size=4, page=7, stream=True), buffered=False)
    lines = (json.loads(chunk) for chunk in resp.response)
    assert next(lines)["type"] == "page"
    first = next(lines)
    assert first["type"] == "example" and first["example"]["id"] == 28
    assert calls == [[28]]  # the other three are not computed yet
    rest = list(lines)
    assert calls == [[28], [29, 30, 31]] and rest[-1]["type"] == "done"


def test_stream_reports_a_failing_dataset_as_an_error_event(digits_setup):
    class Broken:
        def __iter__(self):
            yield Batch(torch.rand(2, 1, 32, 32), torch.tensor([1, 2]))
            raise OSError("disk went away")

    vis = AttributionVisualizer(digits_setup.model, DIGIT_NAMES, [ImageFeature("digit")], Broken())
    client = create_app(vis).test_client()
    evs = events(post(client, "/examples", dict(FAST, page_size=4, filter={"prediction": "correct"}, stream=True)))
    assert evs[-1]["type"] == "error" and "disk went away" in evs[-1]["error"]
    plain = post(client, "/examples", dict(FAST, page_size=4, filter={"prediction": "incorrect"}))
    assert plain.status_code == 500 and "disk went away" in plain.get_json()["error"]


def test_attribute_any_target_changes_the_map(client):
    base = dict(FAST, example_id=5, model=0)
    top = post(client, "/attribute", base).get_json()["example"]
    top_model = top["models"][0]
    other = top_model["predictions"][1]["index"]
    again = post(client, "/attribute", dict(base, target=other)).get_json()["example"]["models"][0]
    assert again["target"]["index"] == other and top_model["target"]["index"] != other
    assert again["attributions"][0]["image"] != top_model["attributions"][0]["image"]
    by_name = post(client, "/attribute", dict(base, target=DIGIT_NAMES[other])).get_json()
    assert by_name["example"]["models"][0]["target"]["index"] == other


def test_mixed_features_give_scores_tokens_and_contributions(mixed_visualizer):
    client = create_app(mixed_visualizer).test_client()
    data = post(client, "/examples", {"method": "IntegratedGradients", "page_size": 1}).get_json()
    ex = data["examples"][0]
    assert [m["name"] for m in ex["models"]] == ["mixed-0", "mixed-1"]
    for model in ex["models"]:
        kinds = {a["type"]: a for a in model["attributions"]}
        assert set(kinds) == {"image", "general", "text"}
        assert len(kinds["general"]["scores"]) == 4 and kinds["general"]["categories"][0] == "ink"
        assert len(kinds["text"]["tokens"]) == len(kinds["text"]["scores"]) == 5
        assert abs(sum(a["contribution"] for a in model["attributions"]) - 1) < 1e-6


# ---------------------------------------------------------------- validation errors

BAD_PAGE_BODIES = [
    ({"method": "NoSuchMethod"}, "method"),
    ({"method": 3}, "method"),
    ({"top_k": "three"}, "top_k"),
    ({"top_k": 0}, "top_k"),
    ({"top_k": 2.5}, "top_k"),
    ({"page": -1}, "page"),
    ({"page": True}, "page"),
    ({"page_size": 10_000}, "page_size"),
    ({"stream": "yes"}, "stream"),
    ({"colour": "red"}, "colour"),
    ({"arguments": [1, 2]}, "arguments"),
    ({"method": "IntegratedGradients", "arguments": {"n_steps": 100_000}}, "arguments.n_steps"),
    ({"method": "IntegratedGradients", "arguments": {"n_steps": "many"}}, "arguments.n_steps"),
    ({"method": "IntegratedGradients", "arguments": {"n_steps": 0}}, "arguments.n_steps"),
    ({"method": "IntegratedGradients", "arguments": {"method": "simpson"}}, "arguments.method"),
    ({"method": "IntegratedGradients", "arguments": {"window": [3, 3]}}, "arguments.window"),
    ({"method": "Occlusion", "arguments": {"window": [3]}}, "arguments.window"),
    ({"method": "Occlusion", "arguments": {"window": [3, 9999]}}, "arguments.window"),
    ({"method": "NoiseTunnel(Saliency)", "arguments": {"stdevs": -1}}, "arguments.stdevs"),
    ({"method": "NoiseTunnel(Saliency)", "arguments": {"abs": "true"}}, "arguments.abs"),
    ({"method": "NoiseTunnel(IntegratedGradients)", "arguments": {"nt_samples": 200, "n_steps": 1000}}, "arguments"),
    ({"visualization": {"method": "sparkles"}}, "visualization.method"),
    ({"visualization": {"sign": "both"}}, "visualization.sign"),
    ({"visualization": {"method": "masked_image", "sign": "all"}}, "visualization.sign"),
    ({"visualization": {"outlier_perc": 99}}, "visualization.outlier_perc"),
    ({"visualization": {"zoom": 2}}, "visualization.zoom"),
    ({"filter": {"classes": ["eleven"]}}, "filter.classes"),
    ({"filter": {"classes": [10]}}, "filter.classes"),
    ({"filter": {"classes": "seven"}}, "filter.classes"),
    ({"filter": {"prediction": "maybe"}}, "filter.prediction"),
    ({"filter": {"class_source": "guess"}}, "filter.class_source"),
    ({"filter": {"colour": 1}}, "filter.colour"),
    ([1, 2, 3], "body"),
]


@pytest.mark.parametrize("body,field", BAD_PAGE_BODIES, ids=[f for _, f in BAD_PAGE_BODIES])
def test_bad_examples_request_is_400_naming_the_field(client, body, field):
    resp = post(client, "/examples", body)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    message = resp.get_json()["error"]
    assert message.startswith(field + ":"), message


BAD_ATTRIBUTE_BODIES = [
    ({}, "example_id"),
    ({"example_id": -1}, "example_id"),
    ({"example_id": "5"}, "example_id"),
    ({"example_id": 10**9}, "example_id"),
    ({"example_id": 0, "model": 1}, "model"),
    ({"example_id": 0, "target": "eleven"}, "target"),
    ({"example_id": 0, "target": 10}, "target"),
    ({"example_id": 0, "target": 1.5}, "target"),
    ({"example_id": 0, "filter": {}}, "filter"),
    (
        {"example_id": 0, "method": "Occlusion", "arguments": {"perturbations_per_eval": 0}},
        "arguments.perturbations_per_eval",
    ),
]


@pytest.mark.parametrize("body,field", BAD_ATTRIBUTE_BODIES, ids=[f for _, f in BAD_ATTRIBUTE_BODIES])
def test_bad_attribute_request_is_400_naming_the_field(client, body, field):
    resp = post(client, "/attribute", dict(FAST, **body))
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.get_json()["error"].startswith(field + ":")


@pytest.mark.parametrize("path", ["/examples", "/attribute"])
def test_posts_must_be_json(client, path):
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        resp = client.post(API + path, data='{"example_id": 0}', content_type=content_type)
        assert resp.status_code == 415 and "application/json" in resp.get_json()["error"]
    resp = client.post(API + path, data="{not json", content_type="application/json")
    assert resp.status_code == 400 and resp.get_json()["error"].startswith("body:")


def test_http_errors_are_json(client):
    assert client.get(API + "/examples").status_code == 405
    assert client.get(API + "/examples").get_json()["error"] == "method not allowed"
    resp = client.get(API + "/nope")
    assert resp.status_code == 404 and resp.get_json() == {"error": "not found"}
    big = client.post(API + "/examples", data=b"[" + b"1," * 600_000 + b"1]", content_type="application/json")
    assert big.status_code == 413 and "too large" in big.get_json()["error"]


def test_unexpected_failure_is_a_json_500_without_traceback(digits_visualizer, monkeypatch):
    class Exploding(dict):
        def values(self):
            raise RuntimeError("secret internals")

    monkeypatch.setattr(digits_visualizer, "methods", Exploding())
    resp = create_app(digits_visualizer).test_client().get(API + "/config")
    assert resp.status_code == 500
    assert resp.get_json() == {"error": "internal error: RuntimeError"}


# ---------------------------------------------------------------- OpenAPI


def test_openapi_document_matches_the_routes(client):
    doc = client.get(API + "/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    documented = {(path, verb.upper()) for path, item in doc["paths"].items() for verb in item}
    # What the app answers (anything but 404 and 405), for every documented path, with both verbs,
    # and for paths that are not documented.
    candidates = {
        (path, verb)
        for path in list(doc["paths"]) + [API + "/nope", API + "/examples/1", API + "/"]
        for verb in ("GET", "POST")
    }
    routed = {
        (path, verb)
        for path, verb in candidates
        if client.open(path, method=verb, json=dict(FAST, page_size=1) if verb == "POST" else None).status_code
        not in (404, 405)
    }
    assert documented == routed


def _server_only(body: Any, field: str) -> bool:
    """Rules that depend on the chosen method or the image size: only the server can check them."""
    if field == "arguments":
        return isinstance(body, dict) and "method" in body  # the cost limit
    if field == "arguments.window":
        return body.get("method") == "IntegratedGradients"  # a parameter of another method
    return field == "visualization.sign" and body["visualization"].get("method") == "masked_image"


def test_openapi_request_schemas_agree_with_the_server(client):
    jsonschema = pytest.importorskip("jsonschema")
    doc = client.get(API + "/openapi.json").get_json()
    content = {
        p: doc["paths"][API + p]["post"]["requestBody"]["content"]["application/json"]["schema"]
        for p in ("/examples", "/attribute")
    }
    cfg = client.get(API + "/config").get_json()
    for method in cfg["methods"]:
        common = {
            "method": method["name"],
            "arguments": method["defaults"],
            "top_k": 2,
            "visualization": {"method": "heat_map", "sign": "all", "outlier_perc": 1},
        }
        jsonschema.validate(
            dict(common, page_size=1, filter={"classes": ["one", 2], "prediction": "correct"}), content["/examples"]
        )
        jsonschema.validate(dict(common, example_id=0, model=0, target="two"), content["/attribute"])
    checked = 0
    for body, field in BAD_PAGE_BODIES:
        if _server_only(body, field):
            continue
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(body, content["/examples"])
        checked += 1
    assert checked >= len(BAD_PAGE_BODIES) - 4


# ---------------------------------------------------------------- tokens and hosts


@pytest.fixture(scope="module")
def locked(digits_visualizer):
    return create_app(digits_visualizer, token="s3cret-token").test_client()


def test_token_is_required_on_every_route_but_health(locked):
    assert locked.get(API + "/health").status_code == 200
    for resp in (
        locked.get(API + "/config"),
        locked.get(API + "/openapi.json"),
        locked.get("/static/app.js"),
        post(locked, "/examples", FAST),
        post(locked, "/attribute", dict(FAST, example_id=0)),
    ):
        assert resp.status_code == 401 and "token" in resp.get_json()["error"]
    page = locked.get("/")
    assert page.status_code == 401 and page.mimetype == "text/html" and "token" in page.get_data(as_text=True)


def test_wrong_token_is_403(locked):
    assert locked.get(API + "/config?token=nope").status_code == 403
    assert locked.get(API + "/config", headers={"Authorization": "Bearer nope"}).status_code == 403
    assert locked.get("/?token=nope").status_code == 403


def test_token_from_url_sets_a_cookie_that_then_suffices(digits_visualizer):
    client = create_app(digits_visualizer, token="s3cret-token").test_client()
    first = client.get("/?token=s3cret-token")
    assert first.status_code == 200
    cookie = first.headers["Set-Cookie"]
    assert cookie.startswith(token_cookie_name("s3cret-token") + "=s3cret-token")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    # The browser now sends the cookie: no token in the URL any more.
    assert client.get(API + "/config").status_code == 200
    assert client.get("/static/app.js").status_code == 200
    assert post(client, "/examples", dict(FAST, page_size=1)).status_code == 200


@pytest.mark.parametrize("scheme", ["Bearer", "token", "bearer"])
def test_token_from_authorization_header(locked, scheme):
    assert locked.get(API + "/config", headers={"Authorization": f"{scheme} s3cret-token"}).status_code == 200


def test_cookie_names_differ_per_token_so_two_servers_coexist():
    assert token_cookie_name("a") != token_cookie_name("b")
    assert token_cookie_name("a") == token_cookie_name("a")


def test_without_token_only_loopback_host_names_are_answered(client):
    for host in ("localhost:5000", "127.0.0.1:8080", "[::1]:80", "127.0.0.2", "app.localhost:1"):
        assert client.get(API + "/config", headers={"Host": host}).status_code == 200, host
    for host in ("evil.example", "evil.example:80", "192.168.1.5:8080", "localhost.evil.example"):
        resp = client.get(API + "/config", headers={"Host": host})
        assert resp.status_code == 403 and "not allowed" in resp.get_json()["error"], host
    assert client.get(API + "/health", headers={"Host": "evil.example"}).status_code == 200


def test_allowed_hosts_extend_the_loopback_rule(digits_visualizer):
    client = create_app(digits_visualizer, allowed_hosts=["box.lan"]).test_client()
    assert client.get(API + "/config", headers={"Host": "box.lan:8080"}).status_code == 200
    assert client.get(API + "/config", headers={"Host": "other.lan"}).status_code == 403


def test_with_a_token_any_host_may_connect(locked):
    resp = locked.get(API + "/config", headers={"Host": "192.168.1.5:8080", "Authorization": "token s3cret-token"})
    assert resp.status_code == 200


def test_binding_rules():
    assert access_token("127.0.0.1", None) is None
    assert access_token("localhost", None) is None
    assert access_token("::1", "given") == "given"
    generated = access_token("0.0.0.0", None)
    assert generated and len(generated) >= 24 and generated != access_token("0.0.0.0", None)
    assert access_token("192.168.1.5", "mine") == "mine"
    with pytest.raises(ValueError, match="without a token"):
        access_token("0.0.0.0", "")
    assert host_is_loopback("127.0.0.1:5000") and not host_is_loopback("0.0.0.0")


# ---------------------------------------------------------------- real servers


def _slow_visualizer(delay: float = 0.1) -> AttributionVisualizer:
    torch.manual_seed(0)
    data = [Batch(torch.rand(8, 1, 12, 12), torch.randint(0, 10, (8,))) for _ in range(2)]
    return AttributionVisualizer(
        SlowNet(delay), DIGIT_NAMES, [ImageFeature("img")], data, title="slow", internal_batch_size=4
    )


@pytest.mark.slow
def test_long_computation_does_not_block_other_requests_and_streams_progressively():
    handle = serve(_slow_visualizer())
    try:
        base = f"http://127.0.0.1:{handle.port}{API}"
        # 16 steps in passes of 4: the first example takes 4 sleeping passes, the other four 16.
        body = {"method": "IntegratedGradients", "arguments": {"n_steps": 16}, "page_size": 5, "stream": True}
        arrivals = []
        t0 = time.monotonic()

        def read_stream():
            with requests.post(base + "/examples", json=body, stream=True, timeout=60) as resp:
                for line in resp.iter_lines():
                    arrivals.append((time.monotonic() - t0, json.loads(line)["type"]))

        reader = threading.Thread(target=read_stream)
        reader.start()
        while not any(t == "page" for _, t in arrivals) and time.monotonic() - t0 < 10:
            time.sleep(0.01)
        quick = []
        for _ in range(3):
            start = time.monotonic()
            assert requests.get(base + "/config", timeout=10).status_code == 200
            quick.append(time.monotonic() - start)
        reader.join(60)
        kinds = [t for _, t in arrivals]
        # Inputs and predictions of every example first (one forward pass), then each map as it is computed.
        assert kinds == ["page"] + ["preview"] * 5 + ["example"] * 5 + ["done"]
        examples = [t for t, k in arrivals if k == "example"]
        last_preview = max(t for t, k in arrivals if k == "preview")
        assert max(quick) < 1.0, quick  # the page computes for seconds meanwhile
        assert examples[0] - last_preview > 0.3, arrivals  # the previews did not wait for any attribution
        # One example per captum call here (16 steps, 4 rows per call): each streams when its call ends.
        assert all(b - a > 0.2 for a, b in zip(examples[1:], examples[2:])), arrivals
    finally:
        handle.close()


def test_serve_returns_once_connections_are_accepted_and_two_visualizers_coexist(digits_visualizer, mixed_visualizer):
    port_a = digits_visualizer.serve(blocking=False, port=None, quiet=True)
    port_b = mixed_visualizer.serve(quiet=True)
    try:
        assert port_a != port_b
        a = requests.get(f"http://127.0.0.1:{port_a}{API}/config", timeout=10).json()
        b = requests.get(f"http://127.0.0.1:{port_b}{API}/config", timeout=10).json()
        assert a["title"] == "Digits" and b["title"] == "Mixed features"
        assert len(b["features"]) == 3 and len(a["features"]) == 1
        served_by = requests.get(f"http://127.0.0.1:{port_a}/", timeout=10).headers["Server"]
        assert served_by == "insights-app"  # waitress, not the Werkzeug development server
    finally:
        digits_visualizer.stop()
        mixed_visualizer.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port_a}{API}/health", timeout=2)


def test_a_token_server_prints_its_url_with_the_token(digits_visualizer, capsys):
    handle = serve(digits_visualizer, token="tok-123")
    try:
        base = f"http://127.0.0.1:{handle.port}"
        assert handle.url == base + "/?token=tok-123"
        assert requests.get(base + API + "/config", timeout=10).status_code == 401
        session = requests.Session()
        assert session.get(handle.url, timeout=10).status_code == 200
        assert session.get(base + API + "/config", timeout=10).status_code == 200  # the cookie
    finally:
        handle.close()
