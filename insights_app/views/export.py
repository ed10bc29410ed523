"""``POST /api/v1/export``: the page's "Export report": a report of the current view, as a file's content.

The body is the examples page request (filter, method, arguments, visualization, top_k) plus
``format`` and ``limit``; the answer is JSON (``filename``, ``media_type``, ``content``), not the
file itself, so that it travels the same way over HTTP and over the notebook widget's comm, and
the page saves it with a download link. ``html`` is the self-contained report of
:func:`insights_app.page.export.html_report` (the filter's first ``limit`` examples, images inline);
``csv`` is every example's predictions from the dataset pass (``limit`` does not apply). The
report's pages are computed with the request's ``Cancel``: a client that hangs up stops it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..cancel import Cancel
from ..page.export import csv_text, html_report
from ..page.fields import Body, Enum, Int, Object
from ..page.query import COMMON_FIRST, PAGE_BODY, PageQuery, page_query
from ..protocols import VisualizerLike
from .view import View

FORMATS = ("html", "csv")  # the page's formats (the NPZ is for the command line and Python)
MEDIA_TYPES = {"html": "text/html", "csv": "text/csv"}
LIMIT_DEFAULT = 100  # examples in an HTML report unless the body says
LIMIT_MAX = 500  # every image inline: a report of more would be a very large answer


@dataclass(frozen=True)
class ExportRequest:
    """The report asked for: the page request it reports on, its format and how many examples."""

    query: PageQuery
    format: str
    limit: int


# What the report takes of a page request (not its page or stream), then its own fields.
BODY: Body[ExportRequest] = Body(
    Object(
        {
            **{k: f for k, f in PAGE_BODY.object.fields.items() if k not in ("page", "page_size", "stream")},
            "format": Enum(
                FORMATS, "html", "html: a self-contained report (images inline); csv: every example's predictions"
            ),
            "limit": Int(1, LIMIT_MAX, LIMIT_DEFAULT, f"examples in an HTML report (default {LIMIT_DEFAULT})"),
        },
        lambda v, state: ExportRequest(page_query(v, state), v["format"], v["limit"]),
        first=("format", "limit") + COMMON_FIRST,
    )
)
PAGE_KEYS = tuple(k for k in BODY.object.keys() if k not in ("format", "limit"))


def export(vis: VisualizerLike, body: Any, cancel: Cancel | None = None) -> dict[str, Any]:
    r = BODY.parse(body, vis.defaults)  # every field checked (a 400 naming it) before anything is computed
    if r.format == "csv":
        content, n = csv_text(vis, model=r.query.filter.model, cancel=cancel)
    else:
        page_body = {k: v for k, v in (body or {}).items() if k in PAGE_KEYS}
        content, n = html_report(vis, page_body, r.limit, cancel)
    return {
        "filename": f"insights-report-{time.strftime('%Y-%m-%d')}.{r.format}",
        "media_type": MEDIA_TYPES[r.format],
        "content": content,
        "examples": n,
    }


RESPONSE_SCHEMA = {
    "type": "object",
    "required": ["filename", "media_type", "content", "examples"],
    "properties": {
        "filename": {"type": "string", "description": "insights-report-<date>.<format>"},
        "media_type": {"type": "string", "enum": sorted(MEDIA_TYPES.values())},
        "content": {"type": "string", "description": "the whole file's text"},
        "examples": {"type": "integer", "minimum": 0, "description": "how many examples the file holds"},
    },
}

VIEW = View(
    "export",
    export,
    "A report of the examples a page request selects (HTML, self-contained) or every example's "
    "predictions (CSV), as a file's name, type and text",
    request_schema=BODY.openapi,
    computes=True,
    responses={
        "200": {"description": "the file to save", "content": {"application/json": {"schema": RESPONSE_SCHEMA}}}
    },
)
