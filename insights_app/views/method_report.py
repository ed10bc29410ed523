"""``POST /api/v1/method_report``: every method's quality metrics over a sample of the dataset.

For each model and method: the mean and spread of each metric, and the sanity check on a few
of the examples (see :mod:`insights_app.metrics.report`). Values go through the store, so a
second report over the same sample is read, not computed.
"""

from __future__ import annotations

from typing import Any

from ..cancel import Cancel
from ..errors import ValidationError
from ..metrics import MetricOptions, parse_metrics
from ..metrics.options import ABSENT
from ..metrics.options import request_schema as metrics_schema
from ..metrics.registered import metric_names
from ..metrics.report import SAMPLE_MAX, SANITY_MAX, method_report
from ..query import _check_keys, _int, _require_object
from .view import View

KEYS = ("methods", "arguments", "sample", "sanity", "metrics", "metric_arguments")


def report(vis: Any, body: Any, cancel: Cancel | None = None) -> dict[str, Any]:
    obj = _require_object(body if body is not None else {}, "body")
    _check_keys(obj, KEYS, "")
    # An explicit null is refused like any other value of the wrong type (the schema has none).
    methods = obj.get("methods", ABSENT)
    if methods is not ABSENT and (
        not isinstance(methods, list) or not methods or not all(isinstance(m, str) for m in methods)
    ):
        raise ValidationError("methods", "must be a non-empty list of method names")
    arguments = obj.get("arguments", {})
    if not isinstance(arguments, dict) or not all(isinstance(v, dict) for v in arguments.values()):
        raise ValidationError("arguments", "must be an object of objects: {method: {argument: value}}")
    for name in arguments:
        if name not in vis.methods:
            raise ValidationError("arguments", f"names an unknown method {name[:40]!r}")
    sample = _int(obj, "sample", 64, 1, SAMPLE_MAX)
    sanity = _int(obj, "sanity", 8, 0, min(sample, SANITY_MAX))
    every = metric_names()
    options = parse_metrics(obj.get("metrics", list(every)), obj.get("metric_arguments", ABSENT)) or MetricOptions(
        every
    )
    return method_report(vis, None if methods is ABSENT else methods, sample, options, arguments, sanity, cancel)


def request_schema(vis: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "nullable": True,
        "additionalProperties": False,
        "properties": dict(
            methods={"type": "array", "minItems": 1, "items": {"type": "string", "enum": list(vis.methods)}},
            arguments={
                "type": "object",
                "description": "per method: {argument: value}",
                "additionalProperties": {"type": "object"},
            },
            sample={"type": "integer", "minimum": 1, "maximum": SAMPLE_MAX, "description": "examples (default 64)"},
            sanity={
                "type": "integer",
                "minimum": 0,
                "maximum": SANITY_MAX,
                "description": "examples of the sample the sanity check runs on (default 8; at most the sample)",
            },
            **metrics_schema(),
        ),
    }


VIEW = View(
    "method_report",
    report,
    "Every method's quality metrics over a sample of the dataset, per model",
    request_schema=request_schema,
    computes=True,
    responses={
        "200": {
            "description": "per model and method: each metric's mean and spread, and the sanity check",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
