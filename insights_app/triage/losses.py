"""Which loss the dataset pass ranks examples by, chosen as fastai's interpretation would.

A fastai learner brings its own ``loss_func`` (the adapter passes it, unreduced). Otherwise
the score function says what the outputs are: softmax scores mean logits for cross-entropy,
sigmoid scores logits for binary cross-entropy; with no score function, outputs that are
already probabilities get their negative log-likelihood and anything else is taken as
logits. A custom score function gets no loss, and a note that says how to give one.

The choice is made on the first batch's finite rows only: a NaN output is that example's
failure, not a reason to give the whole dataset no loss. A batch with no finite row decides
nothing (:func:`choose_loss` answers None and the next batch is asked).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# (raw model outputs (n, C) or (n,), labels (n,) long, -1 where unknown) -> one loss per example (n,)
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class LossChoice:
    """The per-example loss of one model, and how to say what it is."""

    fn: LossFn | None
    name: str  # "cross-entropy", "binary cross-entropy", ..., or "" for none
    note: str = ""  # why there is no loss, shown where losses would be


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-6))


def _valid(labels: torch.Tensor, classes: int) -> torch.Tensor:
    return (labels >= 0) & (labels < classes)


def cross_entropy(out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    out = out.float().reshape(out.shape[0], -1)
    ok = _valid(labels, out.shape[1])
    loss = F.cross_entropy(out, torch.where(ok, labels, torch.zeros_like(labels)), reduction="none")
    return torch.where(ok, loss, torch.full_like(loss, float("nan")))


def binary_cross_entropy(out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sigmoid outputs: one logit per class against the one-hot label, averaged over classes
    (one logit: the probability of class 1)."""
    out = out.float().reshape(out.shape[0], -1)
    if out.shape[1] == 1:
        ok = _valid(labels, 2)
        target = labels.clamp(0, 1).float()[:, None]
    else:
        ok = _valid(labels, out.shape[1])
        target = F.one_hot(labels.clamp(0, out.shape[1] - 1), out.shape[1]).float()
    loss = F.binary_cross_entropy_with_logits(out, target, reduction="none").mean(dim=1)
    return torch.where(ok, loss, torch.full_like(loss, float("nan")))


def negative_log_likelihood(out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Outputs that are already probabilities: -log p(label)."""
    out = out.float().reshape(out.shape[0], -1)
    ok = _valid(labels, out.shape[1])
    p = out.gather(1, labels.clamp(0, out.shape[1] - 1)[:, None])[:, 0]
    loss = -torch.log(p.clamp_min(torch.finfo(torch.float32).tiny))
    return torch.where(ok, loss, torch.full_like(loss, float("nan")))


def _are_probabilities(out: torch.Tensor) -> bool:
    out = out.float().reshape(out.shape[0], -1)
    return out.shape[1] > 1 and bool((out >= 0).all()) and _close(out.sum(dim=1), torch.ones(out.shape[0]))


PROBE_ROWS = 64  # finite rows the choice looks at


# A softmax over one output scores every example 1: no loss ranks anything, and the usual cause is a
# one-output binary classifier given softmax instead of sigmoid.
ONE_OUTPUT_SOFTMAX = (
    "No loss: the model has one output per example and its score function gives every example the "
    "score 1, as a softmax over one output does (its cross-entropy is always 0). A one-output binary "
    "classifier wants score='sigmoid'; or pass loss_func= (outputs, labels -> one loss per example) "
    "to AttributionVisualizer."
)


def choose_loss(
    score_func: Callable[[torch.Tensor], torch.Tensor] | None, loss_func: LossFn | None, probe: torch.Tensor
) -> LossChoice | None:
    """The loss for a model whose raw outputs on a first batch are ``probe`` (on the CPU); None when
    no row of ``probe`` is finite (nothing to judge the score function by: ask the next batch)."""
    if loss_func is not None:
        return LossChoice(loss_func, getattr(loss_func, "insights_name", "") or "the model's loss function")
    probe = probe.detach().float().cpu()
    if not probe.dim():
        probe = probe.reshape(1)
    finite = torch.isfinite(probe.reshape(probe.shape[0], -1)).all(dim=1)
    probe = probe[finite][:PROBE_ROWS]
    if not probe.shape[0]:
        return None
    rows = probe.reshape(probe.shape[0], -1)
    if score_func is None:
        if _are_probabilities(rows):
            return LossChoice(negative_log_likelihood, "negative log-likelihood")
        return LossChoice(cross_entropy, "cross-entropy")
    with torch.no_grad():
        try:
            scored = score_func(probe).detach().float().cpu()
        except Exception:  # the engine reports the score function's failure; here: no loss
            scored = None
    if scored is not None and scored.numel() != rows.numel():
        scored = None
    if scored is not None and rows.shape[1] > 1 and _close(scored.reshape(rows.shape), torch.softmax(rows, dim=1)):
        return LossChoice(cross_entropy, "cross-entropy")
    if scored is not None and _close(scored.reshape(rows.shape), torch.sigmoid(rows)):
        return LossChoice(binary_cross_entropy, "binary cross-entropy")
    if scored is not None and rows.shape[1] == 1 and _close(scored.reshape(rows.shape), torch.ones_like(rows)):
        return LossChoice(None, "", ONE_OUTPUT_SOFTMAX)
    return LossChoice(
        None,
        "",
        "No loss: the score function is neither softmax nor sigmoid, so the loss cannot be "
        "inferred. Pass loss_func= (outputs, labels -> one loss per example) to "
        "AttributionVisualizer to rank examples by loss.",
    )
