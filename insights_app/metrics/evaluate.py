"""One model's metrics of a batch's explanations: from the caches and the store, else computed.

Deletion and insertion read the map the page shows (the channel-summed attribution), so they
cost only their forward passes; infidelity needs the attribution at full resolution, which the
run that made the map keeps when asked (else it is made again); sensitivity runs the method on
every perturbed copy. Values are cached in memory and written to the store keyed like the
maps, so each is computed once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Sequence
from typing import Any, cast

import numpy as np
import torch

from ..dataset import ExampleBatch
from ..engine.keys import fingerprints
from ..engine.readthrough import Backing, ReadThrough
from ..engine.results import Explanation, KeptAttributions
from ..errors import Cancelled, ValidationError
from ..methods import MethodSpec
from ..methods import baselines as baseline_maker
from ..store.sqlite import MetricKey
from .deletion import area, curves
from .infidelity import infidelity
from .options import MetricOptions
from .sensitivity import sensitivity

log = logging.getLogger(__name__)

Value = Any  # a metric's JSON value: {"area", "curve"}, a number, or {"error": ...}
MemoryKey = tuple[Hashable, str, int | None, str]  # (example id, arguments_key, target, MetricOptions.key)


def _finite(x: float | torch.Tensor) -> float | None:
    return float(f"{float(x):.6g}") if math.isfinite(float(x)) else None


def scores_function(engine: Any) -> Any:
    """(model inputs) -> (rows, classes) scores: the model, then its score function, no gradients."""

    def scores(*inputs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = engine.forward(*inputs)
            return engine.score_func(out) if engine.score_func is not None else out

    return scores


def raw_outputs(engine: Any) -> Any:
    """(model inputs) -> the model's outputs, no gradients (what captum attributes)."""

    def outputs(*inputs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return engine.forward(*inputs)

    return outputs


def baseline_kind(params: dict[str, Any]) -> str:
    kind = params.get("baseline")
    return kind if isinstance(kind, str) and kind in baseline_maker.KINDS else "zeros"


def compute(
    engine: Any,
    spec: MethodSpec,
    params: dict[str, Any],
    batch: ExampleBatch,
    maps: Sequence[Sequence[np.ndarray]],
    targets: Sequence[int],
    options: MetricOptions,
    names: Sequence[str],
    forward: Any = None,
    attributions: Sequence[tuple[torch.Tensor, ...] | None] | None = None,
) -> list[dict[str, Value]]:
    """The metrics ``names`` of each example of ``batch`` (its maps, its target), on the compute thread.
    ``attributions``: each example's full-resolution attribution where the run kept it."""
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
    scores = scores_function(engine)
    target_t = torch.as_tensor(list(targets), dtype=torch.long)
    out: list[dict[str, Value]] = [{} for _ in range(len(batch))]
    if "deletion" in names or "insertion" in names:
        if forward is not None:
            forward.check()
        hw = next((tuple(x.shape[2:]) for x in inputs if x.dim() == 4), (1, 1))
        map_t = [torch.from_numpy(np.stack([np.asarray(m[f]) for m in maps])) for f in range(len(inputs))]
        base = baseline_maker.per_example(
            baseline_kind(params), engine.features, batch.inputs, batch.ids, spec.seed(params), engine.device
        )
        # Rows per pass as for attributions (Engine.rows_per_pass): mobilenet_v3_small's curves of 4
        # examples at 224x224 took 1.14 s in 64-row passes (400 k page faults) and 0.61 s in 6-row ones.
        deletion, insertion = curves(
            scores, inputs, map_t, base, target_t, options.steps, options.patch_for(hw), engine.rows_per_pass(inputs)
        )
        for j in range(len(batch)):
            for name, c in (("deletion", deletion[j]), ("insertion", insertion[j])):
                if name in names:
                    out[j][name] = {"area": _finite(area(c)), "curve": [_finite(v) for v in c]}
    if "infidelity" in names:
        if attributions is not None and all(a is not None for a in attributions):
            attrs = tuple(torch.stack([a[f] for a in attributions]) for f in range(len(inputs)))  # type: ignore[index]
        else:
            attrs = engine.attribute(spec, params, batch, list(targets), inputs=inputs)
        # What the methods explain is the model's raw output (captum is given engine.forward), so
        # infidelity compares the attribution with changes of that output, not of the scores.
        # Its random perturbations are drawn per pass, so its rows per pass stay what they were:
        # fewer would change the stored values.
        values = infidelity(
            raw_outputs(engine),
            inputs,
            attrs,
            target_t.to(engine.device),
            options.samples,
            options.noise,
            options.seed,
            engine.internal_batch_size,
        )
        for j in range(len(batch)):
            out[j]["infidelity"] = _finite(values[j])
    if "sensitivity" in names:
        samples = options.samples

        def explain(perturbed: Any, target: Any = None) -> tuple[torch.Tensor, ...]:
            if forward is not None:
                forward.check()
            perturbed = tuple(perturbed) if isinstance(perturbed, (tuple, list)) else (perturbed,)
            n = int(perturbed[0].shape[0])
            per = max(1, n // len(batch))
            rows_of = [min(len(batch) - 1, r // per) for r in range(n)]
            t = None if target is None else torch.as_tensor(target).reshape(-1).tolist()
            return engine.attribute(spec, params, batch.select(rows_of), t, inputs=tuple(perturbed))

        values = sensitivity(explain, inputs, target_t.to(engine.device), samples, options.radius, options.seed)
        for j in range(len(batch)):
            out[j]["sensitivity"] = _finite(values[j])
    return out


def metrics_of(
    engine: Any,
    spec: MethodSpec,
    params: dict[str, Any],
    key: str,
    batch: ExampleBatch,
    explanations: Sequence[Explanation | None],
    options: MetricOptions,
    forward: Any = None,
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
