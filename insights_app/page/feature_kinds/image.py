"""Image features: the input as a PNG, the map rendered on it as captum draws it (render.py)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ...features import BaseFeature
from ..jsonwire import Verbatim
from ..render import (
    attribution_scale,
    encode_png_base64,
    normalize_attribution,
    render_attribution,
    scale_range,
    shrink_map,
)
from .renderer import FeatureRenderer, Shown

if TYPE_CHECKING:
    from ...dataset import Example
    from ..query import Visualization


class ImageRenderer(FeatureRenderer):
    kind = "image"

    def original(self, feature: BaseFeature, ex: Example, i: int, shown: Shown) -> Any:
        return encode_png_base64(shown.display_image(ex, i))

    def shown_map(self, attr_map: np.ndarray) -> np.ndarray:
        return shrink_map(attr_map)

    def scale(self, maps: Sequence[np.ndarray], vis: Visualization) -> float:
        return attribution_scale(maps, vis.sign, vis.outlier_perc)

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
        drawn = shrink_map(attr_map)
        norm = normalize_attribution(drawn, vis.sign, vis.outlier_perc, scale)
        img = render_attribution(
            drawn, shown.display_image(ex, i), vis.method, vis.sign, vis.outlier_perc, norm=norm, palette=vis.palette
        )
        out: dict[str, Any] = {"image": encode_png_base64(img), "scale": scale_range(vis.sign, scale)}
        if values:  # the map as drawn, for the large view's value under the pointer
            data = np.ascontiguousarray(drawn, dtype="<f4")
            out["values"] = {
                "shape": list(data.shape),
                "data": Verbatim(base64.b64encode(data.tobytes()).decode("ascii")),
            }
        return out


IMAGE = ImageRenderer()
