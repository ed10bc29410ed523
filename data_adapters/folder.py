"""Image folders -> a lazy Batch iterator, with labels from sub-folders, a file-name regex or a CSV.

No fastai needed: files are listed once (cheap even for 50,000 images) and read with
Pillow one batch at a time, so a large folder never sits in memory. A file that cannot be
decoded is skipped with one logged warning and counted (``FolderImages.skipped``); it
never stops the server. Class order: the sorted label names (what fastai's ``Categorize``
and torchvision's ``ImageFolder`` use), unless the user gives the list; images whose label
(sub-folder) is not in a given list are shown unlabeled, with one logged warning naming them.

This module builds the Source; listing the files is :mod:`.folder_files`, labelling them
:mod:`.folder_labels`, reading them :mod:`.folder_images` (their names are importable from here too).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from insights_app import AttributionVisualizer
from insights_app.features import BaseFeature

from .base import (
    AdapterError,
    ChannelsError,
    ClassesArg,
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
from .folder_files import IMAGE_EXTENSIONS, image_paths, list_images
from .folder_images import BATCH_BYTES, WIDE_MODES, FolderImages, SizeArg, load_image, target_size
from .folder_labels import (
    FILE_COLUMNS,
    LABEL_COLUMNS,
    SUBFOLDER_LABELS,
    LabelsArg,
    is_csv,
    is_subfolders,
    label_entries,
    read_label_csv,
)
from .weights import source_name_of

log = logging.getLogger(__name__)
__all__ = [
    "BATCH_BYTES",
    "FILE_COLUMNS",
    "IMAGE_EXTENSIONS",
    "LABEL_COLUMNS",
    "SUBFOLDER_LABELS",
    "WIDE_MODES",
    "FolderImages",
    "LabelsArg",
    "SizeArg",
    "from_folder",
    "image_paths",
    "list_images",
    "load_image",
    "read_label_csv",
    "source_from_folder",
    "unknown_labels_message",
]


def source_from_folder(
    path: str | Path,
    model: torch.nn.Module,
    classes: ClassesArg = None,
    labels: LabelsArg = "subfolders",
    *,
    size: SizeArg = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    channels: int = 3,
    resize: str = "squish",
    batch_size: int = 32,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    recursive: bool = True,
    score: ScoreArg = "softmax",
    device: str | torch.device | None = None,
    name: str | None = None,
) -> Source:
    """A :class:`Source` over the images in a folder (see :func:`from_folder` for the arguments)."""
    root = Path(path).expanduser()
    if not root.exists():
        raise AdapterError(f"image folder not found: {root}")
    if not root.is_dir():
        raise AdapterError(f"not a folder: {root}")
    root = root.resolve()
    hw = target_size(size)
    if is_csv(labels):
        csv_path = Path(labels).expanduser()
        if not csv_path.is_absolute() and not csv_path.is_file():
            csv_path = root / csv_path  # a name relative to the image folder
        named = read_label_csv(root, csv_path)
    else:
        files = image_paths(root, extensions, recursive)
        if not files:
            raise AdapterError(f"no image files ({', '.join(extensions[:4])}, ...) in {root}")
        named = label_entries(root, files, labels)
    names = read_classes(classes)
    found = sorted({lbl for _, lbl in named if lbl is not None})
    classes_from = "given" if names is not None else "labels" if found else "outputs"
    if names is None and found:
        names = found
    index = {c: i for i, c in enumerate(names or [])}
    unknown: dict[str, int] = {}
    for _, lbl in named:
        if lbl is not None and lbl not in index:
            unknown[lbl] = unknown.get(lbl, 0) + 1
    entries = [(p, index.get(lbl) if lbl is not None else None) for p, lbl in named]
    dataset = FolderImages(entries, hw, channels, resize, batch_size)
    normalizer = optional_normalizer(mean, std)
    if normalizer is not None and normalizer.channels not in (1, channels):
        raise AdapterError(f"mean/std have {normalizer.channels} values but the images have {channels} channel(s)")
    model = prepare_model(model, device)
    features: list[BaseFeature] = [image_feature(normalizer)]
    batch = first_batch(dataset, f"the folder {root}")
    try:
        n_out = count_outputs(model, features, batch)
    except ChannelsError as exc:
        hint = f" (pass channels={exc.expected})" if exc.expected in (1, 3) else ""
        raise ChannelsError(f"{exc}{hint}", exc.expected, exc.got) from exc
    names = check_classes(names, n_out, "classes come from the labels found, unless given")
    if unknown:
        log.warning("%s", unknown_labels_message(unknown, len(names), by_folder=is_subfolders(labels)))
    return Source(
        model,
        names,
        score_function(score),
        features,
        dataset,
        # Named from the source unless given: the weights file load_model read (else the model's class, as
        # the visualizer does), and the page titled by the folder.
        name=name or source_name_of(model),
        title=f"Insights: {root.name or root}",
        info={
            "root": str(root),
            "files": len(entries),
            "labeled": sum(e[1] is not None for e in entries),
            "classes_from": classes_from,
            "unknown_labels": unknown,
        },
    )


def unknown_labels_message(unknown: dict[str, int], n_classes: int, by_folder: bool) -> str:
    """One line on the images shown unlabeled because their label (or sub-folder) is not a class.

    Such images are still worth seeing (predictions and attributions need no label), as fastai's
    adapter shows files its labelling cannot label; refusing the whole folder helped nobody.
    """
    total = sum(unknown.values())
    what = "sub-folder" if by_folder else "label"
    items = sorted(unknown.items())
    shown = ", ".join(f"{name!r} ({count} image{'s' if count != 1 else ''})" for name, count in items[:5])
    if len(items) > 5:
        shown += f", ... ({len(items)} {what}s in all)"
    verb = "is not one" if len(items) == 1 else "are not any"
    return (
        f"showing {total} image{'s' if total != 1 else ''} unlabeled: {what}{'s' if len(items) != 1 else ''} "
        f"{shown} {verb} of the {n_classes} classes"
    )


def from_folder(
    path: str | Path,
    model: torch.nn.Module,
    classes: ClassesArg = None,
    labels: LabelsArg = "subfolders",
    *,
    size: SizeArg = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    channels: int = 3,
    resize: str = "squish",
    batch_size: int = 32,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    recursive: bool = True,
    score: ScoreArg = "softmax",
    device: str | torch.device | None = None,
    name: str | None = None,
    **visualizer_kwargs: Any,
) -> AttributionVisualizer:
    """A visualizer over a folder of images and any image classifier (no fastai needed).

    ``labels``: ``"subfolders"`` (the folder name of each image: ``root/<class>/x.png``;
    images directly in ``root`` are unlabeled), a regex searched in each file name (its
    ``label`` group, else its first group), a ``.csv`` file of ``file,label`` rows
    (relative to ``path``; a header row is optional), a callable ``Path -> name``, or None.
    ``classes``: a list or a file (.txt: one per line; .json), in the model's output
    order; default: the sorted label names (numbered outputs when unlabeled). Images whose
    label is not among the classes (say a ``misc/`` sub-folder) are shown unlabeled, with one
    logged warning naming those labels and counting the images.
    ``size``: int or (height, width) every image is resized to (default: the first
    image's size); ``resize``: 'squish' or 'crop'. ``mean``/``std``: the normalization
    the model expects, applied to the 0..1 images before the model. ``channels``: 3 (RGB)
    or 1 (grayscale). ``score``: 'softmax', 'sigmoid', None or a callable. ``name``: the model's
    name on the page (default: the stem of the weights file ``load_model`` read, else its class).
    Other keyword arguments go to :class:`insights_app.AttributionVisualizer`; without a ``title``,
    the page is titled by the folder's name.
    """
    return source_from_folder(
        path,
        model,
        classes,
        labels,
        size=size,
        mean=mean,
        std=std,
        channels=channels,
        resize=resize,
        batch_size=batch_size,
        extensions=extensions,
        recursive=recursive,
        score=score,
        device=device,
        name=name,
    ).visualizer(**visualizer_kwargs)
