"""What :meth:`Engine.run <insights_app.engine.Engine.run>` gives, and how one example's failure stays its own.

Small value types shared by the engine, the presenter, the pager and the executors; the failure
isolation rule (the whole batch, then each example alone) lives here beside :class:`Failure`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from ..dataset import ExampleBatch
from ..errors import ComputationError
from ..features import BaseFeature

T = TypeVar("T")
P = TypeVar("P")
# Full-resolution attributions of one run, by (example id, target): see Engine.run's keep_attributions.
KeptAttributions = dict[tuple[Hashable, int | None], tuple[torch.Tensor, ...]]


@dataclass
class Prediction:
    """Top-k scores of one example under one model (small: cached for every scanned example)."""

    indices: list[int]
    scores: list[float]
    error: str | None = None  # the model raised on this example (indices and scores are then empty)

    def top(self, k: int) -> list[tuple[int, float]]:
        return list(zip(self.indices[:k], self.scores[:k]))


@dataclass
class Explanation:
    """One example's attribution under one model, reduced to what the page shows."""

    target: int | None
    maps: list[np.ndarray]  # per feature: (H, W) for images, (T,) tokens, (K,) categories
    contributions: list[float]  # per feature, sums to 1 when anything is attributed
    key: str = ""  # the method and arguments that made it (arguments_key)

    def nbytes(self) -> int:
        return sum(int(m.nbytes) for m in self.maps) + 64


@dataclass(frozen=True)
class Failure:
    """One example's failure inside a batch that otherwise succeeded (it is not retried)."""

    message: str


@dataclass
class Result:
    """What :meth:`Engine.run` gives for one example: its prediction, and its explanation or why not."""

    example_id: Hashable
    prediction: Prediction
    explanation: Explanation | None = None
    error: str | None = None  # the model or the method failed on this example
    metrics: dict[str, Any] | None = None  # quality metrics of the explanation, when asked (insights_app.metrics)


def contributions(attributions: Sequence[torch.Tensor]) -> list[float]:
    """Each feature's share of the total absolute attribution (sums to 1 if any is non-zero)."""
    totals = [float(a.detach().abs().sum()) for a in attributions]
    total = sum(totals)
    if not math.isfinite(total) or total <= 0.0:
        return [0.0 for _ in totals]
    return [t / total for t in totals]


def isolated(
    compute: Callable[[ExampleBatch, list[P]], Sequence[T | Failure]], batch: ExampleBatch, per_example: Sequence[P]
) -> list[tuple[T | None, str | None]]:
    """``compute(batch, per_example)`` for the whole batch; if it raises a :class:`ComputationError`,
    each example alone, so that only the examples that cause it fail (with its message).

    ``compute`` caches what it computed, and looks there first, so a retry alone does not
    redo what a partly successful batch already did. A :class:`Failure` it returns for an
    example is that example's error, without a retry."""
    try:
        return [
            (None, value.message) if isinstance(value, Failure) else (value, None)
            for value in compute(batch, list(per_example))
        ]
    except ComputationError as exc:
        if len(batch) == 1:
            return [(None, str(exc))]
    out: list[tuple[T | None, str | None]] = []
    for j in range(len(batch)):
        out.extend(isolated(compute, batch.select([j]), [per_example[j]]))
    return out


def reduced(
    features: Sequence[BaseFeature],
    failed: str,
    key: str,
    ids: Sequence[Hashable],
    targets: Sequence[int | None],
    attrs: tuple[torch.Tensor, ...],
    keep: KeptAttributions | None,
) -> list[Explanation | Failure]:
    """Each example's attributions (a batch's, one tensor per feature) reduced to what the page shows.

    An example whose attribution is not finite gets a :class:`Failure` instead (nothing could show
    it), its message ``failed`` (the method and the model) and why. ``keep`` receives the
    full-resolution attributions too (see ``Engine.run``'s ``keep_attributions``)."""
    finite = torch.stack([torch.isfinite(a.reshape(a.shape[0], -1)).all(dim=1) for a in attrs]).all(dim=0).tolist()
    out: list[Explanation | Failure] = []
    for row, (ex_id, target) in enumerate(zip(ids, targets)):
        if not finite[row]:
            out.append(Failure(f"{failed}: the attribution of this example is not finite (NaN or infinity)"))
            continue
        per_feature = [a[row] for a in attrs]
        if keep is not None:
            keep[(ex_id, target)] = tuple(per_feature)
        out.append(
            Explanation(
                target=target,
                maps=[f.reduce_attribution(a) for f, a in zip(features, per_feature)],
                contributions=contributions(per_feature),
                key=key,
            )
        )
    return out
