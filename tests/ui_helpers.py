"""Shared set-up for the API, browser and reliability tests: small trained models, visualizers, servers.

Everything is built from scikit-learn's digits (nothing is downloaded) and is deterministic.
The pytest fixtures built from them (``digits_setup``, ``digits_visualizer``, ``digits_server``,
``mixed_visualizer``, ``chromium``, ``ui``) live in conftest.py: the CNN is trained once per test run
(about 3 seconds on 2 cores). The plain functions here (``train_digits_cnn``, ``make_digits_visualizer``,
``make_mixed_visualizer``, ``serve``) are for tests that need their own instance, e.g. two servers at once.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from insights_app import AttributionVisualizer, Batch
from insights_app.features import GeneralFeature, ImageFeature, TextFeature
from insights_app.testing import DigitsCNN, DigitsMLP, MixedModel, seeded
from insights_app.transport.serving import ServerHandle, start_server

DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
IMAGE_SIDE = 32
TRAIN_SIZE = 1300  # the rest (497 examples) is what the visualizers show
CHROMIUM = os.environ.get("INSIGHTS_CHROMIUM", "/usr/bin/chromium")  # Debian's package
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# ---------------------------------------------------------------- data and models


def load_digits_tensors(side: int = IMAGE_SIDE) -> tuple[torch.Tensor, torch.Tensor]:
    """The 1797 scikit-learn digits as (N, 1, side, side) floats in [0, 1] and (N,) labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    x = torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear", align_corners=False).clamp(0, 1)
    return x, torch.tensor(d.target, dtype=torch.long)


def train(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 2, seed: int = 0, lr: float = 1e-2
) -> nn.Module:
    """A few epochs of Adam: seconds on a CPU, enough for ~85-95 % test accuracy (so both
    correct and misclassified examples exist)."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: one thread is faster, and robust on a busy machine
    try:
        for _ in range(epochs):
            for i in range(0, len(x), 64):
                idx = order[i : i + 64]
                loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def train_digits_cnn(seed: int = 0, epochs: int = 2) -> DigitsCNN:
    x, y = load_digits_tensors()
    torch.manual_seed(seed)
    return train(DigitsCNN(), x[:TRAIN_SIZE], y[:TRAIN_SIZE], epochs=epochs, seed=seed)


def train_digits_mlp(seed: int = 0, epochs: int = 2) -> DigitsMLP:
    x, y = load_digits_tensors()
    torch.manual_seed(seed)
    return train(DigitsMLP(), x[:TRAIN_SIZE], y[:TRAIN_SIZE], epochs=epochs, seed=seed)


def digits_batches(batch_size: int = 8, limit: int | None = None) -> list[Batch]:
    """The held-out digits as a list of Batch (a list is re-iterable: pages can go back)."""
    x, y = load_digits_tensors()
    x, y = x[TRAIN_SIZE:], y[TRAIN_SIZE:]
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return [Batch(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)]


def accuracy(model: nn.Module) -> float:
    x, y = load_digits_tensors()
    with torch.no_grad():
        return float((model(x[TRAIN_SIZE:]).argmax(1) == y[TRAIN_SIZE:]).float().mean())


def make_digits_visualizer(
    models: Sequence[nn.Module],
    model_names: Sequence[str] | None = None,
    classes: Sequence[str] = DIGIT_NAMES,
    **kwargs,
) -> AttributionVisualizer:
    """A visualizer over the held-out digits (softmax scores, one image feature).

    ``classes`` may name more classes than the model outputs (a class no example is ever
    predicted as, for empty-filter tests).
    """
    return AttributionVisualizer(
        list(models),
        list(classes),
        [ImageFeature("digit")],
        digits_batches(),
        score_func=lambda out: torch.softmax(out, dim=-1),
        model_names=list(model_names) if model_names else None,
        title="Digits",
        **kwargs,
    )


# ---------------------------------------------------------------- several kinds of features

WORDS = ["thin", "bold", "loop", "stroke", "curve", "line", "dot", "tail", "gap", "cross", "hook", "arc"]


def mixed_batches(n: int = 16, tokens: int = 5, emb: int = 6) -> list[Batch]:
    """Digits plus four pixel statistics and a short 'caption' of token embeddings."""
    x, y = load_digits_tensors()
    x, y = x[TRAIN_SIZE : TRAIN_SIZE + n], y[TRAIN_SIZE : TRAIN_SIZE + n]
    ink = x.mean(dim=(1, 2, 3))
    cols = (x.sum(dim=(1, 2)) > 0.5).float().sum(-1) / IMAGE_SIDE
    rows = (x.sum(dim=(1, 3)) > 0.5).float().sum(-1) / IMAGE_SIDE
    sym = 1 - (x - x.flip(-1)).abs().mean(dim=(1, 2, 3))
    stats = torch.stack([ink, cols, rows, sym], dim=1)
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, len(WORDS), (n, tokens), generator=g)
    table = torch.randn(len(WORDS), emb, generator=g)
    emb_in = table[ids]
    # The token strings travel with the embeddings: the last column holds the word id.
    text = torch.cat([emb_in, ids[..., None].float()], dim=-1)
    return [Batch((x[i : i + 4], stats[i : i + 4], text[i : i + 4]), y[i : i + 4]) for i in range(0, n, 4)]


def _caption_words(example: torch.Tensor) -> list[str]:
    return [WORDS[int(i)] for i in example[:, -1].tolist()]


def make_mixed_visualizer(n_models: int = 2) -> AttributionVisualizer:
    """Two untrained models over three features (image, general, text): exercises every view."""
    models = [seeded(MixedModel, seed=seed) for seed in range(n_models)]
    strip_id = [lambda t: t[..., :-1]]
    features = [
        ImageFeature("digit"),
        GeneralFeature("stats", ["ink", "width", "height", "symmetry"]),
        TextFeature("caption", input_transforms=strip_id, visualization_transform=_caption_words),
    ]
    return AttributionVisualizer(
        models,
        DIGIT_NAMES,
        features,
        mixed_batches(),
        score_func=lambda out: torch.softmax(out, dim=-1),
        model_names=[f"mixed-{i}" for i in range(n_models)],
        title="Mixed features",
    )


# ---------------------------------------------------------------- servers and images


def serve(visualizer: AttributionVisualizer, token: str | None = None, host: str = "127.0.0.1") -> ServerHandle:
    """Start a real waitress server on a free port (returns once it accepts connections)."""
    return start_server(visualizer, host=host, port=0, token=token, quiet=True)


def decode_data_url(url: str) -> np.ndarray:
    """A data:image/png;base64 URL -> an (H, W, C) uint8 array."""
    from PIL import Image

    assert url.startswith("data:image/png;base64,"), url[:40]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def is_blank(pixels: np.ndarray) -> bool:
    """True when an image is one flat colour (what a broken renderer produces)."""
    return float(pixels.astype(np.float32).std()) < 1.0


@dataclass
class DigitsSetup:
    model: DigitsCNN
    visualizer: AttributionVisualizer
    accuracy: float


# ---------------------------------------------------------------- headless Chromium


IDLE_JS = """() => {
  const root = document.querySelector('.insights-app');
  return !!root && !!root.querySelector('.ia-toolbar') && !root.classList.contains('ia-busy')
    && !root.querySelector('.ia-card-loading') && !root.querySelector('.ia-status .ia-spinner');
}"""


def wait_idle(page, timeout: float = 30_000) -> None:
    """Wait until the page has built its UI and no page or card is still computing."""
    page.wait_for_function(IDLE_JS, timeout=timeout)


def card_ids(page) -> list[int]:
    return [int(x) for x in page.eval_on_selector_all(".ia-grid .ia-card", "els => els.map(e => e.dataset.exampleId)")]


# ---------------------------------------------------------------- pages in the browser

VIEWPORT = {"width": 1280, "height": 800}
SHOTS = os.environ.get("INSIGHTS_SCREENSHOTS")  # a folder: keep screenshots of what the tests saw


def shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"ui-{name}.png"))


class Page:
    """A fresh browser context and page that records script errors."""

    def __init__(self, browser) -> None:
        self.context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        self.page.on("console", self._console)

    def _console(self, msg) -> None:
        # Chromium logs every 4xx response as a console error; those are expected in some tests.
        if msg.type == "error" and "Failed to load resource" not in msg.text:
            self.errors.append(f"console: {msg.text}")

    def close(self) -> None:
        self.context.close()


def open_app(ui: Page, url: str) -> None:
    ui.page.goto(url)
    wait_idle(ui.page)


def fetch(page) -> None:
    page.click(".insights-app .ia-fetch")
    wait_idle(page)
