"""Which examples a triage filter selects, read from the dataset pass's records at once.

The same matching rule as the scanning pager (:func:`insights_app.page.paging.matches`): classes
match any model's top prediction or the label, "correct" means every model is right, an
example some model failed on matches nothing; plus what only the pass knows: a confusion
cell, a range of the top score, models that disagree, and the loss order (largest first, the
examples without a loss last).
"""

from __future__ import annotations

import numpy as np

from ..page.query import Filter
from .records import Snapshot


def select(snap: Snapshot, flt: Filter) -> np.ndarray:
    """Ids of the examples the pass covered that match ``flt``, in the filter's order."""
    if snap.n == 0:
        return np.zeros(0, np.int64)
    ok = ~snap.failed.any(axis=0)
    top1 = snap.top_classes[:, :, 0]
    labels = snap.labels
    m = min(flt.model, top1.shape[0] - 1)
    if flt.classes:
        wanted = np.asarray(flt.classes)
        ok &= np.isin(labels, wanted) if flt.class_source == "label" else np.isin(top1, wanted).any(axis=0)
    if flt.prediction != "all":
        correct = (top1 == labels[None, :]).all(axis=0)
        ok &= (labels >= 0) & (correct if flt.prediction == "correct" else ~correct)
    if flt.pair is not None:
        ok &= (labels == flt.pair[0]) & (top1[m] == flt.pair[1])
    if flt.confidence is not None:
        score = snap.top_scores[m, :, 0]
        ok &= (score >= flt.confidence[0]) & (score <= flt.confidence[1])
    if flt.disagree:
        ok &= (top1 != top1[:1]).any(axis=0)
    ids = np.flatnonzero(ok)
    if flt.order == "loss":
        losses = snap.losses[m, ids]
        key = np.where(np.isnan(losses), -np.inf, losses)
        ids = ids[np.argsort(-key, kind="stable")]
    return ids.astype(np.int64)
