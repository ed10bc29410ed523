"""torch adapter: a map-style Dataset / DataLoader of scikit-learn's digits and a model trained on them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from adapters_helpers import IG_PAGE, digit_cnn, digit_images, page_predictions
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from data_adapters import AdapterError, from_dataset, source_from_dataset

MEAN, STD = [0.3], [0.4]
CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def digit_tensors():
    images, labels = digit_images(16)
    x = torch.from_numpy(images).float().div(255.0)[:, None]  # N x 1 x 16 x 16 in 0..1
    return x, torch.from_numpy(labels)


@pytest.fixture(scope="module")
def model(digit_tensors):
    """A small CNN trained for a few hundred steps on normalized digits (about a second)."""
    x, y = digit_tensors
    xn = (x - MEAN[0]) / STD[0]
    torch.manual_seed(0)
    net = digit_cnn(10)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = torch.Generator().manual_seed(0)
        for _ in range(120):
            idx = torch.randint(0, 1400, (64,), generator=gen)
            loss = nn.functional.cross_entropy(net(xn[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return net.eval()


class PilDigits(Dataset):
    """Items as (PIL image, int label): what a torchvision dataset without ToTensor returns."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image

        return Image.fromarray(self.images[i], "L"), int(self.labels[i])


def _expected_scores(model, x):
    with torch.no_grad():
        return torch.softmax(model((x - MEAN[0]) / STD[0]), dim=1)


def test_dataset_end_to_end(digit_tensors, model):
    x, y = digit_tensors
    valid = TensorDataset(x[1400:], y[1400:])
    source = source_from_dataset(valid, model, CLASSES, mean=MEAN, std=STD, batch_size=50)
    batches = list(source.dataset)
    assert [b.inputs.shape[0] for b in batches] == [50] * 7 + [47]
    assert torch.equal(torch.cat([b.inputs for b in batches]), x[1400:])
    assert [v for b in batches for v in b.labels] == y[1400:].tolist()
    expected = _expected_scores(model, x[1400:])
    assert (expected.argmax(1) == y[1400:]).float().mean() > 0.7  # a trained model
    vis = source.visualizer()
    assert vis.classes == CLASSES
    page = vis.page(IG_PAGE)
    json.dumps(page)
    for ex_id, index, score in page_predictions(page):
        assert index == int(expected[ex_id].argmax())
        assert score == pytest.approx(float(expected[ex_id].max()), abs=1e-5)
    for ex in page["examples"]:
        assert ex["label"] == {"index": int(y[1400 + ex["id"]]), "name": CLASSES[int(y[1400 + ex["id"]])]}
        assert ex["models"][0]["attributions"][0]["image"]


def test_shuffling_dataloader_is_shown_in_order(digit_tensors, model):
    x, y = digit_tensors
    loader = DataLoader(TensorDataset(x[:100], y[:100]), batch_size=16, shuffle=True)
    vis = from_dataset(loader, model, CLASSES, mean=MEAN, std=STD)
    first = vis.page(dict(IG_PAGE, page=2))
    again = from_dataset(loader, model, CLASSES, mean=MEAN, std=STD).page(dict(IG_PAGE, page=2))
    assert [e["id"] for e in first["examples"]] == [8, 9, 10, 11]
    assert [e["label"]["index"] for e in first["examples"]] == y[8:12].tolist()
    assert page_predictions(first) == page_predictions(again)


def test_normalized_dataset_is_shown_denormalized(digit_tensors, model):
    x, y = digit_tensors
    normalized = TensorDataset((x[:40] - MEAN[0]) / STD[0], y[:40])
    source = source_from_dataset(normalized, model, CLASSES, mean=MEAN, std=STD, normalized=True)
    shown = torch.cat([b.inputs for b in source.dataset])
    torch.testing.assert_close(shown, x[:40], rtol=0, atol=1e-6)
    page = source.visualizer().page(IG_PAGE)
    expected = _expected_scores(model, x[:40])
    for ex_id, index, score in page_predictions(page):
        assert index == int(expected[ex_id].argmax())
        assert score == pytest.approx(float(expected[ex_id].max()), abs=1e-5)


def test_pil_and_dict_items(digit_tensors, model):
    images, labels = digit_images(16)
    source = source_from_dataset(PilDigits(images[:20], labels[:20]), model, CLASSES, mean=MEAN, std=STD)
    batch = next(iter(source.dataset))
    assert torch.equal(batch.inputs, torch.from_numpy(images[:20]).float().div(255.0)[:, None])
    assert batch.labels == labels[:20].tolist()
    dict_items = [{"image": torch.from_numpy(images[i]), "label": torch.tensor(labels[i])} for i in range(10)]
    batch = next(iter(source_from_dataset(dict_items, model, CLASSES, mean=MEAN, std=STD).dataset))
    assert batch.inputs.shape == (10, 1, 16, 16) and float(batch.inputs.max()) <= 1.0  # uint8 -> 0..1
    assert batch.labels == labels[:10].tolist()
    unlabeled = [torch.from_numpy(images[i]).float() / 255.0 for i in range(6)]
    page = from_dataset(unlabeled, model, CLASSES, mean=MEAN, std=STD).page(IG_PAGE)
    assert all(ex["label"] is None for ex in page["examples"])


def test_class_file_and_numbered_outputs(digit_tensors, model, tmp_path):
    x, y = digit_tensors
    ds = TensorDataset(x[:8], y[:8])
    path = tmp_path / "classes.json"
    path.write_text(json.dumps({str(i): [f"n{i:03d}", name] for i, name in enumerate(CLASSES)}))
    assert from_dataset(ds, model, path, mean=MEAN, std=STD).classes == CLASSES
    assert from_dataset(ds, model, None, mean=MEAN, std=STD).classes == [str(i) for i in range(10)]


def test_clear_errors(digit_tensors, model):
    x, y = digit_tensors
    with pytest.raises(AdapterError, match="empty"):
        from_dataset(TensorDataset(x[:0], y[:0]), model, CLASSES)
    with pytest.raises(AdapterError, match="3 class names but the model has 10 outputs"):
        from_dataset(TensorDataset(x[:8], y[:8]), model, ["a", "b", "c"])
    with pytest.raises(AdapterError, match="shows images"):
        from_dataset(TensorDataset(torch.zeros(4, 5, 2, 2, 2)), model, CLASSES)
    with pytest.raises(AdapterError, match="both mean and std"):
        from_dataset(TensorDataset(x[:8]), model, CLASSES, mean=MEAN)
    with pytest.raises(AdapterError, match="normalized=True needs"):
        from_dataset(TensorDataset(x[:8]), model, CLASSES, normalized=True)
    with pytest.raises(AdapterError, match="expected a torch Dataset"):
        from_dataset("digits/", model, CLASSES)
