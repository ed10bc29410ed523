"""Text classifiers: token ids in, per-token attributions through the embedding layer out.

A plain torch classifier with a tokenizer (``data_adapters.from_texts``), a fastai
``text_classifier_learner`` (``from_learner``), and the text demo. The parity test is the
design's claim: Integrated Gradients over the embedding output from the padding token's
embedding equals captum's ``LayerIntegratedGradients`` on the embedding layer of the original
model with an all-padding baseline.
"""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from captum.attr import IntegratedGradients, LayerIntegratedGradients
from torch import nn

from data_adapters import AdapterError, from_learner, from_texts, source_from_learner, source_from_texts
from insights_app.transport.server import create_app

API = "/api/v1"
VOCAB = [
    "<pad>",
    "<unk>",
    "the",
    "a",
    "file",
    "path",
    "folder",
    "socket",
    "server",
    "port",
    "number",
    "sum",
    "root",
    "is",
    "of",
    "opens",
    "reads",
    "and",
    "to",
    "with",
]
PAD = 0
CLASSES = ["files", "networking", "math"]
TEXTS = [
    "the file opens a folder",
    "reads the socket",
    "sum of the number",
    "the path to a file with a folder",
    "the server port",
    "root of a number is a number",
    "reads and opens",
    "a socket to the server with a port",
    "the zebra reads a file",
    "number",
]
LABELS = [0, 1, 2, 0, 1, 2, 0, 1, 0, 2]


def tokenize(text: str) -> list[int]:
    index = {w: i for i, w in enumerate(VOCAB)}
    return [index.get(w, 1) for w in re.findall(r"[a-z]+", text.lower())]


class TinyTextNet(nn.Module):
    """Embedding (no padding_idx: the padding embedding is not zero), a GRU, a masked mean, a linear head."""

    def __init__(self, vocab_size: int = len(VOCAB), dim: int = 6, n_classes: int = 3) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim)
        self.rnn = nn.GRU(dim, 8, batch_first=True)
        self.head = nn.Linear(8, n_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(self.embedding(ids))
        mask = (ids != PAD).float()[..., None]
        return self.head((h * mask).sum(1) / mask.sum(1).clamp_min(1))


@pytest.fixture(scope="module")
def tiny_model() -> TinyTextNet:
    torch.manual_seed(0)
    return TinyTextNet().eval()


def post(client, path: str, body):
    return client.post(API + path, data=json.dumps(body), content_type="application/json")


def _source(model, **kw):
    return source_from_texts(TEXTS, model, tokenize, VOCAB, PAD, LABELS, CLASSES, batch_size=4, **kw)


# ---------------------------------------------------------------- plain torch models with a tokenizer


def test_pages_show_the_words_with_one_finite_score_per_token(tiny_model):
    vis = _source(tiny_model).visualizer()
    client = create_app(vis).test_client()
    cfg = client.get(API + "/config").get_json()
    assert cfg["features"] == [{"name": "text", "type": "text"}] and cfg["classes"] == CLASSES
    body = {"method": "IntegratedGradients", "arguments": {"n_steps": 16}, "page_size": len(TEXTS)}
    data = post(client, "/examples", body).get_json()
    assert [ex["id"] for ex in data["examples"]] == list(range(len(TEXTS)))
    for ex in data["examples"]:
        text = TEXTS[ex["id"]]
        expected = [VOCAB[i] for i in tokenize(text)]  # unknown words are <unk>
        assert ex["label"]["index"] == LABELS[ex["id"]]
        assert ex["features"][0]["original"][: len(expected)] == expected
        attr = ex["models"][0]["attributions"][0]
        assert attr["type"] == "text" and ex["models"][0]["error"] is None
        tokens, scores = attr["tokens"], attr["scores"]
        assert len(tokens) == len(scores) and tokens[: len(expected)] == expected
        assert set(tokens[len(expected) :]) <= {"<pad>"}  # padding at the end, shown as such
        assert all(math.isfinite(s) for s in scores)
        assert all(s == 0.0 for s in scores[len(expected) :])  # padding does not move from the padding baseline
        assert any(s != 0.0 for s in scores[: len(expected)])
    assert "zebra" not in json.dumps(data) and "<unk>" in data["examples"][8]["features"][0]["original"]
    assert not any(math.isnan(x) for x in [ex["models"][0]["predictions"][0]["score"] for ex in data["examples"]])


def test_integrated_gradients_over_embeddings_equals_layer_integrated_gradients(tiny_model):
    """IG over the embedding output from the padding embedding == captum's LIG on the embedding layer."""
    source = _source(tiny_model)
    feature = source.features[0]
    batch = next(iter(source.dataset))
    ids = batch.additional_args
    x = feature.transform_input(batch.inputs)
    with torch.no_grad():  # the model input is the embedding layer's output, and the wrapper is the model
        torch.testing.assert_close(x, tiny_model.embedding(ids), rtol=0, atol=1e-6)
        torch.testing.assert_close(source.model(x, ids), tiny_model(ids), rtol=0, atol=1e-6)
    base = feature.transform_input(torch.zeros_like(batch.inputs))  # the app's "zeros" baseline
    assert torch.allclose(base, tiny_model.embedding.weight[PAD].detach().expand_as(base))
    target = torch.tensor([0, 1, 2, 1])
    ours = IntegratedGradients(source.model).attribute(
        x, baselines=base, target=target, additional_forward_args=(ids,), n_steps=24
    )
    lig = LayerIntegratedGradients(tiny_model, tiny_model.embedding).attribute(
        ids, baselines=torch.full_like(ids, PAD), target=target, n_steps=24
    )
    assert ours.shape == lig.shape == (4, ids.shape[1], 6)
    torch.testing.assert_close(ours, lig, rtol=1e-5, atol=1e-6)

    # The same through the app: its Integrated Gradients, per token (summed over the embedding).
    vis = source.visualizer()
    page = vis.page({"method": "IntegratedGradients", "arguments": {"n_steps": 24}, "page_size": 4})
    targets = torch.tensor([ex["models"][0]["target"]["index"] for ex in page["examples"]])
    lig = (
        LayerIntegratedGradients(tiny_model, tiny_model.embedding)
        .attribute(ids, baselines=torch.full_like(ids, PAD), target=targets, n_steps=24)
        .sum(-1)
    )
    for row, ex in enumerate(page["examples"]):
        scores = torch.tensor(ex["models"][0]["attributions"][0]["scores"], dtype=torch.float32)
        torch.testing.assert_close(scores, lig[row], rtol=1e-4, atol=1e-6)
    # The feature declares the padding baseline too: baseline "feature" draws the same maps.
    declared = vis.page(
        {"method": "IntegratedGradients", "arguments": {"n_steps": 24, "baseline": "feature"}, "page_size": 4}
    )
    assert [ex["models"][0]["attributions"][0]["scores"] for ex in declared["examples"]] == [
        ex["models"][0]["attributions"][0]["scores"] for ex in page["examples"]
    ]


def test_gradient_and_perturbation_methods_give_one_score_per_token(tiny_model):
    vis = _source(tiny_model).visualizer()
    for method in ("Saliency", "InputXGradient", "DeepLift", "Occlusion", "FeatureAblation"):
        page = vis.page({"method": method, "page_size": 2})
        for ex in page["examples"]:
            model = ex["models"][0]
            assert model["error"] is None, (method, model["error"])
            attr = model["attributions"][0]
            assert len(attr["scores"]) == len(attr["tokens"]) and all(math.isfinite(s) for s in attr["scores"])


def test_interpretation_and_predictions_match_the_model(tiny_model):
    vis = _source(tiny_model).visualizer()
    interp = vis.interpretation(progress=False)
    with torch.no_grad():
        preds = torch.cat([torch.softmax(tiny_model(torch.tensor([tokenize(t)])), 1) for t in TEXTS])
    assert interp.n_examples == len(TEXTS)
    assert interp.accuracy == pytest.approx(float((preds.argmax(1) == torch.tensor(LABELS)).float().mean()))
    assert int(interp.confusion_matrix().sum()) == len(TEXTS)
    losses, ids = interp.top_losses()
    expected = -torch.log(preds[torch.arange(len(TEXTS)), torch.tensor(LABELS)])
    # every example alone (no padding) vs padded in batches of four: the mask makes them equal
    torch.testing.assert_close(losses, expected[ids], rtol=1e-4, atol=1e-5)


def test_clear_errors(tiny_model):
    class Bag(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bag = nn.EmbeddingBag(len(VOCAB), 4)
            self.fc = nn.Linear(4, 3)

        def forward(self, ids):
            return self.fc(self.bag(ids))

    with pytest.raises(AdapterError, match="EmbeddingBag"):
        source_from_texts(TEXTS, Bag(), tokenize, VOCAB, PAD, LABELS, CLASSES)
    with pytest.raises(AdapterError, match="outside the vocabulary"):
        source_from_texts(TEXTS, tiny_model, lambda t: [len(VOCAB) + 3], VOCAB, PAD, LABELS, CLASSES)
    with pytest.raises(AdapterError, match="2 class names"):
        source_from_texts(TEXTS, tiny_model, tokenize, VOCAB, PAD, None, CLASSES[:2])
    with pytest.raises(AdapterError, match="no layer named"):
        source_from_texts(TEXTS, tiny_model, tokenize, VOCAB, PAD, layer="nope")
    with pytest.raises(AdapterError, match="not one of the classes"):
        source_from_texts(TEXTS[:1], tiny_model, tokenize, VOCAB, PAD, ["cats"], CLASSES)
    vis = from_texts(
        list(zip(TEXTS, LABELS)), tiny_model, tokenize, {w: i for i, w in enumerate(VOCAB)}, PAD, classes=CLASSES
    )
    assert vis.page({"page_size": 1})["examples"][0]["label"]["index"] == LABELS[0]


# ---------------------------------------------------------------- fastai text_classifier_learner

POS = ["good", "great", "fine", "nice", "happy", "love"]
NEG = ["bad", "awful", "poor", "sad", "hate", "ugly"]
FILLER = ["the", "a", "movie", "was", "really", "very", "plot", "actor", "and", "it"]


@pytest.fixture(scope="module")
def text_learner():
    pytest.importorskip("fastai.text.all")
    import numpy as np
    import pandas as pd
    from fastai.text.all import AWD_LSTM, TextDataLoaders, accuracy, text_classifier_learner

    rng = np.random.default_rng(0)
    texts, labels = [], []
    for i in range(300):
        lab = i % 2
        words = list(rng.choice(FILLER, int(rng.integers(2, 12)))) + list(rng.choice(POS if lab else NEG, 2))
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append("pos" if lab else "neg")
    df = pd.DataFrame({"text": texts, "label": labels})
    dls = TextDataLoaders.from_df(df, text_col="text", label_col="label", valid_pct=0.2, seed=0, bs=32, num_workers=0)
    torch.manual_seed(0)
    learn = text_classifier_learner(
        dls, AWD_LSTM, pretrained=False, metrics=accuracy, config=dict(emb_sz=32, n_hid=32, n_layers=1)
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with learn.no_bar(), learn.no_logging():
            learn.fit_one_cycle(1, 1e-2)
    finally:
        torch.set_num_threads(threads)
    return learn


def _get_preds(learn, dl):
    with learn.no_bar():
        preds, targets = learn.get_preds(dl=dl)
    return preds.as_subclass(torch.Tensor), None if targets is None else targets.as_subclass(torch.Tensor)


def _scores(source):
    scores, labels, ids = [], [], []
    with torch.no_grad():
        for batch in source.dataset:
            x = source.features[0].transform_input(batch.inputs)
            scores.append(source.score_func(source.model(x, batch.additional_args)))
            labels.extend(batch.labels)
            ids.extend(batch.additional_args.tolist())
    return torch.cat(scores), labels, ids


def test_fastai_text_learner_predictions_equal_get_preds(text_learner):
    source = source_from_learner(text_learner)
    preds, targets = _get_preds(text_learner, text_learner.dls.valid)
    scores, labels, ids = _scores(source)
    order = source.info["order"]
    assert sorted(order) == list(range(len(preds)))
    assert source.classes == ["neg", "pos"] and source.info["embedding_layer"].endswith("encoder_dp")
    torch.testing.assert_close(scores, preds[order], rtol=0, atol=1e-6)
    assert labels == targets[order].tolist()
    vocab = text_learner.dls.vocab[0]
    text = [vocab[i] for i in ids[0] if i != source.info["pad_index"]]
    assert text[0] == "xxbos" and set(text[1:]) <= set(POS + NEG + FILLER)

    # New texts through dls.test_dl: the same as get_preds on that DataLoader.
    new = ["the movie was great", "awful plot and a sad actor", "it was really very very good and nice"]
    source = source_from_learner(text_learner, items=new)
    scores, labels, _ = _scores(source)
    test_dl = text_learner.dls.test_dl(new)
    preds, _ = _get_preds(text_learner, test_dl)
    torch.testing.assert_close(scores, preds[source.info["order"]], rtol=0, atol=1e-6)
    assert labels == [None] * 3


def test_fastai_text_learner_pages_and_interpretation(text_learner):
    from fastai.interpret import ClassificationInterpretation

    vis = from_learner(text_learner)
    page = vis.page({"method": "IntegratedGradients", "arguments": {"n_steps": 8}, "page_size": 3})
    json.dumps(page)
    vocab = text_learner.dls.vocab[0]
    for ex in page["examples"]:
        model = ex["models"][0]
        assert model["error"] is None
        attr = model["attributions"][0]
        assert attr["tokens"][0] == "xxbos" and set(attr["tokens"]) <= set(vocab)
        assert len(attr["scores"]) == len(attr["tokens"]) and all(math.isfinite(s) for s in attr["scores"])
        assert all(s == 0.0 for t, s in zip(attr["tokens"], attr["scores"]) if t == "xxpad")
    interp = vis.interpretation(progress=False)
    order = source_from_learner(text_learner).info["order"]
    with text_learner.no_bar():
        theirs = ClassificationInterpretation.from_learner(text_learner)
    assert interp.loss_name == "CrossEntropyLossFlat" and interp.n_examples == len(order)
    assert (interp.confusion_matrix() == theirs.confusion_matrix()).all()
    ours_losses, ours_ids = interp.top_losses()
    their_losses, their_ids = theirs.top_losses()
    torch.testing.assert_close(
        ours_losses, torch.as_tensor(their_losses).as_subclass(torch.Tensor), rtol=1e-5, atol=1e-6
    )
    assert sorted(order[i] for i in ours_ids.tolist()[:10]) == sorted(their_ids.tolist()[:10])


# ---------------------------------------------------------------- the demo


def test_text_demo_trains_once_into_its_cache_then_loads(tmp_path, monkeypatch):
    from insights_app.demos import text as demo_text

    said: list[str] = []
    vis = demo_text.demo_visualizer(cache=tmp_path, progress=said.append)
    files = demo_text.demo_files(tmp_path)
    assert files.complete() and any("training" in s for s in said)
    meta = json.loads(files.meta.read_text())
    assert meta["accuracy"] > 0.6, meta  # four topics: well above chance
    page = vis.page({"method": "IntegratedGradients", "arguments": {"n_steps": 8}, "page_size": 4})
    for ex in page["examples"]:
        attr = ex["models"][0]["attributions"][0]
        assert attr["type"] == "text" and len(attr["tokens"]) == len(attr["scores"]) >= demo_text.MIN_WORDS
        assert all(math.isfinite(s) for s in attr["scores"])
    assert vis.classes == list(demo_text.TOPICS)

    def no_training(*args, **kwargs):
        raise AssertionError("the second start must load the cache, not train")

    monkeypatch.setattr(demo_text, "train_demo", no_training)
    said.clear()
    again = demo_text.demo_visualizer(cache=tmp_path, progress=said.append)
    assert not any("training" in s for s in said)
    assert (
        again.page({"page_size": 4})["examples"][0]["features"][0]["original"]
        == page["examples"][0]["features"][0]["original"]
    )
