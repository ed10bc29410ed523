"""General (tabular) features: the values as shown (numbers or category labels), one score per category."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ...features import BaseFeature
from ..render import scale_range
from .renderer import FeatureRenderer, Shown

if TYPE_CHECKING:
    from ...dataset import Example
    from ..query import Visualization


def general_values(shown: Any) -> list[Any]:
    """A general feature's shown values: numbers (a missing or infinite one as null) or labels (the
    names a ``visualization_transform`` gives, such as a tabular column's category)."""
    if isinstance(shown, torch.Tensor):
        shown = shown.detach().float().flatten().tolist()
    out: list[Any] = []
    for v in shown:
        if isinstance(v, str) or v is None:
            out.append(v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(float(v) if math.isfinite(v) else None)
        else:
            out.append(str(v))
    return out


class GeneralRenderer(FeatureRenderer):
    kind = "general"

    def original(self, feature: BaseFeature, ex: Example, i: int, shown: Shown) -> Any:
        return general_values(feature.display_input(ex.inputs[i]))

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
            "categories": getattr(feature, "categories", []),
            "scores": [float(v) for v in attr_map.tolist()],
            "scale": scale_range("all", scale),
        }


GENERAL = GeneralRenderer()
