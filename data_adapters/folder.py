"""Image folders -> a lazy Batch iterator, with labels from sub-folders, a file-name regex or a CSV.

No fastai needed: files are listed once (cheap even for 50,000 images) and read with
Pillow one batch at a time, so a large folder never sits in memory. A file that cannot be
decoded is skipped with one logged warning and counted (``FolderImages.skipped``); it
never stops the server. Class order: the sorted label names (what fastai's ``Categorize``
and torchvision's ``ImageFolder`` use), unless the user gives the list; images whose label
(sub-folder) is not in a given list are shown unlabeled, with one logged warning naming them.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from insights_app import AttributionVisualizer, Batch
from insights_app.limits import MAX_RESIZE_SIDE

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

log = logging.getLogger(__name__)

# A batch of files is cut once its decoded pixels (float32) reach this: at 224x224 RGB a batch of
# 32 is 19 MB and stays whole; at 2048x2048 an image is 48 MB, so batches are of two (96 MB).
BATCH_BYTES = 64 * 2**20
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
LabelsArg = None | str | Path | Callable[[Path], str | None]
SizeArg = None | int | tuple[int, int] | Sequence[int]
FILE_COLUMNS = ("file", "filename", "fname", "file_name", "image", "image_id", "path", "name", "id")
LABEL_COLUMNS = ("label", "labels", "class", "category", "target", "y")
SUBFOLDER_LABELS = ("subfolders", "folders", "subfolder", "parent")


def image_paths(root: str | Path, extensions: Sequence[str] = IMAGE_EXTENSIONS, recursive: bool = True) -> list[str]:
    """Image file paths (strings) under ``root``, hidden files and folders skipped, sorted.

    Links are followed, but each real folder is listed once: a link to a parent folder (a
    loop) or to a folder listed elsewhere adds nothing. Strings rather than Path objects: a
    50,000-file listing then takes a fraction of a second.
    """
    exts = tuple(e.lower() for e in extensions)
    found: list[str] = []
    stack = [os.fspath(root)]
    seen = set()  # (device, inode) of the folders listed
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
        except OSError as exc:
            log.warning("cannot list %s: %s", folder, exc)
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as exc:
            log.warning("cannot list %s: %s", folder, exc)
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir():
                    if recursive:
                        stack.append(entry.path)
                elif entry.name.lower().endswith(exts):
                    found.append(entry.path)
            except OSError:
                continue
    found.sort()  # one common prefix: the order of the paths relative to root
    return found


def list_images(root: Path, extensions: Sequence[str] = IMAGE_EXTENSIONS, recursive: bool = True) -> list[Path]:
    """Image files under ``root`` as Paths, sorted (see :func:`image_paths`)."""
    return [Path(p) for p in image_paths(root, extensions, recursive)]


def _is_csv(labels: Any) -> bool:
    return isinstance(labels, Path) or (isinstance(labels, str) and labels.lower().endswith(".csv"))


def _resolve(root: Path, name: str) -> Path:
    p = Path(name).expanduser()
    return p if p.is_absolute() else root / p


def read_label_csv(root: Path, csv_path: Path) -> list[tuple[str, str | None]]:
    """(file, label) rows of a CSV: file names relative to ``root``, an optional header row.

    With a header, the file and label columns are found by name (``file``/``filename``/
    ``image``..., ``label``/``class``...); without one they are the first two columns.
    An empty label means unlabeled. Files the CSV names but the folder lacks are an error.
    """
    if not csv_path.is_file():
        raise AdapterError(f"label CSV not found: {csv_path}")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    except UnicodeDecodeError as exc:
        raise AdapterError(f"label CSV {csv_path} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    if not rows:
        raise AdapterError(f"label CSV {csv_path} is empty")
    file_col, label_col = 0, 1
    head = [c.strip() for c in rows[0]]
    has_ext = head[0].lower().endswith(IMAGE_EXTENSIONS)
    if not _resolve(root, head[0]).is_file() and not has_ext:
        lower = [c.lower() for c in head]
        file_col = next((i for i, c in enumerate(lower) if c in FILE_COLUMNS), 0)
        label_col = next(
            (i for i, c in enumerate(lower) if c in LABEL_COLUMNS and i != file_col), 1 if file_col == 0 else 0
        )
        rows = rows[1:]
    out: list[tuple[str, str | None]] = []
    missing: list[str] = []
    for r in rows:
        name = r[file_col].strip() if file_col < len(r) else ""
        if not name:
            continue
        label = r[label_col].strip() if label_col < len(r) else ""
        path = _resolve(root, name)
        if not path.is_file():
            missing.append(name)
            continue
        out.append((str(path), label or None))
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise AdapterError(f"label CSV {csv_path} names {len(missing)} file(s) missing from {root}: {shown}")
    if not out:
        raise AdapterError(f"label CSV {csv_path} names no image file")
    return out


def _label_entries(root: Path, files: list[str], labels: LabelsArg) -> list[tuple[str, str | None]]:
    """Pair each file with its label name (None: unlabeled) according to ``labels``."""
    if labels is None or (isinstance(labels, str) and labels.lower() in ("none", "")):
        return [(f, None) for f in files]
    if _is_subfolders(labels):
        top = os.fspath(root)
        entries = []
        for f in files:
            parent = os.path.dirname(f)
            entries.append((f, os.path.basename(parent) if parent != top else None))
        if all(lbl is None for _, lbl in entries):
            log.info("%s has no sub-folders with images: showing its images unlabeled", root)
        return entries
    if callable(labels):
        return [(f, None if (v := labels(Path(f))) is None else str(v)) for f in files]
    if isinstance(labels, str):
        try:
            pattern = re.compile(labels)
        except re.error as exc:
            raise AdapterError(
                f"labels {labels!r} is neither 'subfolders', a .csv file nor a valid regex: {exc}"
            ) from None
        entries = []
        for f in files:
            m = pattern.search(os.path.basename(f))
            if m is None:
                entries.append((f, None))
            else:
                value = m.group("label") if "label" in pattern.groupindex else m.group(1 if pattern.groups else 0)
                entries.append((f, value or None))
        n_labeled = sum(lbl is not None for _, lbl in entries)
        if n_labeled == 0:
            raise AdapterError(f"the label regex {labels!r} matches no file name in {root}")
        if n_labeled < len(entries):
            log.warning(
                "the label regex matches %d of %d file names; the others are unlabeled", n_labeled, len(entries)
            )
        return entries
    raise AdapterError(f"labels must be 'subfolders', a regex, a .csv path, a callable or None, not {labels!r}")


def _target_size(size: SizeArg) -> tuple[int, int] | None:
    """``size`` as (height, width); an int means a square."""
    if size is None:
        return None
    if isinstance(size, int):
        hw = (size, size)
    else:
        vals = [int(v) for v in size]
        if len(vals) == 1:
            vals = vals * 2
        if len(vals) != 2:
            raise AdapterError(f"size must be an int or (height, width), not {size!r}")
        hw = (vals[0], vals[1])
    if min(hw) < 1 or max(hw) > MAX_RESIZE_SIDE:
        raise AdapterError(f"size {size!r} is out of range (1..{MAX_RESIZE_SIDE})")
    return hw


# Single-channel modes of more than 8 bits, by the value that is full white.
WIDE_MODES = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0, "I": 65535.0, "F": 1.0}


def _resized(im: Any, size: tuple[int, int] | None, resize: str) -> Any:
    from PIL import Image

    if size is None or (im.height, im.width) == size:
        return im
    h, w = size
    if resize == "crop":
        scale = max(h / im.height, w / im.width)
        nh, nw = max(h, round(im.height * scale)), max(w, round(im.width * scale))
        im = im.resize((nw, nh), Image.BILINEAR)
        top, left = (nh - h) // 2, (nw - w) // 2
        return im.crop((left, top, left + w, top + h))
    return im.resize((w, h), Image.BILINEAR)


def load_image(
    path: str | Path, size: tuple[int, int] | None, channels: int = 3, resize: str = "squish"
) -> torch.Tensor:
    """One image file -> (C, H, W) float tensor in 0..1, resized to ``size`` (height, width).

    ``resize='squish'`` stretches to the size; ``'crop'`` scales the short side to fit and
    cuts the centre (fastai's default for validation images). Grayscale files of more than 8
    bits keep their range: 16-bit integers are scaled by 65535, float images must already be
    in 0..1 (anything else is refused, naming the file and the mode, rather than saturated).
    """
    from PIL import Image

    with Image.open(path) as im:
        if im.mode in WIDE_MODES:
            white = WIDE_MODES[im.mode]
            arr = np.asarray(_resized(im.convert("F"), size, resize), dtype=np.float32) / white
            lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
            if not (np.isfinite(arr).all() and lo >= 0.0 and hi <= 1.0):
                raise ValueError(
                    f"{path}: a mode {im.mode} image with values {lo * white:g}..{hi * white:g}; "
                    f"expected 0..{white:g} (convert it to 8-bit, or to 0..1 floats)"
                )
            x = torch.from_numpy(arr.copy())[None]
            return x.expand(channels, -1, -1).contiguous() if channels == 3 else x
        im = _resized(im.convert("L" if channels == 1 else "RGB"), size, resize)
        arr = np.asarray(im, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


class FolderImages:
    """A re-iterable, lazy dataset of image files: each ``iter()`` reads them afresh, batch by batch.

    ``entries`` pairs each path with a class index or None. Unreadable files are skipped
    (logged once each, counted in ``skipped``); when ``size`` is None every image is
    resized to the first readable image's size so that batches stack.
    """

    def __init__(
        self,
        entries: Sequence[tuple[str | Path, int | None]],
        size: tuple[int, int] | None = None,
        channels: int = 3,
        resize: str = "squish",
        batch_size: int = 32,
    ) -> None:
        if channels not in (1, 3):
            raise AdapterError(f"channels must be 1 or 3, not {channels}")
        if resize not in ("squish", "crop"):
            raise AdapterError(f"resize must be 'squish' or 'crop', not {resize!r}")
        if batch_size < 1:
            raise AdapterError("batch_size must be at least 1")
        self.entries = list(entries)
        self.size = size
        self.channels = channels
        self.resize = resize
        self.batch_size = int(batch_size)
        self._skipped: dict[str, str] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Files listed (an upper bound on the examples: unreadable ones are skipped)."""
        return len(self.entries)

    @property
    def n_examples(self) -> int:
        """The dataset pass's total (files listed)."""
        return len(self.entries)

    @property
    def skipped(self) -> dict[Path, str]:
        """Files found unreadable so far, with the reason."""
        with self._lock:
            return {Path(p): why for p, why in self._skipped.items()}

    def _read(self, path: str | Path) -> torch.Tensor | None:
        try:
            x = load_image(path, self.size, self.channels, self.resize)
        except Exception as exc:  # Pillow raises many kinds of errors for corrupt files
            with self._lock:
                first_time = path not in self._skipped
                self._skipped[path] = f"{type(exc).__name__}: {exc}"
                count = len(self._skipped)
            if first_time:
                log.warning(
                    "skipping unreadable image %s (%s: %s); %d skipped so far", path, type(exc).__name__, exc, count
                )
            return None
        if self.size is None:
            self.size = (int(x.shape[1]), int(x.shape[2]))
        return x

    def __iter__(self) -> Iterator[Batch]:
        """One batch per ``batch_size`` files (unreadable ones left out), cut where its pixels reach
        BATCH_BYTES."""
        for start in range(0, len(self.entries), self.batch_size):
            images: list[torch.Tensor] = []
            labels: list[int | None] = []
            held = 0
            for path, label in self.entries[start : start + self.batch_size]:
                x = self._read(path)
                if x is None:
                    continue
                images.append(x)
                labels.append(label)
                held += x.element_size() * x.nelement()
                if held >= BATCH_BYTES:
                    yield Batch(torch.stack(images), labels)
                    images, labels, held = [], [], 0
            if images:
                yield Batch(torch.stack(images), labels)


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
    hw = _target_size(size)
    if _is_csv(labels):
        csv_path = Path(labels).expanduser()
        if not csv_path.is_absolute() and not csv_path.is_file():
            csv_path = root / csv_path  # a name relative to the image folder
        named = read_label_csv(root, csv_path)
    else:
        files = image_paths(root, extensions, recursive)
        if not files:
            raise AdapterError(f"no image files ({', '.join(extensions[:4])}, ...) in {root}")
        named = _label_entries(root, files, labels)
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
    features = [image_feature(normalizer)]
    batch = first_batch(dataset, f"the folder {root}")
    try:
        n_out = count_outputs(model, features, batch)
    except ChannelsError as exc:
        hint = f" (pass channels={exc.expected})" if exc.expected in (1, 3) else ""
        raise ChannelsError(f"{exc}{hint}", exc.expected, exc.got) from exc
    names = check_classes(names, n_out, "classes come from the labels found, unless given")
    if unknown:
        log.warning("%s", unknown_labels_message(unknown, len(names), by_folder=_is_subfolders(labels)))
    return Source(
        model,
        names,
        score_function(score),
        features,
        dataset,
        name=name,
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


def _is_subfolders(labels: LabelsArg) -> bool:
    return isinstance(labels, str) and labels.lower() in SUBFOLDER_LABELS


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
    or 1 (grayscale). ``score``: 'softmax', 'sigmoid', None or a callable. Other keyword
    arguments go to :class:`insights_app.AttributionVisualizer`.
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
