"""fastai's ``ClassificationInterpretation``, computed from the dataset pass's records.

Same names and same answers as fastai's (tested against fastai itself): rows of the
confusion matrix are the actual classes, columns the predicted ones; ``most_confused`` lists
off-diagonal cells of at least ``min_val`` examples, largest first, ties in row-major order;
``top_losses`` is ``torch.topk`` over the losses, as fastai's. Example ids are positions in
the dataset (fastai's ``idx``), the ids the page and the API use. Examples without a label
are left out of everything that needs one; examples the model failed on are left out and
counted (:attr:`Interpretation.failed`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .records import Snapshot


@dataclass(frozen=True)
class ClassScores:
    """Precision, recall, F1 and support of one class (as scikit-learn's classification report)."""

    name: str
    precision: float
    recall: float
    f1: float
    support: int
    predicted: int  # examples predicted as this class


class Interpretation:
    """Triage of one model over the examples the dataset pass covered."""

    def __init__(
        self,
        snapshot: Snapshot,
        model: int,
        classes: Sequence[str],
        *,
        complete: bool = True,
        note: str = "",
        loss_name: str = "",
    ) -> None:
        self.classes = list(classes)
        self.model = model
        self.complete = complete  # False: the pass did not cover the whole dataset (see note)
        self.note = note
        self.loss_name = loss_name
        self.n_examples = snapshot.n
        failed = snapshot.failed[model]
        self._ids = np.flatnonzero(~failed)
        self.failed = int(failed.sum())
        self.errors: dict[int, str] = dict(snapshot.errors[model])
        self.labels = snapshot.labels[self._ids].astype(np.int64)
        self.predicted = snapshot.top_classes[model, self._ids, 0].astype(np.int64)
        self.confidence = snapshot.top_scores[model, self._ids, 0].astype(np.float64)
        self.label_scores = snapshot.label_scores[model, self._ids]
        self.losses = snapshot.losses[model, self._ids]
        self._labeled = (self.labels >= 0) & (self.labels < len(self.classes))

    # ------------------------------------------------------------ fastai's names
    def confusion_matrix(self) -> np.ndarray:
        """Counts, rows = actual class, columns = predicted class (labeled examples only)."""
        c = len(self.classes)
        actual = self.labels[self._labeled]
        predicted = self.predicted[self._labeled]
        inside = predicted < c
        return np.bincount(actual[inside] * c + predicted[inside], minlength=c * c).reshape(c, c).astype(np.int64)

    def most_confused(self, min_val: int = 1) -> list[tuple[str, str, int]]:
        """(actual, predicted, count) of the off-diagonal cells with at least ``min_val`` examples, largest first."""
        cm = self.confusion_matrix()
        np.fill_diagonal(cm, 0)
        rows, cols = np.where(cm >= min_val)
        cells = [(self.classes[i], self.classes[j], int(cm[i, j])) for i, j in zip(rows, cols)]
        return sorted(cells, key=lambda cell: cell[2], reverse=True)

    def top_losses(self, k: int | None = None, largest: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` largest (or smallest) losses and their example ids (fastai's ``(losses, idx)``)."""
        has = ~np.isnan(self.losses)
        losses = torch.from_numpy(np.ascontiguousarray(self.losses[has]))
        ids = torch.from_numpy(self._ids[has].astype(np.int64))
        k = len(losses) if k is None else max(0, min(int(k), len(losses)))
        values, order = losses.topk(k, largest=largest)
        return values, ids[order]

    @property
    def has_losses(self) -> bool:
        return bool((~np.isnan(self.losses)).any())

    @property
    def accuracy(self) -> float | None:
        """The fraction of labeled examples whose top prediction is the label (None without labels)."""
        n = int(self._labeled.sum())
        return None if n == 0 else float((self.predicted[self._labeled] == self.labels[self._labeled]).mean())

    @property
    def labeled(self) -> int:
        return int(self._labeled.sum())

    def per_class(self) -> list[ClassScores]:
        """Precision, recall, F1 and support per class (0 where undefined, as scikit-learn's default)."""
        cm = self.confusion_matrix()
        tp = np.diag(cm).astype(np.float64)
        support = cm.sum(axis=1)
        predicted_labeled = cm.sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(predicted_labeled > 0, tp / predicted_labeled, 0.0)
            recall = np.where(support > 0, tp / support, 0.0)
            f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        predicted_all = self.predicted_counts()
        return [
            ClassScores(name, float(p), float(r), float(f), int(s), int(n))
            for name, p, r, f, s, n in zip(self.classes, precision, recall, f1, support, predicted_all)
        ]

    # ------------------------------------------------------------ for the Dataset view
    def predicted_counts(self) -> np.ndarray:
        """Examples predicted as each class (labeled or not)."""
        c = len(self.classes)
        return np.bincount(self.predicted[self.predicted < c], minlength=c).astype(np.int64)

    def confidence_histogram(self, bins: int = 20) -> dict[str, list]:
        """Top-prediction confidence in ``bins`` equal bins over [0, 1]: correct, incorrect, unlabeled."""
        edges = np.linspace(0.0, 1.0, bins + 1)
        conf = np.clip(self.confidence, 0.0, 1.0)
        right = self._labeled & (self.predicted == self.labels)
        wrong = self._labeled & (self.predicted != self.labels)

        def counts(mask: np.ndarray) -> list[int]:
            return np.histogram(conf[mask], bins=edges)[0].astype(int).tolist()

        return {
            "edges": edges.round(6).tolist(),
            "correct": counts(right),
            "incorrect": counts(wrong),
            "unlabeled": counts(~self._labeled),
        }

    def ids_where(self, actual: int | None = None, predicted: int | None = None) -> np.ndarray:
        """Ids of the examples of one confusion cell (or row, or column), in dataset order."""
        mask = np.ones(len(self._ids), bool)
        if actual is not None:
            mask &= self.labels == actual
        if predicted is not None:
            mask &= self.predicted == predicted
        return self._ids[mask]
