"""The triage API: /api/v1/dataset (one model's summary), /api/v1/dataset_pass (start, cancel, watch),
and the triage filters of /api/v1/examples (a confusion cell, the loss order, a confidence range,
models that disagree). Over HTTP and over the notebook widget's messages alike."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from reliability_helpers import CLASSES, Digits, make_model, make_visualizer, ndjson_events

from insights_app.testing import SlowNet, seeded
from insights_app.transport.notebook import handle_request
from insights_app.transport.server import create_app


@pytest.fixture(scope="module")
def vis():
    v = make_visualizer(
        models=[make_model(0), make_model(1)], model_names=["a", "b"], dataset=Digits(n=96, batch_size=16)
    )
    v.interpretation(progress=False)
    return v


@pytest.fixture(scope="module")
def client(vis):
    return create_app(vis).test_client()


def post(client, kind, body):
    r = client.post(f"/api/v1/{kind}", json=body)
    return r.status_code, r.get_json()


def page_ids(client, flt, size=64):
    """The ids of every page of a filter (at most 4 pages), and the first page."""
    ids, first = [], None
    for number in range(4):
        status, page = post(
            client, "examples", {"method": "Saliency", "filter": flt, "page_size": size, "page": number}
        )
        assert status == 200, page
        first = first or page
        ids += [e["id"] for e in page["examples"]]
        if not page["page"]["has_next"]:
            break
    return ids, first


def test_the_summary_is_the_interpretation(client, vis):
    status, s = post(client, "dataset", {"model": 1})
    assert status == 200
    interp = vis.interpretation(1, progress=False)
    assert s["model"] == 1 and s["examples"] == 96 and s["labeled"] == 96
    assert s["accuracy"] == pytest.approx(interp.accuracy, abs=1e-6)
    assert s["confusion"]["counts"] == interp.confusion_matrix().tolist() and not s["confusion"]["restricted"]
    assert [
        (CLASSES[p["actual"]], CLASSES[p["predicted"]], p["count"]) for p in s["most_confused"]
    ] == interp.most_confused()
    losses, ids = interp.top_losses(len(s["top_losses"]))
    assert [r["id"] for r in s["top_losses"]] == ids.tolist()
    assert [r["loss"] for r in s["top_losses"]] == pytest.approx(losses.tolist(), rel=1e-5, abs=1e-6)
    assert [c["support"] for c in s["per_class"]] == [c.support for c in interp.per_class()]
    assert sum(s["histogram"]["correct"]) + sum(s["histogram"]["incorrect"]) == 96
    assert s["loss"]["name"] == "cross-entropy" and s["progress"]["complete"]
    assert s["disagree"] == int((interp.predicted != vis.interpretation(0, progress=False).predicted).sum())


def test_a_confusion_cell_shows_exactly_its_examples(client, vis):
    interp = vis.interpretation(0, progress=False)
    actual, predicted, count = interp.most_confused()[0]
    a, p = CLASSES.index(actual), CLASSES.index(predicted)
    ids, page = page_ids(client, {"pair": {"actual": actual, "predicted": predicted}})
    assert len(ids) == count and page["page"]["matched"] == count and page["page"]["exhausted"]
    assert ids == interp.ids_where(actual=a, predicted=p).tolist()
    for ex in page["examples"]:
        assert ex["label"]["index"] == a and ex["models"][0]["predictions"][0]["index"] == p
        assert ex["models"][0]["attributions"][0]["image"].startswith("data:image/png")  # the maps are there
    # The same cell for the other model, and an empty cell.
    ids_b, _ = page_ids(client, {"pair": {"actual": a, "predicted": p}, "model": 1})
    assert ids_b == vis.interpretation(1, progress=False).ids_where(actual=a, predicted=p).tolist()
    empty, page = page_ids(client, {"pair": {"actual": 0, "predicted": 0}, "prediction": "incorrect"})
    assert empty == [] and "No example matches" in page["page"]["message"]


def test_cards_ordered_by_loss_carry_their_loss(client, vis):
    status, page = post(client, "examples", {"method": "Saliency", "filter": {"order": "loss"}, "page_size": 10})
    ids = [e["id"] for e in page["examples"]]
    losses, want = vis.interpretation(0, progress=False).top_losses(10)
    assert ids == want.tolist()
    shown = [ex["models"][0]["loss"] for ex in page["examples"]]
    assert shown == pytest.approx(losses.tolist(), rel=1e-5) and shown == sorted(shown, reverse=True)
    # Page 2 continues where page 1 stopped.
    status, second = post(
        client, "examples", {"method": "Saliency", "filter": {"order": "loss"}, "page_size": 10, "page": 1}
    )
    assert [e["id"] for e in second["examples"]] == vis.interpretation(0, progress=False).top_losses(20)[1].tolist()[
        10:
    ]


def test_a_confidence_range_and_disagreement(client, vis):
    snap = vis.dataset_pass.snapshot()
    ids, _ = page_ids(client, {"confidence": [0.5, 0.8]})
    conf = snap.top_scores[0, :, 0]
    assert ids == np.flatnonzero((conf >= 0.5) & (conf <= 0.8)).tolist()
    ids, _ = page_ids(client, {"disagree": True})
    top1 = snap.top_classes[:, :, 0]
    assert ids == np.flatnonzero(top1[0] != top1[1]).tolist() and ids
    # Combined with the existing filters: incorrect ones of class 3, by loss.
    ids, _ = page_ids(client, {"classes": [3], "class_source": "label", "prediction": "incorrect", "order": "loss"})
    assert all(int(snap.labels[i]) == 3 for i in ids)
    losses = snap.losses[0, ids]
    assert (np.diff(losses) <= 1e-6).all()


@pytest.mark.parametrize(
    "flt, field",
    [
        ({"pair": {"actual": "dragon", "predicted": 1}}, "filter.pair.actual"),
        ({"pair": {"actual": 1}}, "filter.pair.predicted"),
        ({"confidence": [0.9, 0.1]}, "filter.confidence"),
        ({"confidence": [0, 2]}, "filter.confidence"),
        ({"order": "random"}, "filter.order"),
        ({"model": 5, "order": "loss"}, "filter.model"),
        ({"disagree": "yes"}, "filter.disagree"),
    ],
)
def test_bad_triage_filters_are_refused_naming_the_field(client, flt, field):
    status, body = post(client, "examples", {"filter": flt})
    assert status == 400 and body["error"].startswith(field)


def test_bad_summary_requests_are_refused(client):
    assert post(client, "dataset", {"model": 2})[0] == 400
    assert post(client, "dataset", {"color": 1})[0] == 400
    assert post(client, "dataset_pass", {"action": "explode"})[0] == 400


def test_many_classes_show_the_matrix_of_the_most_confused():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 300))
    from insights_app import AttributionVisualizer, Batch
    from insights_app.features import ImageFeature

    x = torch.rand(600, 1, 8, 8)
    y = torch.randint(0, 300, (600,))
    v = AttributionVisualizer(
        model,
        [f"c{i}" for i in range(300)],
        [ImageFeature("x")],
        [Batch(x[i : i + 100], y[i : i + 100]) for i in range(0, 600, 100)],
        score_func=lambda o: torch.softmax(o, 1),
    )
    v.interpretation(progress=False)
    status, s = post(create_app(v).test_client(), "dataset", {"max_matrix": 40})
    assert status == 200 and s["confusion"]["restricted"]
    shown = s["confusion"]["classes"]
    assert 2 <= len(shown) <= 40
    top = s["most_confused"][0]
    assert top["actual"] in shown and top["predicted"] in shown
    cm = v.interpretation(progress=False).confusion_matrix()
    assert s["confusion"]["counts"] == cm[np.ix_(shown, shown)].tolist()


def test_the_pass_is_started_watched_and_cancelled_over_http():
    v = make_visualizer(models=seeded(SlowNet, 0.03, n_classes=10), dataset=Digits(n=64, batch_size=4))
    c = create_app(v).test_client()
    status, idle = post(c, "dataset_pass", {})
    assert status == 200 and idle["state"] == "idle" and idle["done"] == 0
    r = c.post("/api/v1/dataset_pass", json={"action": "start", "stream": True})
    events = ndjson_events(r.data)
    assert events[0]["type"] == "progress" and events[-1]["type"] == "done"
    progress = [e for e in events if e["type"] == "progress"]
    assert progress[-1]["state"] == "done" and progress[-1]["done"] == 64 and progress[-1]["complete"]
    assert any(e["state"] == "running" for e in progress)
    dones = [e["done"] for e in progress]
    assert dones == sorted(dones)
    assert progress[-1]["losses"] == [{"name": "cross-entropy", "note": ""}]
    # A finished pass is not started again; a new visualizer's pass can be cancelled.
    assert post(c, "dataset_pass", {"action": "start"})[1]["state"] == "done"
    v2 = make_visualizer(models=seeded(SlowNet, 0.05, n_classes=10), dataset=Digits(n=400, batch_size=4))
    c2 = create_app(v2).test_client()
    post(c2, "dataset_pass", {"action": "start"})
    status, paused = post(c2, "dataset_pass", {"action": "cancel"})
    assert status == 200 and paused["state"] == "paused" and paused["done"] < 400
    # Reading the summary or a triage page does not undo the Cancel; Start resumes.
    assert post(c2, "dataset", {})[1]["progress"]["state"] == "paused"
    assert post(c2, "examples", {"method": "Saliency", "filter": {"order": "loss"}})[1]["page"]["exhausted"] is False
    assert post(c2, "dataset_pass", {})[1]["state"] == "paused"
    assert post(c2, "dataset_pass", {"action": "start"})[1]["state"] == "running"
    v2.dataset_pass.halt()


def test_the_widget_answers_the_triage_views(vis):
    replies = []
    handle_request(vis, "dataset", {"model": 0}, replies.append)
    assert replies[-1]["result"]["examples"] == 96
    replies = []
    handle_request(vis, "dataset_pass", {"action": "status"}, replies.append)
    events = [r["event"] for r in replies if "event" in r]
    assert events[0]["type"] == "progress" and events[0]["state"] == "done"
    replies = []
    handle_request(vis, "examples", {"method": "Saliency", "filter": {"order": "loss"}, "page_size": 2}, replies.append)
    examples = [r["event"]["example"] for r in replies if "event" in r and r["event"]["type"] == "example"]
    assert len(examples) == 2 and all("loss" in ex["models"][0] for ex in examples)
    assert json.dumps(replies)  # strict JSON all the way
