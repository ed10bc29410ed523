"""Engine results -> the JSON the page shows: examples, each model's predictions and rendered maps.

A :class:`Presenter` keeps two caches, both bounded: what each feature shows for an
example's input (the same for every model and method) and the rendered attributions per
explanation and view, so a repeated page, or a change of colours only, costs JSON only.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .cache import LRUCache
from .dataset import Example
from .engine import Explanation, Prediction, Result
from .features import BaseFeature, GeneralFeature, ImageFeature, TextFeature
from .query import Visualization
from .render import encode_png_base64, render_attribution, shrink_image, shrink_map, to_display_image

log = logging.getLogger(__name__)
ORIGINALS_KEPT = 1024  # (example, feature) inputs as shown
RENDERED_CACHE_BYTES = 64 * 2**20


class Presenter:
    """Turns examples and :class:`~insights_app.engine.Result` objects into API JSON."""

    def __init__(self, features: Sequence[BaseFeature], classes: Sequence[str], model_names: Sequence[str]) -> None:
        self.features = list(features)
        self.classes = list(classes)
        self.model_names = list(model_names)
        self._originals: "OrderedDict[Tuple[int, int], Any]" = OrderedDict()
        self._originals_lock = threading.Lock()
        # Rendered attributions (PNG data URLs) per explanation and view: a repeated page is then
        # JSON only. Bounded by bytes; a miss just renders again.
        self._rendered = LRUCache(4096, RENDERED_CACHE_BYTES)

    def example(self, ex: Example, models: List[Dict[str, Any]]) -> Dict[str, Any]:
        """An example with its inputs as shown and one entry per model (from :meth:`model`)."""
        return {
            "id": ex.id,
            "label": self.label(ex.label),
            "features": [dict(f.describe(), original=self.original(ex, i)) for i, f in enumerate(self.features)],
            "models": models,
        }

    def model(self, index: int, ex: Example, result: Result, vis: Visualization, top_k: int) -> Dict[str, Any]:
        """One model's part of an example: its top predictions, target and rendered attributions."""
        out: Dict[str, Any] = {
            "index": index,
            "name": self.model_names[index],
            "predictions": self.predictions(result.prediction, top_k),
            "target": None,
            "attributions": [],
            "error": result.error,
        }
        exp = result.explanation
        if exp is not None:
            out["target"] = self.label(exp.target)
            try:
                out["attributions"] = self._attributions(index, ex, exp, vis)
            except Exception as exc:  # a render failure is this example's error, not the page's
                log.warning("render failed for example %s: %s", ex.id, exc, exc_info=True)
                out["error"] = f"rendering failed: {exc}"
        return out

    def pending(self, index: int, pred: Prediction, top_k: int) -> Dict[str, Any]:
        """One model's part of an example whose attributions are still being computed."""
        return {"index": index, "name": self.model_names[index], "predictions": self.predictions(pred, top_k),
                "target": None, "attributions": [], "error": pred.error, "pending": True}

    def label(self, index: Optional[int]) -> Optional[Dict[str, Any]]:
        if index is None:
            return None
        name = self.classes[index] if 0 <= index < len(self.classes) else str(index)
        return {"index": index, "name": name}

    def predictions(self, pred: Prediction, k: int) -> List[Dict[str, Any]]:
        return [{"index": i, "label": self.classes[i] if i < len(self.classes) else str(i), "score": s}
                for i, s in pred.top(k)]

    def original(self, ex: Example, i: int) -> Any:
        """What a feature shows for an example's input (cached: the same for every model)."""
        key = (ex.id, i)
        with self._originals_lock:
            if key in self._originals:
                self._originals.move_to_end(key)
                return self._originals[key]
        f, x = self.features[i], ex.inputs[i]
        if isinstance(f, ImageFeature):
            value = encode_png_base64(self._display_image(ex, i))
        elif isinstance(f, TextFeature):
            value = f.tokens(x)
        elif isinstance(f, GeneralFeature):  # a missing (NaN) or infinite value is shown as null
            value = [v if math.isfinite(v) else None for v in x.detach().float().flatten().tolist()]
        else:
            value = None
        with self._originals_lock:
            self._originals[key] = value
            while len(self._originals) > ORIGINALS_KEPT:
                self._originals.popitem(last=False)
        return value

    def _attributions(self, index: int, ex: Example, exp: Explanation, vis: Visualization) -> List[Dict[str, Any]]:
        key = (index, ex.id, exp.key, exp.target, vis)
        rendered = self._rendered.get(key)
        if rendered is None:
            rendered = [dict(self._render_feature(ex, i, m, vis), contribution=c)
                        for i, (m, c) in enumerate(zip(exp.maps, exp.contributions))]
            self._rendered.put(key, rendered, 256 + sum(len(a.get("image", "")) for a in rendered))
        return list(rendered)

    def _display_image(self, ex: Example, i: int) -> np.ndarray:
        """An image feature's input as shown, shrunk to MAX_DISPLAY_SIDE so that huge inputs
        cost bounded time and bytes per example (its attribution map is shrunk alike)."""
        return shrink_image(to_display_image(self.features[i].display_input(ex.inputs[i])))

    def _render_feature(self, ex: Example, i: int, attr_map: np.ndarray, vis: Visualization) -> Dict[str, Any]:
        f = self.features[i]
        out: Dict[str, Any] = {"name": f.name, "type": f.kind}
        if isinstance(f, ImageFeature):
            img = render_attribution(shrink_map(attr_map), self._display_image(ex, i), vis.method, vis.sign,
                                     vis.outlier_perc)
            out["image"] = encode_png_base64(img)
        elif isinstance(f, TextFeature):
            out["tokens"] = self.original(ex, i)
            out["scores"] = [float(v) for v in attr_map.tolist()]
        elif isinstance(f, GeneralFeature):
            out["categories"] = f.categories
            out["scores"] = [float(v) for v in attr_map.tolist()]
        else:
            out["scores"] = [float(v) for v in np.asarray(attr_map).flatten().tolist()[:1000]]
        return out
