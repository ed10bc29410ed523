"""The persistent, content-keyed store (``store=DIR``): what was computed survives restarts.

:class:`Store` is the SQLite file; :class:`ModelStore` is one model's view of it (its
fingerprint and the software versions fixed), which an :class:`~insights_app.engine.Engine`
reads before computing and writes after.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .fingerprint import example_fingerprints, model_fingerprint, software_versions
from .sqlite import DEFAULT_MAX_BYTES, FILE_NAME, MetricKey, PassRow, Store, StoreError


class ModelStore:
    """One model's results in a store; the model's fingerprint is computed on first use."""

    def __init__(self, store: Store, model: Any, classes: Sequence[str],
                 score_func: Optional[Callable[..., Any]]) -> None:
        self.store = store
        self._model = model
        self._classes = list(classes)
        self._score_func = score_func
        self._fingerprint: Optional[str] = None
        self.software = software_versions()

    @property
    def model(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self._model, self._classes, self._score_func)
        return self._fingerprint

    def explanations(self, keys: Sequence[Tuple[str, str, Optional[int]]]
                     ) -> Dict[Tuple[str, str, Optional[int]], Tuple[List[np.ndarray], List[float]]]:
        return self.store.get_explanations(self.model, self.software, keys)

    def save_explanations(self, rows: Sequence[Tuple[Tuple[str, str, Optional[int]], Sequence[np.ndarray],
                                                     Sequence[float]]]) -> int:
        return self.store.put_explanations(self.model, self.software, rows)

    def predictions(self, examples: Sequence[str]) -> Dict[str, Tuple[List[int], List[float]]]:
        return self.store.get_predictions(self.model, self.software, examples)

    def save_predictions(self, rows: Sequence[Tuple[str, Sequence[int], Sequence[float]]]) -> int:
        return self.store.put_predictions(self.model, self.software, rows)

    def pass_rows(self, loss: str, keys: Sequence[Tuple[str, int]]) -> Dict[Tuple[str, int], PassRow]:
        return self.store.get_pass_rows(self.model, self.software, loss, keys)

    def save_pass_rows(self, loss: str, rows: Sequence[Tuple[Tuple[str, int], PassRow]]) -> int:
        return self.store.put_pass_rows(self.model, self.software, loss, rows)

    def pass_loss(self, loss: str) -> Optional[Tuple[str, str]]:
        return self.store.get_pass_loss(self.model, self.software, loss)

    def save_pass_loss(self, loss: str, name: str, note: str) -> None:
        self.store.put_pass_loss(self.model, self.software, loss, name, note)

    def metrics(self, keys: Sequence[MetricKey]) -> Dict[MetricKey, object]:
        return self.store.get_metrics(self.model, self.software, keys)

    def save_metrics(self, rows: Sequence[Tuple[MetricKey, object]]) -> int:
        return self.store.put_metrics(self.model, self.software, rows)


__all__ = ["DEFAULT_MAX_BYTES", "FILE_NAME", "ModelStore", "Store", "StoreError", "example_fingerprints",
           "model_fingerprint", "software_versions"]
