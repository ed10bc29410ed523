"""Deep links: a source that knows its length and can be indexed opens any page and any example at once.

An image folder, a map-style torch Dataset, a list of texts: page 27 and example 1700 of 1,797 answer
without reading what precedes them, with the dataset's size; the loss order (the dataset pass picks ids
anywhere) pages over any size, in the page and in ``export``. An iterable of unknown length keeps the
bounded forward reading and says so, and a triage page never answers 500 for ids it cannot reach.
"""

from __future__ import annotations

import json
import re
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from insights_app import AttributionVisualizer, Batch
from insights_app.features import ImageFeature
from insights_app.testing import TinyCNN, seeded
from insights_app.transport.server import create_app

API = "/api/v1"
N_DIGITS = 1797  # scikit-learn's digits


def post(client, path: str, body: dict):
    return client.post(API + path, data=json.dumps(body), content_type="application/json")


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-learn's 1,797 digits as PNG files, one sub-folder per class, in dataset order."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    root = tmp_path_factory.mktemp("digits1797")
    for i, (image, label) in enumerate(zip(digits.images, digits.target)):
        folder = root / str(int(label))
        folder.mkdir(exist_ok=True)
        Image.fromarray((image * 255 / 16).astype(np.uint8)).save(folder / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def folder_client(digit_folder: Path):
    from data_adapters import from_folder

    vis = from_folder(digit_folder, seeded(TinyCNN, 1, seed=0), channels=1)
    return vis, create_app(vis).test_client()


def test_a_folder_opens_page_27_and_example_1700_at_once(folder_client, digit_folder):
    vis, client = folder_client
    t0 = time.perf_counter()
    r = post(client, "/examples", {"method": "Saliency", "page": 27, "page_size": 64})
    elapsed = time.perf_counter() - t0
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert [e["id"] for e in body["examples"]] == list(range(1728, 1792))
    assert body["page"]["dataset_size"] == N_DIGITS and body["page"]["total"] == N_DIGITS
    assert body["page"]["has_next"] and not body["page"]["message"]
    assert vis.store.read_to <= 1792 and vis.store.restarts == 0  # nothing before the page was read
    assert elapsed < 30
    # Which file is example 1728: the 1,729th of the folder's listing (sub-folder, then name).
    files = sorted(digit_folder.rglob("*.png"), key=lambda p: (p.parent.name, p.name))
    assert body["examples"][0]["label"]["name"] == files[1728].parent.name

    r = post(client, "/attribute", {"example_id": 1700, "method": "Saliency"})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["example"]["id"] == 1700

    last = post(client, "/examples", {"method": "Saliency", "page": 28, "page_size": 64}).get_json()
    assert [e["id"] for e in last["examples"]] == list(range(1792, N_DIGITS))
    assert last["page"]["exhausted"] and not last["page"]["has_next"] and last["page"]["last_page"] == 28
    past = post(client, "/attribute", {"example_id": N_DIGITS, "method": "Saliency"})
    assert past.status_code == 400 and "no example 1797" in past.get_json()["error"]


class RampDataset(torch.utils.data.Dataset):
    """A map-style Dataset whose example ``i`` is a flat image of brightness ``i / n``, all labelled 0:
    under :class:`RampNet` the loss grows with the id, so the largest losses are the last examples."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return torch.full((1, 4, 4), i / self.n), 0


class RampNet(nn.Module):
    """Two classes; class 1's score rises with the image's brightness."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(8.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([-self.scale * m, self.scale * m], dim=1)


def test_the_loss_order_pages_over_more_than_a_thousand_examples(tmp_path):
    from data_adapters import from_dataset

    n = 1200
    vis = from_dataset(RampDataset(n), RampNet(), classes=["dark", "bright"])
    client = create_app(vis).test_client()
    vis.dataset_pass.start()
    assert vis.dataset_pass.wait(120).complete
    r = post(client, "/examples", {"method": "Saliency", "page_size": 16, "filter": {"order": "loss"}})
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert [e["id"] for e in body["examples"]] == list(range(n - 1, n - 17, -1))  # the largest losses first
    assert body["page"]["dataset_size"] == n and not body["page"]["message"]
    second = post(client, "/examples", {"method": "Saliency", "page": 1, "page_size": 16, "filter": {"order": "loss"}})
    assert [e["id"] for e in second.get_json()["examples"]] == list(range(n - 17, n - 33, -1))


def test_the_command_line_exports_in_loss_order(tmp_path):
    """``export --filter '{"order":"loss"}'`` over a folder of 1,150 images (it exited 1, NotReadYet)."""
    from launch_helpers import launch_env, run
    from PIL import Image

    root = tmp_path / "ramp"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    for i in range(1150):
        Image.fromarray(np.full((4, 4), round(i * 255 / 1150), np.uint8)).save(root / "a" / f"{i:04d}.png")
    for i in range(10):
        Image.fromarray(np.full((4, 4), 255, np.uint8)).save(root / "b" / f"{i:04d}.png")
    (tmp_path / "ramp_model.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn


            class RampNet(nn.Module):
                def forward(self, x):
                    m = x.mean(dim=(1, 2, 3))
                    return torch.stack([-8 * m, 8 * m], dim=1)


            def ramp_net():
                return RampNet()
            """
        )
    )
    out = tmp_path / "loss.html"
    source = ["--model", "ramp_model:ramp_net", "--data", str(root), "--channels", "1"]
    args = ["export", *source, "--format", "html", "--method", "Saliency", "--limit", "3", "--out", str(out)]
    done = run([*args, "--filter", '{"order": "loss"}'], launch_env(tmp_path / "cache"), cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "wrote 3 examples" in done.stdout
    shown = [int(i) for i in re.findall(r'class="id">#(\d+)<', out.read_text())]
    # The brightest images of class "a" have the largest losses: the last files of a/ (a few share a
    # brightness, so the same loss), far past the 1,056 examples a forward reader reaches.
    assert len(shown) == 3 and all(1144 <= i < 1150 for i in shown), shown


class Stream:
    """An iterable of Batch of unknown length (no ``len``, no index): read forward, boundedly."""

    def __init__(self, n: int, batch_size: int = 32) -> None:
        self.n, self.batch_size = n, batch_size

    def __iter__(self):
        for start in range(0, self.n, self.batch_size):
            ids = torch.arange(start, min(self.n, start + self.batch_size), dtype=torch.float32)
            x = (ids / self.n)[:, None, None, None].expand(-1, 1, 4, 4).contiguous()
            yield Batch(x, [0] * len(ids))


def _stream_visualizer(n: int) -> AttributionVisualizer:
    return AttributionVisualizer(RampNet(), ["dark", "bright"], [ImageFeature("image", None, None)], Stream(n))


def test_an_iterable_of_unknown_length_keeps_the_bounded_scan():
    vis = _stream_visualizer(1797)
    client = create_app(vis).test_client()
    r = post(client, "/examples", {"method": "Saliency", "page": 27, "page_size": 64})
    assert r.status_code == 200
    page = r.get_json()["page"]
    assert r.get_json()["examples"] == [] and page["dataset_size"] is None
    assert "beyond the 32 examples read so far: one request reads at most" in page["message"]
    far = post(client, "/attribute", {"example_id": 1700, "method": "Saliency"})
    assert far.status_code == 400 and "page forward to reach it" in far.get_json()["error"]


def test_the_loss_order_over_an_iterable_says_what_it_cannot_reach():
    """Ids the pass picked beyond what the forward reader can reach: left out with a note, never a 500."""
    n = 1200
    vis = _stream_visualizer(n)
    client = create_app(vis).test_client()
    vis.dataset_pass.start()
    assert vis.dataset_pass.wait(120).complete
    r = post(client, "/examples", {"method": "Saliency", "page_size": 16, "filter": {"order": "loss"}})
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["examples"] == []  # the 16 largest losses are ids 1199..1184, past 32 + 1024
    assert "16 examples of this page (1184, 1185, 1186, 1187, 1188, ...) lie beyond the" in body["page"]["message"]
    assert body["page"]["matched"] == n


# ---------------------------------------------------------------- every indexed adapter reads as it iterates


def assert_read_by_position_as_iterated(dataset) -> None:
    """Each example read by position (aligned blocks) equals the one iteration yields at that position."""
    from insights_app.dataset import as_block, indexed, split_batch

    source = indexed(dataset)
    assert source is not None, f"{type(dataset).__name__} is not indexed"
    iterated = [ex for b in dataset for ex in split_batch(b, 0)]
    assert len(source) == len(iterated)
    size = source.block_size
    read = []
    for start in reversed(range(0, len(source), size)):  # last block first: nothing before it is needed
        block = as_block(source.read_block(start, min(start + size, len(source))), start)
        assert block.positions == list(range(start, min(start + size, len(source)))) and not block.missing
        read[:0] = split_batch(block.batch, start)
    for a, b in zip(iterated, read):
        assert a.label == b.label
        assert all(torch.equal(x, y) for x, y in zip(a.inputs, b.inputs))
        if a.additional_args is not None:
            assert torch.equal(a.additional_args, b.additional_args)


def test_the_torch_and_folder_adapters_read_by_position_as_they_iterate(digit_folder):
    from torch.utils.data import DataLoader, TensorDataset

    from data_adapters.folder import source_from_folder
    from data_adapters.torch import source_from_dataset

    x = torch.rand(70, 1, 4, 4)
    y = torch.arange(70) % 2
    for data in (TensorDataset(x, y), DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)):
        source = source_from_dataset(data, RampNet(), ["dark", "bright"], batch_size=8)
        assert_read_by_position_as_iterated(source.dataset)
    model = seeded(TinyCNN, 1, seed=0)
    folder = source_from_folder(digit_folder / "3", model, [str(i) for i in range(10)], channels=1)
    assert_read_by_position_as_iterated(folder.dataset)


def test_texts_read_by_position_are_padded_as_their_batch():
    from test_adapters_text import CLASSES, LABELS, PAD, TEXTS, VOCAB, TinyTextNet, tokenize

    from data_adapters.text import source_from_texts

    torch.manual_seed(0)
    source = source_from_texts(TEXTS, TinyTextNet().eval(), tokenize, VOCAB, PAD, LABELS, CLASSES, batch_size=4)
    assert_read_by_position_as_iterated(source.dataset)


def test_fastai_items_read_by_position_as_they_iterate(digits_learner):
    from data_adapters.fastai import source_from_learner

    assert_read_by_position_as_iterated(source_from_learner(digits_learner, bs=16).dataset)


def test_fastai_tabular_rows_read_by_position_as_they_iterate():
    from test_adapters_tabular import N_ROWS, N_VALID

    from data_adapters.fastai import source_from_learner
    from insights_app.demos import tabular as demo_tabular

    df = demo_tabular.breast_cancer_frame().iloc[:N_ROWS].reset_index(drop=True)
    train, valid = demo_tabular.split(len(df), valid_fraction=N_VALID / N_ROWS)
    dls = demo_tabular.tabular_dls(df, valid, bs=16)
    from fastai.tabular.all import tabular_learner

    torch.manual_seed(0)
    learn = tabular_learner(dls, layers=[8])
    assert_read_by_position_as_iterated(source_from_learner(learn).dataset)


def test_an_unreadable_file_keeps_its_position_and_pages_skip_it(digit_folder, tmp_path):
    """A folder read by position: an unreadable file is a hole the pages skip (the others keep their
    ids, so a deep link never moves), /attribute names it, and the dataset pass flags it."""
    import shutil

    from data_adapters import from_folder

    root = tmp_path / "holes"
    shutil.copytree(digit_folder / "3", root / "3")
    files = sorted((root / "3").glob("*.png"))[:40]
    for f in sorted((root / "3").glob("*.png"))[40:]:
        f.unlink()
    files[5].write_bytes(b"not an image")
    vis = from_folder(root, seeded(TinyCNN, 1, seed=0), [str(i) for i in range(10)], channels=1, batch_size=8)
    client = create_app(vis).test_client()
    body = post(client, "/examples", {"method": "Saliency", "page_size": 16}).get_json()
    assert [e["id"] for e in body["examples"]] == [i for i in range(16) if i != 5]
    assert body["page"]["dataset_size"] == 40 and all(m["error"] is None for e in body["examples"] for m in e["models"])
    bad = post(client, "/attribute", {"example_id": 5, "method": "Saliency"})
    assert bad.status_code == 400 and "not a readable image" in bad.get_json()["error"]
    vis.dataset_pass.start()
    progress = vis.dataset_pass.wait(60)
    assert progress.complete and progress.done == 40 and progress.failed_examples == 1
    wrong = post(client, "/examples", {"method": "Saliency", "page_size": 64, "filter": {"order": "loss"}}).get_json()
    assert sorted(e["id"] for e in wrong["examples"]) == [i for i in range(40) if i != 5]
