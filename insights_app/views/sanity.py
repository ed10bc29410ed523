"""``POST /api/v1/sanity``: the model-randomization check of one example's map under one model.

The body is an attribute request (example, model, method, arguments, target, visualization);
the answer has the example with its original map, and per randomization step (the layers
randomized so far, last layer first) the map on the randomized copy, drawn the same way, with
its Spearman rank correlation and SSIM against the original, and whether the method is
flagged "insensitive to the model" (see :mod:`insights_app.metrics.sanity`); the check itself
is :func:`insights_app.page.service.sanity_checked`.
"""

from __future__ import annotations

from typing import Any

from ..cancel import Cancel
from ..page.query import ATTRIBUTE_BODY, AttributeQuery
from ..page.service import sanity_checked
from ..protocols import VisualizerLike
from .view import View


def sanity(vis: VisualizerLike, body: Any, cancel: Cancel | None = None) -> dict[str, Any]:
    q = body if isinstance(body, AttributeQuery) else ATTRIBUTE_BODY.parse(body, vis.defaults)
    return sanity_checked(vis, q, cancel)


VIEW = View(
    "sanity",
    sanity,
    "The model-randomization sanity check of one example's map under one model",
    request_schema=ATTRIBUTE_BODY.openapi,
    computes=True,
    responses={
        "200": {
            "description": "the example, and its maps on the model randomized from the last layer down",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "example": {"$ref": "#/components/schemas/Example"},
                            "sanity": {"type": "object"},
                        },
                    }
                }
            },
        }
    },
)
