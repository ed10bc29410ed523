"""``POST /api/v1/dataset_pass``: start, cancel or watch the dataset pass (triage's data).

The pass runs on its own thread (and each batch on the models' compute threads), so this
view never waits for a model: ``start`` and ``cancel`` answer at once with the progress. With
``"stream": true`` it sends a ``progress`` event at once and then twice a second while the
pass runs, for at most :data:`WATCH_S` seconds (a client watching longer asks again), then
``done``; a client that goes away stops the watching, not the pass.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from ..cancel import Cancel
from ..page.fields import Body, Bool, Enum, Object
from ..protocols import VisualizerLike
from ..triage import PassProgress
from .view import Stream, View

ACTIONS = ("status", "start", "cancel")
WATCH_S = 30.0  # one streamed answer watches the pass this long at most
EVERY_S = 0.5


def progress_json(vis: VisualizerLike, progress: PassProgress) -> dict[str, Any]:
    out = progress.to_json()
    out["losses"] = [None if c is None else {"name": c.name, "note": c.note} for c in vis.dataset_pass.losses]
    return out


def watch(vis: VisualizerLike, cancel: Cancel | None, watch_s: float = WATCH_S) -> Iterator[dict[str, Any]]:
    deadline = time.monotonic() + watch_s
    while True:
        progress = vis.dataset_pass.progress()
        yield {"type": "progress", **progress_json(vis, progress)}
        if progress.state != "running" or time.monotonic() >= deadline or (cancel is not None and cancel()):
            break
        vis.dataset_pass.wait(timeout=EVERY_S)
    yield {"type": "done"}


BODY: Body[dict[str, Any]] = Body(
    Object(
        {
            "action": Enum(ACTIONS, "status"),
            "stream": Bool(False, "progress events while the pass runs (at most 30 s)"),
        }
    )
)


def dataset_pass(vis: VisualizerLike, body: Any, cancel: Cancel | None = None) -> Any:
    v = BODY.parse(body, vis.defaults)
    action = v["action"]
    p = vis.dataset_pass
    progress = p.start() if action == "start" else p.cancel() if action == "cancel" else p.progress()
    if action == "cancel":
        progress = p.wait(timeout=5.0)
    if v["stream"]:
        return Stream(watch(vis, cancel))
    return progress_json(vis, progress)


PROGRESS_SCHEMA = {
    "type": "object",
    "properties": {
        "state": {"type": "string", "enum": ["idle", "running", "paused", "done", "failed"]},
        "done": {"type": "integer"},
        "total": {"type": "integer", "nullable": True},
        "rate": {"type": "number", "nullable": True, "description": "examples per second"},
        "eta_s": {"type": "number", "nullable": True},
        "message": {"type": "string"},
        "complete": {"type": "boolean"},
        "limit": {"type": "integer"},
        "failed_examples": {"type": "integer"},
        "losses": {"type": "array", "items": {"type": "object", "nullable": True}},
    },
}


VIEW = View(
    "dataset_pass",
    dataset_pass,
    "Start, cancel or watch the dataset pass (confusion matrix, losses)",
    request_schema=BODY.openapi,
    streams=True,
    responses={
        "200": {
            "description": "the pass's progress, or NDJSON progress events (stream=true)",
            "content": {
                "application/json": {"schema": PROGRESS_SCHEMA},
                "application/x-ndjson": {"schema": PROGRESS_SCHEMA},
            },
        }
    },
)
