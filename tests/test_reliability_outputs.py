"""Models whose outputs or gradients cannot be shown: non-finite numbers, the wrong shape.

Every answer must be strict JSON (no NaN or Infinity, which JSON does not have and the page's
JSON.parse refuses), and what cannot be shown is that example's error, named as such.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn
from reliability_helpers import CLASSES, Digits, make_visualizer

from insights_app import AttributionVisualizer, Batch
from insights_app.features import GeneralFeature
from insights_app.testing import TinyCNN, seeded
from insights_app.transport.notebook import handle_request
from insights_app.transport.server import create_app

MARK = 0.5  # examples whose pixel (0, 0) is MARK are the ones the models below misbehave on


def strict_json(text: str) -> Any:
    """Parse JSON as a browser does: NaN, Infinity and -Infinity are errors."""

    def refuse(constant: str) -> Any:
        raise AssertionError(f"{constant} in the answer: not JSON")

    return json.loads(text, parse_constant=refuse)


def marked_digits(marked=(1, 5)) -> Digits:
    data = Digits(n=8, batch_size=8)
    for i in marked:
        data.batches[0].inputs[i, 0, 0, 0] = MARK
    return data


def is_marked(x: torch.Tensor) -> torch.Tensor:
    return (x[:, 0, 0, 0] - MARK).abs() < 1e-6


class NaNScores(TinyCNN):
    """NaN (or +inf) logits for the marked examples."""

    def __init__(self, value: float = float("nan")) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return torch.where(is_marked(x)[:, None], torch.full_like(out, self.value), out)


class _NaNGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(is_marked(x))
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (marked,) = ctx.saved_tensors
        return torch.where(marked.reshape(-1, *([1] * (grad.dim() - 1))), torch.full_like(grad, float("nan")), grad)


class NaNGradients(TinyCNN):
    """Finite predictions, NaN gradients for the marked examples."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(_NaNGradient.apply(x))


def errors_of(doc: Any) -> list[Any]:
    return [m["error"] for ex in doc["examples"] for m in ex["models"]]


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
@pytest.mark.parametrize("method", ["Saliency", "IntegratedGradients", "Occlusion"])
def test_non_finite_scores_are_that_examples_error_in_strict_json(value, method):
    vis = make_visualizer(seeded(NaNScores, value), marked_digits())
    client = create_app(vis).test_client()
    body = {"method": method, "page_size": 8, "arguments": {"n_steps": 4} if method == "IntegratedGradients" else {}}
    page = strict_json(client.post("/api/v1/examples", json=body).get_data(as_text=True))
    errors = errors_of(page)
    assert [e is not None for e in errors] == [i in (1, 5) for i in range(8)]
    assert "not finite" in errors[1] and page["examples"][1]["models"][0]["predictions"] == []
    assert all(m["attributions"] for ex in page["examples"] for m in ex["models"] if m["error"] is None)
    stream = client.post("/api/v1/examples", json=dict(body, stream=True)).get_data(as_text=True)
    events = [strict_json(line) for line in stream.splitlines()]
    assert [e["type"] for e in events][-1] == "done"
    one = client.post("/api/v1/attribute", json={"example_id": 5, "method": method})
    assert "not finite" in strict_json(one.get_data(as_text=True))["example"]["models"][0]["error"]
    out: list[Any] = []
    handle_request(vis, "examples", body, out.append)
    strict_json(json.dumps(out))


def test_non_finite_attributions_are_that_examples_error():
    vis = make_visualizer(seeded(NaNGradients), marked_digits())
    client = create_app(vis).test_client()
    for method in ("Saliency", "InputXGradient"):  # their gradients are taken at the (marked) input itself
        page = strict_json(
            client.post("/api/v1/examples", json={"method": method, "page_size": 8, "arguments": {}}).get_data(
                as_text=True
            )
        )
        errors = errors_of(page)
        assert [e is not None for e in errors] == [i in (1, 5) for i in range(8)], method
        assert "not finite" in errors[5]
        assert page["examples"][5]["models"][0]["predictions"]  # the prediction itself was fine


class TabularNaN(nn.Module):
    """Tabular input -> 10 classes; the gradient of the marked rows is NaN."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def test_non_finite_tabular_values_and_scores_never_reach_json():
    torch.manual_seed(0)
    x = torch.rand(4, 4)
    x[2, 1] = float("nan")  # a missing value in the data itself
    vis = AttributionVisualizer(
        TabularNaN(),
        CLASSES,
        [GeneralFeature("row", ["a", "b", "c", "d"])],
        [Batch(x, torch.tensor([1, 2, 3, 4]))],
        score_func=lambda o: o.softmax(1),
    )
    page = strict_json(
        create_app(vis)
        .test_client()
        .post("/api/v1/examples", json={"method": "Saliency", "page_size": 4})
        .get_data(as_text=True)
    )
    assert page["examples"][2]["features"][0]["original"] == [
        pytest.approx(float(x[2, 0])),
        None,
        pytest.approx(float(x[2, 2])),
        pytest.approx(float(x[2, 3])),
    ]
    assert "not finite" in page["examples"][2]["models"][0]["error"]
    assert [e is None for e in errors_of(page)] == [True, True, False, True]


class Truncating(TinyCNN):
    """Returns fewer rows than it was given (``out[:1]``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)[:1]


class Transposed(TinyCNN):
    """Returns (classes, batch) instead of (batch, classes)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).t()


@pytest.mark.parametrize("method", ["Saliency", "IntegratedGradients"])
def test_an_output_with_the_wrong_rows_says_what_was_expected(method):
    vis = make_visualizer(seeded(Transposed), Digits(n=8, batch_size=8))
    resp = create_app(vis).test_client().post("/api/v1/examples", json={"method": method, "page_size": 8})
    assert resp.status_code == 200
    errors = errors_of(strict_json(resp.get_data(as_text=True)))
    assert (
        errors
        == [
            "prediction failed for Transposed: the model returned 10 rows for 1 example; it must "
            "return one row of scores per example, batch first"
        ]
        * 8
    )


def test_a_model_that_answers_one_row_per_call_is_shown_from_one_example_per_call():
    """``out[:1]`` is wrong on a batch, right alone: the batch fails, each example alone is shown."""
    vis = make_visualizer(seeded(Truncating), Digits(n=8, batch_size=8))
    page = strict_json(
        create_app(vis)
        .test_client()
        .post("/api/v1/examples", json={"method": "Saliency", "page_size": 8})
        .get_data(as_text=True)
    )
    assert errors_of(page) == [None] * 8
    alone = seeded(TinyCNN)
    x = torch.cat([b.inputs for b in Digits(n=8, batch_size=8).batches])
    with torch.no_grad():
        top = alone(x).softmax(1).argmax(1).tolist()
    assert [ex["models"][0]["predictions"][0]["index"] for ex in page["examples"]] == top


def test_images_written_without_escaping_give_the_same_json_as_json_dumps():
    """The renderer's data URLs skip json's escaping scan; the answer must be byte for byte what
    ``json.dumps`` writes, whatever surrounds them (nesting, sorted keys, look-alike strings)."""
    from insights_app.page import jsonwire
    from insights_app.page.render import encode_png_base64

    image = encode_png_base64(np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8))
    assert isinstance(image, jsonwire.Verbatim)
    doc = {
        "z": [image, {"image": image, "label": 'a "quoted" \\ label\n'}],
        "a": (1.5, None, image),
        "look-alike": "verbatim:0123456789abcdef:0",
        "nested": [[[image]]],
    }
    for kwargs in ({}, {"sort_keys": True}, {"indent": 2}):
        assert jsonwire.dumps(doc, **kwargs) == json.dumps(doc, **kwargs)
    assert strict_json(jsonwire.dumps(doc))["nested"][0][0][0] == image
    # Past the search budget without an image: encoded as it is, images found later included.
    late = {"values": list(range(jsonwire.SEARCH_VALUES + 10)), "image": image}
    assert jsonwire.dumps(late) == json.dumps(late)
    with pytest.raises(jsonwire.NotJSONCompliant):
        jsonwire.dumps({"image": image, "score": float("nan")})


def test_a_page_of_images_over_http_is_strict_json_with_the_maps_intact():
    vis = make_visualizer(TinyCNN(), Digits(n=8, batch_size=8))
    client = create_app(vis).test_client()
    resp = client.post("/api/v1/examples", json={"method": "Saliency", "page": 0, "page_size": 4})
    assert resp.status_code == 200
    doc = strict_json(resp.get_data(as_text=True))
    direct = vis.page({"method": "Saliency", "page": 0, "page_size": 4})
    assert [m["attributions"][0]["image"] for ex in doc["examples"] for m in ex["models"]] == [
        m["attributions"][0]["image"] for ex in direct["examples"] for m in ex["models"]
    ]
    assert all(
        m["attributions"][0]["image"].startswith("data:image/png;base64,")
        for ex in doc["examples"]
        for m in ex["models"]
    )
