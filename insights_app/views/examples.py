"""``POST /api/v1/examples``: one page of examples with every model's predictions and attributions.

The body is parsed here; the page itself (the pager's ids, the previews, each example as soon as
it is computed) is :mod:`insights_app.page.service`'s, as a document or, with ``"stream": true``, a
:class:`Stream` of its events.
"""

from __future__ import annotations

from typing import Any

from ..cancel import Cancel
from ..page.query import PAGE_BODY, PageQuery
from ..page.service import page_document, page_events
from ..protocols import VisualizerLike
from .view import Stream, View


def examples(vis: VisualizerLike, body: Any, cancel: Cancel | None = None) -> Stream | dict[str, Any]:
    q = body if isinstance(body, PageQuery) else PAGE_BODY.parse(body, vis.defaults)
    return Stream(page_events(vis, q, cancel=cancel)) if q.stream else page_document(vis, q, cancel)


VIEW = View(
    "examples",
    examples,
    "One page of examples matching a filter, with predictions and rendered attributions",
    request_schema=PAGE_BODY.openapi,
    streams=True,
    computes=True,
    responses={
        "200": {
            "description": "the page (stream=false), or NDJSON events (stream=true)",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Page"}},
                "application/x-ndjson": {"schema": {"$ref": "#/components/schemas/Event"}},
            },
        }
    },
)
