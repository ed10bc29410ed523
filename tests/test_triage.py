"""The dataset pass and fastai-style triage in Python: what ``vis.interpretation()`` answers.

fastai parity (the same numbers as ``ClassificationInterpretation`` on a trained learner) is
in test_adapters_fastai.py, next to the learner it trains.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from reliability_helpers import CLASSES, Digits, FailingDigits, make_faulty_model, make_model, make_visualizer

from insights_app import AttributionVisualizer, Batch
from insights_app.features import ImageFeature
from insights_app.testing import SlowNet, seeded
from insights_app.triage.losses import choose_loss


def reference(vis: AttributionVisualizer, model: int = 0):
    """Each example's raw outputs and labels from a plain loop over the dataset."""
    engine = vis.engines[model]
    outs, labels = [], []
    with torch.no_grad():
        for b in vis.store.dataset:
            outs.append(engine.model(b.inputs))
            labels.append(torch.as_tensor(b.labels))
    return torch.cat(outs), torch.cat(labels)


def test_interpretation_matches_a_plain_loop_and_scikit_learn():
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    vis = make_visualizer(dataset=Digits(n=96, batch_size=16))
    interp = vis.interpretation(progress=False)
    out, y = reference(vis)
    pred = out.argmax(1)
    assert interp.n_examples == 96 and interp.labeled == 96 and interp.failed == 0
    assert interp.accuracy == pytest.approx(float((pred == y).float().mean()))
    cm = interp.confusion_matrix()
    assert (cm == confusion_matrix(y.numpy(), pred.numpy(), labels=range(10))).all()
    p, r, f, s = precision_recall_fscore_support(y.numpy(), pred.numpy(), labels=range(10), zero_division=0)
    rows = interp.per_class()
    assert [c.name for c in rows] == CLASSES
    np.testing.assert_allclose([c.precision for c in rows], p)
    np.testing.assert_allclose([c.recall for c in rows], r)
    np.testing.assert_allclose([c.f1 for c in rows], f)
    assert [c.support for c in rows] == s.tolist()
    # Losses are cross-entropy of the raw outputs (softmax scoring), in dataset order.
    want = F.cross_entropy(out, y, reduction="none")
    losses, ids = interp.top_losses()
    assert interp.loss_name == "cross-entropy" and len(ids) == 96
    torch.testing.assert_close(losses, want[ids], rtol=1e-5, atol=1e-6)
    assert (losses[:-1] >= losses[1:]).all()
    small, small_ids = interp.top_losses(3, largest=False)
    assert small_ids.tolist() == want.topk(3, largest=False).indices.tolist()
    # most_confused: off-diagonal cells, largest first, each a real count of the matrix.
    confused = interp.most_confused()
    assert confused == sorted(confused, key=lambda c: c[2], reverse=True)
    for actual, predicted, count in confused:
        assert actual != predicted and cm[CLASSES.index(actual), CLASSES.index(predicted)] == count
    assert sum(c[2] for c in confused) == int((pred != y).sum())
    cell = interp.ids_where(actual=CLASSES.index(confused[0][0]), predicted=CLASSES.index(confused[0][1]))
    assert len(cell) == confused[0][2] and all(int(y[i]) == CLASSES.index(confused[0][0]) for i in cell)


def test_a_second_call_reuses_the_pass():
    vis = make_visualizer()
    first = vis.interpretation(progress=False)
    calls = []
    engine = vis.engines[0]
    original = engine.outputs
    engine.outputs = lambda batch: calls.append(len(batch)) or original(batch)
    again = vis.interpretation(progress=False)
    assert calls == [] and (again.confusion_matrix() == first.confusion_matrix()).all()


def test_cancel_pauses_and_start_resumes_where_it_stopped():
    model = seeded(SlowNet, 0.05, n_classes=10)
    vis = make_visualizer(models=model, dataset=Digits(n=64, batch_size=4))  # 16 batches, 0.05 s each
    p = vis.dataset_pass
    p.start()
    for _ in range(1000):  # at most 10 s
        if p.progress().done >= 8:
            break
        time.sleep(0.01)
    state = p.cancel()
    state = p.wait(timeout=10)
    assert state.state == "paused" and 8 <= state.done < 64 and "resume" in state.message
    stopped_at = state.done
    p.start()
    state = p.wait(timeout=30)
    assert state.state == "done" and state.complete and state.done == 64
    # The resumed pass did not redo or skip anything: the same records as a fresh, uninterrupted pass.
    fresh = make_visualizer(models=model, dataset=Digits(n=64, batch_size=4)).interpretation(progress=False)
    resumed = vis.interpretation(progress=False)
    assert (resumed.confusion_matrix() == fresh.confusion_matrix()).all()
    np.testing.assert_allclose(resumed.losses, fresh.losses, rtol=1e-6)
    assert stopped_at < 64


def test_page_requests_go_first_while_the_pass_runs():
    """A page needs the model too: it waits behind one batch of the pass, not behind the pass."""
    model = seeded(SlowNet, 0.05, n_classes=10)
    vis = make_visualizer(models=model, dataset=Digits(n=400, batch_size=4))  # 100 batches: 5 s
    vis.dataset_pass.start()
    page = vis.page({"method": "Saliency", "page_size": 2})
    assert len(page["examples"]) == 2
    assert vis.dataset_pass.progress().state == "running"  # the page was answered before the pass ended
    vis.dataset_pass.halt()


def test_a_model_failing_on_some_examples_is_counted_not_fatal():
    vis = make_visualizer(models=make_faulty_model(), dataset=Digits(n=48, batch_size=8, poison=[3, 17]))
    interp = vis.interpretation(progress=False)
    assert interp.n_examples == 48 and interp.failed == 2
    assert sorted(interp.errors) == [3, 17] and "cannot handle a poisoned input" in interp.errors[3]
    assert interp.confusion_matrix().sum() == 46
    assert 3 not in interp.top_losses()[1].tolist()
    assert vis.dataset_pass.progress().failed_examples == 2


def test_a_dataset_raising_halfway_keeps_what_was_read_and_says_where():
    vis = make_visualizer(dataset=FailingDigits(n=48, batch_size=8, fail_at=3, failures=1))
    with pytest.warns(RuntimeWarning, match="covered 24 examples"):
        interp = vis.interpretation(progress=False)
    state = vis.dataset_pass.progress()
    assert state.state == "failed" and "OSError" in state.message and "after example 24" in state.message
    assert interp.n_examples == 24 and not interp.complete
    # The fault was transient: Start again resumes after the 24 kept.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        interp = vis.interpretation(progress=False)
    assert interp.n_examples == 48 and interp.complete


def test_a_generator_dataset_is_covered_as_far_as_it_was_read():
    x, y = torch.rand(40, 1, 8, 8), torch.arange(40) % 10

    def batches():
        for i in range(0, 40, 8):
            yield Batch(x[i : i + 8], y[i : i + 8])

    vis = make_visualizer(dataset=batches())
    vis.page({"method": "Saliency", "page_size": 4})  # the pages read one batch (8 examples)
    with pytest.warns(RuntimeWarning, match="one-shot generator"):
        interp = vis.interpretation(progress=False)
    assert interp.n_examples == vis.store.read_to == 8
    assert vis.store.get(0).id == 0  # the pages can still show what the pass read


def test_the_pass_stops_at_its_example_bound():
    vis = make_visualizer(dataset=Digits(n=48, batch_size=8), max_pass_examples=20)
    interp = vis.interpretation(progress=False)
    assert interp.n_examples == 20
    assert "limit of 20" in vis.dataset_pass.progress().message


def test_unlabeled_examples_have_no_loss_and_no_cell():
    x = torch.rand(12, 1, 8, 8)
    labels = [0, None, 1, None, 2, 3, None, 4, 5, 6, 7, 8]
    vis = make_visualizer(dataset=[Batch(x[:6], labels[:6]), Batch(x[6:], labels[6:])])
    interp = vis.interpretation(progress=False)
    assert interp.n_examples == 12 and interp.labeled == 9
    assert interp.confusion_matrix().sum() == 9
    assert len(interp.top_losses()[1]) == 9
    hist = interp.confidence_histogram(bins=10)
    assert sum(hist["unlabeled"]) == 3 and sum(hist["correct"]) + sum(hist["incorrect"]) == 9
    assert interp.predicted_counts().sum() == 12


def test_the_loss_follows_the_score_function():
    out = torch.randn(6, 4)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    ce = choose_loss(lambda o: torch.softmax(o, dim=1), None, out)
    assert ce.name == "cross-entropy"
    torch.testing.assert_close(ce.fn(out, y), F.cross_entropy(out, y, reduction="none"))
    bce = choose_loss(torch.sigmoid, None, out)
    assert bce.name == "binary cross-entropy"
    torch.testing.assert_close(
        bce.fn(out, y), F.binary_cross_entropy_with_logits(out, F.one_hot(y, 4).float(), reduction="none").mean(1)
    )
    probs = torch.softmax(out, 1)
    nll = choose_loss(None, None, probs)
    assert nll.name == "negative log-likelihood"
    torch.testing.assert_close(nll.fn(probs, y), F.nll_loss(probs.log(), y, reduction="none"))
    custom = choose_loss(lambda o: o * 2, None, out)
    assert custom.fn is None and "loss_func=" in custom.note


def test_a_custom_score_function_has_no_loss_but_everything_else():
    vis = make_visualizer(score_func=lambda o: o.abs())
    interp = vis.interpretation(progress=False)
    assert not interp.has_losses and "loss_func=" in interp.note
    assert interp.confusion_matrix().sum() == 48 and len(interp.top_losses()[0]) == 0
    # A loss function given by the user is used (and one that reduces is refused with a note).
    vis = make_visualizer(score_func=lambda o: o.abs(), loss_func=lambda o, y: F.cross_entropy(o, y, reduction="none"))
    assert vis.interpretation(progress=False).has_losses
    vis = make_visualizer(loss_func=lambda o, y: F.cross_entropy(o, y))
    interp = vis.interpretation(progress=False)
    assert not interp.has_losses and "reduction" in interp.note


def test_several_models_each_have_their_interpretation():
    vis = make_visualizer(models=[make_model(0), make_model(1)], model_names=["a", "b"])
    a, b = vis.interpretation("a", progress=False), vis.interpretation(1, progress=False)
    assert a.model == 0 and b.model == 1
    assert not (a.losses == b.losses).all()
    with pytest.raises(ValueError, match="'a', 'b'"):
        vis.interpretation("c")


def test_large_batches_are_split_and_images_of_any_size_cost_the_same_records():
    x = torch.rand(1100, 1, 8, 8)
    vis = AttributionVisualizer(
        make_model(),
        CLASSES,
        [ImageFeature("digit")],
        [Batch(x, torch.zeros(1100).long())],
        score_func=lambda o: torch.softmax(o, 1),
    )
    seen = []
    engine = vis.engines[0]
    original = engine.outputs
    engine.outputs = lambda batch: seen.append(len(batch)) or original(batch)
    assert vis.interpretation(progress=False).n_examples == 1100
    assert seen == [512, 512, 76]
    assert vis.dataset_pass.records.nbytes() < 1100 * 200
