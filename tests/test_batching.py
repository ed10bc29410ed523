"""How many examples go into one captum call: bounded by rows and, for large images, by bytes."""

from __future__ import annotations

from typing import List

import pytest

from engine_helpers import RandomImages, make_model
from insights_app import AttributionVisualizer
from insights_app.features import ImageFeature


def visualizer(side: int, n: int) -> AttributionVisualizer:
    # SmallCNN pools adaptively, so it takes any image size.
    return AttributionVisualizer(make_model(), [str(i) for i in range(10)], [ImageFeature("image")],
                                 RandomImages(n_batches=1, batch_size=n, shape=(3, side, side)))


def forward_batches(vis: AttributionVisualizer) -> List[int]:
    sizes: List[int] = []
    vis.engines[0].model.register_forward_hook(lambda m, i, o: sizes.append(int(i[0].shape[0])))
    return sizes


@pytest.mark.parametrize("side,n,method,arguments,expected", [
    # Small images: up to internal_batch_size (64) rows per call.
    (32, 8, "IntegratedGradients", {"n_steps": 16}, [8] + [64] * 2),  # prediction, then 4 examples x 16 steps per call
    (32, 8, "IntegratedGradients", {"n_steps": 50}, [8] + [50] * 8),  # one example per call
    # 224x224: at most CALL_INPUT_BYTES of inputs per call (16 MiB: 27 rows of 3x224x224 floats).
    (224, 4, "IntegratedGradients", {"n_steps": 16}, [4] + [16] * 4),
    (224, 16, "Saliency", {}, [16]),  # one pass predicts and attributes all 16
])
def test_rows_per_captum_call(side, n, method, arguments, expected):
    vis = visualizer(side, n)
    sizes = forward_batches(vis)
    doc = vis.page({"method": method, "arguments": arguments, "page": 0, "page_size": n})
    assert all(ex["models"][0]["error"] is None for ex in doc["examples"])
    assert sizes == expected


def test_occlusion_batches_examples_by_perturbations_per_pass_not_by_window_count():
    # 32x32, window 4, stride 2: 225 windows, 16 per pass. Four examples fill a pass of 64 rows
    # (one example per call would leave every pass at 16 rows: measured 1.3x slower).
    vis = visualizer(32, 8)
    sizes = forward_batches(vis)
    doc = vis.page({"method": "Occlusion", "page": 0, "page_size": 8,
                    "arguments": {"window": [4, 4], "stride": [2, 2], "perturbations_per_eval": 16}})
    assert all(ex["models"][0]["error"] is None for ex in doc["examples"])
    per_call = [4] + [64] * 14 + [4]  # predictions (also captum's reference pass), 14 full passes, the last window
    assert sizes == per_call * 2
