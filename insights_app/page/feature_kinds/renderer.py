"""What a feature kind's renderer is: how the page's JSON shows one feature's input and its maps.

A :class:`FeatureRenderer` is registered by the type it shows (``features.feature_type``: "image",
"text", "general"); the :class:`~insights_app.page.present.Presenter` looks each feature's renderer
up by kind (a subclass of a built-in feature that names a kind of its own is shown as its
parent is; a kind nobody registered gets this base renderer: its numbers, as a flat list).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ...features import BaseFeature

if TYPE_CHECKING:
    from ...dataset import Example
    from ..query import Visualization


class Shown(Protocol):
    """What the presenter keeps for renderers: an example's input as shown (cached per example)."""

    def original(self, ex: Example, i: int) -> Any: ...

    def display_image(self, ex: Example, i: int) -> np.ndarray: ...


class FeatureRenderer:
    """The renderer of features of no registered kind (kind "base"): no input shown, the map's
    values as a flat list of at most 1000 numbers. Subclasses override what their kind shows."""

    kind = "base"

    def original(self, feature: BaseFeature, ex: Example, i: int, shown: Shown) -> Any:
        """What the feature shows for the example's input (JSON), or None."""
        return None

    def shown_map(self, attr_map: np.ndarray) -> np.ndarray:
        """The map as it is drawn (an image's is shrunk to the display bound)."""
        return np.asarray(attr_map)

    def scale(self, maps: Sequence[np.ndarray], vis: Visualization) -> float:
        """The magnitude drawn at full colour over ``maps`` (as drawn): both signs, the largest one."""
        peaks = [float(np.max(np.abs(m))) for m in maps if np.size(m)]
        peak = max(peaks, default=0.0)
        return peak if math.isfinite(peak) else 0.0

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
        """The map's JSON (the presenter adds the feature's name and type)."""
        return {"scores": [float(v) for v in np.asarray(attr_map).flatten().tolist()[:1000]]}
