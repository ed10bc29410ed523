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
