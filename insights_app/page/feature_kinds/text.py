"""Text features: the tokens, and one signed score per token."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ...features import BaseFeature
from ..render import scale_range
from .renderer import FeatureRenderer, Shown

if TYPE_CHECKING:
    from ...dataset import Example
    from ..query import Visualization


class TextRenderer(FeatureRenderer):
    kind = "text"

    def original(self, feature: BaseFeature, ex: Example, i: int, shown: Shown) -> Any:
        tokens = getattr(feature, "tokens", None)  # TextFeature.tokens, or a subclass's own
        if callable(tokens):
            return tokens(ex.inputs[i])
        displayed = feature.display_input(ex.inputs[i])
        return [str(t) for t in (displayed.flatten().tolist() if isinstance(displayed, torch.Tensor) else displayed)]

    def render(
        self,
        feature: BaseFeature,
        ex: Example,
        i: int,
        attr_map: np.ndarray,
        vis: Visualization,
        scale: float,
        values: bool,
        shown: Shown,
    ) -> dict[str, Any]:
        return {
            "tokens": shown.original(ex, i),
            "scores": [float(v) for v in attr_map.tolist()],
            "scale": scale_range("all", scale),
        }


TEXT = TextRenderer()
