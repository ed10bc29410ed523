"""Labelling image files: by sub-folder, a file-name regex, a CSV of (file, label) rows or a callable.

Every way gives (file, label name or None) pairs; turning names into class indices is the
Source builder's job (:mod:`data_adapters.folder`), which also warns about unknown labels.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeGuard

from .base import AdapterError
from .folder_files import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)
__all__ = [
    "FILE_COLUMNS",
    "LABEL_COLUMNS",
    "SUBFOLDER_LABELS",
    "LabelsArg",
    "is_csv",
    "is_subfolders",
    "label_entries",
    "read_label_csv",
    "resolve",
]
LabelsArg = None | str | Path | Callable[[Path], str | None]
FILE_COLUMNS = ("file", "filename", "fname", "file_name", "image", "image_id", "path", "name", "id")
LABEL_COLUMNS = ("label", "labels", "class", "category", "target", "y")
SUBFOLDER_LABELS = ("subfolders", "folders", "subfolder", "parent")


def is_csv(labels: LabelsArg) -> TypeGuard[str | Path]:
    """Whether ``labels`` names a CSV file (a Path, or a string ending in .csv)."""
    return isinstance(labels, Path) or (isinstance(labels, str) and labels.lower().endswith(".csv"))


def resolve(root: Path, name: str) -> Path:
    """A file a CSV names: an absolute path as given, else relative to the image folder."""
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
    if not resolve(root, head[0]).is_file() and not has_ext:
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
        path = resolve(root, name)
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


def label_entries(root: Path, files: list[str], labels: LabelsArg) -> list[tuple[str, str | None]]:
    """Pair each file with its label name (None: unlabeled) according to ``labels``."""
    if labels is None or (isinstance(labels, str) and labels.lower() in ("none", "")):
        return [(f, None) for f in files]
    if is_subfolders(labels):
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


def is_subfolders(labels: LabelsArg) -> bool:
    """Whether ``labels`` asks for each image's sub-folder as its label."""
    return isinstance(labels, str) and labels.lower() in SUBFOLDER_LABELS
