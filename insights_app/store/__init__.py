"""The persistent, content-keyed store (``store=DIR``): what was computed survives restarts.

:class:`Store` is the SQLite file; :class:`ModelStore` is one model's view of it (its
fingerprint and the software versions fixed), which an :class:`~insights_app.engine.Engine`
reads before computing and writes after.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .fingerprint import ModelFingerprint, example_fingerprints, model_fingerprint, software_versions
from .sqlite import DEFAULT_MAX_BYTES, FILE_NAME, MetricKey, PassRow, Store, StoreError

if TYPE_CHECKING:  # torch is imported where a model is fingerprinted (the command line opens a store first)
    import torch


class ModelStore:
    """One model's results in a store; the model's fingerprint is begun at once, in the background."""

    def __init__(
        self, store: Store, model: torch.nn.Module, classes: Sequence[str], score_func: Callable[..., Any] | None
    ) -> None:
        self.store = store
        self._model = model
        self._classes = list(classes)
        self._score_func = score_func
        self._fingerprint = ModelFingerprint(model, self._classes, score_func)  # not on a request's path
        self.software = software_versions()

    @property
    def model(self) -> str:
        return self._fingerprint.value()

    def explanations(
        self, keys: Sequence[tuple[str, str, int | None]]
    ) -> dict[tuple[str, str, int | None], tuple[list[np.ndarray], list[float]]]:
        return self.store.get_explanations(self.model, self.software, keys)

    def save_explanations(
        self, rows: Sequence[tuple[tuple[str, str, int | None], Sequence[np.ndarray], Sequence[float]]]
    ) -> int:
        return self.store.put_explanations(self.model, self.software, rows)

    def predictions(self, examples: Sequence[str]) -> dict[str, tuple[list[int], list[float]]]:
        return self.store.get_predictions(self.model, self.software, examples)

    def save_predictions(self, rows: Sequence[tuple[str, Sequence[int], Sequence[float]]]) -> int:
        return self.store.put_predictions(self.model, self.software, rows)

    def pass_rows(self, loss: str, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], PassRow]:
        return self.store.get_pass_rows(self.model, self.software, loss, keys)

    def save_pass_rows(self, loss: str, rows: Sequence[tuple[tuple[str, int], PassRow]]) -> int:
        return self.store.put_pass_rows(self.model, self.software, loss, rows)

    def pass_loss(self, loss: str) -> tuple[str, str] | None:
        return self.store.get_pass_loss(self.model, self.software, loss)

    def save_pass_loss(self, loss: str, name: str, note: str) -> None:
        self.store.put_pass_loss(self.model, self.software, loss, name, note)

    def metrics(self, keys: Sequence[MetricKey]) -> dict[MetricKey, object]:
        return self.store.get_metrics(self.model, self.software, keys)

    def save_metrics(self, rows: Sequence[tuple[MetricKey, object]]) -> int:
        return self.store.put_metrics(self.model, self.software, rows)


__all__ = [
    "DEFAULT_MAX_BYTES",
    "FILE_NAME",
    "ModelStore",
    "Store",
    "StoreError",
    "example_fingerprints",
    "model_fingerprint",
    "software_versions",
]
