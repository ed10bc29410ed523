"""Batched prediction and attribution for one model, behind one entry point: :meth:`Engine.run`.

An :class:`Engine` owns one model. ``run(examples, spec, params, targets)`` gives each
example's prediction and, when a method is asked for, its explanation (or the error that
kept it from one). Everything about *how* is decided here and nowhere else: one forward
pass shared by the prediction and the attribution where the method allows it, batches of
examples per captum call bounded by rows and bytes, the prediction and result caches, and
one strategy for failures (the whole batch, then each example alone, so that only the
examples the model or captum cannot handle fail). Captum methods install hooks on the
model, so one computation per model runs at a time, on the model's own compute thread.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from .cache import LRUCache
from .call_sizes import CallSizes
from .cancel import Cancel, raise_if_cancelled
from .dataset import Example, ExampleBatch
from .errors import Cancelled, ComputationError, ValidationError
from .features import BaseFeature, ImageFeature, transform_batch
from .limits import MAX_EVALS_PER_EXAMPLE, TOP_K_MAX
from .methods import AttributionContext, MethodSpec
from .methods.layers import resolve_layer
from .store.fingerprint import example_fingerprints
from .tensors import as_tuple, model_device, plain
from .worker import ComputeThread, on_compute_thread

log = logging.getLogger(__name__)
# Model-input bytes (float32) one captum call may expand to, over all its rows: beyond this,
# activations too large for the allocator to keep cost page faults on every call.
CALL_INPUT_BYTES = 16 * 2**20
CALL_GRADIENT_BYTES = 64 * 2**20  # a calibrated call's rows x passes x input bytes, at most
# Model-input bytes of one forward pass that batches rows itself (Integrated Gradients' steps, the
# noise tunnel's samples): at 224x224 that is 6 rows. Measured on one CPU thread, 50-step Integrated
# Gradients of one example took 950 ms with 64 rows per pass on mobilenet_v3_small and 500 ms with 6;
# 11 s and 2.9 s on efficientnet_b0: larger passes' activations are mapped afresh (page faults) on
# every pass.
PASS_INPUT_BYTES = 4 * 2**20
# Guards torch's and numpy's default generators, which are themselves process-wide state.
_PROCESS_RNG_LOCK = threading.Lock()
T = TypeVar("T")
# Full-resolution attributions of one run, by (example id, target): see Engine.run's keep_attributions.
KeptAttributions = dict[tuple[Hashable, int | None], tuple[torch.Tensor, ...]]
KEEP = "insights-app: keep attributions"  # where a run's `shared` dictionary holds that dictionary


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


def arguments_key(method: str, params: dict[str, Any]) -> str:
    """A stable, hashable key for a method (its fingerprint) and its validated parameters."""
    blob = json.dumps([method, params], sort_keys=True, default=list)
    return hashlib.sha1(blob.encode()).hexdigest()


def contributions(attributions: Sequence[torch.Tensor]) -> list[float]:
    """Each feature's share of the total absolute attribution (sums to 1 if any is non-zero)."""
    totals = [float(a.detach().abs().sum()) for a in attributions]
    total = sum(totals)
    if not math.isfinite(total) or total <= 0.0:
        return [0.0 for _ in totals]
    return [t / total for t in totals]


class Engine:
    """Prediction and attribution for one model over a set of features."""

    def __init__(
        self,
        model: Any,
        features: Sequence[BaseFeature],
        score_func: Callable[[torch.Tensor], torch.Tensor] | None = None,
        *,
        name: str = "model",
        device: torch.device | str | None = None,
        use_label_for_attr: bool = True,
        internal_batch_size: int = 64,
        cache_entries: int = 1024,
        cache_bytes: int = 512 * 2**20,
        prediction_entries: int = 200_000,
        store: Any = None,
    ) -> None:
        self.model = model
        self.features = list(features)
        self.score_func = score_func
        self.name = name
        self.use_label_for_attr = use_label_for_attr
        self.internal_batch_size = max(1, int(internal_batch_size))
        self.device = torch.device(device) if device is not None else model_device(model)
        if isinstance(model, torch.nn.Module):
            model.to(self.device)
            model.eval()
        # Re-entrant: a shared-forward computation holds it across its forward pass and the captum
        # call that reuses that pass.
        self.lock = threading.RLock()
        # The model's forward and backward passes all run on this one thread (see worker.py).
        self.compute = ComputeThread(f"insights-app compute: {name}")
        self.compute.close_with(self)
        self.results = LRUCache(cache_entries, cache_bytes)
        self.predictions = LRUCache(prediction_entries, max_bytes=2**62)
        self.image_inputs = tuple(i for i, f in enumerate(self.features) if isinstance(f, ImageFeature))
        self.resolve_layer = functools.partial(resolve_layer, model)
        # A persistent store (insights_app.store.ModelStore) behind the in-memory caches, or None.
        self.store = store
        self.call_sizes = CallSizes()  # examples per captum call, measured per method and input shape

    # ------------------------------------------------------------ the entry point
    @on_compute_thread
    def run(
        self,
        examples: Sequence[Example] | ExampleBatch,
        spec: MethodSpec | None = None,
        params: dict[str, Any] | None = None,
        targets: Sequence[int | None] | None = None,
        cancel: Cancel | None = None,
        keep_attributions: KeptAttributions | None = None,
    ) -> list[Result]:
        """Predictions, and with ``spec`` explanations, of examples (one :class:`Result` each, in order).

        ``params`` are the method's validated arguments (``spec.validate(...)``); ``targets``
        the class to attribute each example to (None: its top prediction). A failure of the
        model or the method is that example's ``error``, and so are arguments that do not fit
        an example at its own size (its cost, an occlusion window larger than it); other
        :class:`ValidationError` (the arguments do not fit this model) are raised. Examples of
        different input shapes are computed in one batch per shape. ``cancel`` is asked before
        every captum call and forward pass: once it says so, :class:`Cancelled` is raised.
        ``keep_attributions``: where given, each attribution computed here (not those read from
        a cache) is also put there at full resolution, keyed by (example id, target), for the
        metrics that need it (:meth:`metrics`), which would otherwise compute it again.
        """
        raise_if_cancelled(cancel)  # cancelled while it waited for the compute thread
        requested = list(targets) if targets is not None else [None] * len(examples)
        if len(requested) != len(examples):
            raise ValueError(f"{len(requested)} targets for {len(examples)} examples")
        # Asked before every pass of the forward function, and before every captum call (the methods
        # that run the module itself, DeepLift and Guided Backprop, make one pass per call).
        forward = CancellableForward(self.forward, cancel)
        if isinstance(examples, ExampleBatch):
            return self._run_batch(examples, spec, params, requested, forward, keep_attributions)
        results: list[Result | None] = [None] * len(examples)
        for index, batch in ExampleBatch.groups(examples):
            for i, result in zip(
                index, self._run_batch(batch, spec, params, [requested[i] for i in index], forward, keep_attributions)
            ):
                results[i] = result
        return results  # type: ignore[return-value]

    def _run_batch(
        self,
        batch: ExampleBatch,
        spec: MethodSpec | None,
        params: dict[str, Any] | None,
        requested: list[int | None],
        forward: CancellableForward,
        keep_attributions: KeptAttributions | None = None,
    ) -> list[Result]:
        """:meth:`run` for examples of one input shape."""
        if not len(batch):
            return []
        if spec is None:
            return [Result(i, p, None, p.error) for i, p in zip(batch.ids, self._predictions(batch, forward))]
        params = spec.validate({}) if params is None else params
        too_costly = self._cost_problem(spec, params, batch)
        if too_costly:  # predicted, not attributed
            return [
                Result(i, p, None, p.error or too_costly) for i, p in zip(batch.ids, self._predictions(batch, forward))
            ]
        key = arguments_key(spec.fingerprint, params)
        shared: dict[Any, Any] = {KEEP: keep_attributions}
        if spec.first_forward and not any(i in self.predictions for i in batch.ids) and not self._stored_any(batch):
            both = self._shared_forward(spec, params, key, batch, requested, shared, forward)
            if both is not None:
                return both
        preds = self._predictions(batch, forward)
        results = [Result(i, p, None, p.error) for i, p in zip(batch.ids, preds)]
        ok = [j for j, p in enumerate(preds) if not p.error]  # the model failed on the others
        if ok:
            chosen = [self.target(preds[j], requested[j]) for j in ok]
            for j, (exp, err) in zip(ok, self._explain(spec, params, key, batch.select(ok), chosen, shared, forward)):
                results[j].explanation, results[j].error = exp, err
        return results

    def _image_hw(self, inputs: Sequence[torch.Tensor]) -> tuple[int, int]:
        """(H, W) of the first image input of a batch ((1, 1) when there is none)."""
        return next(
            (
                (int(x.shape[-2]), int(x.shape[-1]))
                for i, x in enumerate(inputs)
                if i in self.image_inputs and x.dim() >= 3
            ),
            (1, 1),
        )

    def _cost_problem(self, spec: MethodSpec, params: dict[str, Any], batch: ExampleBatch) -> str | None:
        """Why these arguments cannot run on these examples at their own size (None when they can).

        The request was checked against the dataset's first image; a dataset mixing sizes has
        examples where the same arguments cost more, or where a window does not fit."""
        if not self.image_inputs:
            return None
        h, w = self._image_hw(batch.inputs)
        try:
            evals = int(spec.cost(params, (h, w)))
        except ValidationError as exc:
            return str(exc)
        if evals > MAX_EVALS_PER_EXAMPLE:
            return (
                f"arguments: {spec.name} would cost {evals} forward passes per example at {h}x{w} "
                f"(limit {MAX_EVALS_PER_EXAMPLE})"
            )
        return None

    def target(self, pred: Prediction, requested: int | None = None) -> int | None:
        """The class an example is attributed to: the one asked for, else its top prediction
        (None for models whose output is not indexed by class, ``use_label_for_attr=False``)."""
        if not self.use_label_for_attr:
            return None
        return requested if requested is not None else pred.indices[0]

    # ------------------------------------------------------------ inputs and outputs
    def forward(self, *inputs: Any) -> torch.Tensor:
        out = self.model(*inputs)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return plain(out)  # fastai tensor subclasses never reach captum

    def model_inputs(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Display-space batches, one per feature -> model inputs on the device."""
        if len(inputs) != len(self.features):
            raise ValidationError("inputs", f"{len(inputs)} inputs for {len(self.features)} features")
        return tuple(transform_batch(f, x).to(self.device) for f, x in zip(self.features, inputs))

    def _scores_of(self, out: torch.Tensor, n: int) -> torch.Tensor:
        """Model outputs for ``n`` examples -> (n, classes) float scores on the CPU (score_func applied)."""
        if not isinstance(out, torch.Tensor):
            raise ComputationError(
                f"prediction failed for {self.name}: the model returned a {type(out).__name__}; "
                "it must return a tensor with one row of scores per example"
            )
        rows = int(out.shape[0]) if out.dim() > 0 else 0
        if rows != n:
            raise ComputationError(
                f"prediction failed for {self.name}: the model returned {rows} rows for {n} "
                f"example{'' if n == 1 else 's'}; it must return one row of scores per example, "
                "batch first"
            )
        with torch.no_grad():
            out = out.detach()
            if self.score_func is not None:
                out = self.score_func(out)
        out = out.detach().float().cpu()
        if out.dim() == 1:
            out = out[:, None]
        return out.reshape(out.shape[0], -1)

    # ------------------------------------------------------------ failures stay with their examples
    def _isolated(
        self, compute: Callable[[ExampleBatch, list[Any]], list[T]], batch: ExampleBatch, per_example: Sequence[Any]
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
            out.extend(self._isolated(compute, batch.select([j]), [per_example[j]]))
        return out

    # ------------------------------------------------------------ quality metrics
    @on_compute_thread
    def metrics(
        self,
        examples: Sequence[Example],
        results: Sequence[Result],
        spec: MethodSpec,
        params: dict[str, Any],
        options: Any,
        cancel: Cancel | None = None,
        attributions: KeptAttributions | None = None,
    ) -> list[dict[str, Any]]:
        """The quality metrics (``insights_app.metrics``) of the explanations in ``results`` (of
        :meth:`run` on ``examples`` with ``spec`` and ``params``): one dictionary per example,
        empty where there is no explanation to judge. ``attributions``: what that run kept
        (its ``keep_attributions``), used instead of attributing those examples again."""
        from .metrics.evaluate import metrics_of

        raise_if_cancelled(cancel)
        forward = CancellableForward(self.forward, cancel)
        key = arguments_key(spec.fingerprint, params)
        out: list[dict[str, Any]] = [{} for _ in results]
        for index, batch in ExampleBatch.groups(examples):
            exps = [results[i].explanation for i in index]
            if any(e is not None and e.target is None for e in exps):
                for i, e in zip(index, exps):
                    if e is not None:
                        out[i] = {
                            n: {"error": "metrics need a class to score (use_label_for_attr=False has none)"}
                            for n in options.names
                        }
                continue
            with self.lock:
                for i, values in zip(
                    index,
                    metrics_of(self, spec, params, key, batch, exps, options, fingerprints, forward, attributions),
                ):
                    out[i] = values
        return out

    # ------------------------------------------------------------ prediction
    def _predictions(self, batch: ExampleBatch, forward: CancellableForward | None = None) -> list[Prediction]:
        """Top predictions, cached by example id; the missing ones in one pass."""
        found: list[Prediction | None] = [self.predictions.get(i) for i in batch.ids]
        missing = [j for j, p in enumerate(found) if p is None]
        if missing and self.store is not None:
            missing = self._stored_predictions(batch, missing, found)
        if missing:
            sub = batch.select(missing)

            def predict(part: ExampleBatch, ids: list[Hashable]) -> list[Prediction]:
                return self._predict(part, ids, forward or self.forward)

            for j, ex_id, (pred, err) in zip(missing, sub.ids, self._isolated(predict, sub, sub.ids)):
                if err is not None:
                    log.warning("example %s on %s: %s", ex_id, self.name, err)
                    pred = Prediction([], [], error=err)  # not cached: the next request tries again
                found[j] = pred
            if self.store is not None:
                fps = fingerprints(sub)
                self.store.save_predictions(
                    [
                        (fp, found[j].indices, found[j].scores)  # type: ignore[union-attr]
                        for fp, j in zip(fps, missing)
                        if not found[j].error
                    ]
                )  # type: ignore[union-attr]
        return found  # type: ignore[return-value]

    def _stored_any(self, batch: ExampleBatch) -> bool:
        """Whether the store has a prediction of any of these examples (then the two-step path reads it)."""
        if self.store is None:
            return False
        return bool(self.store.predictions(fingerprints(batch)))

    def _save(
        self,
        part: ExampleBatch,
        preds: Sequence[Prediction],
        targets: Sequence[int | None],
        exps: Sequence[Explanation | Failure],
        key: str,
    ) -> None:
        """Write what the one-pass path computed to the store."""
        fps = fingerprints(part)
        self.store.save_predictions([(fp, p.indices, p.scores) for fp, p in zip(fps, preds) if not p.error])
        self.store.save_explanations(
            [
                ((fp, key, t), e.maps, e.contributions)
                for fp, t, e in zip(fps, targets, exps)
                if isinstance(e, Explanation)
            ]
        )

    def _stored_predictions(self, batch: ExampleBatch, missing: list[int], found: list[Prediction | None]) -> list[int]:
        """Fill ``found`` from the store where it has them (and the memory cache); the rows still missing."""
        sub = batch.select(missing)
        fps = fingerprints(sub)
        stored = self.store.predictions(fps)
        still = []
        for j, ex_id, fp in zip(missing, sub.ids, fps):
            if fp in stored:
                p = Prediction(*stored[fp])
                self.predictions.put(ex_id, p)
                found[j] = p
            else:
                still.append(j)
        return still

    def _predict(
        self, batch: ExampleBatch, ids: Sequence[Hashable], forward: Callable[..., torch.Tensor]
    ) -> list[Prediction]:
        """One forward pass over ``batch`` (whose ids are ``ids``); stores and returns its predictions."""
        try:
            inputs = self.model_inputs(batch.inputs)
            extra = as_tuple(batch.additional_args) or ()
            with self.lock, torch.inference_mode():  # no autograd bookkeeping at all: a prediction pass
                out = forward(*inputs, *extra)
            scores = self._scores_of(out, len(batch))
        except (ValidationError, ComputationError, Cancelled):
            raise
        except Exception as exc:  # the user's model or transforms failed
            raise ComputationError(f"prediction failed for {self.name}: {type(exc).__name__}: {exc}") from exc
        return self._store_predictions(ids, scores)

    def outputs(self, batch: ExampleBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward pass over ``batch``: the raw outputs (on the device, for a loss) and the
        (n, classes) scores on the CPU. Nothing is cached: this is the dataset pass's step, which
        keeps its own records. Run it on :attr:`compute`."""
        try:
            inputs = self.model_inputs(batch.inputs)
            extra = as_tuple(batch.additional_args) or ()
            with self.lock, torch.inference_mode():  # no autograd bookkeeping at all: a prediction pass
                out = self.forward(*inputs, *extra)
            scores = self._scores_of(out, len(batch))
        except (ValidationError, ComputationError, Cancelled):
            raise
        except Exception as exc:  # the user's model or transforms failed
            raise ComputationError(f"prediction failed for {self.name}: {type(exc).__name__}: {exc}") from exc
        return out.detach(), scores

    def _store_predictions(self, ids: Sequence[Hashable], scores: torch.Tensor) -> list[Prediction]:
        """The top-k of each row, cached by example id; a row that is not finite is that example's error."""
        k = min(TOP_K_MAX, scores.shape[1])
        values, indices = torch.topk(scores, k, dim=1)
        finite = torch.isfinite(scores).all(dim=1).tolist()
        out = []
        for ex_id, idx, val, ok in zip(ids, indices.tolist(), values.tolist(), finite):
            if not ok:  # not cached: it is the model's answer, but nothing to show
                out.append(
                    Prediction(
                        [],
                        [],
                        error=f"prediction failed for {self.name}: the model's output for "
                        "this example is not finite (NaN or infinity)",
                    )
                )
                continue
            p = Prediction(idx, val)
            self.predictions.put(ex_id, p)
            out.append(p)
        return out

    # ------------------------------------------------------------ attribution
    def _explain(
        self,
        spec: MethodSpec,
        params: dict[str, Any],
        key: str,
        batch: ExampleBatch,
        targets: Sequence[int | None],
        shared: dict[Any, Any],
        forward: CancellableForward,
    ) -> list[tuple[Explanation | None, str | None]]:
        """(explanation, error) per example: from the cache, or computed in batched captum calls."""

        def compute(part: ExampleBatch, part_targets: list[int | None]) -> list[Explanation]:
            return self._cached_or_attributed(spec, params, key, part, part_targets, shared, forward)

        return self._isolated(compute, batch, targets)

    def _cached_or_attributed(
        self,
        spec: MethodSpec,
        params: dict[str, Any],
        key: str,
        batch: ExampleBatch,
        targets: list[int | None],
        shared: dict[Any, Any],
        forward: CancellableForward,
    ) -> list[Explanation | Failure]:
        """Each example's explanation from the cache, the missing ones in batched captum calls (stored)."""
        found: list[Explanation | Failure | None] = [self.results.get((i, key, t)) for i, t in zip(batch.ids, targets)]
        missing = [j for j, exp in enumerate(found) if exp is None]
        fps: dict[int, str] = {}
        if missing and self.store is not None:
            sub = batch.select(missing)
            fps = dict(zip(missing, fingerprints(sub)))
            stored = self.store.explanations([(fps[j], key, targets[j]) for j in missing])
            still = []
            for j in missing:
                hit = stored.get((fps[j], key, targets[j]))
                if hit is None:
                    still.append(j)
                    continue
                exp = Explanation(target=targets[j], maps=hit[0], contributions=hit[1], key=key)
                self.results.put((batch.ids[j], key, targets[j]), exp, exp.nbytes())
                found[j] = exp
            missing = still
        if missing:
            sub = batch.select(missing)
            sub_targets = [targets[j] for j in missing]
            computed: list[Explanation | Failure] = []
            for rows, part, inputs in self._calls(spec, params, sub):
                forward.check()
                part_targets = sub_targets[rows]
                attrs = self.attribute(
                    spec, params, part, _all_or_none(part_targets), inputs=inputs, shared=shared, forward=forward
                )
                computed.extend(self._store_explanations(spec, key, part.ids, part_targets, attrs, shared.get(KEEP)))
            for j, exp in zip(missing, computed):
                found[j] = exp
            if self.store is not None:
                self.store.save_explanations(
                    [
                        ((fps[j], key, targets[j]), exp.maps, exp.contributions)
                        for j, exp in zip(missing, computed)
                        if isinstance(exp, Explanation)
                    ]
                )
        return found  # type: ignore[return-value]

    @on_compute_thread
    def attribute(
        self,
        spec: MethodSpec,
        params: dict[str, Any],
        batch: ExampleBatch,
        targets: Sequence[int] | None,
        *,
        inputs: tuple[torch.Tensor, ...] | None = None,
        forward: Callable[..., torch.Tensor] | None = None,
        shared: dict[Any, Any] | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Raw captum attributions of a batch in one call (per-example targets), not cached.

        ``inputs`` (the batch already transformed), ``forward`` (the function captum calls)
        and ``shared`` (what the calls of one request share, such as a SHAP baseline
        distribution) may be passed in by :meth:`run`, which splits a request into calls.
        """
        if inputs is None:
            inputs = self.model_inputs(batch.inputs)
        target_tensor = None
        if targets is not None:
            target_tensor = torch.as_tensor(list(targets), dtype=torch.long, device=self.device)
        seed = spec.seed(params)
        ctx = AttributionContext(
            model=self.model,
            forward=forward or self.forward,
            inputs=inputs,
            targets=target_tensor,
            additional_args=as_tuple(batch.additional_args),
            params=params,
            image_inputs=self.image_inputs,
            internal_batch_size=self.rows_per_pass(inputs),
            resolve_layer=self.resolve_layer,
            features=self.features,
            display_inputs=batch.inputs,
            ids=batch.ids,
            seed=seed,
            device=self.device,
            shared=shared if shared is not None else {},
        )
        # Only randomized methods touch the process-wide generators (and then one at a time).
        rngs = (
            seeded_rngs(seed, cpu_only=self.device.type == "cpu", numpy=spec.numpy_rng)
            if spec.randomized
            else contextlib.nullcontext()
        )
        with self.lock, rngs:
            try:
                result = spec.run(ctx)
            except (ValidationError, Cancelled):
                raise
            except Exception as exc:  # the model or captum failed: report, keep serving
                log.warning("%s failed on %s: %s", spec.name, self.name, exc, exc_info=True)
                raise ComputationError(f"{spec.label} failed for {self.name}: {type(exc).__name__}: {exc}") from exc
        if isinstance(result, torch.Tensor):
            result = (result,)
        if any(r.dim() == 0 or r.shape[0] != len(batch) for r in result):  # never index past what captum gave
            got = [tuple(r.shape) for r in result]
            raise ComputationError(
                f"{spec.label} failed for {self.name}: attributions of shape {got} for {len(batch)} example(s)"
            )
        return tuple(r.detach() for r in result)

    def rows_per_pass(self, inputs: Sequence[torch.Tensor]) -> int:
        """Rows of one forward pass for the methods that batch their own passes: at most
        ``internal_batch_size``, and at most ``PASS_INPUT_BYTES`` of model inputs."""
        return max(1, min(self.internal_batch_size, PASS_INPUT_BYTES // max(1, _row_bytes(inputs))))

    def examples_per_call(self, spec: MethodSpec, params: dict[str, Any], inputs: Sequence[torch.Tensor]) -> int:
        """How many examples one captum call attributes: as many as keep the rows of each of its
        forward passes (rows per example x examples) within ``internal_batch_size``. An
        example adds ``n_steps`` rows to Integrated Gradients' passes, but only
        ``perturbations_per_eval`` to Occlusion's (whatever its window count).

        Beyond that a bigger call is no faster, and on a CPU slower: measured with 64 small
        images, Integrated Gradients (50 steps) took 1.5x as long in one call as in one call per
        example, because captum keeps every step's gradients of the whole call before summing.
        The bound also caps memory for methods that have no batch size of their own. Large
        inputs are bounded by bytes too (``CALL_INPUT_BYTES``): with resnet18 at 224x224,
        Integrated Gradients (16 steps) on 4 examples in one call (64 rows, 38 MB of inputs)
        took 11.4 s, 3.1 s of it in a million page faults for its activations; one example
        per call (16 rows) took 9.0 s.

        A randomized method's draws for one example depend on the batch it runs in, so it runs
        one example per call: each result then depends only on the example and the seed, and
        a page, a re-attribution and a cache hit all show the same map (captum called on that
        example alone after seeding gives it too).
        """
        if spec.randomized:
            return 1
        hw = self._image_hw(inputs)
        try:
            evals = int((spec.rows or spec.cost)(params, hw))
        except Exception:  # an estimate that cannot be made: batch as before
            evals = 1
        row_bytes = _row_bytes(inputs)
        rows = max(1, min(self.internal_batch_size, CALL_INPUT_BYTES // max(1, row_bytes)))
        return max(1, rows // max(1, evals))

    def call_size(self, spec: MethodSpec, params: dict[str, Any], inputs: Sequence[torch.Tensor], n: int) -> int:
        """Examples per captum call for a batch of ``n``: the static rule (:meth:`examples_per_call`)
        to start with, then what :class:`~insights_app.call_sizes.CallSizes` measured fastest for
        this method, its arguments and this input shape, within a memory bound (captum keeps every
        row's gradients of a call: at most ``CALL_GRADIENT_BYTES`` of them)."""
        rule = self.examples_per_call(spec, params, inputs)
        if spec.randomized or n <= rule:
            return rule
        hw = self._image_hw(inputs)
        try:
            evals = max(1, int((spec.rows or spec.cost)(params, hw)))
        except Exception:
            return rule
        row_bytes = _row_bytes(inputs)
        cap = max(rule, CALL_GRADIENT_BYTES // max(1, evals * row_bytes))
        key = (arguments_key(spec.fingerprint, params), tuple(tuple(x.shape[1:]) for x in inputs))
        return self.call_sizes.choose(key, rule, cap, n)

    def _calls(
        self, spec: MethodSpec, params: dict[str, Any], batch: ExampleBatch
    ) -> Iterator[tuple[slice, ExampleBatch, tuple[torch.Tensor, ...]]]:
        """The captum calls for a batch: (its rows, those examples, their model inputs).

        The whole batch is transformed once; each call gets its rows as views. Each call's time
        is recorded (after the consumer's work on it: the captum call) for :meth:`call_size`.
        """
        n = len(batch)
        chunk = self.call_size(spec, params, batch.inputs, n)
        key = (arguments_key(spec.fingerprint, params), tuple(tuple(x.shape[1:]) for x in batch.inputs))
        inputs = self.model_inputs(batch.inputs)
        for start in range(0, n, chunk):
            rows = slice(start, min(start + chunk, n))
            began = time.perf_counter()
            if rows == slice(0, n):
                yield rows, batch, inputs
            else:
                yield rows, batch.select(rows), tuple(x[rows] for x in inputs)
            if not spec.randomized:
                self.call_sizes.record(key, chunk, rows.stop - rows.start, time.perf_counter() - began)

    def _store_explanations(
        self,
        spec: MethodSpec,
        key: str,
        ids: Sequence[Hashable],
        targets: Sequence[int | None],
        attrs: tuple[torch.Tensor, ...],
        keep: KeptAttributions | None = None,
    ) -> list[Explanation | Failure]:
        """Reduce each example's attributions to what the page shows, and cache them; an example
        whose attribution is not finite gets a :class:`Failure` instead (nothing could show it).
        ``keep`` receives the full-resolution attributions too (see :meth:`run`)."""
        finite = torch.stack([torch.isfinite(a.reshape(a.shape[0], -1)).all(dim=1) for a in attrs]).all(dim=0).tolist()
        out: list[Explanation | Failure] = []
        for row, (ex_id, target) in enumerate(zip(ids, targets)):
            if not finite[row]:
                out.append(
                    Failure(
                        f"{spec.label} failed for {self.name}: the attribution of this example is not "
                        "finite (NaN or infinity)"
                    )
                )
                continue
            per_feature = [a[row] for a in attrs]
            if keep is not None:
                keep[(ex_id, target)] = tuple(per_feature)
            exp = Explanation(
                target=target,
                maps=[f.reduce_attribution(a) for f, a in zip(self.features, per_feature)],
                contributions=contributions(per_feature),
                key=key,
            )
            self.results.put((ex_id, key, target), exp, exp.nbytes())
            out.append(exp)
        return out

    # ------------------------------------------------------------ one forward pass for both
    def _shared_forward(
        self,
        spec: MethodSpec,
        params: dict[str, Any],
        key: str,
        batch: ExampleBatch,
        requested: Sequence[int | None],
        shared: dict[Any, Any],
        forward: CancellableForward,
    ) -> list[Result] | None:
        """Predictions and attributions from one forward pass per captum call.

        For methods whose first forward pass is on the unchanged inputs (Saliency and Input x
        Gradient differentiate it; Occlusion and Feature Ablation compare against it), the
        prediction pass *is* that pass: it is run here (with gradients when the method
        needs them), gives the predictions and so the targets, and captum is handed a
        forward function that answers its call on those same input tensors with that
        output. The page then costs what the captum call alone costs.

        Returns None when the model or captum fails; :meth:`run` then predicts and explains
        separately, which isolates the failing examples (what succeeded here is cached).
        """
        with_grad = spec.first_forward == "grad"
        results: list[Result] = []
        try:
            with self.lock:
                for rows, part, inputs in self._calls(spec, params, batch):
                    if with_grad:
                        inputs = tuple(x.detach().requires_grad_() if x.is_floating_point() else x for x in inputs)
                    call_args = inputs + (as_tuple(part.additional_args) or ())
                    with torch.set_grad_enabled(with_grad):
                        out = forward(*call_args)
                    preds = self._store_predictions(part.ids, self._scores_of(out, len(part)))
                    if any(p.error for p in preds):
                        raise ComputationError("a prediction that cannot be shown")  # isolated on the two-step path
                    targets = [self.target(p, requested[rows.start + j]) for j, p in enumerate(preds)]
                    attrs = self.attribute(
                        spec,
                        params,
                        part,
                        _all_or_none(targets),
                        inputs=inputs,
                        forward=ReusedForward(forward, call_args, out),
                        shared=shared,
                    )
                    exps = self._store_explanations(spec, key, part.ids, targets, attrs, shared.get(KEEP))
                    if self.store is not None:
                        self._save(part, preds, targets, exps, key)
                    results.extend(
                        Result(i, p, None, e.message) if isinstance(e, Failure) else Result(i, p, e)
                        for i, p, e in zip(part.ids, preds, exps)
                    )
        except (ValidationError, Cancelled):
            raise
        except Exception as exc:  # isolate on the two-step path (what succeeded is cached)
            log.info("one-pass %s failed on %s (%s); predicting and explaining separately", spec.name, self.name, exc)
            return None
        return results


def fingerprints(batch: ExampleBatch) -> list[str]:
    """The store's fingerprint of each example of ``batch``, hashed once per request's batch (the
    prediction and the attribution lookups, and the writes, share it)."""
    return batch.memo(lambda b: example_fingerprints(b.inputs, b.additional_args))


class CancellableForward:
    """The model's forward function for one run, asking ``cancel`` before each pass (captum makes
    many per call: a cancelled run stops within one pass, not at the end of the call)."""

    def __init__(self, forward: Callable[..., torch.Tensor], cancel: Cancel | None) -> None:
        self._forward = forward
        self.cancel = cancel

    def check(self) -> None:
        raise_if_cancelled(self.cancel)

    def __call__(self, *inputs: Any) -> torch.Tensor:
        self.check()
        return self._forward(*inputs)


def _row_bytes(inputs: Sequence[torch.Tensor]) -> int:
    """Bytes of one example's model inputs, counted as float32 (what the batching bounds measure)."""
    return 4 * sum(int(x[0].numel()) for x in inputs if x.dim() > 0 and x.shape[0] > 0)


def _all_or_none(targets: Sequence[int | None]) -> list[int] | None:
    """Targets for captum: every example's class, or None when the model has no class outputs."""
    return None if any(t is None for t in targets) else list(targets)  # type: ignore[arg-type]


class ReusedForward:
    """A forward function that answers its first call on given input tensors with a given output.

    Identity, not equality, decides: the output was computed from exactly these tensor
    objects (with its autograd graph when gradients were on), so it is the output a new
    forward pass would give. Any other call runs the model. The output is released once
    used, so its graph is freed with captum's backward pass.
    """

    def __init__(self, forward: Callable[..., torch.Tensor], args: tuple[Any, ...], output: torch.Tensor) -> None:
        self._forward = forward
        self._args: tuple[Any, ...] = args
        self._output: torch.Tensor | None = output
        self.reused = False

    def __call__(self, *args: Any) -> torch.Tensor:
        if self._output is not None and len(args) == len(self._args) and all(a is b for a, b in zip(args, self._args)):
            out, self._output, self._args = self._output, None, ()
            self.reused = True
            return out
        return self._forward(*args)


@contextlib.contextmanager
def seeded_rngs(seed: int, cpu_only: bool = False, numpy: bool = True) -> Iterator[None]:
    """Seed torch's (and numpy's) global generators for one captum call, then restore them.

    Captum draws noise from torch and, for Gradient SHAP, baseline indices and path
    coefficients from numpy; seeding makes randomized methods reproducible (and so
    cacheable). Those generators are process-wide, so two models computing at once would
    draw from (and re-seed) each other's streams: the results would depend on what else is
    running. One seeded computation at a time holds them. ``cpu_only``: the computation runs
    on the CPU, so only the CPU generator needs seeding (``torch.manual_seed`` also visits
    every other backend, which costs ~0.4 ms per call). ``numpy=False`` leaves numpy's
    generator alone: saving and restoring its state costs ~0.1 ms, paid per example.
    """
    with _PROCESS_RNG_LOCK:
        np_state = np.random.get_state() if numpy else None
        # What torch.random.fork_rng(devices=[]) saves and restores, without its ~2 ms per call
        # (randomized methods run one example per call, so this is paid per example).
        torch_state = torch.get_rng_state()
        try:
            if cpu_only:
                torch.default_generator.manual_seed(seed)
            else:
                torch.manual_seed(seed)
            if numpy:
                np.random.seed(seed % 2**32)
            yield
        finally:
            torch.set_rng_state(torch_state)
            if np_state is not None:
                np.random.set_state(np_state)
