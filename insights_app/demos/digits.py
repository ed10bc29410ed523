"""The demo: a small fastai CNN on scikit-learn's digits, trained once and cached.

``insights-app`` with no arguments must work on a fresh machine with no download, so the
data is scikit-learn's ``load_digits`` (it ships inside the package). The first start
writes the 8x8 digits as 32x32 PNG files, trains a tiny CNN for a few epochs (seconds on
two CPU cores) and exports the learner; later starts only load it. The cache lives in
``$INSIGHTS_APP_CACHE`` or the user's cache directory (:mod:`insights_app.demos.cache`) and is
rebuilt when it is missing, incomplete or no longer loads (e.g. after a fastai upgrade).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .cache import DemoCache, Progress, say, training_threads

DEMO_NAME = "digits-v1"  # bump when the data, the model or the training changes
IMAGE_SIZE = 32
EPOCHS = 5
LEARNING_RATE = 1e-2
VALID_FRACTION = 0.2
SEED = 0


class DemoFiles(DemoCache):
    """The demo's files in the cache: the exported learner and the digit images."""

    REQUIRED = ("export.pkl", "images/valid/")

    @property
    def learner(self) -> Path:
        return self.root / "export.pkl"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def valid(self) -> Path:
        """The held-out digits (one sub-folder per class): what the demo shows."""
        return self.images / "valid"


def demo_files(cache: Path | None = None) -> DemoFiles:
    return DemoFiles.in_cache(DEMO_NAME, cache)


def write_digit_images(
    folder: Path,
    size: int = IMAGE_SIZE,
    valid_fraction: float = VALID_FRACTION,
    seed: int = SEED,
    limit: int | None = None,
) -> tuple[int, int]:
    """Write ``load_digits`` as ``folder/{train,valid}/<digit>/<n>.png`` grayscale images.

    The split is a seeded shuffle, so every machine gets the same demo. ``limit`` stops
    after that many images (the validation ones come first). Returns the number of
    (train, valid) images written.
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.images))
    n_valid = int(round(len(order) * valid_fraction))
    if limit is not None:
        order = order[: max(0, int(limit))]
    for rank, i in enumerate(order):
        split = "valid" if rank < n_valid else "train"
        pixels = np.clip(digits.images[i] / 16.0 * 255.0, 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels, "L").resize((size, size), Image.Resampling.BILINEAR)
        target = folder / split / str(int(digits.target[i]))
        target.mkdir(parents=True, exist_ok=True)
        image.save(target / f"{int(i):04d}.png")
    return max(0, len(order) - n_valid), min(n_valid, len(order))


def digits_cnn(n_classes: int = 10) -> Any:
    """A three-block CNN for 1x32x32 images (about 25k parameters; conv layers for GradCAM)."""
    from torch import nn

    def block(n_in: int, n_out: int) -> list:
        return [nn.Conv2d(n_in, n_out, 3, padding=1, bias=False), nn.BatchNorm2d(n_out), nn.ReLU()]

    return nn.Sequential(
        *block(1, 16),
        nn.MaxPool2d(2),
        *block(16, 32),
        nn.MaxPool2d(2),
        *block(32, 64),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, n_classes),
    )


def _split_tensors(folder: Path) -> tuple[Any, Any]:
    """One split as (images in [0, 1], shape N x 1 x H x W; labels), exactly as fastai would load them."""
    import torch
    from PIL import Image

    files = sorted(folder.glob("*/*.png"))
    x = torch.stack([torch.from_numpy(np.array(Image.open(f).convert("L"), dtype=np.uint8)) for f in files])
    y = torch.tensor([int(f.parent.name) for f in files])
    return x.float().div_(255.0).unsqueeze(1), y


def train_demo(
    files: DemoFiles, progress: Progress = say, epochs: int = EPOCHS, final: DemoFiles | None = None
) -> float:
    """Write the images, train the CNN with fastai, export the learner; returns validation accuracy.

    Training runs on in-memory tensors (the per-file image pipeline would make it ten
    times slower); the exported learner gets the image-folder DataLoaders, so it loads
    PNG files like any learner trained with ``ImageDataLoaders.from_folder``.
    """
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from insights_app import quiet_imports

    with quiet_imports():  # fastai's import-time deprecation notes are not the user's to act on
        from fastai.callback.core import Callback
        from fastai.callback.progress import ProgressCallback  # noqa: F401  (adds Learner.no_bar)
        from fastai.callback.schedule import fit_one_cycle  # noqa: F401  (adds Learner.fit_one_cycle)
        from fastai.data.core import DataLoaders
        from fastai.learner import Learner
        from fastai.losses import CrossEntropyLossFlat
        from fastai.metrics import accuracy
        from fastai.vision.core import PILImageBW
        from fastai.vision.data import ImageDataLoaders

    t0 = time.perf_counter()
    n_train, n_valid = write_digit_images(files.images)
    progress(f"wrote {n_train} training and {n_valid} validation digit images to {(final or files).images}")
    (x_train, y_train), (x_valid, y_valid) = _split_tensors(files.images / "train"), _split_tensors(files.valid)
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED)
    tensor_dls = DataLoaders(
        DataLoader(TensorDataset(x_train, y_train), batch_size=64, shuffle=True, generator=generator),
        DataLoader(TensorDataset(x_valid, y_valid), batch_size=256),
    )

    class Report(Callback):
        """One line per epoch instead of fastprogress bars (which garble a terminal log)."""

        order = 90

        def before_epoch(self) -> None:
            self.started = time.perf_counter()

        def after_epoch(self) -> None:
            values = self.learn.recorder.values[-1] if self.learn.recorder.values else []
            acc = f", accuracy {values[2]:.3f}" if len(values) > 2 else ""
            progress(
                f"training the demo model: epoch {self.epoch + 1}/{self.n_epoch}{acc} "
                f"({time.perf_counter() - self.started:.1f}s)"
            )

    learn = Learner(tensor_dls, digits_cnn(10), loss_func=CrossEntropyLossFlat(), metrics=accuracy)
    with training_threads(), learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(epochs, LEARNING_RATE, cbs=Report())
    acc = float(learn.recorder.values[-1][2])
    learn.dls = ImageDataLoaders.from_folder(
        files.images, train="train", valid="valid", img_cls=PILImageBW, bs=64, num_workers=0
    )
    learn.export(files.learner)
    files.meta.write_text(
        json.dumps(
            {
                "name": DEMO_NAME,
                "accuracy": acc,
                "epochs": epochs,
                "train_images": n_train,
                "valid_images": n_valid,
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
    )
    return acc


def ensure_demo(cache: Path | None = None, progress: Progress = say, retrain: bool = False) -> DemoFiles:
    """The demo's cached files, training them first if they are missing (or ``retrain``)."""
    files = demo_files(cache)
    acc = files.ensure("the demo model", lambda work: train_demo(work, progress, final=files), progress, retrain)
    if acc is not None:
        progress(f"the demo model reaches {acc:.1%} accuracy on {count_images(files.valid)} held-out digits")
    return files


def count_images(folder: Path) -> int:
    return sum(1 for _ in folder.glob("*/*.png"))


DEMO_TITLE = "Insights demo: a fastai CNN on scikit-learn's digits"


def demo_source(cache: Path | None = None, progress: Progress = say, device: str | None = None) -> Any:
    """The demo as a ``data_adapters.Source``: the cached exported learner on its held-out digits.

    Goes through ``data_adapters.source_from_export``, exactly what
    ``insights-app --learner export.pkl --data FOLDER`` runs. A cache that no longer loads
    (e.g. written by another fastai version) is retrained once.
    """
    from data_adapters import AdapterError, source_from_export

    def load(files: DemoFiles) -> Any:
        # by file name (the digits' order in scikit-learn), so that a page mixes the classes
        items = sorted(files.valid.glob("*/*.png"), key=lambda p: p.name)
        return source_from_export(files.learner, items, device=device, name="digits CNN (fastai)")

    files = ensure_demo(cache, progress)
    progress(f"loading the demo model from {files.root}")
    try:
        return load(files)
    except AdapterError as exc:
        progress(f"the cached demo model does not load ({exc}); training it again")
        return load(ensure_demo(cache, progress, retrain=True))


def demo_visualizer(
    cache: Path | None = None, progress: Progress = say, device: str | None = None, **visualizer_kwargs: Any
) -> Any:
    """The demo's :class:`~insights_app.AttributionVisualizer` (``demo_visualizer().render()`` in a notebook)."""
    visualizer_kwargs.setdefault("title", DEMO_TITLE)
    if device is not None:
        visualizer_kwargs.setdefault("device", device)
    return demo_source(cache, progress, device).visualizer(**visualizer_kwargs)
