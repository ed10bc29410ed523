"""``POST /api/v1/examples``: one page of examples with every model's predictions and attributions.

The page's ids come first (the pager), then each example as soon as its attributions are
computed: the first alone, so that something shows early, the rest batched.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Iterator, List, Optional, Sequence

from ..cancel import Cancel
from ..dataset import Example
from ..limits import PAGE_MAX, PAGE_SIZE_MAX
from ..query import CLASS_SOURCES, PREDICTION_FILTERS, PageQuery, parse_page_query
from .schemas import class_schema, query_properties
from .view import Stream, View


def explained(vis: Any, q: PageQuery, examples: Sequence[Example], cancel: Optional[Cancel] = None
              ) -> List[Dict[str, Any]]:
    """Every model's predictions and attributions for some examples (one batch per model)."""
    if not examples:
        return []
    per_model = [engine.run(examples, q.method, q.arguments, cancel=cancel) for engine in vis.engines]
    return [vis.presenter.example(ex, [vis.presenter.model(m, ex, results[j], q.visualization, q.top_k)
                                       for m, results in enumerate(per_model)])
            for j, ex in enumerate(examples)]


def page_events(vis: Any, q: PageQuery, first_chunk: int = 1, cancel: Optional[Cancel] = None
                ) -> Iterator[Dict[str, Any]]:
    """Events for one page: ``page`` first, then each ``example`` as soon as it is ready, then ``done``.

    The first ``first_chunk`` examples are computed alone so the page shows something
    early; the rest go through captum in one batched call.
    """
    t0 = time.perf_counter()
    info = vis.pager.find_page(q.filter, q.page, q.page_size, cancel)
    yield {"type": "page", **info.to_json()}
    examples = vis.store.get_many(info.ids, cancel)
    chunks = [examples] if first_chunk <= 0 or len(examples) <= first_chunk else [
        examples[:first_chunk], examples[first_chunk:]]
    for chunk in chunks:
        for ex_json in explained(vis, q, chunk, cancel):
            yield {"type": "example", "example": ex_json}
    yield {"type": "done", "elapsed_ms": round((time.perf_counter() - t0) * 1000, 1)}


def page_document(vis: Any, q: PageQuery, cancel: Optional[Cancel] = None) -> Dict[str, Any]:
    """One page as a single JSON document (the non-streaming answer)."""
    result: Dict[str, Any] = {"page": None, "examples": []}
    for event in page_events(vis, q, first_chunk=0, cancel=cancel):
        if event["type"] == "page":
            result["page"] = {k: v for k, v in event.items() if k != "type"}
        elif event["type"] == "example":
            result["examples"].append(event["example"])
        else:
            result["elapsed_ms"] = event["elapsed_ms"]
    return result


def examples(vis: Any, body: Any, cancel: Optional[Cancel] = None) -> Any:
    q = body if isinstance(body, PageQuery) else parse_page_query(body, vis.defaults)
    return Stream(page_events(vis, q, cancel=cancel)) if q.stream else page_document(vis, q, cancel)


def request_schema(vis: Any) -> Dict[str, Any]:
    return {
        "type": "object",
        "nullable": True,  # an empty or null body: the first page with every default
        "additionalProperties": False,
        "properties": dict(query_properties(vis), **{
            "filter": {
                "type": "object",
                "nullable": True,
                "additionalProperties": False,
                "properties": {
                    "classes": {"type": "array", "items": class_schema(vis), "maxItems": max(1, len(vis.classes))},
                    "prediction": {"type": "string", "enum": list(PREDICTION_FILTERS)},
                    "class_source": {"type": "string", "enum": list(CLASS_SOURCES)},
                },
            },
            "page": {"type": "integer", "minimum": 0, "maximum": PAGE_MAX},
            "page_size": {"type": "integer", "minimum": 1, "maximum": PAGE_SIZE_MAX},
            "stream": {"type": "boolean", "description": "answer as NDJSON events (page, example..., done)"},
        }),
    }


VIEW = View("examples", examples,
            "One page of examples matching a filter, with predictions and rendered attributions",
            request_schema=request_schema, streams=True, computes=True, responses={
                "200": {"description": "the page (stream=false), or NDJSON events (stream=true)", "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Page"}},
                    "application/x-ndjson": {"schema": {"$ref": "#/components/schemas/Event"}}}}})
