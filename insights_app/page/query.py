"""The attribution queries' bodies, declared once (:mod:`insights_app.page.fields`), and their typed queries.

Every field a client sends is checked by its declaration (type, bounds, allowed values) and a
bad one raises :class:`~insights_app.errors.ValidationError` naming it, which the server turns
into a 400; the same declarations write the OpenAPI schemas. Nothing past this module sees
unvalidated input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ValidationError
from ..limits import EXAMPLE_ID_MAX, MAX_EVALS_PER_EXAMPLE, PAGE_MAX, PAGE_SIZE_MAX, TOP_K_MAX
from ..methods import MethodSpec
from ..metrics import MetricOptions, check_cost, parse_metrics
from ..metrics.options import ABSENT
from ..metrics.options import request_schema as metrics_schema
from .fields import (
    MISSING,
    Array,
    Body,
    Bool,
    ClassRef,
    Defaults,
    Delegated,
    Enum,
    Field,
    Int,
    JSONSchema,
    Name,
    Nullable,
    Number,
    Object,
    ParseState,
    Scope,
    last_model,
)
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


# ---------------------------------------------------------------- a method's arguments


def param_schema(p: dict[str, Any]) -> JSONSchema:
    """The JSON schema of one method parameter (from its ``to_json()``)."""
    t = p["type"]
    if t == "int":
        s: JSONSchema = {"type": "integer"}
    elif t == "float":
        s = {"type": "number"}
    elif t == "bool":
        s = {"type": "boolean"}
    elif t == "enum":
        s = {"type": "string", "enum": p["choices"]}
    elif t == "shape":
        item = {"type": "integer", "minimum": p.get("minimum", 1), "maximum": p.get("maximum", 4096)}
        s = {"type": "array", "items": item, "minItems": p["length"], "maxItems": p["length"]}
    else:
        s = {"type": "string", "maxLength": 300}
    if t in ("int", "float"):
        if "minimum" in p:
            s["minimum"] = p["minimum"]
        if "maximum" in p:
            s["maximum"] = p["maximum"]
    if p.get("nullable"):
        s = {"anyOf": [s, {"type": "null"}]}
    s["description"] = p["help"]
    return s


def widest(a: JSONSchema, b: JSONSchema) -> JSONSchema:
    """One schema for a parameter name shared by several methods: the loosest bounds of both.

    The exact per-method bounds are in /config; the server checks them and answers 400.
    """
    inner_a, inner_b = (s["anyOf"][0] if "anyOf" in s else s for s in (a, b))
    if inner_a.get("type") != inner_b.get("type"):
        return {"description": a.get("description", "")}  # same name, different types: any value
    out = dict(inner_a)
    if "minimum" in inner_a or "minimum" in inner_b:
        out.pop("minimum", None)
        if "minimum" in inner_a and "minimum" in inner_b:
            out["minimum"] = min(inner_a["minimum"], inner_b["minimum"])
    if "maximum" in inner_a or "maximum" in inner_b:
        out.pop("maximum", None)
        if "maximum" in inner_a and "maximum" in inner_b:
            out["maximum"] = max(inner_a["maximum"], inner_b["maximum"])
    if "enum" in inner_a and "enum" in inner_b:
        out["enum"] = list(dict.fromkeys(inner_a["enum"] + inner_b["enum"]))
    if "anyOf" in a or "anyOf" in b:
        out = {"anyOf": [out, {"type": "null"}]}
    out["description"] = a.get("description", "")
    return out


def arguments_schema(scope: Scope) -> JSONSchema:
    """The union of every method's parameters (each method's own schema is in /config)."""
    props: JSONSchema = {}
    for m in scope.methods.values():
        for p in m.to_json()["params"]:
            props[p["name"]] = widest(props[p["name"]], param_schema(p)) if p["name"] in props else param_schema(p)
    return {
        "type": "object",
        "nullable": True,  # null: the method's defaults, as when left out
        "description": "Parameters of the chosen method (see /config for each method's schema); "
        "the union of all methods' parameters is listed here.",
        "properties": props,
        "additionalProperties": False,
    }


def _arguments(values: tuple[Any, ...], state: ParseState) -> dict[str, Any]:
    (raw,) = values
    spec = state.defaults.methods[state.values["method"]]
    return spec.validate(None if raw is MISSING else raw, state.defaults.image_hw)


def _metrics(values: tuple[Any, ...], state: ParseState) -> MetricOptions | None:
    """``metrics`` and ``metric_arguments``, and their cost with the method's against the bound."""
    names, arguments = (ABSENT if v is MISSING else v for v in values)
    metrics = parse_metrics(names, arguments, state.defaults.metrics)
    if metrics is not None:
        spec = state.defaults.methods[state.values["method"]]
        try:
            cost = max(1, int(spec.cost(state.values["arguments"], state.defaults.image_hw)))
        except Exception:  # an estimate that cannot be made: the method's own check decides
            cost = 1
        check_cost(metrics, cost, MAX_EVALS_PER_EXAMPLE)
    return metrics


# ---------------------------------------------------------------- visualization


def _scale(values: tuple[Any, ...], state: ParseState) -> str | float:
    (scale,) = values
    if scale is MISSING:
        return Visualization.scale
    if isinstance(scale, bool) or not (scale in SCALES or (isinstance(scale, (int, float)) and 1e-30 <= scale <= 1e30)):
        raise ValidationError(
            "visualization.scale", "must be 'map', 'page' or a positive number (the attribution drawn at full colour)"
        )
    return scale if isinstance(scale, str) else float(scale)


SCALE_SCHEMA = {
    "description": "the magnitude drawn at full colour: 'map' (each map its own), 'page' (one for the page), or that number",
    "anyOf": [{"type": "string", "enum": list(SCALES)}, {"type": "number", "minimum": 1e-30, "maximum": 1e30}],
}


def _visualization(v: dict[str, Any], state: ParseState) -> Visualization:
    """The drawing; a request that names no sign gets its method's (a single-sign drawing then
    falls back to absolute_value)."""
    sign = v["sign"]
    if sign is None:
        sign = state.defaults.methods[state.values["method"]].sign
        if sign_problem(v["method"], sign):
            sign = "absolute_value"
        if sign not in SIGNS:
            raise ValidationError("visualization.sign", f"must be one of {', '.join(SIGNS)}")
    problem = sign_problem(v["method"], sign)
    if problem:
        raise ValidationError("visualization.sign", problem)
    return Visualization(v["method"], sign, v["outlier_perc"], v["palette"], v["scale"])


VISUALIZATION = Object(
    {
        "method": Enum(VIS_METHODS, Visualization.method),
        "sign": Enum(SIGNS),
        "outlier_perc": Number(0, 50, Visualization.outlier_perc),
        "palette": Enum(
            PALETTES,
            Visualization.palette,
            "colorblind: blue-white-orange and one hue per sign; captum: captum's",
        ),
        "scale": Delegated(("scale",), _scale, lambda scope: {"scale": SCALE_SCHEMA}),
    },
    _visualization,
)


# ---------------------------------------------------------------- filter


def _confidence(values: list[float], where: str) -> tuple[float, float]:
    low, high = values
    if low > high:
        raise ValidationError(where, "low must not be above high")
    return low, high


FILTER = Object(
    {
        "classes": Array(
            ClassRef(),
            "must be a list of class names or indices",
            max_items=lambda scope: max(1, len(scope.classes)),
            build=lambda idx, where: tuple(sorted(set(idx))),
        ),
        "prediction": Enum(PREDICTION_FILTERS, "all"),
        "class_source": Enum(CLASS_SOURCES, "prediction"),
        # Read from the dataset pass (started by the first request that needs it):
        "pair": Nullable(
            Object(
                {"actual": ClassRef(required=True), "predicted": ClassRef(required=True)},
                lambda v, state: (v["actual"], v["predicted"]),
                nullable=False,
                message="must be an object {actual, predicted} (class names or indices)",
            ),
            "one confusion cell: examples of class actual predicted as predicted",
        ),
        "confidence": Nullable(
            Array(
                Number(0, 1),
                "must be [low, high], two numbers between 0 and 1",
                min_items=2,
                max_items=2,
                build=_confidence,
                items_own_errors=False,
            ),
            "[low, high]: the top prediction's score in this range",
        ),
        "disagree": Bool(False, "only examples the models predict differently"),
        "order": Enum(ORDERS, "dataset", "loss: largest loss first"),
        "model": Int(0, last_model, 0, "the model whose prediction, score and loss pair, confidence and order mean"),
    },
    lambda v, state: Filter(**v),
)
FILTER_KEYS = FILTER.keys()


# ---------------------------------------------------------------- the queries


def _common(v: dict[str, Any], state: ParseState) -> dict[str, Any]:
    """What every attribution query has: method, arguments, visualization, top_k, metrics."""
    d = state.defaults
    return {
        "method": d.methods[v["method"]],
        "arguments": v["arguments"],
        "visualization": v["visualization"],
        "top_k": min(v["top_k"], max(1, len(d.classes))),
        "metrics": v["metrics"],
    }


COMMON_FIELDS: dict[str, Field[Any]] = {
    "method": Name(
        lambda scope: list(scope.methods),
        lambda d: d.method,
        "unknown method; choose one of {choices}",
    ),
    "arguments": Delegated(("arguments",), _arguments, lambda scope: {"arguments": arguments_schema(scope)}),
    "visualization": VISUALIZATION,
    "top_k": Int(1, TOP_K_MAX, lambda d: d.top_k),
    "metrics": Delegated(("metrics", "metric_arguments"), _metrics, lambda scope: metrics_schema(scope.metrics)),
}
COMMON_KEYS = Object(COMMON_FIELDS).keys()
# The method first: its arguments and the metrics' cost depend on it, the drawing's sign too.
COMMON_FIRST = ("method", "arguments", "metrics")


def page_query(v: dict[str, Any], state: ParseState) -> PageQuery:
    """The page query of a page body's parsed fields (a body without page fields gets their defaults)."""
    return PageQuery(
        **_common(v, state),
        filter=v["filter"],
        page=v.get("page", 0),
        page_size=v.get("page_size", PAGE_SIZE_DEFAULT),
        stream=v.get("stream", False),
    )


PAGE_BODY: Body[PageQuery] = Body(
    Object(
        {
            **COMMON_FIELDS,
            "filter": FILTER,
            "page": Int(0, PAGE_MAX),
            "page_size": Int(1, PAGE_SIZE_MAX, PAGE_SIZE_DEFAULT),
            "stream": Bool(False, "answer as NDJSON events (page, preview..., example..., done)"),
        },
        page_query,
        first=("stream",) + COMMON_FIRST,
    )
)

ATTRIBUTE_BODY: Body[AttributeQuery] = Body(
    Object(
        {
            **COMMON_FIELDS,
            "example_id": Int(0, EXAMPLE_ID_MAX, required=True),
            "model": Int(0, last_model),
            "target": Nullable(ClassRef()),
            "values": Bool(
                False, "also send each image map's values as drawn (base64 float32, row-major, with its shape)"
            ),
        },
        lambda v, state: AttributeQuery(
            **_common(v, state), example_id=v["example_id"], model=v["model"], target=v["target"], values=v["values"]
        ),
        nullable=False,
        first=COMMON_FIRST,
    )
)


def parse_page_query(body: Any, d: Defaults) -> PageQuery:
    return PAGE_BODY.parse(body, d)


def parse_attribute_query(body: Any, d: Defaults) -> AttributeQuery:
    return ATTRIBUTE_BODY.parse(body, d)


__all__ = [
    "ATTRIBUTE_BODY",
    "COMMON_FIRST",
    "CLASS_SOURCES",
    "COMMON_KEYS",
    "FILTER_KEYS",
    "ORDERS",
    "PAGE_BODY",
    "PAGE_SIZE_DEFAULT",
    "PREDICTION_FILTERS",
    "SCALES",
    "AttributeQuery",
    "Defaults",
    "Filter",
    "PageQuery",
    "Query",
    "Visualization",
    "parse_attribute_query",
    "page_query",
    "parse_page_query",
]
