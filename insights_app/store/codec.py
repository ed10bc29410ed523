"""How stored values are written as bytes, and read back only when they are whole.

The store is a cache: a row that does not decode to what its writer wrote (a blob of the wrong
length, a header that is not ours, a number that is not finite, counts that disagree) is
:class:`DamagedRow`, which the store treats as absent, so the value is computed again and the
row rewritten. Nothing read from a damaged row reaches an answer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np

# (top classes, top scores, label score, loss): one model's dataset-pass row of one example
PassRow = tuple[np.ndarray, np.ndarray, float, float]
StoredExplanation = tuple[list[np.ndarray], list[float]]
MAX_DIMS = 8  # no map has more dimensions: a header that says so is damaged


class DamagedRow(ValueError):
    """A stored row that does not decode to a value its writer could have written."""


def _no_constant(name: str) -> float:
    raise DamagedRow(f"{name} in a stored value")  # NaN, Infinity: never written (json.dumps(allow_nan=False))


def loads(text: bytes | str) -> object:
    """Stored JSON, strictly (no NaN or Infinity, valid UTF-8)."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise DamagedRow(f"stored JSON does not parse ({type(exc).__name__})") from None


def encode_maps(maps: Sequence[np.ndarray]) -> bytes:
    """Arrays as one blob: a JSON header of (dtype, shape) per array, a newline, their bytes."""
    arrays = [np.ascontiguousarray(m) for m in maps]
    header = json.dumps([[a.dtype.str, list(a.shape)] for a in arrays]).encode()
    return header + b"\n" + b"".join(a.tobytes() for a in arrays)


def decode_maps(blob: bytes) -> list[np.ndarray]:
    """The arrays of :func:`encode_maps`; DamagedRow unless the header is ours, every array of finite
    numbers and the body exactly as long as the header says."""
    header, newline, body = bytes(blob).partition(b"\n")
    spec = loads(header)
    if not newline or not isinstance(spec, list):
        raise DamagedRow("the maps' header is not ours")
    out, offset = [], 0
    for item in spec:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], list)):
            raise DamagedRow("the maps' header is not ours")
        dtype, shape = item
        if len(shape) > MAX_DIMS or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
            raise DamagedRow("a map's shape is not one")
        try:
            dt = np.dtype(dtype)
        except TypeError:
            raise DamagedRow("a map's type is not one") from None
        if dt.kind not in "fiub":
            raise DamagedRow("a map is not of numbers")
        count = math.prod(shape)
        size = count * dt.itemsize
        if offset + size > len(body):
            raise DamagedRow("the maps are shorter than their header says")
        array = np.frombuffer(body, dtype=dt, count=count, offset=offset).reshape(shape).copy()
        if dt.kind == "f" and not np.isfinite(array).all():
            raise DamagedRow("a map is not finite")
        out.append(array)
        offset += size
    if offset != len(body):
        raise DamagedRow("the maps are longer than their header says")
    return out


def decode_explanation(maps: bytes, contributions: bytes) -> StoredExplanation:
    """One stored explanation: its maps and one finite contribution per map."""
    arrays = decode_maps(maps)
    shares = loads(contributions)
    if not isinstance(shares, list) or len(shares) != len(arrays) or not all(_real(v) for v in shares):
        raise DamagedRow("the contributions do not fit the maps")
    return arrays, [float(v) for v in shares]


def _real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _array(blob: bytes, dtype: str) -> np.ndarray:
    if not isinstance(blob, bytes) or len(blob) % 4:
        raise DamagedRow("a stored array's length is not a whole number of values")
    return np.frombuffer(blob, dtype=dtype).copy()


def decode_top(indices: bytes, scores: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Top classes (non-negative) and their finite scores, as many of one as of the other."""
    classes, values = _array(indices, "<i4"), _array(scores, "<f4")
    if len(classes) != len(values) or (classes < 0).any() or not np.isfinite(values).all():
        raise DamagedRow("the stored top classes and scores do not fit")
    return classes, values


def decode_optional_real(value: object) -> float:
    """A stored number or NULL (NaN)."""
    if value is None:
        return float("nan")
    if not _real(value):
        raise DamagedRow("a stored number is not one")
    return float(value)  # type: ignore[arg-type]  # _real checked it is an int or a float


def decode_text(value: object) -> str:
    """Stored text read as bytes (CAST AS BLOB): valid UTF-8 or damaged."""
    if not isinstance(value, bytes):
        raise DamagedRow("stored text is not text")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise DamagedRow("stored text is not UTF-8") from None
