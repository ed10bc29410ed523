"""``POST /api/v1/method_report``: every method's quality metrics over a sample of the dataset.

For each model and method: the mean and spread of each metric, and the sanity check on a few
of the examples (see :mod:`insights_app.metrics.report`). Values go through the store, so a
second report over the same sample is read, not computed. With ``"stream": true`` the answer is
NDJSON: ``progress`` events (the step, the share done, the time left) while it runs, then the
``report``, then ``done``; the page draws its progress bar from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..cancel import Cancel
from ..errors import ValidationError
from ..metrics import MetricOptions, parse_metrics
from ..metrics.options import ABSENT
from ..metrics.options import request_schema as metrics_schema
from ..metrics.report import SAMPLE_MAX, SANITY_MAX, plan_report, report_events
from ..page.fields import MISSING, Array, Body, Bool, Delegated, Int, Name, Object, ParseState
from ..protocols import VisualizerLike
from .view import Stream, View


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
    stream: bool = False


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
            "stream": Bool(False, "answer as NDJSON events (progress..., report, done)"),
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
        lambda v, state: ReportRequest(
            v["methods"], v["arguments"], v["sample"], v["sanity"], v["metrics"], v["stream"]
        ),
    )
)


def report(vis: VisualizerLike, body: Any, cancel: Cancel | None = None) -> Stream | dict[str, Any]:
    r = BODY.parse(body, vis.defaults)
    plan = plan_report(vis, r.methods, r.sample, r.metrics, r.arguments, r.sanity)  # refusals before any work
    events = report_events(vis, plan, cancel)
    if r.stream:
        return Stream(events)
    return next(e["report"] for e in events if e["type"] == "report")


VIEW = View(
    "method_report",
    report,
    "Every method's quality metrics over a sample of the dataset, per model",
    request_schema=BODY.openapi,
    computes=True,
    streams=True,
    responses={
        "200": {
            "description": "per model and method: each metric's mean and spread, and the sanity check "
            "(stream=false), or NDJSON events (stream=true): 'progress' (step, steps_done, steps, done as a "
            "share, elapsed_ms, left_ms), then 'report' (the report), then 'done'",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/x-ndjson": {
                    "schema": {
                        "type": "object",
                        "required": ["type"],
                        "properties": {
                            "type": {"type": "string", "enum": ["progress", "report", "done", "error"]},
                            "step": {"type": "string", "nullable": True},
                            "steps_done": {"type": "integer"},
                            "steps": {"type": "integer"},
                            "done": {"type": "number"},
                            "elapsed_ms": {"type": "number"},
                            "left_ms": {"type": "number", "nullable": True},
                            "report": {"type": "object"},
                            "error": {"type": "string"},
                        },
                    }
                },
            },
        }
    },
)
