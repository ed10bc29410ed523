"""What the modules below the facade may use of a visualizer, as a type a checker can follow.

The page service, the views, the exports, the triage and the transports all take the
:class:`~insights_app.AttributionVisualizer`, but none of them may import it (it imports them).
:class:`VisualizerLike` names the parts they read, so that ``vis.engines[0].run`` is a typed call
from any of them; the visualizer satisfies it (mypy checks that where it hands itself down).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .cancel import Cancel
    from .dataset import Example, ExampleStore
    from .engine import Engine, Prediction
    from .features import BaseFeature
    from .methods import MethodSpec
    from .metrics.spec import MetricSpec
    from .page.fields import Defaults
    from .page.paging import Pager
    from .page.present import Presenter
    from .page.query import AttributeQuery, PageQuery
    from .store import Store
    from .triage import DatasetPass, Interpretation


class VisualizerLike(Protocol):
    """The parts of a visualizer that the layers below it use (read-only)."""

    @property
    def title(self) -> str: ...

    @property
    def classes(self) -> Sequence[str]: ...

    @property
    def features(self) -> Sequence[BaseFeature]: ...

    @property
    def engines(self) -> Sequence[Engine]: ...

    @property
    def methods(self) -> Mapping[str, MethodSpec]: ...

    @property
    def metrics(self) -> Mapping[str, MetricSpec]: ...

    @property
    def default_method(self) -> str: ...

    @property
    def default_top_k(self) -> int: ...

    @property
    def max_scan(self) -> int: ...

    @property
    def store(self) -> ExampleStore: ...

    @property
    def results_store(self) -> Store | None: ...

    @property
    def pager(self) -> Pager: ...

    @property
    def presenter(self) -> Presenter: ...

    @property
    def dataset_pass(self) -> DatasetPass: ...

    @property
    def image_hw(self) -> tuple[int, int]: ...

    @property
    def defaults(self) -> Defaults: ...

    def parse_page(self, body: Any) -> PageQuery: ...

    def parse_attribute(self, body: Any) -> AttributeQuery: ...

    def predictions(self, examples: Sequence[Example], cancel: Cancel | None = None) -> list[list[Prediction]]: ...

    def page(self, body: Any) -> dict[str, Any]: ...

    def attribute(self, body: Any) -> dict[str, Any]: ...

    def interpretation(
        self, model: int | str = 0, progress: bool = True, timeout: float | None = None
    ) -> Interpretation: ...
