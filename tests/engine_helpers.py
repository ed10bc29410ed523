"""Datasets for the engine tests, and their model (no download, deterministic)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torchvision.transforms as T
from torchvision.transforms.functional import gaussian_blur

from insights_app import AttributionVisualizer, Batch
from insights_app.features import ImageFeature
from insights_app.testing import SmallCNN, seeded

NORMALIZE = T.Normalize((0.5, 0.4, 0.3), (0.25, 0.2, 0.3))


def make_model(in_channels: int = 3, n_classes: int = 10, seed: int = 0) -> SmallCNN:
    return seeded(SmallCNN, in_channels, n_classes, seed=seed)


class RandomImages:
    """A re-iterable dataset of random images (fresh iterator per iter(), same data each time)."""

    def __init__(
        self,
        n_batches: int = 4,
        batch_size: int = 4,
        shape=(3, 32, 32),
        n_classes: int = 10,
        labels: bool = True,
        seed: int = 1,
    ) -> None:
        g = torch.Generator().manual_seed(seed)
        self.batches: list[Batch] = [
            Batch(
                torch.rand((batch_size,) + tuple(shape), generator=g),
                torch.randint(0, n_classes, (batch_size,), generator=g) if labels else None,
            )
            for _ in range(n_batches)
        ]
        self.iterations = 0

    def __iter__(self) -> Iterator[Batch]:
        self.iterations += 1
        return iter(self.batches)


class EndlessImages:
    """A re-iterable dataset that never ends (for bounded-scan tests)."""

    def __init__(self, shape=(3, 32, 32)) -> None:
        self.shape = shape

    def __iter__(self) -> Iterator[Batch]:
        g = torch.Generator().manual_seed(0)
        while True:
            yield Batch(torch.rand((8,) + tuple(self.shape), generator=g), torch.zeros(8, dtype=torch.long))


def register_edge_map(vis) -> None:
    """Register "EdgeMap": an edge detector on the input, a "method" that never looks at the model
    (what the model-randomization sanity check must flag)."""
    import torch

    @vis.method("EdgeMap", label="Edge map", help="An edge detector on the input: it ignores the model.")
    def edges(ctx):
        x = ctx.inputs[0]
        gx = torch.nn.functional.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1))
        gy = torch.nn.functional.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
        return (gx.abs() + gy.abs(),)


def normalized_images_setup(smooth: bool = False) -> tuple:
    """(vis, model, raw, x, zeros, targets): a visualizer over four random images behind NORMALIZE, the
    raw images, their normalized inputs and zero baselines, and one target per example.

    ``smooth`` blurs the images first: the methods over SLIC superpixels need it (SLIC leaves pure
    noise in one piece).
    """
    model = make_model()
    data = RandomImages(n_batches=1, batch_size=4)
    if smooth:
        data.batches[0].inputs = gaussian_blur(data.batches[0].inputs, [9, 9], [3.0, 3.0])
    vis = AttributionVisualizer(
        [model],
        [str(i) for i in range(10)],
        [ImageFeature("image", input_transforms=[NORMALIZE])],
        data,
        score_func=lambda o: torch.softmax(o, 1),
    )
    raw = data.batches[0].inputs
    x = torch.stack([NORMALIZE(r) for r in raw])
    zeros = torch.stack([NORMALIZE(torch.zeros_like(r)) for r in raw])
    targets = torch.tensor([1, 3, 5, 7])
    return vis, model, raw, x, zeros, targets
