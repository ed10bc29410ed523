"""JSON schemas the views share: a method's arguments, a class, and the fields of every query."""

from __future__ import annotations

from typing import Any

from ..limits import TOP_K_MAX
from ..metrics.options import request_schema as metrics_schema
from ..query import SCALES
from ..render import PALETTES, SIGNS, VIS_METHODS


def param_schema(p: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of one method parameter (from its ``to_json()``)."""
    t = p["type"]
    if t == "int":
        s: dict[str, Any] = {"type": "integer"}
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


def widest(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
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


def class_schema(vis: Any) -> dict[str, Any]:
    """A class, by name or by index."""
    return {
        "anyOf": [
            {"type": "string", "enum": vis.classes},
            {"type": "integer", "minimum": 0, "maximum": len(vis.classes) - 1},
        ]
    }


def arguments_schema(vis: Any) -> dict[str, Any]:
    """The union of every method's parameters (each method's own schema is in /config)."""
    arguments: dict[str, Any] = {
        "type": "object",
        "nullable": True,  # null: the method's defaults, as when left out
        "description": "Parameters of the chosen method (see /config for each method's schema); "
        "the union of all methods' parameters is listed here.",
        "properties": {},
        "additionalProperties": False,
    }
    props = arguments["properties"]
    for m in vis.methods.values():
        for p in m.to_json()["params"]:
            props[p["name"]] = widest(props[p["name"]], param_schema(p)) if p["name"] in props else param_schema(p)
    return arguments


def query_properties(vis: Any) -> dict[str, Any]:
    """The fields every attribution query takes: method, arguments, visualization, top_k, metrics."""
    return {
        "method": {"type": "string", "enum": list(vis.methods)},
        "arguments": arguments_schema(vis),
        "visualization": {
            "type": "object",
            "nullable": True,
            "additionalProperties": False,
            "properties": {
                "method": {"type": "string", "enum": list(VIS_METHODS)},
                "sign": {"type": "string", "enum": list(SIGNS)},
                "outlier_perc": {"type": "number", "minimum": 0, "maximum": 50},
                "palette": {
                    "type": "string",
                    "enum": list(PALETTES),
                    "description": "colorblind: blue-white-orange and one hue per sign; captum: captum's",
                },
                "scale": {
                    "description": "the magnitude drawn at full colour: 'map' (each map its own), 'page' "
                    "(one for the page), or that number",
                    "anyOf": [
                        {"type": "string", "enum": list(SCALES)},
                        {"type": "number", "minimum": 1e-30, "maximum": 1e30},
                    ],
                },
            },
        },
        "top_k": {"type": "integer", "minimum": 1, "maximum": TOP_K_MAX},
        **metrics_schema(),
    }
