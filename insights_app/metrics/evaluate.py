"""One model's metrics of a batch's explanations: from the caches and the store, else computed.

Deletion and insertion read the map the page shows (the channel-summed attribution), so they
cost only their forward passes; infidelity needs the attribution at full resolution, which the
run that made the map keeps when asked (else it is made again); sensitivity runs the method on
every perturbed copy. Values are cached in memory and written to the store keyed like the
maps, so each is computed once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..dataset import ExampleBatch
from ..errors import Cancelled, ValidationError
from ..methods import MethodSpec
from .options import MetricOptions
from .spec import MetricContext, Value

if TYPE_CHECKING:
    from ..engine import CancellableForward, Engine

log = logging.getLogger(__name__)


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
    explanations: Sequence[Any],
    options: MetricOptions,
    fingerprints: Any = None,
    forward: Any = None,
    attributions: dict[Any, tuple[torch.Tensor, ...]] | None = None,
) -> list[dict[str, Value]]:
    """Each explanation's metrics (None explanations get none): cached, stored, else computed
    (infidelity from ``attributions``, the run's full-resolution ones, where it has them)."""
    names = options.names
    out: list[dict[str, Value]] = [{} for _ in explanations]
    todo: dict[str, list[int]] = {}
    fps = fingerprints(batch) if engine.store is not None and fingerprints is not None else None
    for j, exp in enumerate(explanations):
        if exp is None:
            continue
        for name in names:
            hit = engine.results.get((batch.ids[j], key, exp.target, options.key(name)))
            if hit is not None:
                out[j][name] = hit
            else:
                todo.setdefault(name, []).append(j)
    if todo and fps is not None:
        wanted = [(fps[j], key, explanations[j].target, options.key(name)) for name, js in todo.items() for j in js]
        stored = engine.store.metrics(wanted)
        for name in list(todo):
            still = []
            for j in todo[name]:
                value = stored.get((fps[j], key, explanations[j].target, options.key(name)))
                if value is None:
                    still.append(j)
                else:
                    out[j][name] = value
                    engine.results.put((batch.ids[j], key, explanations[j].target, options.key(name)), value, 256)
            if still:
                todo[name] = still
            else:
                del todo[name]
    if not todo:
        return out
    missing = sorted({j for js in todo.values() for j in js})
    sub = batch.select(missing)
    try:
        kept = (
            None
            if attributions is None
            else [attributions.get((batch.ids[j], explanations[j].target)) for j in missing]
        )
        computed = compute(
            engine,
            spec,
            params,
            sub,
            [explanations[j].maps for j in missing],
            [explanations[j].target for j in missing],
            options,
            [n for n in names if n in todo],
            forward,
            kept,
        )
    except (ValidationError, Cancelled):
        raise
    except Exception as exc:  # the model failed on a variant: the metrics say so, the maps stay
        log.warning("metrics failed on %s: %s", engine.name, exc, exc_info=True)
        message = f"the metrics failed for {engine.name}: {type(exc).__name__}: {exc}"
        computed = [{n: {"error": message} for n in todo} for _ in missing]
    rows = []
    for j, values in zip(missing, computed):
        for name, value in values.items():
            if name not in todo or j not in todo[name]:
                continue
            out[j][name] = value
            if isinstance(value, dict) and "error" in value:
                continue
            engine.results.put((batch.ids[j], key, explanations[j].target, options.key(name)), value, 256)
            if fps is not None:
                rows.append(((fps[j], key, explanations[j].target, options.key(name)), value))
    if rows:
        engine.store.save_metrics(rows)
    return out
