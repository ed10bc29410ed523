"""The small models the tests and the benchmarks share (as captum's ``testing/helpers/basic_models``).

Every CNN here is one :class:`ConvNet`: convolution blocks, each with its own ReLU module
(DeepLift and Guided Backprop hook ReLU modules, so they must not be shared) and an optional
pool, then a linear head. The named subclasses are the configurations the suites use; their
class names are what the app shows as model names. Weights are created in the order conv1,
conv2, ..., fc, so the same seed gives the same model in every suite.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
import torch.nn as nn

Block = tuple[int, str | None]  # (output channels, pool after the block: "max2", "avgN" or None)


def _pool(spec: str | None) -> nn.Module | None:
    if spec is None:
        return None
    if spec == "max2":
        return nn.MaxPool2d(2)
    if spec.startswith("avg"):
        return nn.AdaptiveAvgPool2d(int(spec[3:]))
    raise ValueError(f"unknown pool {spec!r} (max2, avgN or None)")


class ConvNet(nn.Module):
    """Convolution blocks (3x3, padding 1) and a linear head.

    ``side`` is the input's side when no adaptive pool fixes the size the head sees;
    ``gray`` averages an RGB input to one channel first (a grayscale model behind an RGB
    pipeline).
    """

    def __init__(
        self,
        in_channels: int = 3,
        n_classes: int = 10,
        blocks: Sequence[Block] = ((6, "avg4"), (8, None)),
        side: int | None = None,
        gray: bool = False,
    ) -> None:
        super().__init__()
        self.gray = gray
        self.n_blocks = len(blocks)
        channels, spatial = in_channels, side
        for i, (width, pool) in enumerate(blocks, start=1):
            setattr(self, f"conv{i}", nn.Conv2d(channels, width, 3, padding=1))
            setattr(self, f"relu{i}", nn.ReLU())
            module = _pool(pool)
            if module is not None and pool is not None:
                setattr(self, f"pool{i}", module)
                spatial = int(pool[3:]) if pool.startswith("avg") else (None if spatial is None else spatial // 2)
            channels = width
        if spatial is None:
            raise ValueError("give side= when no adaptive pool fixes the size the head sees")
        self.flat = nn.Flatten()
        self.fc = nn.Linear(channels * spatial * spatial, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gray and x.shape[1] == 3:
            x = x.mean(1, keepdim=True)
        for i in range(1, self.n_blocks + 1):
            x = getattr(self, f"relu{i}")(getattr(self, f"conv{i}")(x))
            pool = getattr(self, f"pool{i}", None)
            if pool is not None:
                x = pool(x)
        return self.fc(self.flat(x))


class SmallCNN(ConvNet):
    """Any image size and channel count (the engine and visualizer tests)."""

    def __init__(self, in_channels: int = 3, n_classes: int = 10) -> None:
        super().__init__(in_channels, n_classes, ((6, "avg4"), (8, None)))


class TinyCNN(ConvNet):
    """The smallest with a convolution to hook: even the costliest request on 8x8 digits takes about a second."""

    def __init__(self, in_channels: int = 1, n_classes: int = 10) -> None:
        super().__init__(in_channels, n_classes, ((4, None), (4, "avg2")))


class DigitsCNN(ConvNet):
    """Trained in seconds to 85-95 % on 32x32 digits (the API and browser tests)."""

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__(1, n_classes, ((8, "max2"), (16, "avg4")))


class DigitsNet(ConvNet):
    """A grayscale digits model that also takes RGB input (what a user's own model file would define)."""

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__(1, n_classes, ((8, "avg8"), (16, None)), gray=True)


class CNN32(ConvNet):
    """The benchmark's small CNN on 32x32 RGB images (the case Captum Insights 0.8 was slowest on)."""

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__(3, n_classes, ((16, "max2"), (32, "max2")), side=32)


class DigitsMLP(nn.Module):
    """A deliberately weak second model for 32x32 digits, so that two models disagree on some examples."""

    def __init__(self, n_classes: int = 10, side: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.AvgPool2d(4), nn.Flatten(), nn.Linear((side // 4) ** 2, 32), nn.ReLU(), nn.Linear(32, n_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SlowNet(nn.Module):
    """Sleeps ``delay`` seconds in every forward pass (the CPU stays idle), so that a page takes a while."""

    def __init__(self, delay: float = 0.1, n_classes: int = 10) -> None:
        super().__init__()
        self.delay = delay
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(2, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.delay)
        return self.fc(self.conv(x).mean(dim=(2, 3)))


class MixedModel(nn.Module):
    """Image + tabular + token-embedding inputs -> 10 classes (every kind of feature at once)."""

    def __init__(self, n_stats: int = 4, emb: int = 6, n_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(2)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(16 + n_stats + emb, n_classes)

    def forward(self, image: torch.Tensor, stats: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat([self.flat(self.gap(self.relu(self.conv(image)))), stats, tokens.mean(1)], dim=1))


class TwoInputNet(nn.Module):
    """An 8x8 image and a tabular vector, combined: for contributions across features."""

    def __init__(self, n_tabular: int = 4, n_classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.img = nn.Linear(2 * 8 * 8, n_classes)
        self.tab = nn.Linear(n_tabular, n_classes)

    def forward(self, image: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        return self.img(torch.relu(self.conv(image)).flatten(1)) + self.tab(table)


class BagOfEmbeddings(nn.Module):
    """Token embeddings averaged, then a linear layer: a text classifier."""

    def __init__(self, emb: int = 6, n_classes: int = 2) -> None:
        super().__init__()
        self.fc = nn.Linear(emb, n_classes)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.fc(emb.mean(dim=1))


def seeded(model_class: type, *args: object, seed: int = 0, **kwargs: object) -> nn.Module:
    """``model_class(*args, **kwargs)`` with its weights drawn after ``torch.manual_seed(seed)``, in eval mode."""
    torch.manual_seed(seed)
    return model_class(*args, **kwargs).eval()
