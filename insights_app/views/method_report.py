"""``POST /api/v1/method_report``: every method's quality metrics over a sample of the dataset.

For each model and method: the mean and spread of each metric, and the sanity check on a few
of the examples (see :mod:`insights_app.metrics.report`). Values go through the store, so a
second report over the same sample is read, not computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..cancel import Cancel
from ..errors import ValidationError
from ..metrics import MetricOptions, parse_metrics
from ..metrics.options import ABSENT
from ..metrics.options import request_schema as metrics_schema
from ..metrics.report import SAMPLE_MAX, SANITY_MAX, method_report
from ..page.fields import MISSING, Array, Body, Delegated, Int, Name, Object, ParseState
from ..protocols import VisualizerLike
from .view import View


def _arguments(values: tuple[Any, ...], state: ParseState) -> dict[str, Any]:
    """Per method: its arguments (each method checks them when the report runs it)."""
    (arguments,) = values
    if arguments is MISSING:
        return {}
    if not isinstance(arguments, dict) or not all(isinstance(v, dict) for v in arguments.values()):
        raise ValidationError("arguments", "must be an object of objects: {method: {argument: value}}")
    for name in arguments:
        if name not in state.defaults.methods:
            raise ValidationError("arguments", f"names an unknown method {name[:40]!r}")
    return arguments


def _metrics(values: tuple[Any, ...], state: ParseState) -> MetricOptions:
    names, arguments = values
    registry = state.defaults.metrics
    every = tuple(registry)
    options = parse_metrics(
        list(every) if names is MISSING else names, ABSENT if arguments is MISSING else arguments, registry
    )
    return options or MetricOptions(every, registry=registry)


@dataclass(frozen=True)
class ReportRequest:
    methods: list[str] | None  # None: the report's default methods
    arguments: dict[str, dict[str, Any]]
    sample: int
    sanity: int
    metrics: MetricOptions


BODY = Body(
    Object(
        {
            # An explicit null is refused like any other value of the wrong type (the schema has none).
            "methods": Array(
                Name(lambda scope: list(scope.methods), check=False),
                "must be a non-empty list of method names",
                min_items=1,
                default=lambda: None,
                items_own_errors=False,
            ),
            "arguments": Delegated(
                ("arguments",),
                _arguments,
                lambda scope: {
                    "arguments": {
                        "type": "object",
                        "description": "per method: {argument: value}",
                        "additionalProperties": {"type": "object"},
                    }
                },
            ),
            "sample": Int(1, SAMPLE_MAX, 64, "examples (default 64)"),
            "sanity": Int(
                0,
                SANITY_MAX,
                8,
                "examples of the sample the sanity check runs on (default 8; at most the sample)",
                at_most="sample",
            ),
            "metrics": Delegated(
                ("metrics", "metric_arguments"), _metrics, lambda scope: metrics_schema(scope.metrics)
            ),
        },
        lambda v, state: ReportRequest(v["methods"], v["arguments"], v["sample"], v["sanity"], v["metrics"]),
    )
)


def report(vis: VisualizerLike, body: Any, cancel: Cancel | None = None) -> dict[str, Any]:
    r = BODY.parse(body, vis.defaults)
    return method_report(vis, r.methods, r.sample, r.metrics, r.arguments, r.sanity, cancel)


VIEW = View(
    "method_report",
    report,
    "Every method's quality metrics over a sample of the dataset, per model",
    request_schema=BODY.openapi,
    computes=True,
    responses={
        "200": {
            "description": "per model and method: each metric's mean and spread, and the sanity check",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
