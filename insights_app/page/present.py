"""Engine results -> the JSON the page shows: examples, each model's predictions and rendered maps.

A :class:`Presenter` keeps two caches, both bounded: what each feature shows for an
example's input (the same for every model and method) and the rendered attributions per
explanation and view, so a repeated page, or a change of colours only, costs JSON only. What a
feature shows is its kind's renderer's (:mod:`insights_app.page.feature_kinds`, looked up by kind).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..cache import LRUCache
from ..dataset import Example
from ..engine import Explanation, Prediction, Result
from ..features import BaseFeature, feature_type
from ..registry import Registry
from .feature_kinds import FeatureRenderer, build_registry, renderer_for
from .query import Visualization
from .render import shrink_image, to_display_image, warm_up

log = logging.getLogger(__name__)
ORIGINALS_KEPT = 1024  # (example, feature) inputs as shown
# Display images (uint8 arrays) kept between an example's card and its maps: each model's blended map
# reads the same one. Measured: converting a 224x224 input took about 1 ms, done once per card and
# once per model's map before; a page of 16 reads 16 of them, so 64 cover a page of every model.
DISPLAY_IMAGES_KEPT = 64
RENDERED_CACHE_BYTES = 64 * 2**20


class Presenter:
    """Turns examples and :class:`~insights_app.engine.Result` objects into API JSON."""

    def __init__(
        self,
        features: Sequence[BaseFeature],
        classes: Sequence[str],
        model_names: Sequence[str],
        renderers: Registry[FeatureRenderer] | None = None,
    ) -> None:
        self.features = list(features)
        # How each feature kind is shown, by kind (vis.register_feature_kind adds to it).
        self.renderers = renderers if renderers is not None else build_registry()
        self.classes = list(classes)
        self.model_names = list(model_names)
        self._originals: OrderedDict[tuple[int, int], Any] = OrderedDict()
        self._originals_lock = threading.Lock()
        self._display: OrderedDict[tuple[Any, int], np.ndarray] = OrderedDict()
        # Rendered attributions (PNG data URLs) per explanation and view: a repeated page is then
        # JSON only. Bounded by bytes; a miss just renders again.
        self._rendered = LRUCache(4096, RENDERED_CACHE_BYTES)
        # The default palette's colour tables and the drawing code's first calls, here rather than
        # in the first page (a fraction of a millisecond once a process has built them).
        warm_up(Visualization.palette)

    def example(self, ex: Example, models: list[dict[str, Any]]) -> dict[str, Any]:
        """An example with its inputs as shown and one entry per model (from :meth:`model`)."""
        return {
            "id": ex.id,
            "label": self.label(ex.label),
            "features": [dict(f.describe(), original=self.original(ex, i)) for i, f in enumerate(self.features)],
            "models": models,
        }

    def model(
        self,
        index: int,
        ex: Example,
        result: Result,
        vis: Visualization,
        top_k: int,
        scales: tuple[float, ...] | None = None,
        values: bool = False,
    ) -> dict[str, Any]:
        """One model's part of an example: its top predictions, target and rendered attributions.

        ``scales`` (per feature: the magnitude drawn at full colour) are those of the whole page
        when ``vis.scale`` is "page" (:meth:`page_scales`); ``values`` adds each image map's values.
        """
        out: dict[str, Any] = {
            "index": index,
            "name": self.model_names[index],
            "predictions": self.predictions(result.prediction, top_k),
            "target": None,
            "attributions": [],
            "error": result.error,
        }
        exp = result.explanation
        if exp is not None:
            out["target"] = self.target(exp.target)
            try:
                out["attributions"] = self._attributions(index, ex, exp, vis, scales, values)
            except Exception as exc:  # a render failure is this example's error, not the page's
                log.warning("render failed for example %s: %s", ex.id, exc, exc_info=True)
                out["error"] = f"rendering failed: {exc}"
        if result.metrics is not None:
            out["metrics"] = result.metrics
        return out

    def pending(self, index: int, pred: Prediction, top_k: int) -> dict[str, Any]:
        """One model's part of an example whose attributions are still being computed."""
        return {
            "index": index,
            "name": self.model_names[index],
            "predictions": self.predictions(pred, top_k),
            "target": None,
            "attributions": [],
            "error": pred.error,
            "pending": True,
        }

    def label(self, index: int | None) -> dict[str, Any] | None:
        """An example's label; one that is not a class of the model is no label (never a class named "5")."""
        if index is None or not 0 <= index < len(self.classes):
            return None
        return {"index": index, "name": self.classes[index]}

    def target(self, index: int | None) -> dict[str, Any] | None:
        """The output a map explains (an output without a class name is named by its index)."""
        if index is None:
            return None
        return {"index": index, "name": self.classes[index] if 0 <= index < len(self.classes) else str(index)}

    def predictions(self, pred: Prediction, k: int) -> list[dict[str, Any]]:
        return [
            {"index": i, "label": self.classes[i] if i < len(self.classes) else str(i), "score": s}
            for i, s in pred.top(k)
        ]

    def original(self, ex: Example, i: int) -> Any:
        """What a feature shows for an example's input (cached: the same for every model)."""
        key = (ex.id, i)
        with self._originals_lock:
            if key in self._originals:
                self._originals.move_to_end(key)
                return self._originals[key]
        f = self.features[i]
        value = self.renderer(i).original(f, ex, i, self)
        with self._originals_lock:
            self._originals[key] = value
            while len(self._originals) > ORIGINALS_KEPT:
                self._originals.popitem(last=False)
        return value

    def _attributions(
        self,
        index: int,
        ex: Example,
        exp: Explanation,
        vis: Visualization,
        scales: tuple[float, ...] | None,
        values: bool,
    ) -> list[dict[str, Any]]:
        key = (index, ex.id, exp.key, exp.target, vis, scales if vis.scale == "page" else None, values)
        rendered = self._rendered.get(key)
        if rendered is None:
            rendered = [
                dict(self._render_feature(ex, i, m, vis, self._scale_for(i, m, vis, scales), values), contribution=c)
                for i, (m, c) in enumerate(zip(exp.maps, exp.contributions))
            ]
            size = sum(len(a.get("image", "")) + len(a["values"]["data"] if "values" in a else "") for a in rendered)
            self._rendered.put(key, rendered, 256 + size)
        return list(rendered)

    def renderer(self, i: int) -> FeatureRenderer:
        """Feature ``i``'s renderer: its kind's."""
        return renderer_for(self.features[i], self.renderers)

    def _shown_map(self, i: int, attr_map: np.ndarray) -> np.ndarray:
        """A feature's map as it is drawn (an image's shrunk to the display bound)."""
        return self.renderer(i).shown_map(attr_map)

    def _scale_for(self, i: int, attr_map: np.ndarray, vis: Visualization, scales: tuple[float, ...] | None) -> float:
        """The magnitude drawn at full colour for feature ``i``'s map: the request's number, the
        page's, or the map's own."""
        if isinstance(vis.scale, float):
            return vis.scale
        if vis.scale == "page" and scales is not None and i < len(scales):
            return scales[i]
        return self._own_scale(i, [self._shown_map(i, attr_map)], vis)

    def _own_scale(self, i: int, maps: Sequence[np.ndarray], vis: Visualization) -> float:
        return self.renderer(i).scale(maps, vis)

    def page_scales(self, results: Sequence[Result], vis: Visualization) -> tuple[float, ...]:
        """Per feature, one magnitude for every map of these results (a page, all its models)."""
        per_feature: list[list[np.ndarray]] = [[] for _ in self.features]
        for r in results:
            if r.explanation is not None:
                for i, m in enumerate(r.explanation.maps):
                    per_feature[i].append(self._shown_map(i, m))
        return tuple(self._own_scale(i, maps, vis) for i, maps in enumerate(per_feature))

    def display_image(self, ex: Example, i: int) -> np.ndarray:
        """An image feature's input as shown, shrunk to MAX_DISPLAY_SIDE so that huge inputs
        cost bounded time and bytes per example (its attribution map is shrunk alike)."""
        key = (ex.id, i)
        with self._originals_lock:
            image = self._display.get(key)
            if image is not None:
                self._display.move_to_end(key)
                return image
        image = shrink_image(to_display_image(self.features[i].display_input(ex.inputs[i])))
        image.setflags(write=False)  # shared by the card and every model's map
        with self._originals_lock:
            self._display[key] = image
            while len(self._display) > DISPLAY_IMAGES_KEPT:
                self._display.popitem(last=False)
        return image

    def _render_feature(
        self, ex: Example, i: int, attr_map: np.ndarray, vis: Visualization, scale: float, values: bool
    ) -> dict[str, Any]:
        f = self.features[i]
        return {
            "name": f.name,
            "type": feature_type(f),
            **self.renderer(i).render(f, ex, i, attr_map, vis, scale, values, self),
        }
