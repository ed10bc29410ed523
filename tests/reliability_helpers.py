"""Datasets, a faulty model and a live-server harness for the reliability and security tests.

Everything is tiny (1x8x8 digits, TinyCNN) so that even the most expensive request
the parameter bounds allow finishes in about a second: the fuzz and load tests can then
exercise every method without the CI budget depending on which arguments they happen to draw.
No download: the images are scikit-learn's bundled digits.
"""

from __future__ import annotations

import functools
import json
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from insights_app import AttributionVisualizer, Batch
from insights_app.features import ImageFeature
from insights_app.testing import TinyCNN, seeded

CLASSES = [str(i) for i in range(10)]
POISON = -1.0  # a raw pixel value that FaultyModel refuses (never produced by real digits, which are >= 0)


def make_model(seed: int = 0, in_channels: int = 1) -> TinyCNN:
    return seeded(TinyCNN, in_channels, seed=seed)


class FaultyModel(TinyCNN):
    """A model that raises on some inputs: any example whose first pixel is POISON."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x[:, 0, 0, 0] <= POISON + 1e-6).any()):
            raise ValueError("this model cannot handle a poisoned input")
        return super().forward(x)


def make_faulty_model(seed: int = 0) -> FaultyModel:
    return seeded(FaultyModel, seed=seed)


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple:
    from sklearn.datasets import load_digits  # slow to import: once per test process

    d = load_digits()
    return d.images, d.target


def digits(n: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` scikit-learn digits as (n, 1, 8, 8) floats in [0, 1] and their labels (fresh tensors)."""
    images, target = _digits_arrays()
    x = torch.tensor(images[:n], dtype=torch.float32)[:, None] / 16.0
    y = torch.tensor(target[:n], dtype=torch.long)
    return x, y


class Digits:
    """A re-iterable dataset of digit batches; ``poison`` marks example ids FaultyModel refuses."""

    def __init__(self, n: int = 48, batch_size: int = 8, poison: Sequence[int] = ()) -> None:
        x, y = digits(n)
        x = x.clone()
        for i in poison:
            x[i, 0, 0, 0] = POISON
        self.batches: list[Batch] = [
            Batch(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, n, batch_size)
        ]

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.batches)


class FailingDigits(Digits):
    """A re-iterable dataset whose iterator raises when it reaches batch ``fail_at``.

    ``failures`` bounds how many times it fails (None: every time), so a transient fault
    (a flaky network share) and a permanent one (a corrupt shard) can both be modelled.
    """

    def __init__(self, n: int = 48, batch_size: int = 8, fail_at: int = 2, failures: int | None = None) -> None:
        super().__init__(n, batch_size)
        self.fail_at = fail_at
        self.failures_left = failures
        self.raised = 0

    def __iter__(self) -> Iterator[Batch]:
        for i, b in enumerate(self.batches):
            if i == self.fail_at and (self.failures_left is None or self.failures_left > 0):
                if self.failures_left is not None:
                    self.failures_left -= 1
                self.raised += 1
                raise OSError(f"cannot read shard {i}")
            yield b


def make_visualizer(models: Any = None, dataset: Any = None, **kwargs: Any) -> AttributionVisualizer:
    """A visualizer over digits with softmax scores (the usual classifier set-up)."""
    return AttributionVisualizer(
        models if models is not None else make_model(),
        CLASSES,
        [ImageFeature("digit")],
        dataset if dataset is not None else Digits(),
        **{"score_func": lambda o: torch.softmax(o, dim=1), **kwargs},
    )


def without_timing(obj: Any) -> Any:
    """A response with its wall-clock fields removed (the only part allowed to differ between runs)."""
    if isinstance(obj, dict):
        return {k: without_timing(v) for k, v in obj.items() if k != "elapsed_ms"}
    if isinstance(obj, list):
        return [without_timing(v) for v in obj]
    return obj


def answer_differences(want: Any, got: Any, path: str = "") -> list[str]:
    """Where two API answers differ, beyond what batching may change (empty: the same answer).

    Examples are computed in batches whose make-up depends on what else was asked (and what
    is cached); CPU kernels may then round the last bit of a float32 differently. So scores
    may differ by 1e-6 and a rendered pixel by a few levels (a heat-map colour one step along
    its colormap), in at most 2% of pixels. Anything else (ids, labels, classes, targets,
    errors, image sizes, a different random stream) is a difference. ``total`` and
    ``dataset_size`` are the dataset size once known: None or the true size are both right, and
    until it is known on both sides an unfiltered page's ``matched`` (how many examples are known
    to exist) depends on how far the dataset has been read.
    """
    if isinstance(want, dict) and isinstance(got, dict):
        if set(want) != set(got):
            return [f"{path}: keys {sorted(set(want) ^ set(got))}"]
        out: list[str] = []
        size_unknown = "dataset_size" in want and (want["dataset_size"] is None or got["dataset_size"] is None)
        for k in want:
            if k in ("total", "dataset_size") and (want[k] is None or got[k] is None):
                continue
            if k == "matched" and size_unknown:
                continue
            out += answer_differences(want[k], got[k], f"{path}.{k}")
        return out
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return [f"{path}: {len(want)} items, got {len(got)}"]
        return [d for i, (a, b) in enumerate(zip(want, got)) for d in answer_differences(a, b, f"{path}[{i}]")]
    if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        return [] if abs(want - got) <= 1e-6 + 1e-5 * abs(want) else [f"{path}: {want} != {got}"]
    if isinstance(want, str) and isinstance(got, str) and want != got and want.startswith(PNG_PREFIX):
        return _image_differences(want, got, path)
    return [] if want == got and type(want) is type(got) else [f"{path}: {str(want)[:60]} != {str(got)[:60]}"]


PNG_PREFIX = "data:image/png;base64,"


def _image_differences(want: str, got: str, path: str) -> list[str]:
    import base64
    import io

    import numpy as np
    from PIL import Image

    def pixels(url: str) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(url[len(PNG_PREFIX) :])))).astype(int)

    a, b = pixels(want), pixels(got)
    if a.shape != b.shape:
        return [f"{path}: image {a.shape} != {b.shape}"]
    diff = np.abs(a - b)
    if diff.max() > 4 or (diff.reshape(diff.shape[0], diff.shape[1], -1).max(axis=2) > 0).mean() > 0.02:
        return [f"{path}: images differ (max {diff.max()}, {(diff > 0).mean():.1%} of values)"]
    return []


def ndjson_events(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in body.decode().splitlines() if line.strip()]


@contextmanager
def serving(vis: AttributionVisualizer, **kwargs: Any) -> Iterator[str]:
    """Serve ``vis`` on 127.0.0.1 (an ephemeral port) for the duration of a block; yields the base URL."""
    kwargs.setdefault("quiet", True)
    port = vis.serve(port=0, **kwargs)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        vis.stop()


def raw_http(port: int, request: bytes, timeout: float = 10.0) -> bytes:
    """Send bytes exactly as given (no client-side path normalization) and read the whole answer."""
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(request)
        except (BrokenPipeError, ConnectionResetError):  # refused before the end: read the answer anyway
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])
