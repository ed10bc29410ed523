"""A torch ``Dataset`` (map-style or iterable) or ``DataLoader`` -> a lazy, re-iterable Batch iterator.

The module is named after what it adapts; ``import torch`` below is the real torch
(Python 3 imports are absolute). Items may be ``(image, label, ...)`` tuples, bare
images, or ``{"image": ..., "label": ...}`` dicts; images may be CHW/HW tensors (float
0..1 or uint8), PIL images or HWC numpy arrays. Datasets whose tensors are already
normalized are shown denormalized (``normalized=True``) and re-normalized for the model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence, Sized
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, SequentialSampler

from insights_app import AttributionVisualizer, Batch
from insights_app.features import BaseFeature
from insights_app.tensors import plain

from .base import (
    AdapterError,
    ClassesArg,
    Normalizer,
    ScoreArg,
    Source,
    check_classes,
    count_outputs,
    first_batch,
    image_feature,
    optional_normalizer,
    prepare_model,
    read_classes,
    score_function,
)

log = logging.getLogger(__name__)
IMAGE_KEYS = ("image", "img", "pixel_values", "input", "x")
LABEL_KEYS = ("label", "labels", "target", "y")


def to_image_tensor(x: Any) -> torch.Tensor:
    """One image (tensor, PIL image or numpy array) -> a float (C, H, W) tensor in display units."""
    if not isinstance(x, torch.Tensor):
        if hasattr(x, "convert") and hasattr(x, "size") and hasattr(x, "mode"):  # a PIL image
            x = np.asarray(x.convert("L" if x.mode in ("1", "L", "I", "I;16", "F") else "RGB"))
        arr = np.asarray(x)
        if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4) and arr.shape[0] not in (1, 3, 4):
            arr = arr.transpose(2, 0, 1)  # HWC -> CHW
        x = torch.from_numpy(np.array(arr, copy=True, order="C"))  # owned and writable
    x = plain(x).detach().cpu()
    if x.dim() == 2:
        x = x[None]
    if x.dim() != 3:
        raise AdapterError(
            f"the dataset yields inputs of shape {tuple(x.shape)}; this adapter shows images "
            "of shape (C, H, W) or (H, W)"
        )
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()


def to_label(y: Any) -> int | None:
    """A label -> a class index, or None when there is none (None, negative, not a scalar)."""
    if y is None:
        return None
    if isinstance(y, torch.Tensor):
        if y.numel() != 1:
            return None
        y = y.item()
    elif isinstance(y, np.ndarray):
        if y.size != 1:
            return None
        y = y.item()
    if isinstance(y, bool):
        return int(y)
    if isinstance(y, (int, np.integer)) or (isinstance(y, float) and float(y).is_integer()):
        return int(y) if int(y) >= 0 else None
    return None


def split_item(item: Any) -> tuple[Any, Any]:
    """One dataset item -> (image, label or None)."""
    if isinstance(item, dict):
        x = next((item[k] for k in IMAGE_KEYS if k in item), None)
        if x is None:
            raise AdapterError(f"a dataset item is a dict without an image key ({', '.join(IMAGE_KEYS)})")
        return x, next((item[k] for k in LABEL_KEYS if k in item), None)
    if isinstance(item, (tuple, list)):
        if not item:
            raise AdapterError("the dataset yields empty items")
        return item[0], item[1] if len(item) > 1 else None
    return item, None


class TorchImages:
    """Re-iterable Batch view of a torch dataset or DataLoader (each ``iter()`` restarts it)."""

    def __init__(
        self, data: Dataset | DataLoader | Iterable[Any], batch_size: int = 32, normalizer: Normalizer | None = None
    ) -> None:
        if batch_size < 1:
            raise AdapterError("batch_size must be at least 1")
        self.data = data
        self.batch_size = int(batch_size)
        self.denormalize = normalizer.inverse if normalizer is not None else None

    @property
    def n_examples(self) -> int | None:
        """How many examples an iteration yields, when the data knows (the dataset pass's total)."""
        inner = getattr(self.data, "dataset", self.data)
        try:
            return int(len(inner))  # type: ignore[arg-type]
        except TypeError:
            return None

    def _images(self, xs: Sequence[Any]) -> torch.Tensor:
        images = [to_image_tensor(x) for x in xs]
        if self.denormalize is not None:
            images = [self.denormalize(x) for x in images]
        try:
            return torch.stack(images)
        except RuntimeError:
            shapes = sorted({tuple(x.shape) for x in images})
            raise AdapterError(
                f"images of different shapes {shapes[:3]} cannot form a batch; resize them in the dataset's transform"
            ) from None

    def _loader_batch(self, b: Any) -> Batch:
        """One collated batch of a DataLoader as a Batch."""
        x, y = split_item(b)
        if isinstance(x, torch.Tensor) and x.dim() in (3, 4):
            xs = list(x if x.dim() == 4 else x[:, None])
        else:
            xs = list(x)
        labels: list[int | None] = [None] * len(xs)
        if y is not None:
            ys = list(y) if not isinstance(y, torch.Tensor) or y.dim() > 0 else [y]
            if len(ys) == len(xs):
                labels = [to_label(v) for v in ys]
        return Batch(self._images(xs), labels)

    def _from_loader(self, loader: DataLoader) -> Iterator[Batch]:
        for b in loader:
            yield self._loader_batch(b)

    @property
    def block_size(self) -> int | None:
        """Items its iteration batches together when it can be read by index (a map-style dataset, or
        a DataLoader reading one in order); None when it can only be iterated."""
        data = self.data
        if isinstance(data, DataLoader):
            sampler = getattr(data.batch_sampler, "sampler", None)
            if (
                isinstance(data.dataset, IterableDataset)
                or not isinstance(sampler, SequentialSampler)
                or not isinstance(data.batch_size, int)
                or not is_map_style(data.dataset)
            ):
                return None
            return data.batch_size
        return self.batch_size if is_map_style(data) else None

    def __len__(self) -> int:
        n = self.n_examples
        if n is None:
            raise TypeError("the dataset does not know its length")
        return n

    def read_block(self, start: int, stop: int) -> Batch:
        """Items ``start..stop-1`` at once, as their iteration batches them (an
        :class:`insights_app.dataset.IndexedDataset` when :attr:`block_size` is not None)."""
        data = self.data
        if isinstance(data, DataLoader):
            items = [data.dataset[i] for i in range(start, stop)]
            return self._loader_batch(data.collate_fn(items))
        dataset = cast(Any, data)
        (batch,) = self._from_items([dataset[i] for i in range(start, stop)])
        return batch

    def _from_items(self, items: Iterable[Any]) -> Iterator[Batch]:
        xs: list[Any] = []
        ys: list[int | None] = []
        for item in items:
            x, y = split_item(item)
            xs.append(x)
            ys.append(to_label(y))
            if len(xs) == self.batch_size:
                yield Batch(self._images(xs), ys)
                xs, ys = [], []
        if xs:
            yield Batch(self._images(xs), ys)

    def _map_style(self, dataset: Any) -> Iterator[Any]:
        for i in range(len(dataset)):
            yield dataset[i]

    def __iter__(self) -> Iterator[Batch]:
        data = self.data
        if isinstance(data, DataLoader):
            return self._from_loader(data)
        if not is_map_style(data):
            # Not map-style: iterated as given (an IterableDataset or any iterable).
            return self._from_items(cast(Iterable[Any], data))
        return self._from_items(self._map_style(data))


def is_map_style(data: Any) -> bool:
    """Whether ``data`` is read by index: ``__getitem__`` and ``__len__``, not an IterableDataset."""
    return not isinstance(data, IterableDataset) and hasattr(data, "__getitem__") and hasattr(data, "__len__")


def stable_loader(loader: DataLoader) -> DataLoader:
    """The same loader in a fixed order and in this process (example ids must not move on restart)."""
    shuffled = loader.batch_sampler is not None and not isinstance(
        getattr(loader.batch_sampler, "sampler", None), SequentialSampler
    )
    if isinstance(loader.dataset, IterableDataset) or (not shuffled and loader.num_workers == 0):
        return loader
    if shuffled:
        log.info("the DataLoader shuffles; showing its dataset in order so that example ids stay stable")
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size or 1,
        shuffle=False,
        collate_fn=loader.collate_fn,
        num_workers=0,
        drop_last=False,
    )


def source_from_dataset(
    dataset: Dataset | DataLoader | Iterable[Any],
    model: torch.nn.Module,
    classes: ClassesArg = None,
    *,
    batch_size: int = 32,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    normalized: bool = False,
    score: ScoreArg = "softmax",
    device: str | torch.device | None = None,
    name: str | None = None,
) -> Source:
    """A :class:`Source` over a torch dataset or DataLoader (see :func:`from_dataset`)."""
    if isinstance(dataset, (str, bytes)) or not hasattr(dataset, "__iter__") and not hasattr(dataset, "__getitem__"):
        raise AdapterError(f"expected a torch Dataset or DataLoader, got {type(dataset).__name__}")
    if normalized and mean is None:
        raise AdapterError("normalized=True needs the mean and std the dataset was normalized with")
    normalizer = optional_normalizer(mean, std)
    if isinstance(dataset, DataLoader):
        dataset = stable_loader(dataset)
    elif isinstance(dataset, Sized) and not isinstance(dataset, IterableDataset) and len(dataset) == 0:
        raise AdapterError("the dataset is empty")
    data = TorchImages(dataset, batch_size, normalizer if normalized else None)
    names = read_classes(classes)
    model = prepare_model(model, device)
    features: list[BaseFeature] = [image_feature(normalizer)]
    batch = first_batch(data, "the dataset")
    names = check_classes(names, count_outputs(model, features, batch))
    underlying = dataset.dataset if isinstance(dataset, DataLoader) else dataset
    info = {"length": len(underlying)} if isinstance(underlying, Sized) else {}
    return Source(model, names, score_function(score), features, data, name=name, info=info)


def from_dataset(
    dataset: Dataset | DataLoader | Iterable[Any],
    model: torch.nn.Module,
    classes: ClassesArg = None,
    *,
    batch_size: int = 32,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    normalized: bool = False,
    score: ScoreArg = "softmax",
    device: str | torch.device | None = None,
    name: str | None = None,
    **visualizer_kwargs: Any,
) -> AttributionVisualizer:
    """A visualizer over a map-style torch ``Dataset`` (or a ``DataLoader``) of images.

    ``classes``: names in the model's output order (a list or a .txt/.json file; None
    numbers the outputs). Items are read lazily, ``batch_size`` at a time, in index order
    (a shuffling DataLoader is read in order so that example ids are stable). ``mean``/
    ``std``: the normalization the model expects; with ``normalized=False`` (default) the
    dataset yields 0..1 images and the normalization is applied before the model, with
    ``normalized=True`` it yields normalized tensors, which are denormalized for display.
    ``score``: 'softmax', 'sigmoid', None or a callable. Other keyword arguments go to
    :class:`insights_app.AttributionVisualizer`.
    """
    return source_from_dataset(
        dataset,
        model,
        classes,
        batch_size=batch_size,
        mean=mean,
        std=std,
        normalized=normalized,
        score=score,
        device=device,
        name=name,
    ).visualizer(**visualizer_kwargs)
