"""The forward functions captum is handed, and the one forward pass a prediction and an attribution share.

:class:`CancellableForward` asks a run's ``Cancel`` before every pass; :class:`ReusedForward`
answers captum's first call with the prediction pass's own output, which :func:`shared_forward`
(the one-pass part of ``Engine.run``) made.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from ..cancel import Cancel, raise_if_cancelled
from ..dataset import ExampleBatch
from ..errors import Cancelled, ComputationError, ValidationError
from ..methods import MethodSpec
from ..tensors import as_tuple
from .keys import Subsets
from .results import Failure, KeptAttributions, Result, reduced

if TYPE_CHECKING:
    from .core import Engine

log = logging.getLogger("insights_app.engine")  # one log for the engine, its name as before the split


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


def all_or_none(targets: Sequence[int | None]) -> list[int] | None:
    """Targets for captum: every example's class, or None when the model has no class outputs."""
    chosen = [t for t in targets if t is not None]
    return chosen if len(chosen) == len(targets) else None


def shared_forward(
    engine: Engine,
    spec: MethodSpec,
    params: dict[str, Any],
    key: str,
    batch: ExampleBatch,
    requested: Sequence[int | None],
    shared: dict[Any, Any],
    forward: CancellableForward,
    keep: KeptAttributions | None,
) -> list[Result] | None:
    """Predictions and attributions from one forward pass per captum call (part of ``Engine.run``).

    For methods whose first forward pass is on the unchanged inputs (Saliency and Input x
    Gradient differentiate it; Occlusion and Feature Ablation compare against it), the
    prediction pass *is* that pass: it is run here (with gradients when the method
    needs them), gives the predictions and so the targets, and captum is handed a
    forward function that answers its call on those same input tensors with that
    output. The page then costs what the captum call alone costs.

    Returns None when the model or captum fails; ``Engine.run`` then predicts and explains
    separately, which isolates the failing examples (what succeeded here is cached).
    """
    with_grad = spec.first_forward == "grad"
    failed = f"{spec.label} failed for {engine.name}"
    results: list[Result] = []
    try:
        with engine.lock:
            for rows, part, inputs in engine._calls(spec, params, key, batch):
                if with_grad:
                    inputs = tuple(x.detach().requires_grad_() if x.is_floating_point() else x for x in inputs)
                call_args = inputs + (as_tuple(part.additional_args) or ())
                with torch.set_grad_enabled(with_grad):
                    out = forward(*call_args)
                preds = engine._top_k(engine._scores_of(out, len(part)))
                engine._predicted.remember(part.ids, preds)
                if any(p.error for p in preds):
                    raise ComputationError("a prediction that cannot be shown")  # isolated on the two-step path
                targets = [engine.target(p, requested[rows.start + j]) for j, p in enumerate(preds)]
                attrs = engine.attribute(
                    spec,
                    params,
                    part,
                    all_or_none(targets),
                    inputs=inputs,
                    forward=ReusedForward(forward, call_args, out),
                    shared=shared,
                )
                exps = reduced(engine.features, failed, key, part.ids, targets, attrs, keep)
                engine._explained.remember([(i, key, t) for i, t in zip(part.ids, targets)], exps)
                subsets = Subsets(part)
                stored_predictions = engine._prediction_backing(subsets)
                stored_explanations = engine._explanation_backing(subsets, key, targets)
                if stored_predictions is not None and stored_explanations is not None:
                    engine._predicted.write(stored_predictions, preds)
                    engine._explained.write(stored_explanations, exps)
                results.extend(
                    Result(i, p, None, e.message) if isinstance(e, Failure) else Result(i, p, e)
                    for i, p, e in zip(part.ids, preds, exps)
                )
    except (ValidationError, Cancelled):
        raise
    except Exception as exc:  # isolate on the two-step path (what succeeded is cached)
        log.info("one-pass %s failed on %s (%s); predicting and explaining separately", spec.name, engine.name, exc)
        return None
    return results
