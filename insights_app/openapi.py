"""The OpenAPI 3 document of the HTTP API, built from the live method registry.

Served at ``/api/v1/openapi.json`` so clients (and the fuzz tests) see exactly the
routes, fields and bounds the server enforces.
"""

from __future__ import annotations

from typing import Any, Dict

from .query import CLASS_SOURCES, EXAMPLE_ID_MAX, PAGE_MAX, PAGE_SIZE_MAX, PREDICTION_FILTERS, TOP_K_MAX
from .render import SIGNS, VIS_METHODS

ERROR = {"$ref": "#/components/schemas/Error"}


def _json_response(description: str, schema: Dict[str, Any]) -> Dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> Dict[str, Any]:
    words = {400: "invalid request (the message names the field)", 401: "token missing", 403: "token invalid",
             413: "body too large", 415: "not JSON", 500: "the model or the dataset failed"}
    return {str(c): _json_response(words[c], ERROR) for c in codes}


def _param_schema(p: Dict[str, Any]) -> Dict[str, Any]:
    t = p["type"]
    if t == "int":
        s: Dict[str, Any] = {"type": "integer"}
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


def _widest(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Any]:
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


def openapi_document(visualizer: Any) -> Dict[str, Any]:
    """The API description for this visualizer (its classes and methods)."""
    methods = [m.to_json() for m in visualizer.methods.values()]
    arguments = {
        "type": "object",
        "description": "Parameters of the chosen method (see /config for each method's schema); "
                       "the union of all methods' parameters is listed here.",
        "properties": {},
        "additionalProperties": False,
    }
    for m in methods:
        for p in m["params"]:
            props = arguments["properties"]
            props[p["name"]] = _widest(props[p["name"]], _param_schema(p)) if p["name"] in props else _param_schema(p)
    class_ref = {"anyOf": [{"type": "string", "enum": visualizer.classes},
                           {"type": "integer", "minimum": 0, "maximum": len(visualizer.classes) - 1}]}
    common = {
        "method": {"type": "string", "enum": [m["name"] for m in methods]},
        "arguments": arguments,
        "visualization": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "method": {"type": "string", "enum": list(VIS_METHODS)},
                "sign": {"type": "string", "enum": list(SIGNS)},
                "outlier_perc": {"type": "number", "minimum": 0, "maximum": 50},
            },
        },
        "top_k": {"type": "integer", "minimum": 1, "maximum": TOP_K_MAX},
    }
    page_request = {
        "type": "object",
        "additionalProperties": False,
        "properties": dict(common, **{
            "filter": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "classes": {"type": "array", "items": class_ref, "maxItems": max(1, len(visualizer.classes))},
                    "prediction": {"type": "string", "enum": list(PREDICTION_FILTERS)},
                    "class_source": {"type": "string", "enum": list(CLASS_SOURCES)},
                },
            },
            "page": {"type": "integer", "minimum": 0, "maximum": PAGE_MAX},
            "page_size": {"type": "integer", "minimum": 1, "maximum": PAGE_SIZE_MAX},
            "stream": {"type": "boolean", "description": "answer as NDJSON events (page, example..., done)"},
        }),
    }
    attribute_request = {
        "type": "object",
        "additionalProperties": False,
        "required": ["example_id"],
        "properties": dict(common, **{
            "example_id": {"type": "integer", "minimum": 0, "maximum": EXAMPLE_ID_MAX},
            "model": {"type": "integer", "minimum": 0, "maximum": max(0, len(visualizer.engines) - 1)},
            "target": {"anyOf": [class_ref, {"type": "null"}]},
        }),
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "insights-app API", "version": "1.0.0",
                 "description": "Attribution explorer API. Errors are {\"error\": message} with a 4xx status "
                                "(5xx when the model or the dataset fails); a validation message starts with "
                                "the field it names, e.g. 'arguments.n_steps: must be at most 1000'. POST bodies "
                                "must be application/json. When the server has a token, every route but "
                                "/api/v1/health needs it."},
        "security": [{}, {"tokenHeader": []}, {"tokenQuery": []}, {"tokenCookie": []}],
        "paths": {
            "/api/v1/health": {"get": {"summary": "Liveness", "responses": {
                "200": _json_response("ok", {"type": "object", "properties": {"status": {"type": "string"}}})}}},
            "/api/v1/config": {"get": {"summary": "Classes, models, features, methods and their parameter schemas",
                                       "responses": {"200": _json_response("configuration", {"type": "object"}),
                                                     **_errors(401, 403)}}},
            "/api/v1/openapi.json": {"get": {"summary": "This document", "responses": {
                "200": _json_response("OpenAPI document", {"type": "object"}), **_errors(401, 403)}}},
            "/api/v1/examples": {"post": {
                "summary": "One page of examples matching a filter, with predictions and rendered attributions",
                "requestBody": {"required": True, "content": {"application/json": {"schema": page_request}}},
                "responses": {"200": {"description": "the page (stream=false), or NDJSON events (stream=true)",
                                      "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Page"}},
                    "application/x-ndjson": {"schema": {"$ref": "#/components/schemas/Event"}}}},
                    **_errors(400, 401, 403, 413, 415, 500)}}},
            "/api/v1/attribute": {"post": {
                "summary": "Attribute one example under one model to any target class",
                "requestBody": {"required": True, "content": {"application/json": {"schema": attribute_request}}},
                "responses": {"200": _json_response("the example", {"type": "object", "properties": {
                    "example": {"$ref": "#/components/schemas/Example"}}}),
                    **_errors(400, 401, 403, 413, 415, 500)}}},
        },
        "components": {
            "securitySchemes": {
                "tokenHeader": {"type": "http", "scheme": "bearer",
                                "description": "Only when the server has a token: 'Authorization: Bearer <token>' "
                                               "(or 'token <token>')."},
                "tokenQuery": {"type": "apiKey", "in": "query", "name": "token",
                               "description": "Only when the server has a token; also sets the cookie."},
                "tokenCookie": {"type": "apiKey", "in": "cookie", "name": "insights_token_<hash>",
                                "description": "Set by the server when the token arrives in the URL."},
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
                "PageInfo": {"type": "object", "properties": {
                    "ids": {"type": "array", "items": {"type": "integer"}},
                    "page": {"type": "integer"}, "page_size": {"type": "integer"},
                    "scanned": {"type": "integer", "description": "examples examined so far for this filter"},
                    "exhausted": {"type": "boolean", "description": "the whole dataset has been scanned"},
                    "has_next": {"type": "boolean"}, "has_prev": {"type": "boolean"},
                    "total": {"type": "integer", "nullable": True},
                    "message": {"type": "string", "description": "why the page is empty, if it is"}}},
                "Page": {"type": "object", "properties": {
                    "page": {"$ref": "#/components/schemas/PageInfo"},
                    "examples": {"type": "array", "items": {"$ref": "#/components/schemas/Example"}},
                    "elapsed_ms": {"type": "number"}}},
                "Event": {"type": "object", "required": ["type"], "description":
                          "One line of the NDJSON stream (stream=true): first 'page' (the PageInfo fields), "
                          "then one 'example' per example as soon as it is computed, then 'done' "
                          "(elapsed_ms); a failure mid-stream is an 'error' event and ends the stream.",
                          "properties": {
                              "type": {"type": "string", "enum": ["page", "example", "done", "error"]},
                              "example": {"$ref": "#/components/schemas/Example"},
                              "error": {"type": "string"}, "elapsed_ms": {"type": "number"}}},
                "Label": {"type": "object", "nullable": True, "properties": {
                    "index": {"type": "integer"}, "name": {"type": "string"}}},
                "Example": {"type": "object", "properties": {
                    "id": {"type": "integer", "description": "stable position in the dataset"},
                    "label": {"$ref": "#/components/schemas/Label"},
                    "features": {"type": "array", "items": {"type": "object", "properties": {
                        "name": {"type": "string"}, "type": {"type": "string"},
                        "original": {"description": "image: PNG data URL; text: tokens; general: values"}}}},
                    "models": {"type": "array", "items": {"$ref": "#/components/schemas/ModelResult"}}}},
                "ModelResult": {"type": "object", "properties": {
                    "index": {"type": "integer"}, "name": {"type": "string"},
                    "predictions": {"type": "array", "items": {"type": "object", "properties": {
                        "index": {"type": "integer"}, "label": {"type": "string"}, "score": {"type": "number"}}}},
                    "target": {"$ref": "#/components/schemas/Label"},
                    "attributions": {"type": "array", "items": {"type": "object", "properties": {
                        "name": {"type": "string"}, "type": {"type": "string"},
                        "image": {"type": "string", "description": "image features: PNG data URL"},
                        "tokens": {"type": "array", "items": {"type": "string"}},
                        "categories": {"type": "array", "items": {"type": "string"}},
                        "scores": {"type": "array", "items": {"type": "number"}},
                        "contribution": {"type": "number", "description": "share of the total |attribution|"}}}},
                    "error": {"type": "string", "nullable": True,
                              "description": "this model failed on this example (the rest of the page is fine)"}}},
            },
        },
    }
