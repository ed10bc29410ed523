"""Small models and datasets for the engine tests (no download, deterministic)."""

from __future__ import annotations

from typing import Iterator, List, Optional

import torch
import torch.nn as nn

from insights_app import Batch


class SmallCNN(nn.Module):
    """A CNN with distinct activation modules (DeepLift needs them unshared)."""

    def __init__(self, in_channels: int = 3, n_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.flat = nn.Flatten()
        self.fc = nn.Linear(8 * 16, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flat(self.relu2(self.conv2(self.pool(self.relu1(self.conv1(x)))))))


def make_model(in_channels: int = 3, n_classes: int = 10, seed: int = 0) -> SmallCNN:
    torch.manual_seed(seed)
    return SmallCNN(in_channels, n_classes).eval()


class RandomImages:
    """A re-iterable dataset of random images (fresh iterator per iter(), same data each time)."""

    def __init__(self, n_batches: int = 4, batch_size: int = 4, shape=(3, 32, 32), n_classes: int = 10,
                 labels: bool = True, seed: int = 1) -> None:
        g = torch.Generator().manual_seed(seed)
        self.batches: List[Batch] = [
            Batch(torch.rand((batch_size,) + tuple(shape), generator=g),
                  torch.randint(0, n_classes, (batch_size,), generator=g) if labels else None)
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
