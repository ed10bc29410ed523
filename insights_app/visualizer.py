"""AttributionVisualizer: the drop-in for ``captum.insights.AttributionVisualizer``.

A thin facade: it checks its arguments and owns the parts, each of which does one job. One
:class:`~insights_app.engine.Engine` per model (prediction and attribution), an
:class:`~insights_app.dataset.ExampleStore` over the dataset, a
:class:`~insights_app.page.paging.Pager` (which examples a page shows), a
:class:`~insights_app.page.present.Presenter` (results as JSON), and its registries of methods
and views. ``serve()`` starts the web app and ``render()`` shows the same UI in a notebook;
both answer through the views. Nothing here is global: several visualizers can live in one
process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Any, cast

import torch

from .cancel import Cancel
from .dataset import Example, ExampleStore
from .engine import Engine, Prediction
from .errors import DatasetError
from .features import BaseFeature, ImageFeature
from .legacy import FilterConfig, VisualizationOutput, insights_config, visualized
from .limits import TOP_K_MAX
from .methods import AttributionContext, Attributions, MethodSpec, Param, build_registry, method
from .metrics.registered import metric_registry
from .metrics.spec import MetricSpec
from .page.feature_kinds import FeatureRenderer
from .page.paging import PageInfo, Pager
from .page.present import Presenter
from .page.query import ATTRIBUTE_BODY, PAGE_BODY, AttributeQuery, Defaults, Filter, PageQuery
from .page.service import attributed, page_document, page_events, predictions
from .store import ModelStore, Store
from .triage import DEFAULT_PASS_LIMIT, DatasetPass, Interpretation, LossFn, interpretation_of
from .views import View, build_views


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
        models: torch.nn.Module | Sequence[torch.nn.Module],
        classes: Sequence[str],
        features: BaseFeature | Sequence[BaseFeature],
        dataset: Iterable[Any],
        score_func: Callable[[torch.Tensor], torch.Tensor] | None = None,
        use_label_for_attr: bool = True,
        *,
        model_names: Sequence[str] | None = None,
        device: str | torch.device | None = None,
        top_k: int = 4,
        default_method: str = "IntegratedGradients",
        internal_batch_size: int = 64,
        cache_entries: int = 1024,
        max_cached_examples: int = 4096,
        max_scan: int = 1024,
        title: str = "Insights",
        loss_func: None | LossFn | Sequence[LossFn | None] = None,
        max_pass_examples: int = DEFAULT_PASS_LIMIT,
        store: None | str | os.PathLike[str] | Store = None,
    ) -> None:
        models = [models] if isinstance(models, torch.nn.Module) else list(models)
        if not models:
            raise ValueError("at least one model is needed")
        if isinstance(features, BaseFeature):
            features = [features]
        self.features: list[BaseFeature] = list(features)
        if not self.features or not all(isinstance(f, BaseFeature) for f in self.features):
            raise ValueError("features must be a list of BaseFeature (ImageFeature, TextFeature, GeneralFeature)")
        self.classes = [str(c) for c in classes]
        if not self.classes:
            raise ValueError("classes must name at least one class")
        names = (
            list(model_names)
            if model_names
            else [
                getattr(m, "insights_name", None)
                or (type(m).__name__ if len(models) == 1 else f"{type(m).__name__} #{i + 1}")
                for i, m in enumerate(models)
            ]
        )
        if len(names) != len(models):
            raise ValueError("model_names must name every model")
        self.models = list(models)
        # The persistent store (store=DIR): results keyed by content survive restarts (insights_app.store).
        self.results_store: Store | None = store if isinstance(store, Store) or store is None else Store(store)
        self.engines = [
            Engine(
                m,
                self.features,
                score_func,
                name=n,
                device=device,
                use_label_for_attr=use_label_for_attr,
                internal_batch_size=internal_batch_size,
                cache_entries=cache_entries,
                store=None
                if self.results_store is None
                else ModelStore(self.results_store, m, self.classes, score_func),
            )
            for m, n in zip(models, names)
        ]
        self.score_func = score_func
        self.use_label_for_attr = use_label_for_attr
        self.store = ExampleStore(dataset, max_cached_examples, max_read=max_scan, n_classes=len(self.classes))
        self.methods = build_registry()
        self.metrics = metric_registry()  # the quality metrics a request may ask for (vis.register_metric)
        if default_method not in self.methods:
            raise ValueError(f"unknown default method {default_method!r}")
        self.default_method = default_method
        self.views = build_views()
        self.default_top_k = max(1, min(int(top_k), TOP_K_MAX))
        self.max_scan = max(1, int(max_scan))
        self.title = title
        losses: list[LossFn | None] = (
            list(loss_func)
            if isinstance(loss_func, (list, tuple))
            else [cast("LossFn | None", loss_func)] * len(self.engines)
        )
        if len(losses) != len(self.engines):
            raise ValueError("loss_func must be one function, or one per model")
        self.dataset_pass = DatasetPass(self.engines, self.store, len(self.classes), losses, max_pass_examples)
        self.pager = Pager(self.store, partial(predictions, self.engines), self.max_scan, self.dataset_pass)
        self.presenter = Presenter(self.features, self.classes, names)
        self._image_hw: tuple[int, int] | None = None
        self._servers: list[Any] = []
        # captum.insights' configuration of visualize() (scripts set `vis._config = FilterConfig(...)`,
        # as captum's own tests do; `filter_config` is the public name), and where its next call starts.
        self._config = FilterConfig()
        self._visualize_from = 0

    # ------------------------------------------------------------ extending
    def register_method(self, spec: MethodSpec, *, replace: bool = False) -> MethodSpec:
        """Offer one more attribution method (a :class:`~insights_app.methods.MethodSpec`)."""
        return self.methods.register(spec, replace=replace)

    def register_metric(self, spec: MetricSpec, *, replace: bool = False) -> MetricSpec:
        """Offer one more quality metric (a :class:`~insights_app.metrics.spec.MetricSpec`): requests,
        the OpenAPI document, ``/config`` and so the page, and the method report read it from here."""
        return self.metrics.register(spec, replace=replace)

    def register_feature_kind(self, renderer: FeatureRenderer, *, replace: bool = False) -> FeatureRenderer:
        """Show features of ``renderer.kind`` with it (a :class:`~insights_app.page.feature_kinds.FeatureRenderer`)."""
        return self.presenter.renderers.register(renderer, replace=replace)

    def method(
        self,
        name: str,
        *,
        label: str = "",
        help: str = "",
        params: Sequence[Param] = (),
        replace: bool = False,
        **declaration: Any,
    ) -> Callable[[Callable[[AttributionContext], Attributions]], MethodSpec]:
        """Decorator: register the decorated runner as a method of this visualizer (see README)."""

        def register(run: Callable[[AttributionContext], Attributions]) -> MethodSpec:
            spec = method(name, label=label, help=help, params=params, **declaration)(run)
            return self.register_method(spec, replace=replace)

        return register

    def register_view(self, view: View, *, replace: bool = False) -> View:
        """Serve one more request kind, over HTTP (``/api/v1/<kind>``) and in the notebook widget."""
        return self.views.register(view, replace=replace)

    # ------------------------------------------------------------ description
    @property
    def image_hw(self) -> tuple[int, int]:
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

    def config(self) -> dict[str, Any]:
        """What the page needs to build its controls (``GET /api/v1/config``)."""
        return self.views["config"].answer(self, None)

    # ------------------------------------------------------------ queries
    @property
    def defaults(self) -> Defaults:
        """What a request leaves out: this visualizer's methods, default method and top-k."""
        return Defaults(
            self.methods,
            self.default_method,
            self.classes,
            lambda: self.image_hw,
            self.default_top_k,
            len(self.engines),
            self.metrics,
        )

    def parse_page(self, body: Any) -> PageQuery:
        return PAGE_BODY.parse(body, self.defaults)

    def parse_attribute(self, body: Any) -> AttributeQuery:
        return ATTRIBUTE_BODY.parse(body, self.defaults)

    def predictions(self, examples: Sequence[Example], cancel: Cancel | None = None) -> list[list[Prediction]]:
        """Every model's predictions of some examples (one list per model), in one pass per model."""
        return predictions(self.engines, examples, cancel)

    def find_page(self, flt: Filter, page: int, page_size: int) -> PageInfo:
        """Ids of one page of examples matching ``flt`` (see :mod:`insights_app.page.paging`)."""
        return self.pager.find_page(flt, page, page_size)

    def iter_page(self, q: PageQuery, first_chunk: int = 1) -> Iterator[dict[str, Any]]:
        """Events of one page: ``page``, then each ``example`` as soon as it is ready, then ``done``."""
        return page_events(self, q, first_chunk)

    def page(self, body: Any) -> dict[str, Any]:
        """One page as a single JSON document (the non-streaming form of /api/v1/examples)."""
        return page_document(self, body if isinstance(body, PageQuery) else self.parse_page(body))

    def attribute(self, body: Any) -> dict[str, Any]:
        """One example, one model, any target class (clicking a class in the page)."""
        return attributed(self, body if isinstance(body, AttributeQuery) else self.parse_attribute(body))

    # ------------------------------------------------------------ captum.insights' Python API (legacy.py)
    @property
    def filter_config(self) -> FilterConfig:
        """What ``visualize()`` answers (a :class:`~insights_app.legacy.FilterConfig`); the page does
        not read it (its requests say what they want)."""
        return self._config

    @filter_config.setter
    def filter_config(self, config: FilterConfig) -> None:
        if not isinstance(config, FilterConfig):
            raise TypeError("filter_config must be a FilterConfig")
        self._config = config

    def visualize(self, config: FilterConfig | None = None) -> list[list[VisualizationOutput]]:
        """captum.insights' ``visualize()``: the next examples the filter keeps (``config``, else
        :attr:`filter_config`), each as one ``VisualizationOutput`` per model that keeps it, with each
        feature's ``FeatureOutput``. Each call goes on from where the last one stopped, wrapping
        around to the first example; a filter nothing matches answers an empty list after scanning
        ``max_scan`` examples (captum looped for ever)."""
        if config is not None:
            self.filter_config = config
        answer = visualized(self, self._config, self._visualize_from)
        self._visualize_from = answer.next_id
        return answer.outputs

    def get_insights_config(self) -> dict[str, Any]:
        """captum.insights' ``get_insights_config()``: ``classes``, ``methods``, ``method_arguments``
        (per method, per argument: ``value``, ``limit``, ``type``) and ``selected_method``."""
        return insights_config(self, self._config)

    # ------------------------------------------------------------ triage
    def interpretation(
        self, model: int | str = 0, progress: bool = True, timeout: float | None = None
    ) -> Interpretation:
        """fastai-style triage of one model (``confusion_matrix``, ``most_confused``, ``top_losses``,
        ``per_class``, ``accuracy``), from the dataset pass: run now (with a progress bar) unless
        it has run. Interrupting it (Ctrl-C, the notebook's stop button) pauses the pass; the next
        call resumes it. A pass that could not cover everything gives what it covered, with a
        warning that says why."""
        return interpretation_of(self, model, progress=progress, timeout=timeout)

    # ------------------------------------------------------------ serving
    def serve(
        self,
        blocking: bool = False,
        debug: bool = False,
        port: int | None = None,
        bind_all: bool = False,
        *,
        host: str | None = None,
        token: str | None = None,
        threads: int = 8,
        quiet: bool = False,
    ) -> int:
        """Start the web app (waitress) and return its port once it accepts connections.

        Binds 127.0.0.1 unless ``bind_all`` or ``host`` says otherwise; any other address
        requires a token, generated and printed when not given. ``debug`` only raises the
        log level: the interactive debugger is never enabled.
        """
        from .transport.serving import start_server

        if host is None:
            host = "0.0.0.0" if bind_all else "127.0.0.1"
        handle = start_server(self, host=host, port=port or 0, token=token, threads=threads, debug=debug, quiet=quiet)
        self._servers.append(handle)
        if blocking:
            handle.wait()
        return handle.port

    @property
    def url(self) -> str | None:
        return self._servers[-1].url if self._servers else None

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop every server this visualizer started, and wait until no model computes.

        Running requests are cancelled (they stop before their next forward pass). Returns
        whether every model's computation ended within ``timeout`` seconds: exiting the
        interpreter while torch computes on another thread aborts the process.
        """
        deadline = time.monotonic() + timeout
        self.dataset_pass.halt(timeout=max(0.1, min(5.0, deadline - time.monotonic())))
        while self._servers:
            self._servers.pop().close(timeout=max(0.1, deadline - time.monotonic()))
        return all(engine.compute.wait_idle(max(0.0, deadline - time.monotonic())) for engine in self.engines)

    def render(self, debug: bool = False, height: int | None = 900) -> None:
        """Show the UI inside a Jupyter notebook (JupyterLab 4, Notebook 7, VS Code).

        Returns None, as captum.insights did: a returned widget, as a cell's last value, would
        be shown a second time. ``insights_app.transport.notebook.InsightsWidget(vis)`` is the widget
        itself, to place in a layout of your own.
        """
        from .transport.notebook import InsightsWidget

        widget = InsightsWidget(self, height=height)
        try:
            from IPython.display import display

            display(widget)
        except ImportError:  # pragma: no cover - outside IPython
            pass
