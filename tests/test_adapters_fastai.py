"""fastai adapter: real learners trained on scikit-learn's digits written as PNG files.

The learners are trained on in-memory tensors of the same PNG pixels (the per-file pipeline
is ten times slower), then given the image-folder DataLoaders, so they load files exactly
like a learner trained with ``ImageDataLoaders.from_folder``. The single-label one is
conftest's ``digits_learner``, trained once per test run on conftest's ``digits`` folders.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from adapters_helpers import (
    IG_PAGE,
    digit_cnn,
    digit_tags,
    fit_on_tensors,
    page_predictions,
    pil_pixels,
)

from data_adapters import (
    AdapterError,
    from_dataloaders,
    from_export,
    from_learner,
    load_learner_file,
    source_from_dataloaders,
    source_from_export,
    source_from_learner,
)

fastai_vision = pytest.importorskip("fastai.vision.all")
MEAN, STD = [0.3], [0.4]


def _fit_on_tensors(learn, files, targets, epochs: int = 4) -> None:
    """Train ``learn`` on the files' pixels held in memory (normalized as its DataLoaders would)."""
    x = torch.stack([pil_pixels(f) for f in files])
    fit_on_tensors(learn, (x - MEAN[0]) / STD[0] if _has_normalize(learn.dls) else x, targets, epochs)


def _has_normalize(dls) -> bool:
    return any(type(t).__name__ == "Normalize" for t in dls.after_batch.fs)


@pytest.fixture(scope="module")
def learner(digits_learner):
    """conftest's trained digits learner (a grey CNN with a Normalize in its batch transforms), read only."""
    return digits_learner


@pytest.fixture(scope="module")
def exported(learner, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "export.pkl"
    learner.export(path)
    return path


def _get_preds(learn, dl=None):
    with learn.no_bar():
        preds, targets = learn.get_preds(dl=dl if dl is not None else learn.dls.valid)
    return preds.as_subclass(torch.Tensor), targets.as_subclass(torch.Tensor)


def _adapter_scores(source) -> tuple:
    """Scores and labels of every example, computed through the source's features and score function."""
    scores, labels = [], []
    with torch.no_grad():
        for batch in source.dataset:
            x = source.features[0].transform_input(batch.inputs)
            scores.append(source.score_func(source.model(x)))
            labels.extend(batch.labels)
    return torch.cat(scores), labels


def test_predictions_equal_get_preds_and_classes_equal_vocab(learner):
    source = source_from_learner(learner)
    preds, targets = _get_preds(learner)
    scores, labels = _adapter_scores(source)
    assert source.classes == [str(v) for v in learner.dls.vocab] == [str(d) for d in range(10)]
    assert scores.shape == preds.shape == (120, 10)
    torch.testing.assert_close(scores, preds, rtol=0, atol=1e-6)
    assert labels == targets.tolist()
    assert (preds.argmax(1) == targets).float().mean() > 0.5  # a real, trained learner
    assert source.info["multi_label"] is False


def test_decoded_images_are_the_files_pixels_and_model_sees_fastai_input(learner):
    source = source_from_learner(learner)
    batch = next(iter(source.dataset))
    items = learner.dls.valid_ds.items
    assert type(batch.inputs) is torch.Tensor and all(type(v) is int for v in batch.labels)
    assert batch.inputs.shape[1:] == (1, 16, 16)
    assert 0.0 <= float(batch.inputs.min()) and float(batch.inputs.max()) <= 1.0
    for i in range(5):
        assert torch.equal(batch.inputs[i], pil_pixels(items[i]))
    fastai_x, _ = learner.dls.valid.one_batch()
    model_x = source.features[0].transform_input(batch.inputs)
    assert torch.equal(model_x, fastai_x.as_subclass(torch.Tensor))
    small = next(iter(source_from_learner(learner, bs=16).dataset))
    assert torch.equal(small.inputs, batch.inputs[:16])


def test_training_items_are_shown_with_validation_transforms(learner, digits):
    _, files = digits
    source = source_from_learner(learner, dl="train")
    assert source.info["length"] == len(files["train"])
    first = next(iter(source.dataset))
    again = next(iter(source.dataset))
    items = learner.dls.train_ds.items
    assert torch.equal(first.inputs, again.inputs)  # same pixels on every pass: no augmentation, no shuffle
    assert torch.equal(first.inputs[0], pil_pixels(items[0]))
    assert first.labels == [int(p.parent.name) for p in items[: len(first.labels)]]


def test_visualizer_page_end_to_end_matches_learner(learner):
    preds, targets = _get_preds(learner)
    vis = from_learner(learner)
    page = vis.page(IG_PAGE)
    assert len(page["examples"]) == 4
    json.dumps(page)  # no fastai tensor subclass anywhere in the result
    for ex_id, index, score in page_predictions(page):
        assert index == int(preds[ex_id].argmax())
        assert score == pytest.approx(float(preds[ex_id].max()), abs=1e-5)
    for ex in page["examples"]:
        assert ex["label"]["index"] == int(targets[ex["id"]])
        assert ex["label"]["name"] == str(int(targets[ex["id"]]))
        assert ex["models"][0]["attributions"][0]["image"]
        assert ex["models"][0]["error"] is None


def test_no_progress_bar_is_printed_while_paging(learner, capfd):
    vis = from_learner(learner)
    vis.page(dict(IG_PAGE, page=1))
    out, err = capfd.readouterr()
    assert "█" not in out + err and "progress" not in (out + err).lower()
    assert "Epoch" not in out + err


def test_exported_learner_on_a_labelled_folder(learner, exported, digits):
    root, files = digits
    preds, targets = _get_preds(learner)
    source = source_from_export(exported, items=root / "valid")
    assert source.classes == [str(d) for d in range(10)]
    scores, labels = _adapter_scores(source)
    # items are listed sorted by path; map each back to its place in the learner's valid set
    valid_items = [Path(p) for p in learner.dls.valid_ds.items]
    order = [valid_items.index(p) for p in sorted(valid_items, key=lambda p: p.relative_to(root / "valid").as_posix())]
    torch.testing.assert_close(scores, preds[order], rtol=0, atol=1e-6)
    assert labels == targets[order].tolist()
    vis = from_export(exported, items=root / "valid", title="exported digits")
    page = vis.page(IG_PAGE)
    assert vis.title == "exported digits"
    for ex_id, index, score in page_predictions(page):
        assert index == int(scores[ex_id].argmax())
        assert score == pytest.approx(float(scores[ex_id].max()), abs=1e-5)


def test_exported_learner_on_new_unlabelled_files(exported, digits, tmp_path):
    root, files = digits
    new = tmp_path / "new"
    new.mkdir()
    for f in files["valid"][:10]:
        shutil.copy(f, new / f"{f.parent.name}_{f.name}")
    source = source_from_export(exported, items=new)
    batch = next(iter(source.dataset))
    assert batch.inputs.shape[0] == 10
    assert batch.labels == [None] * 10  # the learner's parent_label does not know "new"
    expected = sorted(new.iterdir())
    for i, f in enumerate(expected):
        assert torch.equal(batch.inputs[i], pil_pixels(f))
    page = source.visualizer().page(IG_PAGE)
    assert all(ex["label"] is None for ex in page["examples"])
    with pytest.raises(AdapterError, match="cannot label 10 of the 10 items"):
        source_from_export(exported, items=new, with_labels=True)
    listed = source_from_export(exported, items=[str(p) for p in expected[:3]])
    assert next(iter(listed.dataset)).inputs.shape[0] == 3


def test_multi_label_learner_uses_sigmoid(digits):
    fv = fastai_vision
    root, files = digits
    block = fv.DataBlock(
        blocks=(fv.ImageBlock(fv.PILImageBW), fv.MultiCategoryBlock),
        get_items=fv.get_image_files,
        splitter=fv.GrandparentSplitter(train_name="train", valid_name="valid"),
        get_y=digit_tags,
    )
    dls = block.dataloaders(root, bs=64, num_workers=0)
    learn = fv.Learner(dls, digit_cnn(3), metrics=fv.accuracy_multi)
    assert type(learn.loss_func).__name__ == "BCEWithLogitsLossFlat"
    vocab = list(dls.vocab)
    targets = torch.tensor([[float(v in digit_tags(f)) for v in vocab] for f in files["train"]])
    _fit_on_tensors(learn, files["train"], targets, epochs=3)
    preds, y = _get_preds(learn)
    source = source_from_learner(learn)
    assert source.classes == ["even", "odd", "small"]
    assert source.info["multi_label"] is True
    scores, labels = _adapter_scores(source)
    torch.testing.assert_close(scores, preds, rtol=0, atol=1e-6)
    assert not torch.allclose(scores.sum(1), torch.ones(len(scores)))  # sigmoid, not softmax
    # one tag set -> that class; two tags (digits below 5) -> no single label
    expected = [int(row.argmax()) if int(row.sum()) == 1 else None for row in y]
    assert labels == expected and None in expected and 0 in expected
    page = source.visualizer().page(IG_PAGE)
    for ex_id, index, score in page_predictions(page):
        assert index == int(preds[ex_id].argmax())
        assert score == pytest.approx(float(preds[ex_id].max()), abs=1e-5)


def test_bool_vocab_becomes_strings(digits):
    fv = fastai_vision
    root, _ = digits
    block = fv.DataBlock(
        blocks=(fv.ImageBlock(fv.PILImageBW), fv.CategoryBlock),
        get_items=fv.get_image_files,
        splitter=fv.GrandparentSplitter(train_name="train", valid_name="valid"),
        get_y=lambda p: int(Path(p).parent.name) >= 5,
    )
    dls = block.dataloaders(root, bs=32, num_workers=0)
    torch.manual_seed(0)
    source = source_from_dataloaders(dls, digit_cnn(2))
    assert source.classes == ["False", "True"]
    batch = next(iter(source.dataset))
    items = dls.valid_ds.items
    assert batch.labels == [int(int(Path(p).parent.name) >= 5) for p in items[:32]]
    assert source.features[0].input_transforms == []  # no Normalize: the images go to the model as they are


@pytest.mark.slow
def test_vision_learner_without_pretraining_or_normalize(digits):
    fv = fastai_vision
    root, _ = digits
    dls = fv.ImageDataLoaders.from_folder(root, train="train", valid="valid", bs=64, num_workers=0)
    torch.manual_seed(0)
    learn = fv.vision_learner(dls, fv.resnet18, pretrained=False)
    assert not _has_normalize(learn.dls)
    preds, targets = _get_preds(learn)
    source = source_from_learner(learn)
    assert source.features[0].input_transforms == []
    scores, labels = _adapter_scores(source)
    torch.testing.assert_close(scores, preds, rtol=0, atol=1e-5)
    assert labels == targets.tolist()
    batch = next(iter(source.dataset))
    assert batch.inputs.shape[1] == 3 and float(batch.inputs.max()) <= 1.0
    page = source.visualizer().page(IG_PAGE)
    assert len(page["examples"]) == 4 and all(m["error"] is None for ex in page["examples"] for m in ex["models"])


def test_from_dataloaders_infers_softmax_and_checks_class_count(learner):
    dls = learner.dls
    source = source_from_dataloaders(dls, learner.model)
    preds, _ = _get_preds(learner)
    scores, _ = _adapter_scores(source)
    torch.testing.assert_close(scores, preds, rtol=0, atol=1e-6)
    with pytest.raises(AdapterError, match="10 class names but the model has 7 outputs"):
        from_dataloaders(dls, digit_cnn(7))
    vis = from_dataloaders(dls, digit_cnn(3), classes=["a", "b", "c"])
    assert vis.classes == ["a", "b", "c"]


def test_clear_errors(learner, exported, tmp_path, caplog):
    with pytest.raises(AdapterError, match="exported learner not found"):
        load_learner_file(tmp_path / "missing.pkl")
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(AdapterError, match="cannot load the exported learner"):
        load_learner_file(bad)
    with pytest.raises(AdapterError, match="pass items="):
        from_export(exported)
    with pytest.raises(AdapterError, match="no such file or folder"):
        from_learner(learner, items=tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AdapterError, match="no image files"):
        from_learner(learner, items=empty)
    with pytest.raises(AdapterError, match="not files"):
        from_learner(learner, items=[tmp_path / "a.png"])
    with pytest.raises(AdapterError, match="expected a fastai Learner"):
        from_learner(object())
    assert issubclass(AdapterError, ValueError)


def test_interpretation_equals_fastais_classification_interpretation(learner):
    """Every number of vis.interpretation() is fastai's own, on the learner trained above."""
    from fastai.interpret import ClassificationInterpretation
    from sklearn.metrics import precision_recall_fscore_support

    with learner.no_bar():
        theirs = ClassificationInterpretation.from_learner(learner)
        preds, targs = learner.get_preds(dl=learner.dls.valid.new(shuffle=False, drop_last=False))
    ours = from_learner(learner).interpretation(progress=False)
    assert ours.loss_name == "CrossEntropyLossFlat" and ours.n_examples == len(targs)
    assert (ours.confusion_matrix() == theirs.confusion_matrix()).all()
    assert theirs.most_confused(), "the learner should confuse some digits, or this compares nothing"
    assert ours.most_confused() == [(a, p, int(n)) for a, p, n in theirs.most_confused()]
    assert ours.most_confused(min_val=3) == [(a, p, int(n)) for a, p, n in theirs.most_confused(min_val=3)]
    mine, mine_ids = ours.top_losses()
    fastai_losses, fastai_ids = theirs.top_losses()
    assert mine_ids.tolist() == fastai_ids.tolist()
    torch.testing.assert_close(mine, torch.as_tensor(fastai_losses).as_subclass(torch.Tensor), rtol=1e-5, atol=1e-6)
    small, small_ids = ours.top_losses(5, largest=False)
    assert small_ids.tolist() == theirs.top_losses(5, largest=False)[1].tolist()
    decoded = preds.argmax(1)
    assert ours.accuracy == pytest.approx(float((decoded == targs).float().mean()))
    p, r, f, s = precision_recall_fscore_support(targs.numpy(), decoded.numpy(), labels=range(10), zero_division=0)
    rows = ours.per_class()
    assert [c.support for c in rows] == s.tolist()
    np = pytest.importorskip("numpy")
    np.testing.assert_allclose([c.precision for c in rows], p)
    np.testing.assert_allclose([c.recall for c in rows], r)
    np.testing.assert_allclose([c.f1 for c in rows], f)
