"""Real data and small models for the data_adapters tests: digits as PNG files, skimage photos."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from insights_app.testing import ConvNet, seeded

DIGIT_SIZE = 16


def digit_images(size: int = DIGIT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits upscaled to ``size`` x ``size`` uint8 images, and their labels."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    out = []
    for img in digits.images:
        pixels = np.clip(img / 16.0 * 255.0, 0, 255).astype(np.uint8)
        out.append(np.asarray(Image.fromarray(pixels, "L").resize((size, size), Image.BILINEAR)))
    return np.stack(out), digits.target.astype(np.int64)


def write_digit_folders(
    root: Path, n_train: int = 600, n_valid: int = 120, size: int = DIGIT_SIZE, seed: int = 0
) -> dict[str, list[Path]]:
    """Write ``root/{train,valid}/<digit>/<index>.png`` (a seeded subset of the digits)."""
    from PIL import Image

    images, labels = digit_images(size)
    order = np.random.default_rng(seed).permutation(len(images))
    split = {"valid": order[:n_valid], "train": order[n_valid : n_valid + n_train]}
    written: dict[str, list[Path]] = {}
    for name, idx in split.items():
        written[name] = []
        for i in idx:
            folder = root / name / str(int(labels[i]))
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{int(i):04d}.png"
            Image.fromarray(images[i], "L").save(path)
            written[name].append(path)
    return written


def digit_cnn(n_classes: int = 10, channels: int = 1) -> nn.Module:
    """A small CNN for 16x16 images (conv layers so that GradCAM has something to hook)."""
    return ConvNet(channels, n_classes, ((16, "max2"), (32, "avg2")))


def digit_tags(path):  # no annotations: fastai's type dispatch chokes on list[str]
    """Multi-label targets for a digit file: its parity, plus 'small' for digits below 5."""
    d = int(Path(path).parent.name)
    return ["even" if d % 2 == 0 else "odd"] + (["small"] if d < 5 else [])


def pil_pixels(path: Path, mode: str = "L", size: tuple[int, int] | None = None) -> torch.Tensor:
    """A file's pixels as a (C, H, W) float tensor in 0..1, read independently of the adapters."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert(mode)
        if size is not None:
            im = im.resize((size[1], size[0]), Image.BILINEAR)
        arr = np.asarray(im, dtype=np.float32) / 255.0
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr).permute(2, 0, 1)


SAMPLE_PHOTOS = {"animal": ("chelsea", "cat"), "object": ("coffee", "rocket"), "person": ("astronaut",)}


def write_sample_photos(
    root: Path, classes: dict[str, Sequence[str]] = SAMPLE_PHOTOS, max_side: int = 96
) -> dict[str, Path]:
    """scikit-image's sample photos as ``root/<class>/<name>.png`` (downscaled to keep tests fast)."""
    from PIL import Image
    from skimage import data

    written = {}
    for cls, names in classes.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for name in names:
            im = Image.fromarray(getattr(data, name)())
            im.thumbnail((max_side, max_side))
            path = root / cls / f"{name}.png"
            im.save(path)
            written[name] = path
    return written


def photo_cnn(n_classes: int, channels: int = 3) -> nn.Module:
    """An untrained but deterministic small CNN for photos of any size."""
    return seeded(ConvNet, channels, n_classes, ((8, "avg4"),))


def page_predictions(page: dict) -> list[tuple[int, int, float]]:
    """(example id, top-1 class index, top-1 score) of the first model for each example of a page."""
    out = []
    for ex in page["examples"]:
        top = ex["models"][0]["predictions"][0]
        out.append((ex["id"], top["index"], top["score"]))
    return out


IG_PAGE = {"method": "IntegratedGradients", "arguments": {"n_steps": 8}, "page_size": 4}


def fit_on_tensors(learn, x: torch.Tensor, y: torch.Tensor, epochs: int = 4, batch_size: int = 64) -> None:
    """Train a fastai ``learn`` on in-memory tensors (``x`` as the model sees it), then give it back its
    own DataLoaders: a learner trained in seconds that loads files like one trained on its folders
    (the per-file pipeline is ten times slower)."""
    from fastai.data.core import DataLoaders
    from torch.utils.data import DataLoader, TensorDataset

    gen = torch.Generator().manual_seed(0)
    ds = TensorDataset(x, y)
    own_dls = learn.dls
    learn.dls = DataLoaders(
        DataLoader(ds, batch_size=batch_size, shuffle=True, generator=gen), DataLoader(ds, batch_size=256)
    )
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny CNN trains fastest on one thread (and on a busy machine)
    try:
        with learn.no_bar(), learn.no_logging():
            learn.fit_one_cycle(epochs, 1e-2)
    finally:
        torch.set_num_threads(threads)
        learn.dls = own_dls


def train_digits_learner(root: Path, files: dict[str, list[Path]], mean: float = 0.3, std: float = 0.4):
    """A single-label grey CNN fastai learner over ``root``'s image folders, with a Normalize in its
    batch transforms, trained (on the files' pixels held in memory) to well above chance."""
    import fastai.vision.all as fv

    dls = fv.ImageDataLoaders.from_folder(
        root,
        train="train",
        valid="valid",
        img_cls=fv.PILImageBW,
        bs=64,
        num_workers=0,
        batch_tfms=fv.Normalize.from_stats([mean], [std], cuda=False),
    )
    learn = fv.Learner(dls, digit_cnn(10), loss_func=fv.CrossEntropyLossFlat(), metrics=fv.accuracy)
    x = torch.stack([pil_pixels(f) for f in files["train"]])
    targets = torch.tensor([int(f.parent.name) for f in files["train"]])
    fit_on_tensors(learn, (x - mean) / std, targets)
    return learn


def rgb_copy(grey: nn.Module) -> nn.Module:
    """A ``digit_cnn`` for RGB input that computes what the grey ``grey`` computes on a grey image
    opened as RGB (its first convolution's weights spread equally over the three channels):
    an RGB learner without a second training."""
    first = grey.conv1.weight
    rgb = digit_cnn(grey.fc.out_features, channels=3)
    state = {k: v.clone() for k, v in grey.state_dict().items()}
    state["conv1.weight"] = (first / 3).repeat(1, 3, 1, 1).detach().clone()
    rgb.load_state_dict(state)
    return rgb
