"""Batched prediction and attribution for one model, with a bounded result cache.

An :class:`Engine` owns one model. It predicts many examples in one forward pass,
attributes many examples per captum call (each to its own target), reduces the
attributions to what the page shows, and caches those per (example, method, arguments,
target). Captum methods install hooks on the model, so one computation per model runs
at a time (``Engine.lock``); different models compute in parallel.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Dict, Hashable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .features import BaseFeature, ImageFeature
from .methods import AttributionContext, MethodSpec, ValidationError
from .worker import ComputeThread, on_compute_thread

log = logging.getLogger(__name__)
TOP_K_MAX = 20
# Model-input bytes (float32) one captum call may expand to, over all its rows: beyond this,
# activations too large for the allocator to keep cost page faults on every call.
CALL_INPUT_BYTES = 16 * 2**20
# Guards torch's and numpy's default generators, which are themselves process-wide state.
_PROCESS_RNG_LOCK = threading.Lock()


class ComputationError(RuntimeError):
    """The model or captum failed on some examples; the message is shown to the user."""


@dataclass
class Prediction:
    """Top-k scores of one example under one model (small: cached for every scanned example)."""

    indices: List[int]
    scores: List[float]
    error: Optional[str] = None  # the model raised on this example (indices and scores are then empty)

    def top(self, k: int) -> List[Tuple[int, float]]:
        return list(zip(self.indices[:k], self.scores[:k]))


@dataclass
class Explanation:
    """One example's attribution under one model, reduced to what the page shows."""

    target: Optional[int]
    maps: List[np.ndarray]  # per feature: (H, W) for images, (T,) tokens, (K,) categories
    contributions: List[float]  # per feature, sums to 1 when anything is attributed

    def nbytes(self) -> int:
        return sum(int(m.nbytes) for m in self.maps) + 64


class LRUCache:
    """A thread-safe LRU mapping bounded by entry count and by bytes."""

    def __init__(self, max_entries: int, max_bytes: int = 512 * 2**20) -> None:
        self.max_entries = max(0, int(max_entries))
        self.max_bytes = int(max_bytes)
        self._data: "OrderedDict[Hashable, Tuple[Any, int]]" = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Any:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: Hashable, value: Any, size: int = 1) -> None:
        if self.max_entries == 0 or size > self.max_bytes:
            return
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._data[key] = (value, size)
            self._bytes += size
            while len(self._data) > self.max_entries or self._bytes > self.max_bytes:
                _, (_, s) = self._data.popitem(last=False)
                self._bytes -= s

    def __contains__(self, key: Hashable) -> bool:
        """Whether ``key`` is cached (no hit or miss is counted, the order is kept)."""
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    @property
    def nbytes(self) -> int:
        return self._bytes


def arguments_key(method: str, params: Dict[str, Any]) -> str:
    """A stable, hashable key for a method and its validated parameters."""
    blob = json.dumps([method, params], sort_keys=True, default=list)
    return hashlib.sha1(blob.encode()).hexdigest()


def contributions(attributions: Sequence[torch.Tensor]) -> List[float]:
    """Each feature's share of the total absolute attribution (sums to 1 if any is non-zero)."""
    totals = [float(a.detach().abs().sum()) for a in attributions]
    total = sum(totals)
    if not math.isfinite(total) or total <= 0.0:
        return [0.0 for _ in totals]
    return [t / total for t in totals]


def last_conv_layer(model: torch.nn.Module) -> Tuple[str, torch.nn.Module]:
    """The last Conv2d registered in the model: the usual GradCAM layer."""
    found = None
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            found = (name, module)
    if found is None:
        raise ValidationError("arguments.layer", "the model has no Conv2d layer; name a layer explicitly")
    return found


def conv_layer_names(model: Any) -> List[str]:
    if not isinstance(model, torch.nn.Module):
        return []
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]


def slice_additional_args(args: Any, index: Sequence[int], batch_size: int) -> Any:
    """Select examples from additional forward args whose first dimension is the batch."""
    if args is None:
        return None
    if isinstance(args, torch.Tensor):
        return args[list(index)] if args.dim() > 0 and args.shape[0] == batch_size else args
    if isinstance(args, tuple):
        return tuple(slice_additional_args(a, index, batch_size) for a in args)
    if isinstance(args, list):
        return [slice_additional_args(a, index, batch_size) for a in args]
    return args


def transform_batch(feature: BaseFeature, batch: torch.Tensor) -> torch.Tensor:
    """``feature.transform_input(batch)``, in one call per transform when each one computes
    the same on a batch as example by example: torchvision's ``Normalize`` on (C, H, W)
    examples, or any transform with an ``apply_to_batch(batch)`` method. Calling a transform
    once per example can cost more than the attribution of a small image."""
    transforms = feature.input_transforms
    if not transforms or batch.dim() < 2 or not batch.is_floating_point():
        return feature.transform_input(batch)
    tv = sys.modules.get("torchvision.transforms")
    steps = []
    for t in transforms:
        if callable(getattr(t, "apply_to_batch", None)):
            steps.append(t.apply_to_batch)
        elif tv is not None and type(t) is tv.Normalize and not t.inplace and batch.dim() >= 4:
            steps.append(t)
        else:
            return feature.transform_input(batch)
    for step in steps:
        batch = step(batch)
    return batch


def _as_tuple(args: Any) -> Any:
    if args is None or isinstance(args, tuple):
        return args
    return (args,)


class Engine:
    """Prediction, baselines and attribution for one model over a set of features."""

    def __init__(
        self,
        model: Any,
        features: Sequence[BaseFeature],
        score_func: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        *,
        name: str = "model",
        device: Optional[torch.device | str] = None,
        use_label_for_attr: bool = True,
        internal_batch_size: int = 64,
        cache_entries: int = 1024,
        cache_bytes: int = 512 * 2**20,
        prediction_entries: int = 200_000,
    ) -> None:
        self.model = model
        self.features = list(features)
        self.score_func = score_func
        self.name = name
        self.use_label_for_attr = use_label_for_attr
        self.internal_batch_size = max(1, int(internal_batch_size))
        if device is None:
            device = self._model_device()
        self.device = torch.device(device)
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

    # ------------------------------------------------------------ inputs
    def _model_device(self) -> torch.device:
        if isinstance(self.model, torch.nn.Module):
            for p in self.model.parameters():
                return p.device
            for b in self.model.buffers():
                return b.device
        return torch.device("cpu")

    def forward(self, *inputs: Any) -> torch.Tensor:
        out = self.model(*inputs)
        if isinstance(out, (tuple, list)):
            out = out[0]
        if hasattr(out, "as_subclass") and type(out) is not torch.Tensor:
            out = out.as_subclass(torch.Tensor)  # fastai tensor subclasses never reach captum
        return out

    def model_inputs(self, raw: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        """Raw (display-space) batches, one per feature -> model inputs on the device."""
        if len(raw) != len(self.features):
            raise ValidationError("inputs", f"{len(raw)} inputs for {len(self.features)} features")
        return tuple(transform_batch(f, x).to(self.device) for f, x in zip(self.features, raw))

    # ------------------------------------------------------------ prediction
    @on_compute_thread
    def scores(self, inputs: Tuple[torch.Tensor, ...], additional_args: Any = None) -> torch.Tensor:
        """Scores (score_func of the outputs) for a batch, in one forward pass."""
        extra = _as_tuple(additional_args) or ()
        with self.lock, torch.no_grad():
            out = self.forward(*inputs, *extra)
        return self._scores_of(out)

    def _scores_of(self, out: torch.Tensor) -> torch.Tensor:
        """Model outputs -> (B, classes) float scores on the CPU (score_func applied)."""
        with torch.no_grad():
            out = out.detach()
            if self.score_func is not None:
                out = self.score_func(out)
        out = out.detach().float().cpu()
        if out.dim() == 1:
            out = out[:, None]
        return out.reshape(out.shape[0], -1)

    @on_compute_thread
    def predict(self, ids: Sequence[Hashable], raw: Sequence[torch.Tensor], additional_args: Any = None) -> List[Prediction]:
        """Top predictions for examples, cached by example id; missing ones in one pass."""
        found: Dict[int, Prediction] = {}
        missing = []
        for i, ex_id in enumerate(ids):
            p = self.predictions.get(ex_id)
            if p is None:
                missing.append(i)
            else:
                found[i] = p
        if missing:
            for i, p in zip(missing, self._predict_rows(ids, missing, raw, additional_args)):
                found[i] = p
        return [found[i] for i in range(len(ids))]

    def _predict_rows(self, ids: Sequence[Hashable], rows: List[int], raw: Sequence[torch.Tensor],
                      additional_args: Any) -> List[Prediction]:
        """Predict some rows in one pass; if the model raises, retry them one by one so that
        only the examples it cannot handle fail (their Prediction carries the error, uncached)."""
        sub = tuple(x[rows] for x in raw)
        extra = slice_additional_args(additional_args, rows, len(ids))
        try:
            scores = self.scores(self.model_inputs(sub), extra)
        except ValidationError:
            raise
        except Exception as exc:  # the user's model or transforms failed: isolate, report, keep serving
            if len(rows) > 1:
                return [p for r in rows for p in self._predict_rows(ids, [r], raw, additional_args)]
            log.warning("prediction failed for example %s on %s: %s", ids[rows[0]], self.name, exc)
            return [Prediction([], [], error=f"prediction failed for {self.name}: {type(exc).__name__}: {exc}")]
        return self._store_predictions([ids[i] for i in rows], scores)

    def target(self, pred: Prediction, requested: Optional[int] = None) -> Optional[int]:
        """The class an example is attributed to: the one asked for, else its top prediction
        (None for models whose output is not indexed by class, ``use_label_for_attr=False``)."""
        if not self.use_label_for_attr:
            return None
        return requested if requested is not None else pred.indices[0]

    def _store_predictions(self, ids: Sequence[Hashable], scores: torch.Tensor) -> List[Prediction]:
        k = min(TOP_K_MAX, scores.shape[1])
        values, indices = torch.topk(scores, k, dim=1)
        out = []
        for ex_id, idx, val in zip(ids, indices.tolist(), values.tolist()):
            p = Prediction(idx, val)
            self.predictions.put(ex_id, p)
            out.append(p)
        return out

    # ------------------------------------------------------------ baselines
    def baselines(self, kind: str, ids: Sequence[Hashable], raw: Sequence[torch.Tensor], seed: int = 0) -> Tuple[torch.Tensor, ...]:
        """Per-example baselines, made in display space then passed through input_transforms.

        Random baselines are seeded per example, so an example's baseline does not depend
        on which other examples share its batch.
        """
        out = []
        for feature, x in zip(self.features, raw):
            if kind == "zeros" or (kind == "feature" and not feature.baseline_transforms) or not x.is_floating_point():
                base = torch.zeros_like(x)  # what every row would be, without a Python loop
            else:
                base = torch.stack([self._baseline_example(kind, feature, x[j], ids[j], seed) for j in range(x.shape[0])])
            out.append(transform_batch(feature, base).to(self.device))
        return tuple(out)

    def _baseline_example(self, kind: str, feature: BaseFeature, x: torch.Tensor, ex_id: Hashable, seed: int) -> torch.Tensor:
        if kind == "feature":
            if feature.baseline_transforms:
                return feature.baseline_transforms[0](x).to(x.dtype)
            return torch.zeros_like(x)
        if kind == "zeros" or not x.is_floating_point():
            return torch.zeros_like(x)
        if kind == "blur":
            if isinstance(feature, ImageFeature) and x.dim() == 3:
                return blur_image(x)
            return torch.zeros_like(x)
        gen = torch.Generator().manual_seed(_example_seed(seed, ex_id))
        lo, hi = float(x.min()), float(x.max())
        if hi <= lo:
            hi = lo + 1.0
        if kind == "uniform":
            return (torch.rand(x.shape, generator=gen) * (hi - lo) + lo).to(x.dtype)
        if kind == "gaussian":
            noise = torch.randn(x.shape, generator=gen) * float(x.float().std()) + float(x.float().mean())
            return noise.clamp(lo, hi).to(x.dtype)
        raise ValidationError("arguments.baseline", f"unknown baseline {kind!r}")

    def baseline_distribution(self, kind: str, raw_example_shapes: Sequence[Tuple[torch.Size, torch.dtype]], n: int, seed: int) -> Tuple[torch.Tensor, ...]:
        """``n`` baselines per feature, independent of the examples (for the SHAP methods)."""
        gen = torch.Generator().manual_seed(int(seed))
        out = []
        for feature, (shape, dtype) in zip(self.features, raw_example_shapes):
            size = (n,) + tuple(shape)
            if kind == "zeros" or not dtype.is_floating_point:
                base = torch.zeros(size, dtype=dtype)
            elif kind == "uniform":
                base = torch.rand(size, generator=gen).to(dtype)
            elif kind == "gaussian":
                base = (torch.randn(size, generator=gen) * 0.25 + 0.5).clamp(0, 1).to(dtype)
            else:
                raise ValidationError("arguments.baseline", f"{kind!r} cannot form a baseline distribution")
            out.append(transform_batch(feature, base).to(self.device))
        return tuple(out)

    # ------------------------------------------------------------ attribution
    def resolve_layer(self, name: str) -> torch.nn.Module:
        if not isinstance(self.model, torch.nn.Module):
            raise ValidationError("method", "layer methods need an nn.Module model")
        if not name:
            return last_conv_layer(self.model)[1]
        modules = dict(self.model.named_modules())
        if name not in modules:
            raise ValidationError("arguments.layer", f"the model has no layer named {name!r}")
        return modules[name]

    @on_compute_thread
    def attribute(
        self,
        spec: MethodSpec,
        params: Dict[str, Any],
        ids: Sequence[Hashable],
        raw: Sequence[torch.Tensor],
        targets: Optional[Sequence[int]],
        additional_args: Any = None,
        *,
        inputs: Optional[Tuple[torch.Tensor, ...]] = None,
        forward: Optional[Callable[..., torch.Tensor]] = None,
        distribution: Optional[Callable[[int], Tuple[torch.Tensor, ...]]] = None,
    ) -> Tuple[torch.Tensor, ...]:
        """Raw captum attributions for a batch (one call, per-example targets), not cached.

        ``inputs`` (the batch already transformed), ``forward`` (the function captum calls)
        and ``distribution`` (the SHAP baselines) may be passed in when the caller has them,
        so that a page split into several calls transforms and draws them once.
        """
        if inputs is None:
            inputs = self.model_inputs(raw)
        kind = params.get("baseline", "zeros")
        seed = int(params.get("seed", 0))
        if distribution is None:
            distribution = self._distribution(params, raw)
        target_tensor = None
        if targets is not None:
            target_tensor = torch.as_tensor(list(targets), dtype=torch.long, device=self.device)
        ctx = AttributionContext(
            model=self.model,
            forward=forward or self.forward,
            inputs=inputs,
            make_baselines=lambda: self.baselines(kind, ids, raw, seed),
            baseline_distribution=distribution,
            targets=target_tensor,
            additional_forward_args=_as_tuple(additional_args),
            params=params,
            image_inputs=self.image_inputs,
            internal_batch_size=self.internal_batch_size,
            resolve_layer=self.resolve_layer,
        )
        # Only randomized methods touch the process-wide generators (and then one at a time).
        rngs = (seeded_rngs(seed, cpu_only=self.device.type == "cpu", numpy=spec.numpy_rng) if spec.randomized
                else contextlib.nullcontext())
        with self.lock, rngs:
            try:
                result = spec.run(ctx)
            except ValidationError:
                raise
            except Exception as exc:  # the model or captum failed: report, keep serving
                log.warning("%s failed on %s: %s", spec.name, self.name, exc, exc_info=True)
                raise ComputationError(f"{spec.label} failed for {self.name}: {type(exc).__name__}: {exc}") from exc
        if isinstance(result, torch.Tensor):
            result = (result,)
        if any(r.dim() == 0 or r.shape[0] != len(ids) for r in result):  # never index past what captum gave
            got = [tuple(r.shape) for r in result]
            raise ComputationError(f"{spec.label} failed for {self.name}: attributions of shape {got} "
                                   f"for {len(ids)} example(s)")
        return tuple(r.detach() for r in result)

    def examples_per_call(self, spec: MethodSpec, params: Dict[str, Any], raw: Sequence[torch.Tensor]) -> int:
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
        hw = next(((int(x.shape[-2]), int(x.shape[-1])) for i, x in enumerate(raw)
                   if i in self.image_inputs and x.dim() >= 3), (1, 1))
        try:
            evals = int((spec.rows or spec.cost)(params, hw))
        except Exception:  # an estimate that cannot be made: batch as before
            evals = 1
        row_bytes = 4 * sum(int(x[0].numel()) for x in raw if x.dim() > 0 and x.shape[0] > 0)
        rows = max(1, min(self.internal_batch_size, CALL_INPUT_BYTES // max(1, row_bytes)))
        return max(1, rows // max(1, evals))

    def _calls(self, spec: MethodSpec, params: Dict[str, Any], raw: Sequence[torch.Tensor],
               additional_args: Any) -> Iterator[Tuple[slice, Tuple[torch.Tensor, ...], Tuple[torch.Tensor, ...], Any]]:
        """The captum calls for a batch: (rows, raw rows, transformed rows, additional args).

        The whole batch is transformed once; each call gets its rows as views.
        """
        n = int(raw[0].shape[0])
        chunk = self.examples_per_call(spec, params, raw)
        inputs = self.model_inputs(raw)
        if chunk >= n:
            yield slice(0, n), tuple(raw), inputs, additional_args
            return
        for s in range(0, n, chunk):
            rows = slice(s, min(s + chunk, n))
            yield (rows, tuple(x[rows] for x in raw), tuple(x[rows] for x in inputs),
                   slice_additional_args(additional_args, list(range(rows.start, rows.stop)), n))

    def _distribution(self, params: Dict[str, Any], raw: Sequence[torch.Tensor]) -> Callable[[int], Tuple[torch.Tensor, ...]]:
        """The SHAP baseline distribution for a batch, drawn once however many calls use it."""
        shapes = [(x.shape[1:], x.dtype) for x in raw]
        draw = functools.partial(self.baseline_distribution, params.get("baseline", "zeros"), shapes,
                                 seed=int(params.get("seed", 0)))
        return functools.lru_cache(maxsize=2)(draw)

    def _store_explanations(self, key: str, ids: Sequence[Hashable], targets: Sequence[Optional[int]],
                            attrs: Tuple[torch.Tensor, ...]) -> List[Explanation]:
        """Reduce each example's attributions to what the page shows, and cache them."""
        out = []
        for row, (ex_id, target) in enumerate(zip(ids, targets)):
            per_feature = [a[row] for a in attrs]
            exp = Explanation(
                target=target,
                maps=[f.reduce_attribution(a) for f, a in zip(self.features, per_feature)],
                contributions=contributions(per_feature),
            )
            self.results.put((ex_id, key, target), exp, exp.nbytes())
            out.append(exp)
        return out

    @on_compute_thread
    def explain(
        self,
        spec: MethodSpec,
        params: Dict[str, Any],
        ids: Sequence[Hashable],
        raw: Sequence[torch.Tensor],
        targets: Sequence[Optional[int]],
        additional_args: Any = None,
    ) -> List[Explanation]:
        """Reduced attributions per example, from the cache or computed in batched calls."""
        key = arguments_key(spec.name, params)
        out: Dict[int, Explanation] = {}
        missing: List[int] = []
        for i, ex_id in enumerate(ids):
            hit = self.results.get((ex_id, key, targets[i]))
            if hit is None:
                missing.append(i)
            else:
                out[i] = hit
        if missing:
            sub_raw = tuple(x[missing] for x in raw)
            sub_ids = [ids[i] for i in missing]
            sub_targets = [targets[i] for i in missing]
            use_targets = None if any(t is None for t in sub_targets) else sub_targets
            extra = slice_additional_args(additional_args, missing, len(ids))
            distribution = self._distribution(params, sub_raw)
            parts = [self.attribute(spec, params, sub_ids[rows], part_raw,
                                    None if use_targets is None else use_targets[rows], part_extra,
                                    inputs=part_inputs, distribution=distribution)
                     for rows, part_raw, part_inputs, part_extra in self._calls(spec, params, sub_raw, extra)]
            attrs = parts[0] if len(parts) == 1 else tuple(torch.cat(p) for p in zip(*parts))
            for i, exp in zip(missing, self._store_explanations(key, sub_ids, sub_targets, attrs)):
                out[i] = exp
        return [out[i] for i in range(len(ids))]

    # ------------------------------------------------------------ one forward pass for both
    def shares_forward(self, spec: MethodSpec, ids: Sequence[Hashable]) -> bool:
        """Whether :meth:`predict_and_explain` can serve these examples: the method's first
        forward pass is on the inputs themselves and none of them has been predicted yet
        (otherwise the prediction is free and the usual path costs nothing more)."""
        return bool(spec.first_forward) and not any(i in self.predictions for i in ids)

    @on_compute_thread
    def predict_and_explain(
        self,
        spec: MethodSpec,
        params: Dict[str, Any],
        ids: Sequence[Hashable],
        raw: Sequence[torch.Tensor],
        requested: Optional[Sequence[Optional[int]]] = None,
        additional_args: Any = None,
    ) -> Optional[Tuple[List[Prediction], List[Explanation]]]:
        """Predictions and attributions from one forward pass per captum call.

        For methods whose first forward pass is on the unchanged inputs (Saliency and Input x
        Gradient differentiate it; Occlusion and Feature Ablation compare against it), the
        prediction pass *is* that pass: it is run here (with gradients when the method
        needs them), gives the predictions and so the targets, and captum is handed a
        forward function that answers its call on those same input tensors with that
        output. The page then costs what the captum call alone costs.

        Targets are ``requested[i]`` where given, else the top prediction. Returns None when
        the model or captum fails; the caller then takes the two-step path, which isolates
        the failing examples.
        """
        key = arguments_key(spec.name, params)
        with_grad = spec.first_forward == "grad"
        preds: List[Prediction] = []
        exps: List[Explanation] = []
        distribution = self._distribution(params, raw)
        try:
            with self.lock:
                for rows, part_raw, inputs, extra in self._calls(spec, params, raw, additional_args):
                    part_ids = list(ids[rows])
                    if with_grad:
                        inputs = tuple(x.detach().requires_grad_() if x.is_floating_point() else x for x in inputs)
                    call_args = inputs + (_as_tuple(extra) or ())
                    with torch.set_grad_enabled(with_grad):
                        out = self.forward(*call_args)
                    part_preds = self._store_predictions(part_ids, self._scores_of(out))
                    targets = [self.target(p, requested[rows.start + j] if requested is not None else None)
                               for j, p in enumerate(part_preds)]
                    use_targets = None if any(t is None for t in targets) else targets
                    forward = ReusedForward(self.forward, call_args, out)
                    attrs = self.attribute(spec, params, part_ids, part_raw, use_targets, extra, inputs=inputs,
                                           forward=forward, distribution=distribution)
                    preds.extend(part_preds)
                    exps.extend(self._store_explanations(key, part_ids, targets, attrs))
        except ValidationError:
            raise
        except Exception as exc:  # isolate on the two-step path (what succeeded is cached)
            log.info("one-pass %s failed on %s (%s); predicting and explaining separately", spec.name, self.name, exc)
            return None
        return preds, exps


class ReusedForward:
    """A forward function that answers its first call on given input tensors with a given output.

    Identity, not equality, decides: the output was computed from exactly these tensor
    objects (with its autograd graph when gradients were on), so it is the output a new
    forward pass would give. Any other call runs the model. The output is released once
    used, so its graph is freed with captum's backward pass.
    """

    def __init__(self, forward: Callable[..., torch.Tensor], args: Tuple[Any, ...], output: torch.Tensor) -> None:
        self._forward = forward
        self._args: Tuple[Any, ...] = args
        self._output: Optional[torch.Tensor] = output
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


def _example_seed(seed: int, ex_id: Hashable) -> int:
    digest = hashlib.sha1(f"{seed}:{ex_id!r}".encode()).digest()
    return int.from_bytes(digest[:7], "little")


def blur_image(x: torch.Tensor) -> torch.Tensor:
    """A strongly blurred copy of a (C, H, W) image: a baseline without fine structure."""
    from torchvision.transforms.functional import gaussian_blur

    h, w = int(x.shape[-2]), int(x.shape[-1])
    sigma = max(1.0, min(h, w) / 16.0)
    k = int(2 * math.ceil(2 * sigma) + 1)
    limit = min(h, w) if min(h, w) % 2 == 1 else min(h, w) - 1
    k = max(1, min(k, limit))
    return gaussian_blur(x.float()[None], [k, k], [sigma, sigma])[0].to(x.dtype)
