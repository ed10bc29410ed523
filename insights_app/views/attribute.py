"""``POST /api/v1/attribute``: one example under one model, attributed to any class (a click on a class)."""

from __future__ import annotations

from typing import Any

from ..cancel import Cancel
from ..dataset import NotReadYet
from ..errors import ValidationError
from ..query import ATTRIBUTE_BODY, AttributeQuery
from .examples import scored
from .view import View


def example_of(vis: Any, q: AttributeQuery, cancel: Cancel | None = None) -> Any:
    """The query's example, or a 400 naming ``example_id`` (past the end, or not read yet)."""
    try:
        return vis.store.get(q.example_id, cancel)
    except IndexError:
        raise ValidationError("example_id", f"no example {q.example_id} in the dataset") from None
    except NotReadYet as exc:
        raise ValidationError("example_id", f"{exc} (page forward to reach it)") from None


def attribute(vis: Any, body: Any, cancel: Cancel | None = None) -> dict[str, Any]:
    q = body if isinstance(body, AttributeQuery) else ATTRIBUTE_BODY.parse(body, vis.defaults)
    ex = example_of(vis, q, cancel)
    (result,) = scored(vis.engines[q.model], q, [ex], [q.target], cancel)
    model = vis.presenter.model(q.model, ex, result, q.visualization, q.top_k, values=q.values)
    return {"example": vis.presenter.example(ex, [model])}


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
