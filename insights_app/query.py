"""Validation of API request bodies into typed queries.

Every field a client sends is checked here (type, bounds, allowed values) and a bad one
raises :class:`~insights_app.methods.ValidationError` naming it, which the server turns
into a 400. Nothing past this module sees unvalidated input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ValidationError
from .limits import EXAMPLE_ID_MAX, MAX_EVALS_PER_EXAMPLE, PAGE_MAX, PAGE_SIZE_MAX, TOP_K_MAX
from .methods import MethodSpec
from .metrics import MetricOptions, check_cost, parse_metrics
from .metrics.options import ABSENT
from .render import PALETTES, SIGNS, VIS_METHODS, sign_problem

PAGE_SIZE_DEFAULT = 4
PREDICTION_FILTERS = ("all", "correct", "incorrect")
CLASS_SOURCES = ("prediction", "label")
ORDERS = ("dataset", "loss")  # "loss": largest first (the dataset pass's losses)


SCALES = ("map", "page")


@dataclass(frozen=True)
class Visualization:
    """How attribution maps are drawn; the defaults are the page's and the API's.

    ``scale`` is which magnitude is drawn at full colour: "map" (each map its own, captum's
    rule), "page" (one for every map of the page, so that colours compare across cards), or a
    number (the same for every request that sends it). A request that names no ``sign`` gets
    its method's (signed methods show their sign).
    """

    method: str = "blended_heat_map"
    sign: str = "absolute_value"
    outlier_perc: float = 2.0
    palette: str = "colorblind"
    scale: str | float = "map"


@dataclass(frozen=True)
class Filter:
    classes: tuple[int, ...] = ()
    prediction: str = "all"
    class_source: str = "prediction"
    # Read from the dataset pass (triage): one confusion cell (actual, predicted), a range of the
    # top prediction's score, the models disagreeing, the loss order; ``model`` is the model whose
    # predictions, scores and losses they mean.
    pair: tuple[int, int] | None = None
    confidence: tuple[float, float] | None = None
    disagree: bool = False
    order: str = "dataset"
    model: int = 0

    @property
    def trivial(self) -> bool:
        return not self.classes and self.prediction == "all" and not self.needs_pass

    @property
    def needs_pass(self) -> bool:
        """Whether the pages come from the dataset pass's records instead of a scan."""
        return self.pair is not None or self.confidence is not None or self.disagree or self.order != "dataset"

    @property
    def needs_label(self) -> bool:
        return (
            self.prediction != "all"
            or (bool(self.classes) and self.class_source == "label")
            or self.pair is not None
            or self.order == "loss"
        )


@dataclass(frozen=True)
class Query:
    method: MethodSpec
    arguments: dict[str, Any]
    visualization: Visualization
    top_k: int
    metrics: MetricOptions | None = None  # the quality metrics asked for each map (insights_app.metrics)


@dataclass(frozen=True)
class PageQuery(Query):
    filter: Filter = field(default_factory=Filter)
    page: int = 0
    page_size: int = PAGE_SIZE_DEFAULT
    stream: bool = False


@dataclass(frozen=True)
class AttributeQuery(Query):
    example_id: int = 0
    model: int = 0
    target: int | None = None
    values: bool = False  # also send each image map's values (the large view reads them under the pointer)


def _require_object(body: Any, where: str) -> Mapping[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ValidationError(where, "must be a JSON object")
    return body


def _check_keys(obj: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for key in obj:
        if key not in allowed:
            raise ValidationError(f"{where}{key}", f"is not a known field (allowed: {', '.join(allowed)})")


def _int(obj: Mapping[str, Any], key: str, default: int, lo: int, hi: int, where: str = "") -> int:
    value = obj.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()))
    ):
        raise ValidationError(where + key, "must be an integer")
    value = int(value)
    if not lo <= value <= hi:
        raise ValidationError(where + key, f"must be between {lo} and {hi}")
    return value


def _enum(obj: Mapping[str, Any], key: str, default: str, choices: Sequence[str], where: str = "") -> str:
    value = obj.get(key, default)
    if not isinstance(value, str) or value not in choices:
        raise ValidationError(where + key, f"must be one of {', '.join(choices)}")
    return value


def parse_visualization(body: Any, default_sign: str = Visualization.sign) -> Visualization:
    """The ``visualization`` object of a request; ``default_sign`` is the method's, for a request
    that names none (a single-sign drawing then falls back to absolute_value)."""
    obj = _require_object(body, "visualization")
    _check_keys(obj, ("method", "sign", "outlier_perc", "palette", "scale"), "visualization.")
    default = Visualization()
    method = _enum(obj, "method", default.method, VIS_METHODS, "visualization.")
    if "sign" not in obj and sign_problem(method, default_sign):
        default_sign = "absolute_value"
    sign = _enum(obj, "sign", default_sign, SIGNS, "visualization.")
    outlier = obj.get("outlier_perc", default.outlier_perc)
    # No math.isfinite here: it overflows on huge JSON integers; the range test rejects nan and inf too.
    if isinstance(outlier, bool) or not isinstance(outlier, (int, float)) or not 0 <= outlier <= 50:
        raise ValidationError("visualization.outlier_perc", "must be a number between 0 and 50")
    problem = sign_problem(method, sign)
    if problem:
        raise ValidationError("visualization.sign", problem)
    palette = _enum(obj, "palette", default.palette, PALETTES, "visualization.")
    scale = obj.get("scale", default.scale)
    if isinstance(scale, bool) or not (scale in SCALES or (isinstance(scale, (int, float)) and 1e-30 <= scale <= 1e30)):
        raise ValidationError(
            "visualization.scale", "must be 'map', 'page' or a positive number (the attribution drawn at full colour)"
        )
    return Visualization(method, sign, float(outlier), palette, scale if isinstance(scale, str) else float(scale))


def class_index(value: Any, classes: Sequence[str], where: str) -> int:
    """A class given as an index or as its name -> its index."""
    if isinstance(value, str):
        try:
            return list(classes).index(value)
        except ValueError:
            raise ValidationError(where, f"unknown class {value[:80]!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(classes):
        raise ValidationError(where, f"must be a class name or an index between 0 and {len(classes) - 1}")
    return value


FILTER_KEYS = ("classes", "prediction", "class_source", "pair", "confidence", "disagree", "order", "model")


def _pair(value: Any, classes: Sequence[str]) -> tuple[int, int] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationError("filter.pair", "must be an object {actual, predicted} (class names or indices)")
    _check_keys(value, ("actual", "predicted"), "filter.pair.")
    for key in ("actual", "predicted"):
        if key not in value:
            raise ValidationError(f"filter.pair.{key}", "is required")
    return (
        class_index(value["actual"], classes, "filter.pair.actual"),
        class_index(value["predicted"], classes, "filter.pair.predicted"),
    )


def _confidence(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1 for v in value)
    ):
        raise ValidationError("filter.confidence", "must be [low, high], two numbers between 0 and 1")
    low, high = float(value[0]), float(value[1])
    if low > high:
        raise ValidationError("filter.confidence", "low must not be above high")
    return low, high


def parse_filter(body: Any, classes: Sequence[str], n_models: int = 1) -> Filter:
    obj = _require_object(body, "filter")
    _check_keys(obj, FILTER_KEYS, "filter.")
    raw = obj.get("classes", [])
    if not isinstance(raw, list) or len(raw) > max(1, len(classes)):
        raise ValidationError("filter.classes", "must be a list of class names or indices")
    idx = tuple(sorted({class_index(v, classes, "filter.classes") for v in raw}))
    disagree = obj.get("disagree", False)
    if not isinstance(disagree, bool):
        raise ValidationError("filter.disagree", "must be true or false")
    return Filter(
        idx,
        _enum(obj, "prediction", "all", PREDICTION_FILTERS, "filter."),
        _enum(obj, "class_source", "prediction", CLASS_SOURCES, "filter."),
        pair=_pair(obj.get("pair"), classes),
        confidence=_confidence(obj.get("confidence")),
        disagree=disagree,
        order=_enum(obj, "order", "dataset", ORDERS, "filter."),
        model=_int(obj, "model", 0, 0, max(0, n_models - 1), "filter."),
    )


@dataclass(frozen=True)
class Defaults:
    """What a request leaves out is filled from the visualizer: its methods and defaults."""

    methods: Mapping[str, MethodSpec]
    method: str
    classes: Sequence[str]
    image_hw: tuple[int, int]
    top_k: int
    n_models: int


def parse_common(body: Mapping[str, Any], d: Defaults) -> dict[str, Any]:
    name = body.get("method", d.method)
    if not isinstance(name, str) or name not in d.methods:
        raise ValidationError("method", f"unknown method; choose one of {', '.join(d.methods)}")
    spec = d.methods[name]
    arguments = spec.validate(body.get("arguments"), d.image_hw)
    metrics = parse_metrics(body.get("metrics", ABSENT), body.get("metric_arguments", ABSENT))
    if metrics is not None:
        try:
            cost = max(1, int(spec.cost(arguments, d.image_hw)))
        except Exception:  # an estimate that cannot be made: the method's own check decides
            cost = 1
        check_cost(metrics, cost, MAX_EVALS_PER_EXAMPLE)
    return {
        "method": spec,
        "arguments": arguments,
        "visualization": parse_visualization(body.get("visualization"), spec.sign),
        "top_k": min(_int(body, "top_k", d.top_k, 1, TOP_K_MAX), max(1, len(d.classes))),
        "metrics": metrics,
    }


COMMON_KEYS = ("method", "arguments", "visualization", "top_k", "metrics", "metric_arguments")


def parse_page_query(body: Any, d: Defaults) -> PageQuery:
    obj = _require_object(body, "body")
    _check_keys(obj, COMMON_KEYS + ("filter", "page", "page_size", "stream"), "")
    stream = obj.get("stream", False)
    if not isinstance(stream, bool):
        raise ValidationError("stream", "must be true or false")
    return PageQuery(
        **parse_common(obj, d),
        filter=parse_filter(obj.get("filter"), d.classes, d.n_models),
        page=_int(obj, "page", 0, 0, PAGE_MAX),
        page_size=_int(obj, "page_size", PAGE_SIZE_DEFAULT, 1, PAGE_SIZE_MAX),
        stream=stream,
    )


def parse_attribute_query(body: Any, d: Defaults) -> AttributeQuery:
    obj = _require_object(body, "body")
    _check_keys(obj, COMMON_KEYS + ("example_id", "model", "target", "values"), "")
    if "example_id" not in obj:
        raise ValidationError("example_id", "is required")
    target = obj.get("target")
    values = obj.get("values", False)
    if not isinstance(values, bool):
        raise ValidationError("values", "must be true or false")
    return AttributeQuery(
        **parse_common(obj, d),
        example_id=_int(obj, "example_id", 0, 0, EXAMPLE_ID_MAX),
        model=_int(obj, "model", 0, 0, max(0, d.n_models - 1)),
        target=None if target is None else class_index(target, d.classes, "target"),
        values=values,
    )
