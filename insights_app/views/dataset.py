"""``POST /api/v1/dataset``: one model's triage (fastai's ClassificationInterpretation, and more).

Read from the dataset pass as far as it has gone (the answer says how far, and starts the
pass when it never ran; a paused one stays paused): accuracy, precision / recall / F1 / support per class, the
confusion matrix (at most ``max_matrix`` classes: past that, the matrix of the classes in the
most confused pairs), the most confused pairs, the largest losses, the confidence histogram,
the predicted-class counts, and with several models how often they disagree. Every number
that leads to examples comes with the filter that shows them (the page links cells to cards).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..page.fields import Body, Int, Object, last_model
from ..protocols import VisualizerLike
from ..triage import interpretation_for
from .dataset_pass import progress_json
from .view import View

MATRIX_MAX = 100  # classes shown as a full matrix; past this, the classes of the most confused pairs
PAIRS_MAX = 50  # most confused pairs listed
LOSSES_SHOWN = 12  # largest losses listed (the cards show them all, ordered by loss)


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


def restricted_classes(cm: np.ndarray, pairs: int) -> list[int]:
    """The classes of the ``pairs`` most confused (off-diagonal) cells, in class order."""
    off = cm.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:pairs]
    chosen: set[int] = set()
    for cell in flat:
        i, j = divmod(int(cell), cm.shape[1])
        if off[i, j] > 0:
            chosen.update((i, j))
    return sorted(chosen)


def summary(vis: VisualizerLike, m: int, max_matrix: int = MATRIX_MAX, bins: int = 20) -> dict[str, Any]:
    p = vis.dataset_pass
    progress = p.start_if_idle()
    interp = interpretation_for(vis, m)
    cm = interp.confusion_matrix()
    n_classes = len(vis.classes)
    shown = list(range(n_classes)) if n_classes <= max_matrix else restricted_classes(cm, max_matrix // 2)
    confused = []
    off = cm.copy()
    np.fill_diagonal(off, 0)
    rows, cols = np.nonzero(off)
    order = np.argsort(-off[rows, cols], kind="stable")[:PAIRS_MAX]
    for k in order:
        confused.append({"actual": int(rows[k]), "predicted": int(cols[k]), "count": int(off[rows[k], cols[k]])})
    losses, ids = interp.top_losses(LOSSES_SHOWN)
    snap = p.snapshot()
    top = []
    for loss, ex_id in zip(losses.tolist(), ids.tolist()):
        top.append(
            {
                "id": int(ex_id),
                "loss": _finite(loss),
                "actual": int(snap.labels[ex_id]),
                "predicted": int(snap.top_classes[m, ex_id, 0]),
                "probability": _finite(float(snap.top_scores[m, ex_id, 0])),
                "label_probability": _finite(float(snap.label_scores[m, ex_id])),
            }
        )
    disagree = None
    if len(vis.engines) > 1 and snap.n:
        top1 = snap.top_classes[:, :, 0]
        ok = ~snap.failed.any(axis=0)
        disagree = int(((top1 != top1[:1]).any(axis=0) & ok).sum())
    choice = p.losses[m]
    return {
        "progress": progress_json(vis, progress),
        "model": m,
        "examples": interp.n_examples,
        "labeled": interp.labeled,
        "failed": interp.failed,
        "failures": [{"id": int(i), "error": e} for i, e in sorted(interp.errors.items())[:20]],
        "accuracy": _finite(interp.accuracy),
        "loss": {"name": choice.name if choice else "", "note": choice.note if choice else ""},
        "per_class": [
            {
                "index": i,
                "name": c.name,
                "precision": _finite(c.precision),
                "recall": _finite(c.recall),
                "f1": _finite(c.f1),
                "support": c.support,
                "predicted": c.predicted,
            }
            for i, c in enumerate(interp.per_class())
        ],
        "confusion": {
            "classes": shown,
            "counts": cm[np.ix_(shown, shown)].tolist(),
            "row_totals": cm.sum(axis=1)[shown].tolist(),
            "restricted": len(shown) < n_classes,
        },
        "most_confused": confused,
        "top_losses": top,
        "histogram": interp.confidence_histogram(bins),
        "predicted_counts": interp.predicted_counts().tolist(),
        "disagree": disagree,
    }


BODY: Body[dict[str, Any]] = Body(
    Object(
        {
            "model": Int(0, last_model),
            "max_matrix": Int(
                2, 400, MATRIX_MAX, "classes shown as a full confusion matrix (past this: the most confused)"
            ),
            "bins": Int(2, 100, 20, "confidence histogram bins"),
        }
    )
)


def dataset(vis: VisualizerLike, body: Any) -> dict[str, Any]:
    v = BODY.parse(body, vis.defaults)
    return summary(vis, v["model"], v["max_matrix"], v["bins"])


VIEW = View(
    "dataset",
    dataset,
    "One model's triage: accuracy, per-class scores, confusion matrix, top losses",
    request_schema=BODY.openapi,
    responses={
        "200": {"description": "the triage summary", "content": {"application/json": {"schema": {"type": "object"}}}}
    },
)
