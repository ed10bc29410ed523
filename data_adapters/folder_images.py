"""Reading image files lazily: one file -> a (C, H, W) tensor in 0..1, and a re-iterable dataset of batches.

A file that cannot be decoded is skipped with one logged warning and counted
(``FolderImages.skipped``); it never stops the server.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from insights_app import Batch
from insights_app.dataset import Block
from insights_app.limits import MAX_RESIZE_SIDE

from .base import AdapterError

log = logging.getLogger(__name__)
__all__ = ["BATCH_BYTES", "WIDE_MODES", "FolderImages", "SizeArg", "load_image", "target_size"]

# A batch of files is cut once its decoded pixels (float32) reach this: at 224x224 RGB a batch of
# 32 is 19 MB and stays whole; at 2048x2048 an image is 48 MB, so batches are of two (96 MB).
BATCH_BYTES = 64 * 2**20
SizeArg = None | int | tuple[int, int] | Sequence[int]


def target_size(size: SizeArg) -> tuple[int, int] | None:
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
        im = im.resize((nw, nh), Image.Resampling.BILINEAR)
        top, left = (nh - h) // 2, (nw - w) // 2
        return im.crop((left, top, left + w, top + h))
    return im.resize((w, h), Image.Resampling.BILINEAR)


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
        self._skipped: dict[str | Path, str] = {}  # keyed by the entry's path as given
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

    @property
    def block_size(self) -> int:
        """Files read together by position: a batch, fewer when their pixels would pass BATCH_BYTES
        (as iteration cuts its batches; an image does not depend on the others read with it)."""
        if self.size is None:
            return self.batch_size
        per_image = self.channels * self.size[0] * self.size[1] * 4
        return max(1, min(self.batch_size, BATCH_BYTES // per_image))

    def read_block(self, start: int, stop: int) -> Block:
        """Files ``start..stop-1`` at once (an :class:`insights_app.dataset.IndexedDataset`): the
        readable ones as one Batch, the others as missing positions (skipped, as iteration skips them)."""
        images: list[torch.Tensor] = []
        labels: list[int | None] = []
        positions: list[int] = []
        missing: dict[int, str] = {}
        for position in range(max(0, start), min(stop, len(self.entries))):
            path, label = self.entries[position]
            x = self._read(path)
            if x is None:
                with self._lock:
                    missing[position] = f"{path} is not a readable image ({self._skipped.get(path, '')})"
                continue
            images.append(x)
            labels.append(label)
            positions.append(position)
        return Block(Batch(torch.stack(images), labels) if images else None, positions, missing)

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
