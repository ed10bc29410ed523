"""What every adapter produces: a :class:`Source` (model, classes, score function, features, dataset).

An adapter's job ends at a Source; ``Source.visualizer()`` is the single place that
turns one into an :class:`insights_app.AttributionVisualizer`. The helpers here (the
normalization transform, score functions, class lists, the one-forward-pass sanity check)
are shared by the fastai, folder and torch adapters so that they fail the same way.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch

from insights_app import AttributionVisualizer, Batch
from insights_app.features import BaseFeature, ImageFeature, Transform
from insights_app.tensors import model_device, plain

from .classes import ClassesArg, read_classes
from .errors import AdapterError, ChannelsError, ClassCountError

__all__ = [
    "AdapterError",
    "ClassesArg",
    "ChannelsError",
    "ClassCountError",
    "Normalizer",
    "Source",
    "read_classes",
    "check_classes",
    "count_outputs",
    "first_batch",
    "image_feature",
    "optional_normalizer",
    "prepare_model",
    "score_function",
    "state_dict_of",
]
log = logging.getLogger(__name__)

ScoreArg = None | str | Callable[[torch.Tensor], torch.Tensor]
# Examples in the one forward pass that checks the class count: two (one could hide a model that
# squeezes its batch dimension). Eight at --size 2048 through resnet18 took 5 GB at start-up.
CHECK_EXAMPLES = 2


class Normalizer:
    """``(x - mean) / std`` per channel on one (C, H, W) example: the model's input normalization.

    Used as an ImageFeature ``input_transform`` (the engine applies it example by example),
    so the dataset can stay in display space (0..1) while the model sees normalized input.
    """

    def __init__(self, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor) -> None:
        m = torch.as_tensor(mean, dtype=torch.float32).detach().cpu().reshape(-1)
        s = torch.as_tensor(std, dtype=torch.float32).detach().cpu().reshape(-1)
        if m.numel() == 0 or s.numel() == 0:
            raise AdapterError("mean and std need at least one value each")
        if m.numel() != s.numel() and 1 not in (m.numel(), s.numel()):
            raise AdapterError(f"mean has {m.numel()} values but std has {s.numel()}")
        if not bool(torch.isfinite(m).all() and torch.isfinite(s).all()):
            raise AdapterError("mean and std must be finite numbers")
        if bool((s == 0).any()):
            raise AdapterError("std must not contain zeros")
        self.mean = m[:, None, None]
        self.std = s[:, None, None]

    @property
    def channels(self) -> int:
        return max(int(self.mean.shape[0]), int(self.std.shape[0]))

    def _stats(self, x: torch.Tensor) -> tuple:
        if self.channels not in (1, x.shape[0]):
            raise ValueError(f"normalization has {self.channels} channels but the image has {x.shape[0]}")
        return self.mean.to(x.device, x.dtype), self.std.to(x.device, x.dtype)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(x)
        return (x - mean) / std

    def apply_to_batch(self, x: torch.Tensor) -> torch.Tensor:
        """The same on a (N, C, H, W) batch in one operation (``transform_batch`` prefers it): per
        example it cost the dataset pass 0.56 ms per 32 images of 32x32, against 0.27 ms batched."""
        if x.dim() != 4:
            return torch.stack([self(e) for e in x])
        mean, std = self._stats(x[0])
        return (x - mean[None]) / std[None]

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the normalization (model space -> display space)."""
        mean, std = self._stats(x)
        return x * std + mean

    def __repr__(self) -> str:
        return f"Normalizer(mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()})"


def shown_as_strings(words: Callable[[torch.Tensor], list[str]]) -> Transform:
    """``words`` as a feature's ``visualization_transform``.

    ``insights_app.features`` types that transform as Tensor -> Tensor, but text and categorical
    features show strings (``TextFeature.tokens`` reads them as such): the cast only restates the
    function's real type for that narrower annotation.
    """
    return cast(Transform, words)


def optional_normalizer(mean: Sequence[float] | None, std: Sequence[float] | None) -> Normalizer | None:
    """The model's input normalization from user-given ``mean``/``std``: both or neither."""
    if mean is None and std is None:
        return None
    if mean is None or std is None:
        raise AdapterError("give both mean and std (or neither)")
    return Normalizer(mean, std)


class Activation:
    """A score function (softmax over classes or sigmoid) that returns plain tensors."""

    def __init__(self, kind: str, fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        if kind not in ("softmax", "sigmoid", "custom"):
            raise AdapterError(f"score must be 'softmax', 'sigmoid', None or a callable, not {kind!r}")
        self.kind = kind
        self.fn = fn

    def __call__(self, out: torch.Tensor) -> torch.Tensor:
        out = plain(out)
        if self.fn is not None:
            return plain(self.fn(out))
        if self.kind == "sigmoid":
            return torch.sigmoid(out)
        return torch.softmax(out, dim=1 if out.dim() > 1 else 0)

    def __repr__(self) -> str:
        return f"Activation({self.kind!r})"


def score_function(score: ScoreArg) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """'softmax' (single-label), 'sigmoid' (multi-label), None (raw outputs) or a callable."""
    if score is None:
        return None
    if callable(score):
        return score
    if isinstance(score, str):
        return Activation(score.lower())
    raise AdapterError(f"score must be 'softmax', 'sigmoid', None or a callable, not {score!r}")


def image_feature(normalizer: Normalizer | None, name: str = "image") -> ImageFeature:
    """The one image feature an adapter shows; its input transform re-applies the normalization."""
    return ImageFeature(name, baseline_transforms=None, input_transforms=[normalizer] if normalizer else None)


def prepare_model(model: Any, device: str | torch.device | None) -> torch.nn.Module:
    """The model in eval mode, moved to ``device`` when one is given (else left where it is)."""
    if not isinstance(model, torch.nn.Module):
        raise AdapterError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if device is not None:
        try:
            model.to(torch.device(device))
        except (RuntimeError, ValueError) as exc:
            raise AdapterError(f"cannot move the model to device {device!r}: {exc}") from None
    model.eval()
    return model


def first_batch(dataset: Iterable[Batch], what: str) -> Batch:
    """The dataset's first Batch, or an AdapterError saying it is empty."""
    try:
        batch = next(iter(dataset))
    except StopIteration:
        raise AdapterError(f"{what} holds no example") from None
    except AdapterError:
        raise
    except Exception as exc:
        raise AdapterError(f"reading the first examples of {what} failed: {type(exc).__name__}: {exc}") from exc
    return batch


def count_outputs(model: torch.nn.Module, features: Sequence[BaseFeature], batch: Batch) -> int:
    """Outputs per example of one forward pass on (a few examples of) the first batch.

    This pass is where a model meets its images first, so a failure is explained here: images with
    the wrong number of channels raise :class:`ChannelsError` (the fix is one argument), anything
    else an AdapterError with the input shape and torch's first line.
    """
    inputs = batch.inputs if isinstance(batch.inputs, (tuple, list)) else (batch.inputs,)
    device = model_device(model)
    with torch.no_grad():
        x = tuple(f.transform_input(plain(t)[:CHECK_EXAMPLES]).to(device) for f, t in zip(features, inputs))
        try:
            out = model(*x)
        except Exception as exc:
            channels = _channel_mismatch(model, x, exc)
            if channels is not None:
                expected, got = channels
                raise ChannelsError(
                    f"the model expects {expected}-channel images but got {got}-channel ones", expected, got
                ) from exc
            out = _one_that_runs(model, x)  # faults stay local: one example the model fails on is that card's error
            if out is None:
                shapes = ", ".join(str(tuple(t.shape)) for t in x)
                raise AdapterError(
                    f"the model failed on the first examples (input shape {shapes}): {type(exc).__name__}: {exc}"
                ) from exc
    if isinstance(out, (tuple, list)):
        out = out[0]
    out = plain(out)
    if not isinstance(out, torch.Tensor) or out.dim() == 0:
        raise AdapterError("the model must return a tensor with one row of class scores per example")
    return 1 if out.dim() == 1 else int(out[0].numel())


def _one_that_runs(model: torch.nn.Module, x: Sequence[torch.Tensor]) -> Any:
    """The model's output on the first of the examples ``x`` it runs on alone, or None when it fails on
    every one (then the model, not an example, is at fault). Each failure is logged: the pages show it
    on that example's card."""
    n = int(x[0].shape[0]) if x and x[0].dim() else 0
    for j in range(n):
        try:
            out = model(*(t[j : j + 1] for t in x))
        except Exception as exc:
            log.warning("the model failed on example %d of the first batch: %s: %s", j, type(exc).__name__, exc)
            continue
        return out
    return None


# torch's message when a convolution gets the wrong number of input channels.
CONV_CHANNELS = re.compile(r"expected input\[[^\]]*\] to have (\d+) channels, but got (\d+) channels")


def _channel_mismatch(model: torch.nn.Module, x: Sequence[torch.Tensor], exc: Exception) -> tuple | None:
    """(channels the model expects, channels it got) when that is why its forward pass failed, else None.

    torch's convolution error says so; otherwise the first convolution's ``in_channels``, when it
    differs from the image's, is taken as the reason.
    """
    if len(x) != 1 or x[0].dim() != 4:
        return None
    match = CONV_CHANNELS.search(str(exc))
    if match:
        return int(match.group(1)), int(match.group(2))
    first = next((m for m in model.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)), None)
    got = int(x[0].shape[1])
    if first is not None and int(first.in_channels) != got:
        return int(first.in_channels), got
    return None


def check_classes(classes: list[str] | None, n_outputs: int, hint: str = "") -> list[str]:
    """The class names, checked against the model's output width (numbered names when unknown).

    A mismatch is a :class:`ClassCountError` carrying both counts, for callers that word it their way.
    """
    if classes is None:
        log.warning("no class names given: naming the model's %d outputs 0..%d", n_outputs, n_outputs - 1)
        return [str(i) for i in range(n_outputs)]
    if len(classes) != n_outputs:
        raise ClassCountError(
            f"{len(classes)} class names but the model has {n_outputs} outputs per example"
            + (f" ({hint})" if hint else ""),
            len(classes),
            n_outputs,
            classes,
        )
    return classes


def state_dict_of(obj: Any) -> dict | None:
    """A state dict in a loaded torch file: the dict itself, or one under a usual checkpoint key; else None."""
    if isinstance(obj, dict):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
        for key in ("state_dict", "model_state_dict", "model", "net", "weights"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                return inner
    return None


@dataclass
class Source:
    """A model with its data, ready for :class:`insights_app.AttributionVisualizer`.

    ``dataset`` is re-iterable (each ``iter()`` restarts it) and lazy; it yields
    :class:`insights_app.Batch` with display-space inputs (0..1 float images, CHW) and
    class-index labels (or None). ``features`` re-apply the model's normalization.
    ``info`` holds adapter-specific facts (e.g. ``multi_label``, the files skipped).
    """

    model: torch.nn.Module
    classes: list[str]
    score_func: Callable[[torch.Tensor], torch.Tensor] | None
    features: list[BaseFeature]
    dataset: Iterable[Batch]
    name: str | None = None
    info: dict = field(default_factory=dict)
    # The page's title unless the visualizer is given one (e.g. the image folder's name).
    title: str | None = None
    # One loss per example (outputs, labels) for the dataset pass; None: chosen from the score function.
    loss_func: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    def visualizer(self, **kwargs: Any) -> AttributionVisualizer:
        """An AttributionVisualizer over this source; ``kwargs`` go to its constructor (e.g. ``title``)."""
        if self.name and "model_names" not in kwargs:
            kwargs["model_names"] = [self.name]
        if self.title and "title" not in kwargs:
            kwargs["title"] = self.title
        if self.loss_func is not None and "loss_func" not in kwargs:
            kwargs["loss_func"] = self.loss_func
        return AttributionVisualizer(
            self.model, self.classes, self.features, self.dataset, score_func=self.score_func, **kwargs
        )

    def batches(self) -> Iterator[Batch]:
        """Iterate the dataset once (a convenience for scripts and tests)."""
        return iter(self.dataset)
