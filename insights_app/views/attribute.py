"""``POST /api/v1/attribute``: one example under one model, attributed to any class (a click on a class)."""

from __future__ import annotations

from typing import Any

from ..cancel import Cancel
from ..page.query import ATTRIBUTE_BODY, AttributeQuery
from ..page.service import attributed
from ..protocols import VisualizerLike
from .view import View


def attribute(vis: VisualizerLike, body: Any, cancel: Cancel | None = None) -> dict[str, Any]:
    q = body if isinstance(body, AttributeQuery) else ATTRIBUTE_BODY.parse(body, vis.defaults)
    return attributed(vis, q, cancel)


VIEW = View(
    "attribute",
    attribute,
    "Attribute one example under one model to any target class",
    request_schema=ATTRIBUTE_BODY.openapi,
    computes=True,
    responses={
        "200": {
            "description": "the example",
            "content": {
                "application/json": {
                    "schema": {"type": "object", "properties": {"example": {"$ref": "#/components/schemas/Example"}}}
                }
            },
        }
    },
)
