"""The benchmark's models, inputs and dataset (generated: nothing is downloaded).

Two models: a small CNN on 32x32 images (the case Captum Insights 0.8 was slowest on)
and torchvision's resnet18 with random weights on 224x224. Both see their images through
a ``Normalize`` input transform, as a real visualizer would, so the server does the same
preprocessing a user of raw captum would have done beforehand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Tuple

import torch
import torch.nn as nn

from insights_app import Batch
from insights_app.testing import CNN32

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
POOL_SIZE = 64  # distinct images; every page shows the first `page_size` of them


@dataclass
class BenchModel:
    """A model, its input side, its classes and the display-space image pool."""

    key: str
    label: str
    model: nn.Module
    side: int
    classes: Tuple[str, ...]
    images: torch.Tensor  # (POOL_SIZE, 3, side, side) in 0..1, display space
    normalize: Callable[[torch.Tensor], torch.Tensor]  # torchvision's Normalize, as a user would pass

    def model_inputs(self, n: int) -> torch.Tensor:
        """The first ``n`` pool images as the model sees them (what raw captum is given)."""
        return self.normalize(self.images[:n])

    def baseline_zeros(self, n: int) -> torch.Tensor:
        """Zeros in display space, normalized: the server's ``baseline: zeros``."""
        return self.normalize(torch.zeros_like(self.images[:n]))


def build_model(key: str, seed: int = 0) -> BenchModel:
    """``cnn32`` or ``resnet18`` with a fixed random initialisation and image pool."""
    import torchvision.transforms as T

    torch.manual_seed(seed)
    if key == "cnn32":
        model, side, n_classes, label = CNN32(10), 32, 10, "small CNN 32x32"
    elif key == "resnet18":
        import torchvision

        model, side, n_classes, label = torchvision.models.resnet18(weights=None), 224, 1000, "resnet18 224x224"
    else:
        raise ValueError(f"unknown model {key!r} (choose cnn32 or resnet18)")
    model.eval()
    gen = torch.Generator().manual_seed(seed + 1)
    images = torch.rand((POOL_SIZE, 3, side, side), generator=gen)
    return BenchModel(key, label, model, side, tuple(f"class {i}" for i in range(n_classes)), images,
                      T.Normalize(MEAN, STD))


class RepeatingPool:
    """A re-iterable, endless dataset: the same pool batch over and over.

    Example ``i`` shows pool image ``i % POOL_SIZE``, so page ``p`` of size ``s`` (with
    ``p * s`` a multiple of the pool size) has exactly the inputs raw captum gets, under
    ids the server has never seen: every timed page is a cold page (no cached result,
    prediction or rendered original), as when a user opens a new page.
    """

    def __init__(self, images: torch.Tensor) -> None:
        self.batch = Batch(images, torch.zeros(images.shape[0], dtype=torch.long))

    def __iter__(self) -> Iterator[Batch]:
        while True:
            yield self.batch
