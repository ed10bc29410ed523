"""The dataset pass's rows in the persistent store: a restarted app's pass reads, not recomputes.

Rows are keyed like every stored result (the model's fingerprint, the example's content, the
software's versions) plus the example's label and the loss they were ranked by, so a relabeled
example or another loss function is computed again. The loss the pass chose for a model is
stored with them: a pass whose every row is stored never runs the model, yet says which loss
it ranks by.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..dataset import ExampleBatch
from .losses import LossChoice, LossFn, binary_cross_entropy, cross_entropy, negative_log_likelihood
from .records import ModelRows, empty_rows

if TYPE_CHECKING:
    from ..store import ModelStore

BUILT_IN_LOSSES = {
    "cross-entropy": cross_entropy,
    "binary cross-entropy": binary_cross_entropy,
    "negative log-likelihood": negative_log_likelihood,
}


def loss_key(loss_func: LossFn | None) -> str:
    """What identifies a user's loss function in the store: its name and its code (a lambda edited
    between two runs is another loss); "auto" for the loss the pass infers."""
    if loss_func is None:
        return "auto"
    code = getattr(loss_func, "__code__", None)
    name = getattr(loss_func, "__qualname__", None) or type(loss_func).__qualname__
    h = hashlib.sha256(f"{getattr(loss_func, '__module__', '')}.{name}".encode())
    if code is not None:
        h.update(code.co_code)
        h.update(repr(code.co_consts).encode())
    else:
        h.update(repr(loss_func).encode())  # a loss module: its repr shows its settings (reduction, weight)
    return f"fn:{h.hexdigest()[:32]}"


def restored_choice(name: str, note: str, loss_func: LossFn | None) -> LossChoice:
    """The LossChoice a stored (name, note) stands for."""
    if not name:
        return LossChoice(None, "", note)
    fn = loss_func if loss_func is not None else BUILT_IN_LOSSES.get(name)
    return LossChoice(fn, name, note) if fn is not None else LossChoice(None, "", note)


def rows_with_store(
    model_store: ModelStore,
    key: str,
    batch: ExampleBatch,
    labels: torch.Tensor,
    k: int,
    fingerprints: Callable[[ExampleBatch], list[str]],
    compute: Callable[[list[int]], ModelRows | None],
) -> ModelRows | None:
    """One model's rows of ``batch``: the stored ones read, the others computed by ``compute`` (of
    the missing rows' positions) and stored. None when ``compute`` was stopped. A damaged stored
    row is missing (the store says so once), so it is computed again and rewritten."""
    fps = fingerprints(batch)
    keys: list[tuple[str, int]] = [(fp, int(label)) for fp, label in zip(fps, labels.tolist())]
    stored = model_store.pass_rows(key, keys)
    if any(len(row[0]) > k for row in stored.values()):  # more top classes than the pass keeps: not ours
        model_store.store.faults.damaged("pass_rows", "more top classes than the pass keeps")
        stored = {kk: row for kk, row in stored.items() if len(row[0]) <= k}
    missing = [j for j, kk in enumerate(keys) if kk not in stored]
    computed = compute(missing) if missing else None
    if missing and computed is None:
        return None
    if not stored and computed is not None:
        _save(model_store, key, keys, missing, computed)
        return computed
    rows = empty_rows(len(keys), k)
    for j, kk in enumerate(keys):
        if kk in stored:
            classes, scores, label_score, loss = stored[kk]
            rows.top_classes[j, : len(classes)] = classes
            rows.top_scores[j, : len(scores)] = scores
            rows.label_scores[j] = label_score
            rows.losses[j] = loss
    if computed is not None:
        width = computed.top_classes.shape[1]
        at = np.asarray(missing)
        rows.top_classes[at, :width] = computed.top_classes
        rows.top_scores[at, :width] = computed.top_scores
        rows.label_scores[at] = computed.label_scores
        rows.losses[at] = computed.losses
        rows.failed[at] = computed.failed
        rows.errors = {missing[i]: message for i, message in computed.errors.items()}
        _save(model_store, key, keys, missing, computed)
    return rows


def _save(
    model_store: ModelStore, key: str, keys: list[tuple[str, int]], positions: list[int], rows: ModelRows
) -> None:
    """The computed rows that did not fail (a failure is tried again next time)."""
    model_store.save_pass_rows(
        key,
        [
            (keys[j], (rows.top_classes[i], rows.top_scores[i], float(rows.label_scores[i]), float(rows.losses[i])))
            for i, j in enumerate(positions)
            if not rows.failed[i]
        ],
    )
