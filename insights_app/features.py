"""Feature descriptions: how each model input is transformed, baselined and shown.

The names, arguments and meanings follow captum 0.8's ``captum.insights.features`` so
that code written for Captum Insights runs after changing its imports. A feature knows
how to turn one example's raw input and its attribution into something a page can show;
the engine never needs to know what kind of data it is attributing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

Transform = Callable[[torch.Tensor], torch.Tensor]
Transforms = None | Transform | Sequence[Transform]


class FeatureOutput(NamedTuple):
    """What one feature shows for one example (captum.insights' ``FeatureOutput``)."""

    name: str
    base: Any
    modified: Any
    type: str
    contribution: float


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
        return {"name": self.name, "type": self.kind}

    def visualize(self, attribution: torch.Tensor, data: torch.Tensor, contribution_frac: float) -> FeatureOutput:
        """captum.insights-compatible single-example view (used by code written for it)."""
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

    def visualize(self, attribution: torch.Tensor, data: torch.Tensor, contribution_frac: float) -> FeatureOutput:
        from .page.render import encode_png_base64, render_attribution, to_display_image

        original = to_display_image(self.display_input(data))
        modified = render_attribution(
            self.reduce_attribution(attribution), original, "blended_heat_map", "absolute_value"
        )
        return FeatureOutput(
            self.name, encode_png_base64(original), encode_png_base64(modified), "image", float(contribution_frac)
        )


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

    def visualize(self, attribution: torch.Tensor, data: torch.Tensor, contribution_frac: float) -> FeatureOutput:
        scores = self.reduce_attribution(attribution).tolist()
        return FeatureOutput(self.name, self.tokens(data), scores, "text", float(contribution_frac))


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

    def visualize(self, attribution: torch.Tensor, data: torch.Tensor, contribution_frac: float) -> FeatureOutput:
        scores = self.reduce_attribution(attribution).tolist()
        return FeatureOutput(self.name, self.categories, scores, "general", float(contribution_frac))


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

    def visualize(self, attribution: torch.Tensor, data: torch.Tensor, contribution_frac: float) -> FeatureOutput:
        return FeatureOutput(self.name, None, None, "empty", float(contribution_frac))
