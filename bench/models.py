"""The benchmark's models, inputs and dataset (generated: nothing is downloaded).

At 32x32: a small CNN (the case Captum Insights 0.8 was slowest on) and ``lenet``, the net
of captum 0.8's CIFAR tutorial. At 224x224, torchvision's resnet18, mobilenet_v3_small,
efficientnet_b0, convnext_tiny and vit_b_16, all with random weights (``weights=None``,
1000 classes: nothing is downloaded). Every model sees its images through a ``Normalize``
input transform, as a real visualizer would, so the server does the same preprocessing a
user of raw captum would have done beforehand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn as nn

from insights_app import Batch
from insights_app.testing import CNN32

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
POOL_SIZE = 64  # distinct images; every page shows the first `page_size` of them


# key -> (label, image side); the torchvision ones are built by name from torchvision.models.
MODELS = {
    "cnn32": ("small CNN 32x32", 32),
    "lenet": ("captum tutorial LeNet 32x32", 32),
    "resnet18": ("resnet18 224x224", 224),
    "mobilenet_v3_small": ("mobilenet_v3_small 224x224", 224),
    "efficientnet_b0": ("efficientnet_b0 224x224", 224),
    "convnext_tiny": ("convnext_tiny 224x224", 224),
    "vit_b_16": ("vit_b_16 224x224", 224),
}
TORCHVISION = ("resnet18", "mobilenet_v3_small", "efficientnet_b0", "convnext_tiny", "vit_b_16")


class LeNet(nn.Module):
    """The CIFAR-10 net of captum 0.8's tutorial (CIFAR_TorchVision_Interpret), on 32x32 images.

    conv(3, 6, 5) -> relu -> maxpool 2 -> conv(6, 16, 5) -> relu -> maxpool 2 -> fc 400 -> 120
    -> relu -> fc 120 -> 84 -> relu -> fc 84 -> 10, with one ReLU module per use as there.
    """

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, n_classes)
        self.relu1, self.relu2, self.relu3, self.relu4 = nn.ReLU(), nn.ReLU(), nn.ReLU(), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = x.reshape(x.shape[0], 16 * 5 * 5)
        x = self.relu3(self.fc1(x))
        x = self.relu4(self.fc2(x))
        return self.fc3(x)


@dataclass
class BenchModel:
    """A model, its input side, its classes and the display-space image pool."""

    key: str
    label: str
    model: nn.Module
    side: int
    classes: tuple[str, ...]
    images: torch.Tensor  # (POOL_SIZE, 3, side, side) in 0..1, display space
    normalize: Callable[[torch.Tensor], torch.Tensor]  # torchvision's Normalize, as a user would pass
    device: torch.device = torch.device("cpu")  # the model's (the pool stays on the CPU, as a dataset's)

    def model_inputs(self, n: int) -> torch.Tensor:
        """The first ``n`` pool images as the model sees them (what raw captum is given)."""
        return self.normalize(self.images[:n]).to(self.device)

    def baseline_zeros(self, n: int) -> torch.Tensor:
        """Zeros in display space, normalized: the server's ``baseline: zeros``."""
        return self.normalize(torch.zeros_like(self.images[:n])).to(self.device)

    def sync(self) -> None:
        """Wait for the device's queued work (a no-op on the CPU): timings end after it."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def build_model(key: str, seed: int = 0, device: str = "cpu") -> BenchModel:
    """One of :data:`MODELS` with a fixed random initialisation and image pool, the model on
    ``device``."""
    import torchvision.transforms as T

    if key not in MODELS:
        raise ValueError(f"unknown model {key!r} (choose from {', '.join(MODELS)})")
    label, side = MODELS[key]
    torch.manual_seed(seed)
    if key == "cnn32":
        model, n_classes = CNN32(10), 10
    elif key == "lenet":
        model, n_classes = LeNet(10), 10
    else:
        import torchvision

        model, n_classes = getattr(torchvision.models, key)(weights=None, num_classes=1000), 1000
    dev = torch.device(device)
    model.eval().to(dev)
    gen = torch.Generator().manual_seed(seed + 1)
    images = torch.rand((POOL_SIZE, 3, side, side), generator=gen)
    return BenchModel(
        key, label, model, side, tuple(f"class {i}" for i in range(n_classes)), images, T.Normalize(MEAN, STD), dev
    )


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
