"""Class names in the model's output order: from a list, or from a file (one name per line, or JSON).

Light on purpose (no torch): the command line reads ``--classes`` with this before it loads
anything slow, so that a class file that does not parse fails at once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import AdapterError

ClassesArg = None | str | Path | Sequence[Any]


def read_classes(classes: ClassesArg) -> list[str] | None:
    """Class names from a list, or from a file: one name per line, or a JSON list / index map.

    A file is read as JSON when its name ends in ``.json`` or its text starts with ``[`` or
    ``{`` (a JSON list saved as ``classes.txt`` must not become one class named ``["cat", ...``);
    JSON that does not parse is an error naming the file and the position. A JSON object such
    as ``{"0": ["n01440764", "tench"], ...}`` (torchvision's ImageNet index) is accepted too:
    keys are indices, the last element of a list value is the name.
    """
    if classes is None:
        return None
    if isinstance(classes, (str, Path)):
        return read_class_file(Path(classes).expanduser())
    out = [str(c) for c in classes]
    if not out:
        raise AdapterError("classes is an empty list")
    return out


def read_class_file(path: Path) -> list[str]:
    """The class names a file holds (see :func:`read_classes`)."""
    if not path.is_file():
        raise AdapterError(f"class file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AdapterError(f"class file {path} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise AdapterError(f"cannot read the class file {path}: {exc.strerror or exc}") from None
    if path.suffix.lower() == ".json" or text.lstrip()[:1] in ("[", "{"):
        names = _json_names(path, text)
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    out = [str(n) for n in names]
    if not out:
        raise AdapterError(f"class file {path} names no class")
    return out


def _json_names(path: Path, text: str) -> list[Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AdapterError(f"class file {path} is not valid JSON: {exc}") from None
    if isinstance(data, dict):
        try:
            ordered = sorted(data.items(), key=lambda kv: int(kv[0]))
        except ValueError:
            raise AdapterError(f"class file {path}: a JSON object needs integer keys") from None
        return [v[-1] if isinstance(v, (list, tuple)) and v else v for _, v in ordered]
    if isinstance(data, list):
        return data
    raise AdapterError(f"class file {path} must hold a JSON list or object")
