"""One model's metrics of a batch's explanations: from the caches and the store, else computed.

Deletion and insertion read the map the page shows (the channel-summed attribution), so they
cost only their forward passes; infidelity needs the attribution at full resolution, which the
run that made the map keeps when asked (else it is made again); sensitivity runs the method on
every perturbed copy. Values are cached in memory and written to the store keyed like the
maps, so each is computed once.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from ..dataset import ExampleBatch
from ..engine.keys import fingerprints
from ..engine.readthrough import Backing, ReadThrough
from ..engine.results import Explanation, KeptAttributions
from ..errors import Cancelled, ValidationError
from ..methods import MethodSpec
from ..store.sqlite import MetricKey
from .options import MetricOptions
from .spec import MetricContext, Value

if TYPE_CHECKING:
    from ..engine import CancellableForward, Engine

log = logging.getLogger(__name__)
MemoryKey = tuple[Hashable, str, int | None, str]  # (example id, arguments_key, target, MetricOptions.key)


def compute(
    engine: Engine,
    spec: MethodSpec,
    params: dict[str, Any],
    batch: ExampleBatch,
    maps: Sequence[Sequence[np.ndarray]],
    targets: Sequence[int],
    options: MetricOptions,
    names: Sequence[str],
    forward: CancellableForward | None = None,
    attributions: Sequence[tuple[torch.Tensor, ...] | None] | None = None,
) -> list[dict[str, Value]]:
    """The metrics ``names`` of each example of ``batch`` (its maps, its target), on the compute thread.
    ``attributions``: each example's full-resolution attribution where the run kept it.

    Each asked metric's declared ``compute`` runs once, in the registry's order; metrics that
    declare the same function (deletion and insertion) share one call."""
    if batch.additional_args is not None:
        raise ValidationError("metrics", "are not available for models that take additional forward arguments")
    inputs = engine.model_inputs(batch.inputs)
    if not all(x.is_floating_point() for x in inputs):
        return [
            {
                n: {"error": "this metric needs real-valued inputs (token ids cannot be removed gradually)"}
                for n in names
            }
            for _ in range(len(batch))
        ]
    ctx = MetricContext(
        engine=engine,
        method=spec,
        params=params,
        batch=batch,
        inputs=inputs,
        maps=maps,
        targets=torch.as_tensor(list(targets), dtype=torch.long),
        options=options,
        forward=forward,
        attributions=attributions,
    )
    asked = [m for m in options.specs if m.name in names]
    out: list[dict[str, Value]] = [{} for _ in range(len(batch))]
    done: set[str] = set()
    for metric in asked:
        if metric.name in done:
            continue
        group = [m.name for m in asked if m.compute is metric.compute]
        for j, values in enumerate(metric.compute(ctx, group)):
            out[j].update({name: values[name] for name in group if name in values})
        done.update(group)
    return out


def metrics_of(
    engine: Engine,
    spec: MethodSpec,
    params: dict[str, Any],
    key: str,
    batch: ExampleBatch,
    explanations: Sequence[Explanation | None],
    options: MetricOptions,
    forward: CancellableForward | None = None,
    attributions: KeptAttributions | None = None,
) -> list[dict[str, Value]]:
    """Each explanation's metrics (None explanations get none): from memory (the engine's result
    cache) or the store, the missing ones computed together (infidelity from ``attributions``, the
    run's full-resolution ones, where it has them). A metric that failed is not kept."""
    names = options.names
    asked = [(j, name, exp.target) for j, exp in enumerate(explanations) if exp is not None for name in names]
    cache: ReadThrough[MemoryKey, Value] = ReadThrough(engine.results, size=_metric_bytes, keep=_not_error)

    def computed(positions: list[int]) -> list[Value]:
        missing = sorted({asked[p][0] for p in positions})
        todo = [n for n in names if any(asked[p][1] == n for p in positions)]
        found = [exp for exp in (explanations[j] for j in missing) if exp is not None]  # each of them is
        try:
            kept = (
                None
                if attributions is None
                else [attributions.get((batch.ids[j], e.target)) for j, e in zip(missing, found)]
            )
            values = compute(
                engine,
                spec,
                params,
                batch.select(missing),
                [e.maps for e in found],
                [cast(int, e.target) for e in found],  # Engine.metrics has checked: each has one
                options,
                todo,
                forward,
                kept,
            )
        except (ValidationError, Cancelled):
            raise
        except Exception as exc:  # the model failed on a variant: the metrics say so, the maps stay
            log.warning("metrics failed on %s: %s", engine.name, exc, exc_info=True)
            message = f"the metrics failed for {engine.name}: {type(exc).__name__}: {exc}"
            values = [{n: {"error": message} for n in todo} for _ in missing]
        by_row = dict(zip(missing, values))
        return [by_row[asked[p][0]].get(asked[p][1], {"error": "not computed"}) for p in positions]

    backing: Backing[MetricKey, Value] | None = None
    store = engine.store
    if store is not None:

        def store_keys(positions: list[int]) -> list[MetricKey]:
            fps = fingerprints(batch)
            return [(fps[asked[p][0]], key, asked[p][2], options.key(asked[p][1])) for p in positions]

        backing = Backing(store_keys, store.metrics, store.save_metrics)
    keys = [(batch.ids[j], key, target, options.key(name)) for j, name, target in asked]
    out: list[dict[str, Value]] = [{} for _ in explanations]
    for (j, name, _), value in zip(asked, cache.get_many(keys, computed, backing)):
        out[j][name] = value
    return out


def _metric_bytes(_value: Value) -> int:
    return 256  # what a value costs the engine's result cache (a curve of ~20 numbers, or one)


def _not_error(value: Value) -> bool:
    return not (isinstance(value, dict) and "error" in value)
