"""Dataset browsing, filters, paging, targets, contributions and caching of the visualizer."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from engine_helpers import EndlessImages, RandomImages, make_model

from insights_app import AttributionVisualizer, Batch
from insights_app.errors import ValidationError
from insights_app.features import GeneralFeature, ImageFeature, TextFeature
from insights_app.testing import BagOfEmbeddings, TwoInputNet

CLASSES = [f"c{i}" for i in range(10)]
FAST = {"method": "Saliency"}


def visualizer(data, models=None, **kw):
    return AttributionVisualizer(
        models or [make_model()], CLASSES, [ImageFeature("image")], data, score_func=lambda o: torch.softmax(o, 1), **kw
    )


def page_ids(vis, **body):
    return [e["id"] for e in vis.page(dict(FAST, **body))["examples"]]


def test_pages_forward_and_back_have_stable_ids_and_content():
    vis = visualizer(RandomImages(n_batches=4, batch_size=4), max_cached_examples=4)
    first = vis.page(dict(FAST, page=0))
    assert [e["id"] for e in first["examples"]] == [0, 1, 2, 3]
    assert first["page"]["has_next"] and not first["page"]["has_prev"]
    last = vis.page(dict(FAST, page=3))
    assert [e["id"] for e in last["examples"]] == [12, 13, 14, 15]
    assert not last["page"]["has_next"] and last["page"]["total"] == 16
    again = vis.page(dict(FAST, page=0))  # example 0 fell out of the 4-example cache: the source restarts
    assert vis.store.restarts >= 1
    assert again["examples"][0]["features"][0]["original"] == first["examples"][0]["features"][0]["original"]
    assert vis.page(dict(FAST, page=9))["examples"] == []


def test_one_shot_generator_keeps_examples_up_to_its_bound():
    src = RandomImages(n_batches=4, batch_size=4)
    vis = visualizer((b for b in src.batches), max_cached_examples=12)
    assert page_ids(vis, page=1, page_size=4) == [4, 5, 6, 7]
    assert page_ids(vis, page=0, page_size=4) == [0, 1, 2, 3]  # back: still cached, nothing replayed
    assert page_ids(vis, page=2, page_size=4) == [8, 9, 10, 11]
    assert page_ids(vis, page=3, page_size=4) == [12, 13, 14, 15]
    assert page_ids(vis, page=2, page_size=4) == [8, 9, 10, 11]  # one page back is within the bound
    with pytest.raises(Exception, match="no longer available"):  # 12 kept: the least recently used went
        vis.page(dict(FAST, page=1, page_size=4))


def test_captum_tutorial_generator_ending_with_stopiteration_is_the_end():
    src = RandomImages(n_batches=2, batch_size=4)

    def formatted_data_iter():
        it = iter(src.batches)
        while True:
            yield next(it)  # raises StopIteration inside a generator (RuntimeError since PEP 479)

    vis = visualizer(formatted_data_iter())
    assert page_ids(vis, page=1) == [4, 5, 6, 7]
    res = vis.page(dict(FAST, page=2))
    assert res["examples"] == [] and res["page"]["total"] == 8


def test_filter_matching_nothing_stops_after_a_bounded_scan():
    vis = visualizer(EndlessImages(), max_scan=96)
    res = vis.page(dict(FAST, filter={"classes": ["c3"], "class_source": "label"}))
    assert res["examples"] == []
    assert res["page"]["scanned"] == 96 and not res["page"]["exhausted"]
    assert "96 examples scanned" in res["page"]["message"]
    res2 = vis.page(dict(FAST, filter={"classes": ["c3"], "class_source": "label"}))
    assert res2["page"]["scanned"] == 192  # the next request scans further, it does not start over


def test_filter_on_a_finite_dataset_reports_the_whole_scan():
    vis = visualizer(RandomImages(n_batches=3, batch_size=4, n_classes=2))
    res = vis.page(dict(FAST, filter={"classes": ["c9"], "class_source": "label"}))
    assert res["examples"] == [] and res["page"]["exhausted"] and res["page"]["scanned"] == 12
    assert "whole dataset" in res["page"]["message"]


def test_correct_and_incorrect_partition_the_labeled_examples():
    vis = visualizer(RandomImages(n_batches=4, batch_size=4))
    correct = page_ids(vis, filter={"prediction": "correct"}, page_size=16)
    incorrect = page_ids(vis, filter={"prediction": "incorrect"}, page_size=16)
    assert sorted(correct + incorrect) == list(range(16))
    for e in vis.page(dict(FAST, filter={"prediction": "correct"}, page_size=16))["examples"]:
        assert e["models"][0]["predictions"][0]["index"] == e["label"]["index"]


def test_class_filter_on_predictions_and_on_labels():
    vis = visualizer(RandomImages(n_batches=4, batch_size=4))
    everything = vis.page(dict(FAST, page_size=16))["examples"]
    top = everything[0]["models"][0]["predictions"][0]["label"]
    by_pred = vis.page(dict(FAST, page_size=16, filter={"classes": [top]}))["examples"]
    assert by_pred and all(e["models"][0]["predictions"][0]["label"] == top for e in by_pred)
    lab = everything[0]["label"]["name"]
    by_label = vis.page(dict(FAST, page_size=16, filter={"classes": [lab], "class_source": "label"}))["examples"]
    assert {e["id"] for e in by_label} == {e["id"] for e in everything if e["label"]["name"] == lab}


def test_unlabeled_examples_are_shown_unless_the_filter_needs_labels():
    vis = visualizer(RandomImages(n_batches=2, batch_size=4, labels=False))
    shown = vis.page(dict(FAST, page_size=8))["examples"]
    assert len(shown) == 8 and all(e["label"] is None for e in shown)
    top = shown[0]["models"][0]["predictions"][0]["label"]
    assert page_ids(vis, filter={"classes": [top]}, page_size=8)
    assert page_ids(vis, filter={"prediction": "correct"}) == []


def test_each_model_is_attributed_to_its_own_top_prediction():
    models = [make_model(seed=1), make_model(seed=2)]
    vis = visualizer(RandomImages(n_batches=2, batch_size=4), models=models)
    ex = vis.page(dict(FAST, page_size=8))["examples"]
    differing = 0
    for e in ex:
        assert len(e["models"]) == 2
        for m in e["models"]:
            assert m["target"]["index"] == m["predictions"][0]["index"]
        differing += e["models"][0]["target"] != e["models"][1]["target"]
    assert differing > 0  # the two models disagree somewhere, so the check above means something


def test_attribute_to_any_class_changes_the_image():
    vis = visualizer(RandomImages(n_batches=1, batch_size=4))
    base = vis.attribute({"example_id": 2, "method": "IntegratedGradients", "arguments": {"n_steps": 8}})
    top = base["example"]["models"][0]["predictions"][0]["index"]
    other = (top + 1) % 10
    moved = vis.attribute(
        {"example_id": 2, "target": CLASSES[other], "method": "IntegratedGradients", "arguments": {"n_steps": 8}}
    )
    assert moved["example"]["models"][0]["target"] == {"index": other, "name": CLASSES[other]}
    assert (
        moved["example"]["models"][0]["attributions"][0]["image"]
        != base["example"]["models"][0]["attributions"][0]["image"]
    )
    with pytest.raises(ValidationError, match="example_id"):
        vis.attribute({"example_id": 99})
    with pytest.raises(ValidationError, match="target"):
        vis.attribute({"example_id": 0, "target": "nope"})


def test_repeated_page_is_served_from_the_cache():
    vis = visualizer(RandomImages(n_batches=1, batch_size=4))
    body = {"method": "IntegratedGradients", "arguments": {"n_steps": 16}}
    first = vis.page(body)
    misses = vis.engines[0].results.misses
    second = vis.page(body)
    assert vis.engines[0].results.misses == misses and vis.engines[0].results.hits >= 4
    assert first["examples"] == second["examples"]


def test_streamed_page_yields_the_first_example_before_the_rest():
    vis = visualizer(RandomImages(n_batches=2, batch_size=4))
    events = list(vis.iter_page(vis.parse_page({"method": "Saliency", "page_size": 8, "stream": True})))
    assert [e["type"] for e in events] == ["page"] + ["example"] * 8 + ["done"]
    assert [e["example"]["id"] for e in events[1:-1]] == list(range(8))


def test_contributions_sum_to_one_across_features():
    torch.manual_seed(0)
    data = [Batch((torch.rand(4, 1, 8, 8), torch.rand(4, 4)), torch.tensor([0, 1, 2, 0]))]
    vis = AttributionVisualizer(
        [TwoInputNet()],
        ["a", "b", "c"],
        [ImageFeature("scan"), GeneralFeature("vitals", ["age", "bp", "hr", "temp"])],
        data,
        score_func=lambda o: torch.softmax(o, 1),
    )
    for method in ("IntegratedGradients", "Saliency", "FeatureAblation", "Occlusion"):
        for ex in vis.page({"method": method})["examples"]:
            attrs = ex["models"][0]["attributions"]
            assert [a["type"] for a in attrs] == ["image", "general"]
            assert sum(a["contribution"] for a in attrs) == pytest.approx(1.0)
            assert attrs[1]["categories"] == ["age", "bp", "hr", "temp"] and len(attrs[1]["scores"]) == 4
            assert attrs[0]["image"].startswith("data:image/png;base64,")


def test_text_feature_gets_one_score_per_token():
    torch.manual_seed(0)
    words = ["a", "great", "film", "overall", "."]
    data = [Batch(torch.rand(2, 5, 6), torch.tensor([1, 0]))]
    feature = TextFeature("review", visualization_transform=lambda emb: words)
    vis = AttributionVisualizer([BagOfEmbeddings()], ["neg", "pos"], [feature], data)
    ex = vis.page({"method": "IntegratedGradients", "arguments": {"n_steps": 8}})["examples"][0]
    attr = ex["models"][0]["attributions"][0]
    assert attr["tokens"] == words and len(attr["scores"]) == 5
    assert ex["features"][0]["original"] == words


def test_failing_examples_are_isolated_and_reported():
    class Picky(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = make_model()

        def forward(self, x):
            if torch.is_grad_enabled() and (x.flatten(1).amax(1) > 10).any():
                raise RuntimeError("poisoned input")
            return self.inner(x)

    src = RandomImages(n_batches=1, batch_size=4)
    src.batches[0].inputs[2] += 100.0  # one example makes the model fail during attribution
    vis = visualizer(src, models=[Picky()])
    ex = vis.page({"method": "Saliency"})["examples"]
    errors = [e["models"][0]["error"] for e in ex]
    assert errors[2] and "poisoned input" in errors[2]
    assert [e is None for e in errors] == [True, True, False, True]


def test_isolating_a_failure_computes_each_example_that_succeeded_once():
    """Integrated Gradients runs one example per captum call here; the third fails. The retry, one by one,
    takes the two before it from the cache: only the failing example is attributed twice."""
    passes = []

    class FailsOnThird(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = make_model()

        def forward(self, x):
            if torch.is_grad_enabled():
                passes.append(int(x.shape[0]))
                if (x.flatten(1).amax(1) > 10).any():
                    raise RuntimeError("poisoned input")
            return self.inner(x)

    src = RandomImages(n_batches=1, batch_size=4)
    src.batches[0].inputs[2] += 100.0
    vis = visualizer(src, models=[FailsOnThird()])
    errors = [e["models"][0]["error"] for e in vis.page({"method": "IntegratedGradients"})["examples"]]
    assert [e is None for e in errors] == [True, True, False, True]
    assert passes == [50] * 5  # examples 0, 1, 2 (fails); then alone: 2 (fails), 3


def test_models_without_class_outputs_are_explained_without_targets():
    """use_label_for_attr=False: captum gets no target (a model with one score per example)."""

    class Score(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = make_model(n_classes=1)

        def forward(self, x):
            return self.inner(x)[:, 0]

    vis = AttributionVisualizer(
        [Score()], ["score"], [ImageFeature("image")], RandomImages(n_batches=1), use_label_for_attr=False
    )
    for method in (
        "IntegratedGradients",
        "NoiseTunnel(IntegratedGradients)",
        "NoiseTunnel(Saliency)",
        "Saliency",
        "Occlusion",
        "GradientShap",
    ):
        page = vis.page(
            {"method": method, "arguments": {"n_steps": 4} if "Integrated" in method else {}, "page_size": 2}
        )
        models = [m for e in page["examples"] for m in e["models"]]
        assert [m["error"] for m in models] == [None, None], method
        assert all(m["target"] is None and m["attributions"][0]["image"] for m in models)


def test_example_cache_is_bounded_in_bytes_as_well_as_count():
    from insights_app.dataset import ExampleStore

    src = RandomImages(n_batches=8, batch_size=4, shape=(3, 64, 64))  # 48 KiB per example
    store = ExampleStore(src, max_cached_examples=4096, max_cached_bytes=6 * 49152)
    for ex_id in range(32):
        assert store.get(ex_id).id == ex_id
        assert store._cached_bytes <= max(store.max_cached_bytes, 4 * 49152)
    assert len(store._cache) <= 6
    assert torch.equal(store.get(0).inputs[0], src.batches[0].inputs[0])  # evicted, re-read identically
