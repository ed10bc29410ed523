"""Property tests of request validation: any JSON value in any field is used, or refused with a 400.

A user (or a script) can put anything into a request. For every field of both POST routes,
and for every parameter of every method, hypothesis draws arbitrary JSON values (plus the
boundary values and near-misses most likely to slip through) and checks there is nothing in
between "accepted, and the value is what the query carries" and "a 400 naming that field".
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_helpers import CLASSES, Digits, make_visualizer, ndjson_events

from insights_app.errors import ValidationError
from insights_app.limits import PAGE_MAX, PAGE_SIZE_MAX, TOP_K_MAX
from insights_app.transport.server import create_app

VIS = make_visualizer(dataset=Digits(n=8, batch_size=4))
METHODS = list(VIS.methods)
BASE_PAGE: dict[str, Any] = {"method": "Saliency", "page_size": 2}
BASE_ATTR: dict[str, Any] = {"method": "Saliency", "example_id": 1}

INTERESTING = (
    [
        None,
        True,
        False,
        0,
        1,
        -1,
        2,
        3.0,
        2.5,
        9,
        10,
        20,
        21,
        63,
        64,
        65,
        100,
        1000,
        1001,
        2**31,
        2**63,
        -(2**63),
        10**400,
        -(10**400),
        1e308,
        -1e-308,
        float("nan"),
        float("inf"),
        float("-inf"),
        "",
        "0",
        "5",
        "3",
        "all",
        "positive",
        "negative",
        "absolute_value",
        "heat_map",
        "masked_image",
        "alpha_scaling",
        "original_image",
        "blended_heat_map",
        "correct",
        "incorrect",
        "label",
        "prediction",
        "zeros",
        "blur",
        "riemann_left",
        "vargrad",
        "conv1",
        "relu1",
        "conv2",
        "no.such.layer",
        "x" * 400,
        "\u0000",
        "<script>alert(1)</script>",
        [],
        [1],
        [1, 1],
        [2, 2],
        [8, 8],
        [9, 9],
        [0, 1],
        [1, "1"],
        [3, 3, 3],
        {},
        {"a": 1},
    ]
    + METHODS
    + CLASSES
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
values = st.one_of(st.sampled_from(INTERESTING), json_values)


def _fields() -> list[tuple[str, str, dict[str, Any]]]:
    """(route, dotted field path, base body) for every field a client can send."""
    out = []
    common = [
        "method",
        "arguments",
        "visualization",
        "top_k",
        "visualization.method",
        "visualization.sign",
        "visualization.outlier_perc",
    ]
    for path in common + [
        "filter",
        "page",
        "page_size",
        "stream",
        "filter.classes",
        "filter.prediction",
        "filter.class_source",
    ]:
        out.append(("examples", path, BASE_PAGE))
    for path in common + ["example_id", "model", "target"]:
        out.append(("attribute", path, BASE_ATTR))
    for name, spec in VIS.methods.items():
        for p in spec.params:
            out.append(("examples", f"arguments.{p.name}", dict(BASE_PAGE, method=name)))
    return out


FIELDS = _fields()


def _likely_valid(route: str, path: str, base: dict[str, Any]) -> list[Any]:
    """Values near the edge of what a field accepts, so that "accepted" is drawn as often as "refused"."""
    common = {
        "method": METHODS,
        "arguments": [None, {}],
        "visualization": [None, {}, {"method": "heat_map", "sign": "all"}],
        "top_k": [1, 5, 10, 20, 21, 0, 4.0],
        "visualization.method": ["heat_map", "masked_image", "original_image"],
        "visualization.sign": ["all", "positive", "negative", "absolute_value"],
        "visualization.outlier_perc": [0, 0.5, 2, 50, 50.0001, -0.0],
        "filter": [None, {}, {"classes": ["3", 4]}],
        "page": [0, 1, PAGE_MAX, PAGE_MAX + 1, 7.0],
        "page_size": [1, 2, PAGE_SIZE_MAX, PAGE_SIZE_MAX + 1, 3.0],
        "stream": [True, False],
        "filter.classes": [[], ["0"], [1, "1"], CLASSES, list(range(10)), [10]],
        "filter.prediction": ["all", "correct", "incorrect"],
        "filter.class_source": ["prediction", "label"],
        "example_id": [0, 7, 8, 1.0],
        "model": [0, 1],
        "target": [None, 0, 9, "7", 10],
    }
    if path in common:
        return common[path]
    spec = VIS.methods[base["method"]].param(path.split(".", 1)[1])
    out: list[Any] = [spec.default, None]
    if spec.type in ("int", "float"):
        lo, hi = spec.minimum, spec.maximum
        out += [lo, hi, (lo + hi) / 2, lo - 1, hi + 1] + ([float(lo), int(hi) // 3] if spec.type == "int" else [])
    elif spec.type == "enum":
        out += list(spec.choices)
    elif spec.type == "bool":
        out += [True, False]
    elif spec.type == "shape":
        out += [[1, 1], [2, 3], [8, 8], [9, 1], [4.0, 2]]
    elif spec.type == "layer":
        out += ["", "conv1", "conv2", "fc", "relu1"]
    return out


field_and_value = st.sampled_from(FIELDS).flatmap(
    lambda f: st.tuples(st.just(f), st.one_of(st.sampled_from(_likely_valid(*f)), values))
)


def with_value(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(base)
    obj = body
    parts = path.split(".")
    for part in parts[:-1]:
        obj = obj.setdefault(part, {})
    obj[parts[-1]] = value
    return body


def parse(route: str, body: Any) -> Any:
    return VIS.parse_page(body) if route == "examples" else VIS.parse_attribute(body)


def same(got: Any, sent: Any) -> bool:
    """The query carries what was sent (integral floats become ints, lists become tuples)."""
    if isinstance(sent, list):
        return isinstance(got, (list, tuple)) and len(got) == len(sent) and all(map(same, got, sent))
    if isinstance(sent, bool) or isinstance(got, bool):
        return got is sent
    return got == sent


def class_idx(v: Any) -> int:
    return CLASSES.index(v) if isinstance(v, str) else v


def check_used(q: Any, path: str, value: Any) -> None:
    """An accepted value must be the one the query will run with."""
    head, _, rest = path.partition(".")
    if head == "method":
        assert q.method.name == value
    elif head == "arguments":
        given_args = value if not rest else {rest: value}
        if given_args is not None:
            for k, v in given_args.items():
                assert same(q.arguments[k], v), (k, q.arguments[k], v)
    elif head == "visualization":
        given_vis = value if not rest else {rest: value}
        for k, v in (given_vis or {}).items():
            assert same(getattr(q.visualization, k), v)
    elif head == "filter":
        given_f = value if not rest else {rest: value}
        for k, v in (given_f or {}).items():
            want = tuple(sorted({class_idx(c) for c in v})) if k == "classes" else v
            assert getattr(q.filter, k) == want
    elif head == "top_k":
        assert q.top_k == min(value, len(CLASSES)) and 1 <= q.top_k <= TOP_K_MAX
    elif head == "target":
        assert q.target == (None if value is None else class_idx(value))
    else:  # page, page_size, stream, example_id, model
        assert same(getattr(q, head), value)


def names_field(message: str, path: str) -> bool:
    """A rejection names the field that was sent, a field inside it, or the object that holds it."""
    field = message.split(":", 1)[0]
    return field == path or field.startswith(path + ".") or path.startswith(field + ".")


SETTINGS = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck), print_blob=True)


@settings(max_examples=800, **SETTINGS)
@given(field_value=field_and_value)
def test_any_value_in_any_field_is_used_or_named_in_a_validation_error(field_value):
    (route, path, base), value = field_value
    body = with_value(base, path, value)
    try:
        q = parse(route, body)
    except ValidationError as exc:
        assert names_field(str(exc), path), f"{path}={value!r} rejected as {exc}"
        return
    check_used(q, path, value)


@settings(max_examples=200, **SETTINGS)
@given(
    body=st.one_of(
        json_values,
        st.dictionaries(st.sampled_from(["method", "page", "top_k", "filter", "bogus"]), values, max_size=3),
    )
)
def test_any_body_is_a_query_or_a_validation_error(body):
    for route in ("examples", "attribute"):
        try:
            parse(route, body)
        except ValidationError:
            pass


CLIENT = create_app(VIS).test_client()


def post(route: str, body: Any):
    # json.dumps writes NaN/Infinity and 400-digit integers, which Python's JSON reader accepts: so must we.
    return CLIENT.post(f"/api/v1/{route}", data=json.dumps(body), content_type="application/json")


@pytest.mark.slow
@settings(max_examples=250, **SETTINGS)
@given(field_value=field_and_value)
def test_over_http_every_value_is_a_200_using_it_or_a_400_naming_the_field(field_value):
    (route, path, base), value = field_value
    body = with_value(base, path, value)
    resp = post(route, body)
    assert resp.status_code in (200, 400), (path, value, resp.status_code, resp.get_data(as_text=True)[:300])
    if resp.mimetype == "application/x-ndjson":  # stream: true
        events = ndjson_events(resp.get_data())
        assert [e["type"] for e in events] == ["page"] + ["example"] * (len(events) - 2) + ["done"], events[-1]
        data = {"page": events[0], "examples": [e["example"] for e in events[1:-1]]}
    else:
        data = resp.get_json()
    if resp.status_code == 400:
        assert isinstance(data.get("error"), str) and names_field(data["error"], path), (path, value, data)
        return
    if route == "attribute":
        model = data["example"]["models"][0]
        assert data["example"]["id"] == body["example_id"]
        if path == "model":
            assert model["index"] == value
        if path == "target" and value is not None:
            assert model["target"]["index"] == class_idx(value)
    else:
        if path in ("page", "page_size"):
            assert data["page"][path] == value
        assert len(data["examples"]) <= body.get("page_size", 4)
        model = data["examples"][0]["models"][0] if data["examples"] else None
    if model is not None:
        if path == "top_k":
            assert len(model["predictions"]) == min(value, len(CLASSES))
        assert model["error"] is None, model["error"]


@pytest.mark.parametrize(
    "text,page",
    [
        ("[" * 100_000, None),  # deeper than Python's JSON reader can go
        ('{"page": 1' + " " * 10, None),  # truncated
        ('\ufeff{"page": 3}', 3),  # a byte-order mark is allowed by JSON readers
        ('{"page": 1, "page": 2}', 2),  # duplicate keys: the last one wins, as in every JSON reader
        ("NaN", None),
        ("1e999", None),
        ("-" * 5, None),
        ('"just a string"', None),
        ("\xff\xfe{}", None),
    ],
    ids=["deep", "truncated", "bom", "duplicate-keys", "nan", "1e999", "dashes", "string", "latin1"],
)
def test_malformed_or_hostile_bodies_are_400s(text, page):
    data = text.encode("latin-1") if text.startswith("\xff") else text.encode("utf-8")
    resp = CLIENT.post("/api/v1/examples", data=data, content_type="application/json")
    assert resp.is_json
    if page is None:
        assert resp.status_code == 400 and resp.get_json()["error"]
    else:
        assert resp.status_code == 200 and resp.get_json()["page"]["page"] == page


@pytest.mark.parametrize("value", [10**400, -(10**400), 2**1024])
@pytest.mark.parametrize("path", ["visualization.outlier_perc", "arguments.stdevs", "top_k", "page"])
def test_huge_integers_are_400s_not_crashes(path, value):
    base = dict(BASE_PAGE, method="NoiseTunnel(Saliency)") if path == "arguments.stdevs" else BASE_PAGE
    resp = post("examples", with_value(base, path, value))
    assert resp.status_code == 400
    assert names_field(resp.get_json()["error"], path)


def test_bounds_are_the_documented_ones():
    """The limits the config route advertises are the ones validation enforces."""
    limits = VIS.config()["limits"]
    assert limits["page_size_max"] == PAGE_SIZE_MAX and limits["top_k_max"] == TOP_K_MAX
    assert post("examples", dict(BASE_PAGE, page_size=PAGE_SIZE_MAX)).status_code == 200
    assert post("examples", dict(BASE_PAGE, page_size=PAGE_SIZE_MAX + 1)).status_code == 400
    assert post("examples", dict(BASE_PAGE, page=PAGE_MAX)).status_code == 200
    assert post("examples", dict(BASE_PAGE, page=PAGE_MAX + 1)).status_code == 400
    assert post("examples", dict(BASE_PAGE, top_k=TOP_K_MAX)).status_code == 200
    assert post("examples", dict(BASE_PAGE, top_k=TOP_K_MAX + 1)).status_code == 400
    assert math.isfinite(limits["max_scan"])


@pytest.mark.parametrize(
    "method,arguments,field",
    [
        ("GuidedGradCam", {"layer": "fc"}, "arguments.layer"),  # no H x W to upsample: captum gives back nothing
        ("GuidedGradCam", {"layer": "flat"}, "arguments.layer"),
        ("LayerGradCam", {"layer": "no.such.layer"}, "arguments.layer"),
        ("Occlusion", {"window": [2, 2], "stride": [3, 1]}, "arguments.stride"),  # captum asserts stride <= window
        ("Occlusion", {"window": [9, 9]}, "arguments.window"),  # larger than the 8x8 image
        ("FeatureAblation", {"patch": 9}, "arguments.patch"),
    ],
)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_arguments_that_only_fail_inside_captum_are_400s_naming_the_field(method, arguments, field, stream):
    resp = post("examples", {"method": method, "arguments": arguments, "page_size": 2, "stream": stream})
    if stream and resp.status_code == 200:  # found while computing: the stream ends with the error
        last = ndjson_events(resp.get_data())[-1]
        assert last["type"] == "error" and last["error"].startswith(field + ":"), last
    else:
        assert resp.status_code == 400 and resp.get_json()["error"].startswith(field + ":"), resp.get_json()
