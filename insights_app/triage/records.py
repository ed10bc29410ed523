"""What the dataset pass keeps of each example: a few numbers per model, never the inputs.

Per example, the label (4 bytes), and per model the top-k classes and scores, the label's
score, the loss and whether the model failed: 9 + 8k bytes (k = 5: 49 bytes). A million
examples with one model is about 53 MB, in numpy arrays that double when full, so memory
grows with the examples covered and not with their size (224x224 images cost what 32x32
ones do). Readers take a :meth:`PassRecords.snapshot`: views of the arrays as they are, safe
while the pass appends (a growth copies into new arrays and leaves the old ones intact).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

KEEP_TOP = 5  # classes kept per example and model (the dataset view shows the top one, the cards fetch more)
ERRORS_KEPT = 1000  # failure messages kept per model (every failure is counted and flagged)


@dataclass
class ModelRows:
    """One model's rows of a part of the dataset."""

    top_classes: np.ndarray  # (n, k) int32
    top_scores: np.ndarray  # (n, k) float32
    label_scores: np.ndarray  # (n,) float32, NaN without a label
    losses: np.ndarray  # (n,) float32, NaN without a label or a loss
    failed: np.ndarray  # (n,) bool
    errors: dict[int, str]  # row -> message, for the failed rows


@dataclass(frozen=True)
class Snapshot:
    """The records of the first ``n`` examples, read-only views."""

    n: int
    labels: np.ndarray  # (n,) int32, -1 without a label
    top_classes: np.ndarray  # (models, n, k) int32
    top_scores: np.ndarray  # (models, n, k) float32
    label_scores: np.ndarray  # (models, n)
    losses: np.ndarray  # (models, n)
    failed: np.ndarray  # (models, n) bool
    errors: tuple[dict[int, str], ...]  # per model: example id -> message (the first ERRORS_KEPT)
    failures: tuple[int, ...]  # per model: how many examples failed


class PassRecords:
    """Growing per-example records of every model (appended by the pass, read by the views)."""

    def __init__(self, n_models: int, k: int) -> None:
        self.n_models = n_models
        self.k = k
        self.n = 0
        self._lock = threading.Lock()
        self._alloc(1024)
        self._errors: list[dict[int, str]] = [{} for _ in range(n_models)]
        self._failures = [0] * n_models

    def _alloc(self, capacity: int) -> None:
        m, k = self.n_models, self.k
        self.labels = np.full(capacity, -1, np.int32)
        self.top_classes = np.zeros((m, capacity, k), np.int32)
        self.top_scores = np.zeros((m, capacity, k), np.float32)
        self.label_scores = np.full((m, capacity), np.nan, np.float32)
        self.losses = np.full((m, capacity), np.nan, np.float32)
        self.failed = np.zeros((m, capacity), bool)

    def _grow(self, need: int) -> None:
        capacity = len(self.labels)
        if need <= capacity:
            return
        new = max(need, capacity * 2)
        old = (self.labels, self.top_classes, self.top_scores, self.label_scores, self.losses, self.failed)
        self._alloc(new)
        n = self.n
        self.labels[:n] = old[0][:n]
        self.top_classes[:, :n] = old[1][:, :n]
        self.top_scores[:, :n] = old[2][:, :n]
        self.label_scores[:, :n] = old[3][:, :n]
        self.losses[:, :n] = old[4][:, :n]
        self.failed[:, :n] = old[5][:, :n]

    def append(self, labels: np.ndarray, rows: list[ModelRows]) -> None:
        """The next ``len(labels)`` examples (ids continue from :attr:`n`), one ModelRows per model."""
        count = len(labels)
        with self._lock:
            start = self.n
            self._grow(start + count)
            stop = start + count
            self.labels[start:stop] = labels
            for m, r in enumerate(rows):
                k = r.top_classes.shape[1]
                self.top_classes[m, start:stop, :k] = r.top_classes
                self.top_scores[m, start:stop, :k] = r.top_scores
                self.label_scores[m, start:stop] = r.label_scores
                self.losses[m, start:stop] = r.losses
                self.failed[m, start:stop] = r.failed
                self._failures[m] += int(r.failed.sum())
                for row, message in r.errors.items():
                    if len(self._errors[m]) < ERRORS_KEPT:
                        self._errors[m][start + row] = message
            self.n = stop

    def snapshot(self) -> Snapshot:
        with self._lock:
            n = self.n
            return Snapshot(
                n,
                self.labels[:n],
                self.top_classes[:, :n],
                self.top_scores[:, :n],
                self.label_scores[:, :n],
                self.losses[:, :n],
                self.failed[:, :n],
                tuple(dict(e) for e in self._errors),
                tuple(self._failures),
            )

    def losses_of(self, ex_id: int) -> list[float | None] | None:
        """Every model's loss of one example (None where it has none), or None before the pass reaches it."""
        with self._lock:
            if not 0 <= ex_id < self.n:
                return None
            row = self.losses[:, ex_id].tolist()
        return [None if v != v else float(v) for v in row]  # NaN -> None

    def nbytes(self) -> int:
        return sum(
            a.nbytes
            for a in (self.labels, self.top_classes, self.top_scores, self.label_scores, self.losses, self.failed)
        )


def empty_rows(n: int, k: int) -> ModelRows:
    return ModelRows(
        np.zeros((n, k), np.int32),
        np.zeros((n, k), np.float32),
        np.full(n, np.nan, np.float32),
        np.full(n, np.nan, np.float32),
        np.zeros(n, bool),
        {},
    )


def join_rows(parts: list[ModelRows]) -> ModelRows:
    """Rows of consecutive parts as one (the rows of each part's errors renumbered)."""
    if len(parts) == 1:
        return parts[0]
    errors: dict[int, str] = {}
    offset = 0
    for p in parts:
        errors.update({offset + r: msg for r, msg in p.errors.items()})
        offset += len(p.failed)
    return ModelRows(
        np.concatenate([p.top_classes for p in parts]),
        np.concatenate([p.top_scores for p in parts]),
        np.concatenate([p.label_scores for p in parts]),
        np.concatenate([p.losses for p in parts]),
        np.concatenate([p.failed for p in parts]),
        errors,
    )
