"""``POST /api/v1/export``: the page's "Export report": a report of the current view, as a file's content.

The body is the examples page request (filter, method, arguments, visualization, top_k) plus
``format`` and ``limit``; the answer is JSON (``filename``, ``media_type``, ``content``), not the
file itself, so that it travels the same way over HTTP and over the notebook widget's comm, and
the page saves it with a download link. ``html`` is the self-contained report of
:func:`insights_app.export.html_report` (the filter's first ``limit`` examples, images inline);
``csv`` is every example's predictions from the dataset pass (``limit`` does not apply). The
report's pages are computed with the request's ``Cancel``: a client that hangs up stops it.
"""

from __future__ import annotations

import time
from typing import Any

from ..cancel import Cancel
from ..export import csv_text, html_report
from ..query import COMMON_KEYS, _check_keys, _enum, _int, _require_object
from . import examples
from .view import View

FORMATS = ("html", "csv")  # the page's formats (the NPZ is for the command line and Python)
MEDIA_TYPES = {"html": "text/html", "csv": "text/csv"}
LIMIT_DEFAULT = 100  # examples in an HTML report unless the body says
LIMIT_MAX = 500  # every image inline: a report of more would be a very large answer
PAGE_KEYS = COMMON_KEYS + ("filter",)  # what the report takes of a page request (not its page or stream)
KEYS = PAGE_KEYS + ("format", "limit")


def export(vis: Any, body: Any, cancel: Cancel | None = None) -> dict[str, Any]:
    obj = _require_object(body, "body")
    _check_keys(obj, KEYS, "")
    fmt = _enum(obj, "format", "html", FORMATS)
    limit = _int(obj, "limit", LIMIT_DEFAULT, 1, LIMIT_MAX)
    page_body = {k: v for k, v in obj.items() if k in PAGE_KEYS}
    q = vis.parse_page(page_body)  # every field checked (a 400 naming it) before anything is computed
    if fmt == "csv":
        content, n = csv_text(vis, model=q.filter.model, cancel=cancel)
    else:
        content, n = html_report(vis, page_body, limit, cancel)
    return {
        "filename": f"insights-report-{time.strftime('%Y-%m-%d')}.{fmt}",
        "media_type": MEDIA_TYPES[fmt],
        "content": content,
        "examples": n,
    }


def request_schema(vis: Any) -> dict[str, Any]:
    page = examples.request_schema(vis)
    props = {k: v for k, v in page["properties"].items() if k in PAGE_KEYS}
    props["format"] = {
        "type": "string",
        "enum": list(FORMATS),
        "description": "html: a self-contained report (images inline); csv: every example's predictions",
    }
    props["limit"] = {
        "type": "integer",
        "minimum": 1,
        "maximum": LIMIT_MAX,
        "description": f"examples in an HTML report (default {LIMIT_DEFAULT})",
    }
    return {
        "type": "object",
        "nullable": True,  # an empty or null body: an HTML report of the first examples
        "additionalProperties": False,
        "properties": props,
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
    request_schema=request_schema,
    computes=True,
    responses={
        "200": {"description": "the file to save", "content": {"application/json": {"schema": RESPONSE_SCHEMA}}}
    },
)
