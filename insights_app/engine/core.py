"""Batched prediction and attribution for one model, behind one entry point: :meth:`Engine.run`.

An :class:`Engine` owns one model. ``run(examples, spec, params, targets)`` gives each
example's prediction and, when a method is asked for, its explanation (or the error that
kept it from one). How it is done is decided in this package: one forward pass shared by the
prediction and the attribution where the method allows it (:func:`.forward.shared_forward`),
batches of examples per captum call (:class:`~insights_app.engine.call_sizes.CallPolicy`), the
predictions and explanations read through memory and the store (:mod:`.readthrough`), and one
strategy for failures (:func:`.results.isolated`: the whole batch, then each example alone, so
that only the examples the model or captum cannot handle fail). Captum methods install hooks
on the model, so one computation per model runs at a time, on the model's own compute thread.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch

from ..cache import LRUCache
from ..cancel import Cancel, raise_if_cancelled
from ..dataset import Example, ExampleBatch
from ..errors import Cancelled, ComputationError, ValidationError
from ..features import BaseFeature, ImageFeature, transform_batch
from ..limits import TOP_K_MAX
from ..methods import AttributionContext, MethodSpec
from ..methods.layers import resolve_layer
from ..tensors import as_tuple, model_device, plain
from .call_sizes import CallPolicy, CallSizes
from .forward import CancellableForward, all_or_none, shared_forward
from .keys import Subsets, arguments_key, fingerprints
from .readthrough import Backing, ReadThrough
from .results import Explanation, Failure, KeptAttributions, Prediction, Result, isolated, reduced
from .seeding import seeded_rngs
from .worker import ComputeThread, on_compute_thread

if TYPE_CHECKING:
    from ..metrics.options import MetricOptions
    from ..store import ModelStore

log = logging.getLogger("insights_app.engine")  # one log for the engine, its name as before the split
ExplanationKey = tuple[Hashable, str, int | None]  # (example id, arguments_key, target) in memory
StoredExplanationKey = tuple[str, str, int | None]  # (example fingerprint, arguments_key, target) in the store


def _no_error(p: Prediction) -> bool:
    return not p.error


def _explanation_bytes(e: Explanation | Failure) -> int:
    return e.nbytes() if isinstance(e, Explanation) else 64


def _is_explanation(e: Explanation | Failure) -> bool:
    return isinstance(e, Explanation)


class Engine:
    """Prediction and attribution for one model over a set of features."""

    def __init__(
        self,
        model: torch.nn.Module,
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
        store: ModelStore | None = None,
    ) -> None:
        self.model = model
        self.features = list(features)
        self.score_func = score_func
        self.name = name
        self.use_label_for_attr = use_label_for_attr
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
        self.results = LRUCache(cache_entries, cache_bytes)  # explanations and metrics
        self.predictions = LRUCache(prediction_entries, max_bytes=2**62)
        self._predicted: ReadThrough[Hashable, Prediction] = ReadThrough(self.predictions, keep=_no_error)
        self._explained: ReadThrough[ExplanationKey, Explanation | Failure] = ReadThrough(
            self.results, size=_explanation_bytes, keep=_is_explanation
        )
        self.image_inputs = tuple(i for i, f in enumerate(self.features) if isinstance(f, ImageFeature))
        self.resolve_layer = functools.partial(resolve_layer, model)
        # A persistent store (insights_app.store.ModelStore) behind the in-memory caches, or None.
        self.store = store
        # Examples per captum call and rows per pass; call_sizes is what it measured per method and shape.
        self.call_policy = CallPolicy(max(1, int(internal_batch_size)), self.image_inputs)
        self.call_sizes: CallSizes = self.call_policy.sizes

    @property
    def internal_batch_size(self) -> int:
        """Rows of one forward pass at most (the methods that batch their own passes)."""
        return self.call_policy.internal_batch_size

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
        requested: list[int | None] = list(targets) if targets is not None else [None] * len(examples)
        if len(requested) != len(examples):
            raise ValueError(f"{len(requested)} targets for {len(examples)} examples")
        # Asked before every pass of the forward function, and before every captum call (the methods
        # that run the module itself, DeepLift and Guided Backprop, make one pass per call).
        forward = CancellableForward(self.forward, cancel)
        if isinstance(examples, ExampleBatch):
            return self._run_batch(examples, spec, params, requested, forward, keep_attributions)
        results: list[Result] = []
        order: list[int] = []
        for index, batch in ExampleBatch.groups(examples):
            order.extend(index)
            results.extend(
                self._run_batch(batch, spec, params, [requested[i] for i in index], forward, keep_attributions)
            )
        by_position = dict(zip(order, results))
        return [by_position[i] for i in range(len(examples))]

    def _run_batch(
        self,
        batch: ExampleBatch,
        spec: MethodSpec | None,
        params: dict[str, Any] | None,
        requested: list[int | None],
        forward: CancellableForward,
        keep: KeptAttributions | None,
    ) -> list[Result]:
        """:meth:`run` for examples of one input shape."""
        if not len(batch):
            return []
        if spec is None:
            return [Result(i, p, None, p.error) for i, p in zip(batch.ids, self._predictions(batch, forward))]
        params = spec.validate({}) if params is None else params
        too_costly = self.call_policy.cost_problem(spec, params, batch.inputs)
        if too_costly:  # predicted, not attributed
            return [
                Result(i, p, None, p.error or too_costly) for i, p in zip(batch.ids, self._predictions(batch, forward))
            ]
        key = arguments_key(spec.fingerprint, params)
        shared: dict[Any, Any] = {}  # what the captum calls of this batch share (a SHAP baseline distribution)
        if spec.first_forward and not any(i in self.predictions for i in batch.ids) and not self._stored_any(batch):
            both = shared_forward(self, spec, params, key, batch, requested, shared, forward, keep)
            if both is not None:
                return both
        preds = self._predictions(batch, forward)
        results = [Result(i, p, None, p.error) for i, p in zip(batch.ids, preds)]
        ok = [j for j, p in enumerate(preds) if not p.error]  # the model failed on the others
        if ok:
            chosen = [self.target(preds[j], requested[j]) for j in ok]

            def explained(part: ExampleBatch, part_targets: list[int | None]) -> list[Explanation | Failure]:
                return self._explanations(spec, params, key, part, part_targets, shared, forward, keep)

            for j, (exp, err) in zip(ok, isolated(explained, batch.select(ok), chosen)):
                results[j].explanation, results[j].error = exp, err
        return results

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

    def outputs(self, batch: ExampleBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward pass over ``batch``: the raw outputs (on the device, for a loss) and the
        (n, classes) scores on the CPU. Nothing is cached: this is the dataset pass's step, which
        keeps its own records. Run it on :attr:`compute`."""
        return self._pass(batch, self.forward)

    def _pass(self, batch: ExampleBatch, forward: Callable[..., torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """One prediction pass: (raw outputs, scores); the user's model or transforms failing is a
        :class:`ComputationError`."""
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
        return out.detach(), scores

    # ------------------------------------------------------------ quality metrics
    @on_compute_thread
    def metrics(
        self,
        examples: Sequence[Example],
        results: Sequence[Result],
        spec: MethodSpec,
        params: dict[str, Any],
        options: MetricOptions,
        cancel: Cancel | None = None,
        attributions: KeptAttributions | None = None,
    ) -> list[dict[str, Any]]:
        """The quality metrics (``insights_app.metrics``) of the explanations in ``results`` (of
        :meth:`run` on ``examples`` with ``spec`` and ``params``): one dictionary per example,
        empty where there is no explanation to judge. ``attributions``: what that run kept
        (its ``keep_attributions``), used instead of attributing those examples again."""
        from ..metrics.evaluate import metrics_of

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
                    index, metrics_of(self, spec, params, key, batch, exps, options, forward, attributions)
                ):
                    out[i] = values
        return out

    # ------------------------------------------------------------ prediction
    def _predictions(self, batch: ExampleBatch, forward: CancellableForward | None = None) -> list[Prediction]:
        """Top predictions: from memory (by example id) or the store, the missing ones in one pass."""
        subsets = Subsets(batch)

        def predict(part: ExampleBatch, ids: list[int]) -> Sequence[Prediction | Failure]:
            return self._top_k(self._pass(part, forward or self.forward)[1])

        def computed(rows: list[int]) -> list[Prediction]:
            sub = subsets(rows)
            out = []
            for ex_id, (pred, err) in zip(sub.ids, isolated(predict, sub, sub.ids)):
                if err is not None or pred is None:
                    log.warning("example %s on %s: %s", ex_id, self.name, err)
                    pred = Prediction([], [], error=err)  # not cached: the next request tries again
                out.append(pred)
            return out

        return self._predicted.get_many(batch.ids, computed, self._prediction_backing(subsets))

    def _prediction_backing(self, subsets: Subsets) -> Backing[str, Prediction] | None:
        """The store's predictions of a batch's examples (by fingerprint), or None without a store."""
        store = self.store
        if store is None:
            return None

        def read(fps: Sequence[str]) -> dict[str, Prediction]:
            return {fp: Prediction(*row) for fp, row in store.predictions(fps).items()}

        def write(rows: list[tuple[str, Prediction]]) -> None:
            store.save_predictions([(fp, p.indices, p.scores) for fp, p in rows])

        return Backing(lambda rows: fingerprints(subsets(rows)), read, write)

    def _stored_any(self, batch: ExampleBatch) -> bool:
        """Whether the store has a prediction of any of these examples (then the two-step path reads it)."""
        if self.store is None:
            return False
        return bool(self.store.predictions(fingerprints(batch)))

    def _top_k(self, scores: torch.Tensor) -> list[Prediction]:
        """The top-k of each row of scores; a row that is not finite is that example's error."""
        k = min(TOP_K_MAX, scores.shape[1])
        values, indices = torch.topk(scores, k, dim=1)
        finite = torch.isfinite(scores).all(dim=1).tolist()
        return [
            Prediction(idx, val)
            if ok
            else Prediction(
                [],
                [],
                error=f"prediction failed for {self.name}: the model's output for "
                "this example is not finite (NaN or infinity)",
            )
            for idx, val, ok in zip(indices.tolist(), values.tolist(), finite)
        ]

    # ------------------------------------------------------------ attribution
    def _explanations(
        self,
        spec: MethodSpec,
        params: dict[str, Any],
        key: str,
        batch: ExampleBatch,
        targets: list[int | None],
        shared: dict[Any, Any],
        forward: CancellableForward,
        keep: KeptAttributions | None,
    ) -> list[Explanation | Failure]:
        """Each example's explanation from memory or the store, the missing ones in batched captum calls."""
        subsets = Subsets(batch)

        def attributed(rows: list[int]) -> Iterator[Explanation | Failure]:
            sub, sub_targets = subsets(rows), [targets[j] for j in rows]
            for call, part, inputs in self._calls(spec, params, key, sub):
                forward.check()
                part_targets = sub_targets[call]
                attrs = self.attribute(
                    spec, params, part, all_or_none(part_targets), inputs=inputs, shared=shared, forward=forward
                )
                yield from reduced(
                    self.features, f"{spec.label} failed for {self.name}", key, part.ids, part_targets, attrs, keep
                )

        keys = [(i, key, t) for i, t in zip(batch.ids, targets)]
        return self._explained.get_many(keys, attributed, self._explanation_backing(subsets, key, targets))

    def _explanation_backing(
        self, subsets: Subsets, key: str, targets: Sequence[int | None]
    ) -> Backing[StoredExplanationKey, Explanation | Failure] | None:
        """The store's explanations of a batch's examples with these arguments and targets, or None."""
        store = self.store
        if store is None:
            return None

        def keys(rows: list[int]) -> list[StoredExplanationKey]:
            return [(fp, key, targets[j]) for fp, j in zip(fingerprints(subsets(rows)), rows)]

        def read(wanted: Sequence[StoredExplanationKey]) -> dict[StoredExplanationKey, Explanation | Failure]:
            return {
                k: Explanation(target=k[2], maps=maps, contributions=shares, key=key)
                for k, (maps, shares) in store.explanations(wanted).items()
            }

        def write(rows: list[tuple[StoredExplanationKey, Explanation | Failure]]) -> None:
            store.save_explanations([(k, e.maps, e.contributions) for k, e in rows if isinstance(e, Explanation)])

        return Backing(keys, read, write)

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

    # ------------------------------------------------------------ examples per call (insights_app.engine.call_sizes)
    def rows_per_pass(self, inputs: Sequence[torch.Tensor]) -> int:
        """Rows of one forward pass for the methods that batch their own passes (:class:`CallPolicy`)."""
        return self.call_policy.rows_per_pass(inputs)

    def examples_per_call(self, spec: MethodSpec, params: dict[str, Any], inputs: Sequence[torch.Tensor]) -> int:
        """How many examples one captum call attributes by the static rule (:class:`CallPolicy`)."""
        return self.call_policy.examples_per_call(spec, params, inputs)

    def call_size(self, spec: MethodSpec, params: dict[str, Any], inputs: Sequence[torch.Tensor], n: int) -> int:
        """Examples per captum call for a batch of ``n``: the static rule, then what was measured
        fastest for this method, its arguments and this input shape (:class:`CallPolicy`)."""
        return self.call_policy.call_size(spec, params, arguments_key(spec.fingerprint, params), inputs, n)

    def _calls(
        self, spec: MethodSpec, params: dict[str, Any], key: str, batch: ExampleBatch
    ) -> Iterator[tuple[slice, ExampleBatch, tuple[torch.Tensor, ...]]]:
        """The captum calls for a batch (transformed once; each call gets its rows as views)."""
        return self.call_policy.calls(spec, params, key, batch, self.model_inputs(batch.inputs))
