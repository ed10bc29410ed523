"""A page's prediction pass doubles as the attribution's own first forward pass.

For Saliency, Input x Gradient, Occlusion and Feature Ablation, captum's first forward pass
is on the unchanged inputs; the engine runs it once, takes the predictions (and so the
targets) from it, and hands captum that output. These tests check that the model really
runs once less, and that pages, predictions and maps are exactly those of the two-step path.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from engine_helpers import RandomImages, make_model
from reliability_helpers import Digits, make_faulty_model

from insights_app import AttributionVisualizer
from insights_app.engine import ReusedForward
from insights_app.features import ImageFeature

NORMALIZE = T.Normalize((0.5, 0.4, 0.3), (0.25, 0.2, 0.3))
CLASSES = [str(i) for i in range(10)]
SHARED = [
    ("Saliency", {}),
    ("InputXGradient", {}),
    ("Occlusion", {"window": [8, 8], "stride": [8, 8]}),
    ("FeatureAblation", {"patch": 8}),
]


def visualizer(data: RandomImages) -> AttributionVisualizer:
    return AttributionVisualizer(
        make_model(),
        CLASSES,
        [ImageFeature("image", input_transforms=[NORMALIZE])],
        data,
        score_func=lambda o: torch.softmax(o, 1),
    )


def count_forwards(vis: AttributionVisualizer) -> list[int]:
    """Batch sizes of every forward pass the model runs from now on."""
    sizes: list[int] = []
    vis.engines[0].model.register_forward_hook(lambda module, inputs, output: sizes.append(int(inputs[0].shape[0])))
    return sizes


def maps_and_predictions(doc):
    out = []
    for ex in doc["examples"]:
        model = ex["models"][0]
        assert model["error"] is None
        out.append((model["predictions"], model["target"], [a["image"] for a in model["attributions"]]))
    return out


def pixels(url: str) -> np.ndarray:
    import base64
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


@pytest.mark.parametrize("method,arguments", SHARED)
def test_a_page_runs_the_model_once_less_and_shows_what_the_two_step_path_shows(method, arguments):
    data = RandomImages(n_batches=2, batch_size=8)
    body = {"method": method, "arguments": arguments, "page": 0, "page_size": 8}

    one_pass = visualizer(data)
    one_pass_calls = count_forwards(one_pass)
    fused = one_pass.page(body)

    two_step = visualizer(data)
    two_step.predictions(two_step.store.get_many(range(8)))
    two_step_calls = count_forwards(two_step)
    plain = two_step.page(body)

    # The two-step path predicted beforehand and ran captum's own passes; the one-pass page ran
    # exactly those captum passes and nothing else.
    assert one_pass_calls == two_step_calls
    a, b = maps_and_predictions(fused), maps_and_predictions(plain)
    for (pred_a, target_a, maps_a), (pred_b, target_b, maps_b) in zip(a, b):
        assert [p["index"] for p in pred_a] == [p["index"] for p in pred_b]
        assert [p["score"] for p in pred_a] == pytest.approx([p["score"] for p in pred_b], abs=1e-6)
        assert target_a == target_b == {"index": pred_a[0]["index"], "name": pred_a[0]["label"]}
        for img_a, img_b in zip(maps_a, maps_b):
            assert np.abs(pixels(img_a).astype(int) - pixels(img_b).astype(int)).max() <= 1


def test_saliency_predicts_and_attributes_a_page_in_a_single_forward_pass():
    vis = visualizer(RandomImages(n_batches=2, batch_size=8))
    calls = count_forwards(vis)
    doc = vis.page({"method": "Saliency", "page": 1, "page_size": 8})
    assert calls == [8]
    assert all(ex["models"][0]["attributions"] for ex in doc["examples"])


def test_a_requested_target_is_attributed_from_the_same_pass():
    vis = visualizer(RandomImages(n_batches=1, batch_size=4))
    calls = count_forwards(vis)
    doc = vis.attribute({"example_id": 2, "method": "Saliency", "target": "7"})
    model = doc["example"]["models"][0]
    assert calls == [1]
    assert model["target"] == {"index": 7, "name": "7"}
    assert len(model["predictions"]) == vis.default_top_k


@pytest.mark.parametrize("method", ["Saliency", "Occlusion"])
def test_a_model_failing_on_one_example_fails_that_example_only(method):
    poison = [3]
    data = Digits(n=8, batch_size=8, poison=poison)
    vis = AttributionVisualizer(make_faulty_model(), CLASSES, [ImageFeature("digit")], data)
    doc = vis.page({"method": method, "page": 0, "page_size": 8})
    for ex in doc["examples"]:
        model = ex["models"][0]
        if ex["id"] in poison:
            assert model["error"] and "prediction failed" in model["error"]
        else:
            assert model["error"] is None and model["attributions"][0]["image"].startswith("data:image/png")


def test_reused_forward_answers_only_its_own_inputs_and_only_once():
    runs: list[int] = []

    def forward(*args):
        runs.append(len(args))
        return torch.zeros(1)

    x, other = torch.ones(2), torch.ones(2)
    saved = torch.full((1,), 5.0)
    reuse = ReusedForward(forward, (x,), saved)
    assert reuse(other) is not saved and runs == [1]  # equal values, different tensor: the model runs
    assert reuse(x) is saved and reuse.reused
    assert reuse(x) is not saved and runs == [1, 1]  # used once, then released
