"""``GET /api/v1/openapi.json``: the OpenAPI 3 document of the visualizer's views.

Built from the live view and method registries, so clients (and the fuzz tests) see exactly
the routes, fields and bounds the server enforces.
"""

from __future__ import annotations

from typing import Any

from ..errors import STATUS_MEANINGS
from .view import Served, View

ERROR = {"$ref": "#/components/schemas/Error"}


def _operation(view: View, vis: Served) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": view.summary}
    if view.request_schema is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": view.request_schema(vis)}}}
    op["responses"] = dict(
        view.responses,
        **{
            str(c): {"description": STATUS_MEANINGS[c], "content": {"application/json": {"schema": ERROR}}}
            for c in view.errors
        },
    )
    return op


def openapi_document(vis: Served, body: Any = None) -> dict[str, Any]:
    """The API description for this visualizer (its views, classes and methods)."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "insights-app API",
            "version": "1.0.0",
            "description": 'Attribution explorer API. Errors are {"error": message} with a 4xx status '
            "(5xx when the model or the dataset fails); a validation message starts with "
            "the field it names, e.g. 'arguments.n_steps: must be at most 1000'. POST bodies "
            "must be application/json. When the server has a token, every route but "
            "/api/v1/health needs it.",
        },
        "security": [{}, {"tokenHeader": []}, {"tokenQuery": []}, {"tokenCookie": []}],
        "paths": {view.path: {view.http_method.lower(): _operation(view, vis)} for view in vis.views.values()},
        "components": {
            "securitySchemes": {
                "tokenHeader": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Only when the server has a token: 'Authorization: Bearer <token>' "
                    "(or 'token <token>').",
                },
                "tokenQuery": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "token",
                    "description": "Only when the server has a token; also sets the cookie.",
                },
                "tokenCookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "insights_token_<hash>",
                    "description": "Set by the server when the token arrives in the URL.",
                },
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
                "PageInfo": {
                    "type": "object",
                    "properties": {
                        "ids": {"type": "array", "items": {"type": "integer"}},
                        "page": {"type": "integer"},
                        "page_size": {"type": "integer"},
                        "scanned": {"type": "integer", "description": "examples examined so far for this filter"},
                        "exhausted": {"type": "boolean", "description": "the whole dataset has been scanned"},
                        "has_next": {"type": "boolean"},
                        "has_prev": {"type": "boolean"},
                        "total": {"type": "integer", "nullable": True},
                        "message": {"type": "string", "description": "why the page is empty, if it is"},
                        "matched": {
                            "type": "integer",
                            "description": "examples matching the filter: all of them once "
                            "exhausted, else those found so far (unfiltered: the examples known to exist)",
                        },
                        "first": {
                            "type": "integer",
                            "description": "position among the matches of the page's first example",
                        },
                        "last_page": {
                            "type": "integer",
                            "nullable": True,
                            "description": "the last page with examples, once the count is complete",
                        },
                        "dataset_size": {
                            "type": "integer",
                            "nullable": True,
                            "description": "the dataset's length once known, whatever the filter",
                        },
                    },
                },
                "Page": {
                    "type": "object",
                    "properties": {
                        "page": {"$ref": "#/components/schemas/PageInfo"},
                        "examples": {"type": "array", "items": {"$ref": "#/components/schemas/Example"}},
                        "elapsed_ms": {"type": "number"},
                    },
                },
                "Event": {
                    "type": "object",
                    "required": ["type"],
                    "description": "One line of the NDJSON stream (stream=true): first 'page' (the PageInfo fields); "
                    "for a method costing 8 or more forward passes per example, one 'preview' per example "
                    "(its input and predictions; each model is marked pending); then one 'example' per "
                    "example as soon as it is computed; for a filter not yet scanned to the end, 'count' "
                    "(the PageInfo fields once the scan went on for the number of matches); then 'done' "
                    "(elapsed_ms). With visualization.scale 'page', 'progress' events (computed, total) "
                    "come while the maps are computed, then every 'example' on the shared scale. A "
                    "failure mid-stream is an 'error' event and ends the stream.",
                    "properties": {
                        "type": {
                            "type": "string",
                            "enum": ["page", "preview", "example", "progress", "count", "done", "error"],
                        },
                        "computed": {"type": "integer"},
                        "total": {"type": "integer"},
                        "example": {"$ref": "#/components/schemas/Example"},
                        "error": {"type": "string"},
                        "elapsed_ms": {"type": "number"},
                    },
                },
                "Label": {
                    "type": "object",
                    "nullable": True,
                    "properties": {"index": {"type": "integer"}, "name": {"type": "string"}},
                },
                "Example": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer", "description": "stable position in the dataset"},
                        "label": {"$ref": "#/components/schemas/Label"},
                        "features": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "name": {"type": "string"},
                                    "type": {"type": "string"},
                                    "original": {"description": "image: PNG data URL; text: tokens; general: values"},
                                },
                            },
                        },
                        "models": {"type": "array", "items": {"$ref": "#/components/schemas/ModelResult"}},
                    },
                },
                "ModelResult": {
                    "type": "object",
                    "properties": {
                        "index": {"type": "integer"},
                        "name": {"type": "string"},
                        "predictions": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "index": {"type": "integer"},
                                    "label": {"type": "string"},
                                    "score": {"type": "number"},
                                },
                            },
                        },
                        "target": {"$ref": "#/components/schemas/Label"},
                        "attributions": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "name": {"type": "string"},
                                    "type": {"type": "string"},
                                    "image": {"type": "string", "description": "image features: PNG data URL"},
                                    "tokens": {"type": "array", "items": {"type": "string"}},
                                    "categories": {"type": "array", "items": {"type": "string"}},
                                    "scores": {"type": "array", "items": {"type": "number"}},
                                    "scale": {
                                        "type": "object",
                                        "description": "the attribution values at the two ends of the colour bar",
                                        "properties": {"low": {"type": "number"}, "high": {"type": "number"}},
                                    },
                                    "values": {
                                        "type": "object",
                                        "description": "only with values=true: the map as drawn",
                                        "properties": {
                                            "shape": {"type": "array", "items": {"type": "integer"}},
                                            "data": {"type": "string", "description": "base64 float32, row-major"},
                                        },
                                    },
                                    "contribution": {
                                        "type": "number",
                                        "description": "share of the total |attribution|",
                                    },
                                },
                            },
                        },
                        "error": {
                            "type": "string",
                            "nullable": True,
                            "description": "this model failed on this example (the rest of the page is fine)",
                        },
                        "pending": {
                            "type": "boolean",
                            "description": "only in a 'preview': the attributions are still being computed",
                        },
                    },
                },
            },
        },
    }


VIEW = View(
    "openapi.json",
    openapi_document,
    "This document",
    takes_body=False,
    errors=(401, 403),
    responses={
        "200": {"description": "OpenAPI document", "content": {"application/json": {"schema": {"type": "object"}}}}
    },
)
