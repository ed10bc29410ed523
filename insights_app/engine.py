"""Batched prediction and attribution for one model, with a bounded result cache.

An :class:`Engine` owns one model. It predicts many examples in one forward pass,
attributes many examples per captum call (each to its own target), reduces the
attributions to what the page shows, and caches those per (example, method, arguments,
target). Captum methods install hooks on the model, so one computation per model runs
at a time (``Engine.lock``); different models compute in parallel.
"""

from __future__ import annotations

import contextlib
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

log = logging.getLogger(__name__)
TOP_K_MAX = 20
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
        self.lock = threading.Lock()
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
    def scores(self, inputs: Tuple[torch.Tensor, ...], additional_args: Any = None) -> torch.Tensor:
        """Scores (score_func of the outputs) for a batch, in one forward pass."""
        extra = _as_tuple(additional_args) or ()
        with self.lock, torch.no_grad():
            out = self.forward(*inputs, *extra)
            if self.score_func is not None:
                out = self.score_func(out)
        out = out.detach().float().cpu()
        if out.dim() == 1:
            out = out[:, None]
        return out.reshape(out.shape[0], -1)

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
        k = min(TOP_K_MAX, scores.shape[1])
        values, indices = torch.topk(scores, k, dim=1)
        out = []
        for row, i in enumerate(rows):
            p = Prediction(indices[row].tolist(), values[row].tolist())
            self.predictions.put(ids[i], p)
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

    def attribute(
        self,
        spec: MethodSpec,
        params: Dict[str, Any],
        ids: Sequence[Hashable],
        raw: Sequence[torch.Tensor],
        targets: Optional[Sequence[int]],
        additional_args: Any = None,
    ) -> Tuple[torch.Tensor, ...]:
        """Raw captum attributions for a batch (one call, per-example targets), not cached."""
        inputs = self.model_inputs(raw)
        kind = params.get("baseline", "zeros")
        seed = int(params.get("seed", 0))
        shapes = [(x.shape[1:], x.dtype) for x in raw]
        target_tensor = None
        if targets is not None:
            target_tensor = torch.as_tensor(list(targets), dtype=torch.long, device=self.device)
        ctx = AttributionContext(
            model=self.model,
            forward=self.forward,
            inputs=inputs,
            make_baselines=lambda: self.baselines(kind, ids, raw, seed),
            baseline_distribution=lambda n: self.baseline_distribution(kind, shapes, n, seed),
            targets=target_tensor,
            additional_forward_args=_as_tuple(additional_args),
            params=params,
            image_inputs=self.image_inputs,
            internal_batch_size=self.internal_batch_size,
            resolve_layer=self.resolve_layer,
        )
        # Only randomized methods touch the process-wide generators (and then one at a time).
        rngs = seeded_rngs(seed, cpu_only=self.device.type == "cpu") if spec.randomized else contextlib.nullcontext()
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
        """How many examples one captum call attributes: as many as keep the inputs it expands
        to (forward passes per example x examples) within ``internal_batch_size``.

        Beyond that a bigger call is no faster, and on a CPU slower: measured with 64 small
        images, Integrated Gradients (50 steps) took 1.5x as long in one call as in one call per
        example, because captum keeps every step's gradients of the whole call before summing.
        The bound also caps memory for methods that have no batch size of their own.
        """
        hw = next(((int(x.shape[-2]), int(x.shape[-1])) for i, x in enumerate(raw)
                   if i in self.image_inputs and x.dim() >= 3), (1, 1))
        try:
            evals = int(spec.cost(params, hw))
        except Exception:  # a cost estimate that cannot be made: batch as before
            evals = 1
        return max(1, self.internal_batch_size // max(1, evals))

    def explain(
        self,
        spec: MethodSpec,
        params: Dict[str, Any],
        ids: Sequence[Hashable],
        raw: Sequence[torch.Tensor],
        targets: Sequence[Optional[int]],
        additional_args: Any = None,
    ) -> List[Explanation]:
        """Reduced attributions per example, from the cache or computed in one batched call."""
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
            n = len(sub_ids)
            # A randomized method's draws for one example depend on the batch it runs in. One
            # example per call makes each result depend only on the example and the seed, so a
            # page, a re-attribution and a cache hit all show the same map (and captum called
            # on that example alone after seeding gives it too).
            chunk = 1 if spec.randomized else self.examples_per_call(spec, params, sub_raw)
            if chunk < n:
                parts = [self.attribute(spec, params, sub_ids[s:s + chunk], tuple(x[s:s + chunk] for x in sub_raw),
                                        None if use_targets is None else use_targets[s:s + chunk],
                                        slice_additional_args(extra, list(range(s, min(s + chunk, n))), n))
                         for s in range(0, n, chunk)]
                attrs = tuple(torch.cat(p) for p in zip(*parts))
            else:
                attrs = self.attribute(spec, params, sub_ids, sub_raw, use_targets, extra)
            for row, i in enumerate(missing):
                per_feature = [a[row] for a in attrs]
                exp = Explanation(
                    target=targets[i],
                    maps=[f.reduce_attribution(a) for f, a in zip(self.features, per_feature)],
                    contributions=contributions(per_feature),
                )
                self.results.put((ids[i], key, targets[i]), exp, exp.nbytes())
                out[i] = exp
        return [out[i] for i in range(len(ids))]


@contextlib.contextmanager
def seeded_rngs(seed: int, cpu_only: bool = False) -> Iterator[None]:
    """Seed torch's and numpy's global generators for one captum call, then restore them.

    Captum draws noise from torch and baseline indices / path coefficients from numpy;
    seeding both makes randomized methods reproducible (and so cacheable). Those generators
    are process-wide, so two models computing at once would draw from (and re-seed) each
    other's streams: the results would depend on what else is running. One seeded
    computation at a time holds them. ``cpu_only``: the computation runs on the CPU, so only
    the CPU generator needs seeding (``torch.manual_seed`` also visits every other backend,
    which costs ~0.4 ms per call).
    """
    with _PROCESS_RNG_LOCK:
        np_state = np.random.get_state()
        # What torch.random.fork_rng(devices=[]) saves and restores, without its ~2 ms per call
        # (randomized methods run one example per call, so this is paid per example).
        torch_state = torch.get_rng_state()
        try:
            if cpu_only:
                torch.default_generator.manual_seed(seed)
            else:
                torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            yield
        finally:
            torch.set_rng_state(torch_state)
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
