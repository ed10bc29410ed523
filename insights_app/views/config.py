"""``GET /api/v1/config``: everything the page needs to build its controls."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from .. import limits
from ..methods.layers import conv_layer_names
from ..metrics.options import metrics_config
from ..page.query import CLASS_SOURCES, PAGE_SIZE_DEFAULT, PREDICTION_FILTERS, SCALES, Visualization
from ..page.render import PALETTES, SIGNS, SINGLE_SIGN_METHODS, VIS_METHODS, colormap_stops
from ..protocols import VisualizerLike
from .view import View


def config(vis: VisualizerLike, body: Any = None) -> dict[str, Any]:
    """Classes, models, features, methods (their parameter schemas), metrics, display options and limits."""
    return {
        "title": vis.title,
        "classes": vis.classes,
        "models": [
            {"index": i, "name": e.name, "conv_layers": conv_layer_names(e.model)} for i, e in enumerate(vis.engines)
        ],
        "features": [f.describe() for f in vis.features],
        "methods": [s.to_json() for s in vis.methods.values()],
        "default_method": vis.default_method,
        # name, label, direction, settings (bounds, defaults) and sets of each quality metric
        "metrics": metrics_config(vis.metrics),
        "visualization": {
            "methods": list(VIS_METHODS),
            "signs": list(SIGNS),
            "single_sign_methods": list(SINGLE_SIGN_METHODS),
            "default": asdict(Visualization()),
            "palettes": list(PALETTES),
            "scales": list(SCALES),
            "colormaps": {p: {s: colormap_stops(s, p) for s in SIGNS} for p in PALETTES},
        },
        "top_k": vis.default_top_k,
        "page_size": PAGE_SIZE_DEFAULT,
        "filters": {"prediction": list(PREDICTION_FILTERS), "class_source": list(CLASS_SOURCES)},
        "limits": {
            "page_size_max": limits.PAGE_SIZE_MAX,
            "top_k_max": limits.TOP_K_MAX,
            "max_scan": vis.max_scan,
            "max_evals_per_example": limits.MAX_EVALS_PER_EXAMPLE,
            "max_display_side": limits.MAX_DISPLAY_SIDE,
        },
        "image_size": list(vis.image_hw),
    }


VIEW = View(
    "config",
    config,
    "Classes, models, features, methods and their parameter schemas",
    takes_body=False,
    errors=(401, 403),
    responses={
        "200": {"description": "configuration", "content": {"application/json": {"schema": {"type": "object"}}}}
    },
)
