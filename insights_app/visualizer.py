"""AttributionVisualizer: browse a dataset, filter it, page it, explain it.

The drop-in for ``captum.insights.AttributionVisualizer``. It owns one
:class:`~insights_app.engine.Engine` per model, an
:class:`~insights_app.dataset.ExampleStore` over the dataset, and the filter indexes
that make pages stable. ``serve()`` starts the web app; ``render()`` shows the same UI
in a notebook. Nothing here is global: several visualizers can live in one process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .dataset import DatasetError, Example, ExampleStore, stack_examples
from .engine import ComputationError, Engine, Explanation, LRUCache, Prediction, arguments_key, conv_layer_names
from .features import BaseFeature, GeneralFeature, ImageFeature, TextFeature
from .methods import MAX_EVALS_PER_EXAMPLE, MethodSpec, ValidationError, build_registry
from .query import (
    PAGE_SIZE_MAX,
    TOP_K_MAX,
    AttributeQuery,
    Filter,
    PageQuery,
    Visualization,
    parse_attribute_query,
    parse_page_query,
)
from .render import (
    MAX_DISPLAY_SIDE,
    SIGNS,
    VIS_METHODS,
    encode_png_base64,
    render_attribution,
    shrink_image,
    shrink_map,
    to_display_image,
)

log = logging.getLogger(__name__)
PREDICT_CHUNK = 64
RENDERED_CACHE_BYTES = 64 * 2**20


@dataclass
class FilterIndex:
    """Ids matching one filter, in dataset order, found so far by scanning."""

    matches: List[int] = field(default_factory=list)
    next_id: int = 0
    done: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class PageInfo:
    ids: List[int]
    page: int
    page_size: int
    scanned: int
    exhausted: bool
    has_next: bool
    total: Optional[int]
    message: str = ""

    def to_json(self) -> Dict[str, Any]:
        return {
            "ids": self.ids, "page": self.page, "page_size": self.page_size, "scanned": self.scanned,
            "exhausted": self.exhausted, "has_next": self.has_next, "has_prev": self.page > 0,
            "total": self.total, "message": self.message,
        }


class AttributionVisualizer:
    """Show a dataset's examples, the models' predictions and captum attributions.

    Arguments as in captum.insights: ``models`` (a module or a list), ``classes`` (names,
    indexed by output), ``features`` (one per model input), ``dataset`` (an iterable of
    :class:`~insights_app.Batch`), ``score_func`` (e.g. softmax, applied to outputs for
    display), ``use_label_for_attr`` (pass a class index as the attribution target; False
    for models with a scalar output). The keyword-only arguments are ours.
    """

    def __init__(
        self,
        models: Union[torch.nn.Module, Sequence[torch.nn.Module]],
        classes: Sequence[str],
        features: Union[BaseFeature, Sequence[BaseFeature]],
        dataset: Iterable[Any],
        score_func: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        use_label_for_attr: bool = True,
        *,
        model_names: Optional[Sequence[str]] = None,
        device: Optional[Union[str, torch.device]] = None,
        top_k: int = 4,
        default_method: str = "IntegratedGradients",
        internal_batch_size: int = 64,
        cache_entries: int = 1024,
        max_cached_examples: int = 4096,
        max_scan: int = 1024,
        title: str = "Insights",
    ) -> None:
        if not isinstance(models, (list, tuple)):
            models = [models]
        if not models:
            raise ValueError("at least one model is needed")
        if isinstance(features, BaseFeature):
            features = [features]
        self.features: List[BaseFeature] = list(features)
        if not self.features or not all(isinstance(f, BaseFeature) for f in self.features):
            raise ValueError("features must be a list of BaseFeature (ImageFeature, TextFeature, GeneralFeature)")
        self.classes = [str(c) for c in classes]
        if not self.classes:
            raise ValueError("classes must name at least one class")
        names = list(model_names) if model_names else [
            getattr(m, "insights_name", None) or (type(m).__name__ if len(models) == 1 else f"{type(m).__name__} #{i + 1}")
            for i, m in enumerate(models)
        ]
        if len(names) != len(models):
            raise ValueError("model_names must name every model")
        self.models = list(models)
        self.engines = [
            Engine(m, self.features, score_func, name=n, device=device, use_label_for_attr=use_label_for_attr,
                   internal_batch_size=internal_batch_size, cache_entries=cache_entries)
            for m, n in zip(models, names)
        ]
        self.score_func = score_func
        self.use_label_for_attr = use_label_for_attr
        self.store = ExampleStore(dataset, max_cached_examples)
        self.methods: Dict[str, MethodSpec] = build_registry()
        if default_method not in self.methods:
            raise ValueError(f"unknown default method {default_method!r}")
        self.default_method = default_method
        self.default_top_k = max(1, min(int(top_k), TOP_K_MAX))
        self.max_scan = max(1, int(max_scan))
        self.title = title
        self._filters: "OrderedDict[Filter, FilterIndex]" = OrderedDict()
        self._filters_lock = threading.Lock()
        self._originals: "OrderedDict[Tuple[int, int], Any]" = OrderedDict()
        self._originals_lock = threading.Lock()
        # Rendered attributions (PNG data URLs) per explanation and view: a repeated page is then
        # JSON only. Bounded by bytes; a miss just renders again.
        self._rendered = LRUCache(4096, RENDERED_CACHE_BYTES)
        self._image_hw: Optional[Tuple[int, int]] = None
        self._servers: List[Any] = []

    # ------------------------------------------------------------ description
    @property
    def image_hw(self) -> Tuple[int, int]:
        """(H, W) of the first image feature of the first example; bounds method costs."""
        if self._image_hw is None:
            hw = (224, 224)
            try:
                ex = self.store.get(0)
                for f, x in zip(self.features, ex.inputs):
                    if isinstance(f, ImageFeature) and x.dim() >= 2:
                        hw = (int(x.shape[-2]), int(x.shape[-1]))
                        break
            except (IndexError, DatasetError):
                pass
            self._image_hw = hw
        return self._image_hw

    def config(self) -> Dict[str, Any]:
        """What the page needs to build its controls."""
        return {
            "title": self.title,
            "classes": self.classes,
            "models": [{"index": i, "name": e.name, "conv_layers": conv_layer_names(e.model)}
                       for i, e in enumerate(self.engines)],
            "features": [f.describe() for f in self.features],
            "methods": [s.to_json() for s in self.methods.values()],
            "default_method": self.default_method,
            "visualization": {"methods": list(VIS_METHODS), "signs": list(SIGNS),
                              "default": {"method": "blended_heat_map", "sign": "absolute_value", "outlier_perc": 2.0}},
            "top_k": self.default_top_k,
            "limits": {"page_size_max": PAGE_SIZE_MAX, "top_k_max": TOP_K_MAX, "max_scan": self.max_scan,
                       "max_evals_per_example": MAX_EVALS_PER_EXAMPLE, "max_display_side": MAX_DISPLAY_SIDE},
            "image_size": list(self.image_hw),
        }

    # ------------------------------------------------------------ request parsing
    def parse_page(self, body: Any) -> PageQuery:
        return parse_page_query(body, self.methods, self.default_method, self.classes, self.image_hw)

    def parse_attribute(self, body: Any) -> AttributeQuery:
        return parse_attribute_query(body, self.methods, self.default_method, self.classes, self.image_hw,
                                     len(self.engines))

    # ------------------------------------------------------------ filtering and paging
    def _index_for(self, flt: Filter) -> FilterIndex:
        with self._filters_lock:
            idx = self._filters.get(flt)
            if idx is None:
                idx = self._filters[flt] = FilterIndex()
                while len(self._filters) > 64:
                    self._filters.popitem(last=False)
            else:
                self._filters.move_to_end(flt)
            return idx

    def _matches(self, flt: Filter, ex: Example, preds: Sequence[Prediction]) -> bool:
        if any(p.error for p in preds):
            return False  # a model failed on it: it matches no filter (unfiltered pages show the error)
        top1 = [p.indices[0] for p in preds]
        if flt.classes:
            if flt.class_source == "label":
                if ex.label is None or ex.label not in flt.classes:
                    return False
            elif not any(t in flt.classes for t in top1):
                return False
        if flt.prediction == "all":
            return True
        if ex.label is None:
            return False
        correct = all(t == ex.label for t in top1)
        return correct if flt.prediction == "correct" else any(t != ex.label for t in top1)

    def find_page(self, flt: Filter, page: int, page_size: int) -> PageInfo:
        """Ids of one page of examples matching ``flt``; scans at most ``max_scan`` new examples."""
        start, stop = page * page_size, (page + 1) * page_size
        if flt.trivial:
            ids = []
            for ex_id in range(start, stop):
                if not self.store.exists(ex_id):
                    break
                ids.append(ex_id)
            try:
                has_next = self.store.exists(stop) if len(ids) == page_size else False
            except DatasetError:  # the next page cannot be read: show this one, the next will say why
                has_next = True
            total = self.store.length
            msg = "" if ids else (f"The dataset has {total} examples; this page is past its end." if total is not None
                                  else "The dataset is empty.")
            return PageInfo(ids, page, page_size, stop if has_next else (total or start + len(ids)),
                            self.store.length is not None and not has_next, has_next, total, msg)
        idx = self._index_for(flt)
        with idx.lock:
            budget = self.max_scan
            while len(idx.matches) < stop + 1 and not idx.done and budget > 0:
                batch: List[Example] = []
                while len(batch) < min(PREDICT_CHUNK, budget):
                    try:
                        batch.append(self.store.get(idx.next_id + len(batch)))
                    except IndexError:
                        idx.done = True
                        break
                if not batch:
                    break
                preds = self._predict_all(batch)
                for j, ex in enumerate(batch):
                    if self._matches(flt, ex, [p[j] for p in preds]):
                        idx.matches.append(ex.id)
                idx.next_id += len(batch)
                budget -= len(batch)
            ids = idx.matches[start:stop]
            has_next = len(idx.matches) > stop or not idx.done
            msg = ""
            if not ids:
                if idx.done:
                    msg = f"No example matches this filter ({idx.next_id} examples scanned, the whole dataset)."
                else:
                    msg = (f"No match on this page yet: {idx.next_id} examples scanned so far "
                           f"(at most {self.max_scan} per request). Press Next to scan further.")
            elif flt.needs_label and not idx.matches:
                msg = "This filter needs labels; examples without a label are not shown."
            return PageInfo(ids, page, page_size, idx.next_id, idx.done, has_next,
                            self.store.length if not flt.classes and flt.prediction == "all" else None, msg)

    def _predict_all(self, examples: Sequence[Example]) -> List[List[Prediction]]:
        raw, extra = stack_examples(examples)
        ids = [e.id for e in examples]
        return [engine.predict(ids, raw, extra) for engine in self.engines]

    # ------------------------------------------------------------ explanations
    def _original(self, ex: Example, i: int) -> Any:
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
        elif isinstance(f, GeneralFeature):
            value = [float(v) for v in x.detach().float().flatten().tolist()]
        else:
            value = None
        with self._originals_lock:
            self._originals[key] = value
            while len(self._originals) > 1024:
                self._originals.popitem(last=False)
        return value

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
            out["tokens"] = self._original(ex, i)
            out["scores"] = [float(v) for v in attr_map.tolist()]
        elif isinstance(f, GeneralFeature):
            out["categories"] = f.categories
            out["scores"] = [float(v) for v in attr_map.tolist()]
        else:
            out["scores"] = [float(v) for v in np.asarray(attr_map).flatten().tolist()[:1000]]
        return out

    def _label_json(self, index: Optional[int]) -> Optional[Dict[str, Any]]:
        if index is None:
            return None
        name = self.classes[index] if 0 <= index < len(self.classes) else str(index)
        return {"index": index, "name": name}

    def _predictions_json(self, pred: Prediction, k: int) -> List[Dict[str, Any]]:
        return [{"index": i, "label": self.classes[i] if i < len(self.classes) else str(i), "score": s}
                for i, s in pred.top(k)]

    def _model_json(self, engine_index: int, ex: Example, pred: Prediction, exp: Optional[Explanation],
                    q: PageQuery | AttributeQuery, error: Optional[str], args_key: str) -> Dict[str, Any]:
        engine = self.engines[engine_index]
        out: Dict[str, Any] = {
            "index": engine_index,
            "name": engine.name,
            "predictions": self._predictions_json(pred, q.top_k),
            "target": None,
            "attributions": [],
            "error": error,
        }
        if exp is not None:
            out["target"] = self._label_json(exp.target)
            key = (engine_index, ex.id, args_key, exp.target, q.visualization)
            try:
                rendered = self._rendered.get(key)
                if rendered is None:
                    rendered = [
                        dict(self._render_feature(ex, i, m, q.visualization), contribution=c)
                        for i, (m, c) in enumerate(zip(exp.maps, exp.contributions))
                    ]
                    self._rendered.put(key, rendered, 256 + sum(len(a.get("image", "")) for a in rendered))
                out["attributions"] = list(rendered)
            except Exception as exc:  # a render failure is this example's error, not the page's
                log.warning("render failed for example %s: %s", ex.id, exc, exc_info=True)
                out["error"] = f"rendering failed: {exc}"
        return out

    def _example_json(self, ex: Example, models: List[Dict[str, Any]]) -> Dict[str, Any]:
        return {
            "id": ex.id,
            "label": self._label_json(ex.label),
            "features": [dict(f.describe(), original=self._original(ex, i)) for i, f in enumerate(self.features)],
            "models": models,
        }

    def _explain_isolating(self, engine: Engine, q: Any, examples: Sequence[Example],
                           targets: Sequence[Optional[int]]) -> List[Tuple[Optional[Explanation], Optional[str]]]:
        """Explain a chunk in one call; if it fails, retry example by example to isolate the bad ones."""
        raw, extra = stack_examples(examples)
        ids = [e.id for e in examples]
        try:
            return [(e, None) for e in engine.explain(q.method, q.arguments, ids, raw, targets, extra)]
        except ComputationError as exc:
            if len(examples) == 1:
                return [(None, str(exc))]
        out: List[Tuple[Optional[Explanation], Optional[str]]] = []
        for ex, t in zip(examples, targets):
            out.extend(self._explain_isolating(engine, q, [ex], [t]))
        return out

    def _predict_and_explain(self, engine: Engine, q: PageQuery | AttributeQuery, examples: Sequence[Example],
                             requested: Optional[Sequence[Optional[int]]] = None,
                             ) -> Tuple[List[Prediction], List[Tuple[Optional[Explanation], Optional[str]]]]:
        """One model's predictions and (explanation, error) pairs for a chunk of examples.

        Methods whose first forward pass is on the inputs get both from one pass (see
        :meth:`Engine.predict_and_explain`); otherwise, or if that fails, the examples are
        predicted, then explained, with failures isolated to the examples that cause them.
        """
        raw, extra = stack_examples(examples)
        ids = [e.id for e in examples]
        if engine.shares_forward(q.method, ids):
            both = engine.predict_and_explain(q.method, q.arguments, ids, raw, requested, extra)
            if both is not None:
                return both[0], [(e, None) for e in both[1]]
        preds = engine.predict(ids, raw, extra)
        results: List[Tuple[Optional[Explanation], Optional[str]]] = [(None, p.error) for p in preds]
        ok = [j for j, p in enumerate(preds) if not p.error]  # the model failed on the others
        if ok:
            targets = [engine.target(preds[j], requested[j] if requested else None) for j in ok]
            for j, r in zip(ok, self._explain_isolating(engine, q, [examples[j] for j in ok], targets)):
                results[j] = r
        return preds, results

    def explain_examples(self, q: PageQuery, examples: Sequence[Example]) -> List[Dict[str, Any]]:
        """Predictions and attributions of every model for a chunk of examples (batched)."""
        if not examples:
            return []
        args_key = arguments_key(q.method.name, q.arguments)
        per_model: List[List[Dict[str, Any]]] = []
        for m, engine in enumerate(self.engines):
            preds, results = self._predict_and_explain(engine, q, examples)
            per_model.append([self._model_json(m, ex, preds[j], exp, q, err, args_key)
                              for j, (ex, (exp, err)) in enumerate(zip(examples, results))])
        return [self._example_json(ex, [per_model[m][j] for m in range(len(self.engines))])
                for j, ex in enumerate(examples)]

    def iter_page(self, q: PageQuery, first_chunk: int = 1) -> Iterator[Dict[str, Any]]:
        """Events for one page: ``page`` first, then each ``example`` as soon as it is ready.

        The first ``first_chunk`` examples are computed alone so the page shows something
        early; the rest go through captum in one batched call.
        """
        t0 = time.perf_counter()
        info = self.find_page(q.filter, q.page, q.page_size)
        yield {"type": "page", **info.to_json()}
        examples = self.store.get_many(info.ids)
        chunks = [examples] if first_chunk <= 0 or len(examples) <= first_chunk else [
            examples[:first_chunk], examples[first_chunk:]]
        for chunk in chunks:
            for ex_json in self.explain_examples(q, chunk):
                yield {"type": "example", "example": ex_json}
        yield {"type": "done", "elapsed_ms": round((time.perf_counter() - t0) * 1000, 1)}

    def page(self, body: Any) -> Dict[str, Any]:
        """One page as a single JSON document (the non-streaming form of /api/v1/examples)."""
        q = self.parse_page(body) if not isinstance(body, PageQuery) else body
        result: Dict[str, Any] = {"page": None, "examples": []}
        for event in self.iter_page(q, first_chunk=0):
            if event["type"] == "page":
                result["page"] = {k: v for k, v in event.items() if k != "type"}
            elif event["type"] == "example":
                result["examples"].append(event["example"])
            else:
                result["elapsed_ms"] = event["elapsed_ms"]
        return result

    def attribute(self, body: Any) -> Dict[str, Any]:
        """One example, one model, any target class (clicking a class in the page)."""
        q = self.parse_attribute(body) if not isinstance(body, AttributeQuery) else body
        try:
            ex = self.store.get(q.example_id)
        except IndexError:
            raise ValidationError("example_id", f"no example {q.example_id} in the dataset") from None
        engine = self.engines[q.model]
        (pred,), ((exp, err),) = self._predict_and_explain(engine, q, [ex], [q.target])
        args_key = arguments_key(q.method.name, q.arguments)
        return {"example": self._example_json(ex, [self._model_json(q.model, ex, pred, exp, q, err, args_key)])}

    # ------------------------------------------------------------ serving
    def serve(self, blocking: bool = False, debug: bool = False, port: Optional[int] = None,
              bind_all: bool = False, *, host: Optional[str] = None, token: Optional[str] = None,
              threads: int = 8, quiet: bool = False) -> int:
        """Start the web app (waitress) and return its port once it accepts connections.

        Binds 127.0.0.1 unless ``bind_all`` or ``host`` says otherwise; any other address
        requires a token, generated and printed when not given. ``debug`` only raises the
        log level: the interactive debugger is never enabled.
        """
        from .server import start_server

        if host is None:
            host = "0.0.0.0" if bind_all else "127.0.0.1"
        handle = start_server(self, host=host, port=port or 0, token=token, threads=threads, debug=debug, quiet=quiet)
        self._servers.append(handle)
        if blocking:
            handle.wait()
        return handle.port

    @property
    def url(self) -> Optional[str]:
        return self._servers[-1].url if self._servers else None

    def stop(self) -> None:
        """Stop every server this visualizer started."""
        while self._servers:
            self._servers.pop().close()

    def render(self, debug: bool = False, height: int = 900) -> None:
        """Show the UI inside a Jupyter notebook (JupyterLab 4, Notebook 7, VS Code).

        Returns None, as captum.insights did: a returned widget, as a cell's last value, would
        be shown a second time. ``insights_app.notebook.InsightsWidget(vis)`` is the widget
        itself, to place in a layout of your own.
        """
        from .notebook import InsightsWidget

        widget = InsightsWidget(self, height=height)
        try:
            from IPython.display import display

            display(widget)
        except ImportError:  # pragma: no cover - outside IPython
            pass
