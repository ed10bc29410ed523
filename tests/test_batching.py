"""How many examples go into one captum call: bounded by rows and, for large images, by bytes."""

from __future__ import annotations

import pytest
from engine_helpers import RandomImages, make_model

from insights_app import AttributionVisualizer
from insights_app.features import ImageFeature


def visualizer(side: int, n: int) -> AttributionVisualizer:
    # SmallCNN pools adaptively, so it takes any image size.
    return AttributionVisualizer(
        make_model(),
        [str(i) for i in range(10)],
        [ImageFeature("image")],
        RandomImages(n_batches=1, batch_size=n, shape=(3, side, side)),
    )


def forward_batches(vis: AttributionVisualizer) -> list[int]:
    sizes: list[int] = []
    vis.engines[0].model.register_forward_hook(lambda m, i, o: sizes.append(int(i[0].shape[0])))
    return sizes


@pytest.mark.parametrize(
    "side,n,method,arguments,expected",
    [
        # Small images: up to internal_batch_size (64) rows per call.
        (
            32,
            8,
            "IntegratedGradients",
            {"n_steps": 16},
            [8] + [64] * 2,
        ),  # prediction, then 4 examples x 16 steps per call
        (32, 8, "IntegratedGradients", {"n_steps": 50}, [8] + [50] * 8),  # one example per call
        # 224x224: at most CALL_INPUT_BYTES of inputs per call (16 MiB: 27 rows of 3x224x224 floats), and
        # passes of at most PASS_INPUT_BYTES (4 MiB: 6 rows), so 16 steps are passes of 6, 6 and 4 rows.
        (224, 4, "IntegratedGradients", {"n_steps": 16}, [4] + [6, 6, 4] * 4),
        (224, 16, "Saliency", {}, [16]),  # one pass predicts and attributes all 16
    ],
)
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
    doc = vis.page(
        {
            "method": "Occlusion",
            "page": 0,
            "page_size": 8,
            "arguments": {"window": [4, 4], "stride": [2, 2], "perturbations_per_eval": 16},
        }
    )
    assert all(ex["models"][0]["error"] is None for ex in doc["examples"])
    per_call = [4] + [64] * 14 + [4]  # predictions (also captum's reference pass), 14 full passes, the last window
    assert sizes == per_call * 2


def test_call_sizes_try_each_candidate_then_keep_the_fastest():
    from insights_app.engine.call_sizes import CallSizes

    sizes = CallSizes()
    cost = {1: 0.010, 2: 0.006, 4: 0.005, 8: 0.009}  # seconds per example at each size
    used = []
    for _ in range(12):
        size = sizes.choose("key", rule=1, cap=8, n=8)
        used.append(size)
        for _ in range(8 // size):
            sizes.record("key", size, size, cost[size] * size)
    # Each size on two batches, two sizes at a time, a larger one while the last doubling paid.
    assert used[:8] == [1, 2, 1, 2, 4, 4, 8, 8]
    assert used[-1] == 4 and sizes.describe()["key"]["chosen"] == 4
    assert sizes.choose("key", rule=1, cap=8, n=1) == 1  # a batch no larger than the rule is one call
    with sizes.static():  # precompute: batches that do not depend on what was measured
        assert sizes.choose("key", rule=1, cap=8, n=8) == 1
    assert sizes.choose("key", rule=1, cap=8, n=8) == 4


def test_a_slow_first_page_does_not_decide_the_call_size():
    """A model's first batch runs cold (cnn32 Integrated Gradients: 15.8 ms per example against 10.3
    warm). The candidates are tried in turn, each on two batches, so the size tried first is judged
    on a warm batch too and is kept when it is the fastest."""
    from insights_app.engine.call_sizes import CallSizes

    sizes = CallSizes()
    warm = {1: 0.010, 2: 0.012, 4: 0.011}  # seconds per example, once warm
    used = []
    for batch in range(8):
        size = sizes.choose("key", rule=1, cap=4, n=4)
        used.append(size)
        for _ in range(4 // size):
            sizes.record("key", size, size, warm[size] * size * (3 if batch == 0 else 1))
    assert used[:4] == [1, 2, 1, 2]
    assert used[4:] == [1] * 4 and sizes.describe()["key"]["chosen"] == 1


def test_a_method_with_a_high_cost_per_call_gets_larger_calls():
    """Per-call overhead (captum's setup, a tiny model) is measured, and the page is then computed in
    fewer, larger calls than the static rule gives (here: one example per call)."""
    import time as _time

    from insights_app.methods import method

    vis = visualizer(32, 64)
    calls: list[int] = []

    @method("SlowCalls", label="Slow calls", cost=lambda p, hw: 64)  # 64 passes: the rule says one example per call
    def slow_calls(ctx):
        calls.append(int(ctx.inputs[0].shape[0]))
        _time.sleep(0.02)  # a fixed cost per call
        return (ctx.inputs[0] * 0,)

    vis.register_method(slow_calls)
    for page in range(8):
        vis.page({"method": "SlowCalls", "page": page, "page_size": 8})
    assert calls[:8] == [1] * 8  # the first page: the static rule
    last = calls[-2:]
    assert max(last) >= 8, calls  # later pages: the whole page in one call


def test_deletion_curves_at_224_run_in_passes_of_at_most_6_rows_with_the_same_values():
    """Deletion and insertion evaluate rows the way attributions do (at most PASS_INPUT_BYTES of
    inputs per pass: 64-row passes page-faulted their activations and took twice as long);
    the curves do not depend on how the rows are split."""
    import torch

    from insights_app.metrics.deletion import curves

    vis = visualizer(224, 4)
    engine = vis.engines[0]
    sizes = forward_batches(vis)
    doc = vis.page(
        {
            "method": "Saliency",
            "page": 0,
            "page_size": 4,
            "metrics": ["deletion", "insertion"],
            "metric_arguments": {"steps": 10},
        }
    )
    got = [ex["models"][0]["metrics"]["deletion"]["curve"] for ex in doc["examples"]]
    assert max(sizes[1:]) == 6 and sum(sizes[1:]) == 2 * 4 * 11  # after the prediction pass: 88 rows in passes of 6
    ex = vis.store.get_many([0, 1, 2, 3])
    x = torch.stack([e.inputs[0] for e in ex])
    maps = [torch.rand(4, 224, 224)]
    scores = lambda v: torch.softmax(engine.model(v), 1)  # noqa: E731
    target = torch.tensor([0, 1, 2, 3])
    split = curves(scores, (x,), maps, (torch.zeros_like(x),), target, 10, 16, 6)
    whole = curves(scores, (x,), maps, (torch.zeros_like(x),), target, 10, 16, 64)
    for a, b in zip(split, whole):
        assert torch.allclose(torch.from_numpy(a), torch.from_numpy(b), atol=1e-5)
    assert all(len(c) == 11 for c in got)
