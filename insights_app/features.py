"""Feature descriptions: how each model input is transformed, baselined and shown.

The names, arguments and meanings follow captum 0.8's ``captum.insights.features`` so
that code written for Captum Insights runs after changing its imports. A feature knows
how to turn one example's raw input and its attribution into something a page can show;
the engine never needs to know what kind of data it is attributing.
"""

from __future__ import annotations

import base64
import io
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Transform = Callable[[torch.Tensor], torch.Tensor]
Transforms = None | Transform | Sequence[Transform]


class FeatureOutput(NamedTuple):
    """What one feature shows for one example (captum.insights' ``FeatureOutput``)."""

    name: str
    base: Any
    modified: Any
    type: str
    contribution: float


def figure_to_base64(fig: Figure) -> str:
    """A matplotlib figure as base64 PNG text (no ``data:`` prefix), padding trimmed: what
    captum.insights' features put in a :class:`FeatureOutput`."""
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tight_layout warns about axes it cannot fit; the figure is kept
        fig.tight_layout()
    fig.savefig(out, format="png")
    return base64.b64encode(out.getvalue()).decode("ascii")


# The name captum.insights' own tests import from its features module.
_convert_figure_base64 = figure_to_base64


def _safe_div(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``numerator / denominator``, or the numerator unchanged where the denominator is 0 (an
    all-zero attribution stays all zeros instead of becoming NaN)."""
    return numerator / torch.where(denominator != 0, denominator, torch.ones_like(denominator))


def _scaled_100(values: torch.Tensor, norm: torch.Tensor) -> list[float]:
    """``values`` divided by ``norm`` (see :func:`_safe_div`), times 100, as Python floats."""
    return [x * 100 for x in _safe_div(values, norm).tolist()]


def _two_decimals(value: Any) -> str:
    """A number with two decimals (captum.insights' general feature values); anything else as is."""
    return f"{value:.2f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _drop_batch(t: Any) -> Any:
    """One example's tensor without its leading batch dimension of 1 (captum passes ``(1, ...)``)."""
    return t.squeeze(0) if isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape[0] == 1 else t


def feature_type(feature: BaseFeature) -> str:
    """The type a feature publishes (``/config`` and the page's JSON): what its class's
    ``visualization_type()`` says when a user's subclass defines one (as captum's docs tell
    users to), else its ``kind``."""
    method = type(feature).visualization_type
    if getattr(method, "__func__", method) is not _DEFAULT_VISUALIZATION_TYPE:
        try:
            declared = feature.visualization_type()
        except NotImplementedError:
            declared = None
        if isinstance(declared, str) and declared:
            return declared
    return feature.kind


def as_transform_list(transforms: Transforms) -> list[Transform]:
    """Accept a callable, a sequence of callables or None, as captum.insights did."""
    if transforms is None:
        return []
    if callable(transforms):
        return [transforms]
    out = list(transforms)
    for t in out:
        if not callable(t):
            raise TypeError(f"transform {t!r} is not callable")
    return out


def apply_transforms(transforms: Sequence[Transform], example: torch.Tensor) -> torch.Tensor:
    """Apply transforms to one example (no batch dimension), in order."""
    for t in transforms:
        example = t(example)
    return example


def transform_batch(feature: BaseFeature, batch: torch.Tensor) -> torch.Tensor:
    """``feature.transform_input(batch)``, in one call per transform when each one computes
    the same on a batch as example by example: torchvision's ``Normalize`` on (C, H, W)
    examples, or any transform with an ``apply_to_batch(batch)`` method. Calling a transform
    once per example can cost more than the attribution of a small image."""
    transforms = feature.input_transforms
    if not transforms or batch.dim() < 2 or not batch.is_floating_point():
        return feature.transform_input(batch)
    tv = sys.modules.get("torchvision.transforms")
    steps: list[Transform] = []
    for t in transforms:
        batched = getattr(t, "apply_to_batch", None)
        if callable(batched):
            steps.append(batched)
        elif tv is not None and type(t) is tv.Normalize and not getattr(t, "inplace", True) and batch.dim() >= 4:
            steps.append(t)
        else:
            return feature.transform_input(batch)
    for step in steps:
        batch = step(batch)
    return batch


class BaseFeature:
    """One input of the model.

    ``baseline_transforms`` make baselines from the raw input (each callable gives one
    baseline); ``input_transforms`` turn the raw (display) input into what the model
    consumes; ``visualization_transform`` turns the raw input into what is displayed.
    """

    kind = "base"

    def __init__(
        self,
        name: str,
        baseline_transforms: Transforms = None,
        input_transforms: Transforms = None,
        visualization_transform: Transform | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("a feature needs a non-empty name")
        self.name = name
        self.baseline_transforms = as_transform_list(baseline_transforms)
        self.input_transforms = as_transform_list(input_transforms)
        self.visualization_transform = visualization_transform

    def transform_input(self, batch: torch.Tensor) -> torch.Tensor:
        """Raw batch -> model batch, applying the input transforms example by example."""
        if not self.input_transforms:
            return batch
        return torch.stack([apply_transforms(self.input_transforms, x) for x in batch])

    def display_input(self, example: torch.Tensor) -> torch.Tensor:
        """Raw example -> what is displayed."""
        if self.visualization_transform is None:
            return example
        return self.visualization_transform(example)

    def reduce_attribution(self, attribution: torch.Tensor) -> np.ndarray:
        """One example's attribution -> the array the page shows (kept signed)."""
        return attribution.detach().float().cpu().numpy()

    def describe(self) -> dict:
        return {"name": self.name, "type": feature_type(self)}

    @classmethod
    def visualization_type(cls) -> str:
        """The feature's type as captum.insights names it ("image", "text", "general", "empty"): the
        class's ``kind``. A user's subclass may override it (captum's docs declare it a staticmethod);
        the page then publishes that type and shows the feature with the renderer registered for it,
        else with its nearest registered parent's (the base one: its values)."""
        return cls.kind

    def visualize(self, attribution: Any, data: Any, contribution_frac: float) -> FeatureOutput:
        """captum.insights' single-example view: ``attribution`` and ``data`` of one example, batch
        first (``(1, ...)``), as ``AttributionVisualizer.visualize()`` passes them. The page does not
        use it (it has its own renderers); code written for captum.insights does."""
        raise NotImplementedError


class ImageFeature(BaseFeature):
    """An image input of shape (C, H, W); C may be 1 (grayscale) or 3, any H and W."""

    kind = "image"

    def reduce_attribution(self, attribution: torch.Tensor) -> np.ndarray:
        a = attribution.detach().float().cpu()
        if a.dim() == 3:
            a = a.sum(dim=0)
        elif a.dim() != 2:
            raise ValueError(f"image attribution of shape {tuple(a.shape)} is not (C, H, W)")
        return a.numpy()

    def visualize(self, attribution: Any, data: Any, contribution_frac: float) -> FeatureOutput:
        """The input and the attribution's absolute-value heat map, each drawn by captum's
        ``visualize_image_attr`` and returned as base64 PNG text (captum.insights' output). Takes
        ``(1, C, H, W)`` or ``(C, H, W)`` tensors; C may be 1 (grayscale)."""
        from captum.attr import visualization as viz  # looked up per call: matplotlib loads on first use

        if self.visualization_transform is not None:
            data = self.visualization_transform(data)
        image, attr = (_hwc(t) for t in (data, attribution))
        original, _ = viz.visualize_image_attr(attr, image, method="original_image", use_pyplot=False)
        heat, _ = viz.visualize_image_attr(attr, image, method="heat_map", sign="absolute_value", use_pyplot=False)
        return FeatureOutput(
            self.name, figure_to_base64(original), figure_to_base64(heat), self.visualization_type(), contribution_frac
        )


def _hwc(t: Any) -> np.ndarray:
    """One image example as the (H, W, C) array captum's ``visualize_image_attr`` draws."""
    a = torch.as_tensor(t).detach().float().cpu()
    if a.dim() == 4 and a.shape[0] == 1:
        a = a[0]
    if a.dim() == 2:
        a = a[None]
    if a.dim() != 3:
        raise ValueError(f"an image of shape {tuple(torch.as_tensor(t).shape)} is not (1, C, H, W) or (C, H, W)")
    return a.permute(1, 2, 0).numpy()


class TextFeature(BaseFeature):
    """A sequence of token ids; ``visualization_transform`` maps the ids to token strings."""

    kind = "text"

    def reduce_attribution(self, attribution: torch.Tensor) -> np.ndarray:
        a = attribution.detach().float().cpu()
        # Embedding-level attributions (seq, dim) are summed per token.
        while a.dim() > 1:
            a = a.sum(dim=-1)
        return a.numpy()

    def tokens(self, example: torch.Tensor) -> list[str]:
        shown = self.display_input(example)
        if isinstance(shown, torch.Tensor):
            return [str(t) for t in shown.flatten().tolist()]
        return [str(t) for t in shown]

    def visualize(self, attribution: Any, data: Any, contribution_frac: float) -> FeatureOutput:
        """``base``: the input as shown (the ``visualization_transform`` of ``data``, else ``data``
        itself); ``modified``: one score per token (an embedding-level attribution summed per token),
        scaled so that the largest magnitude is 100 (all zeros stay zeros), as captum.insights does."""
        shown = self.visualization_transform(data) if self.visualization_transform is not None else data
        scores = _drop_batch(torch.as_tensor(attribution).detach())
        if scores.dim() > 1:
            scores = scores.sum(dim=1)
        scores = scores.flatten()
        if not scores.numel():
            return FeatureOutput(self.name, shown, [], self.visualization_type(), contribution_frac)
        return FeatureOutput(
            self.name, shown, _scaled_100(scores, scores.abs().max()), self.visualization_type(), contribution_frac
        )


class GeneralFeature(BaseFeature):
    """A vector of named scalar inputs (tabular data); one attribution per category."""

    kind = "general"

    def __init__(self, name: str, categories: Sequence[str]) -> None:
        super().__init__(name, baseline_transforms=None, input_transforms=None, visualization_transform=None)
        self.categories = [str(c) for c in categories]

    def reduce_attribution(self, attribution: torch.Tensor) -> np.ndarray:
        a = attribution.detach().float().cpu().flatten().numpy()
        if self.categories and a.size != len(self.categories):
            raise ValueError(
                f"feature {self.name!r} has {len(self.categories)} categories but its attribution has {a.size} values"
            )
        return a

    def describe(self) -> dict:
        return {"name": self.name, "type": self.kind, "categories": self.categories}

    def visualize(self, attribution: Any, data: Any, contribution_frac: float) -> FeatureOutput:
        """``base``: ``"category: value"`` per category (numbers with 2 decimals, names as shown);
        ``modified``: one score per category, divided by their Euclidean norm, times 100 (all zeros
        stay zeros), as captum.insights does."""
        scores = _drop_batch(torch.as_tensor(attribution).detach()).flatten()
        if scores.numel() != len(self.categories):  # e.g. embedding-level: reduced to one per category
            scores = torch.as_tensor(self.reduce_attribution(scores))
        values = _drop_batch(data)
        if self.visualization_transform is not None:
            values = self.display_input(values)
        shown = values.flatten().tolist() if isinstance(values, torch.Tensor) else list(values)
        base = [f"{c}: {_two_decimals(v)}" for c, v in zip(self.categories, shown)]
        return FeatureOutput(
            self.name, base, _scaled_100(scores, scores.norm()), self.visualization_type(), contribution_frac
        )


class EmptyFeature(BaseFeature):
    """An input that is fed to the model but not shown (captum.insights' EmptyFeature)."""

    kind = "empty"

    def __init__(
        self,
        name: str = "empty",
        baseline_transforms: Transforms = None,
        input_transforms: Transforms = None,
        visualization_transform: Transform | None = None,
    ) -> None:
        super().__init__(name, baseline_transforms, input_transforms, visualization_transform)

    def visualize(self, attribution: Any, data: Any, contribution_frac: float) -> FeatureOutput:
        return FeatureOutput(self.name, None, None, self.visualization_type(), contribution_frac)


# BaseFeature's own visualization_type (the function): feature_type() tells a user's override from it.
_DEFAULT_VISUALIZATION_TYPE = BaseFeature.__dict__["visualization_type"].__func__
