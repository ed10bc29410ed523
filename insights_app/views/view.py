"""What a view is: one request kind, served alike over HTTP and over the notebook widget's comm.

A :class:`View` is a function of (visualizer, JSON body[, cancel]) and what the OpenAPI
document says about it; a view that computes takes the third argument, a
:class:`~insights_app.cancel.Cancel` to hand down to the work. The Flask app serves each as ``/api/v1/<kind>`` (GET without a body, POST with
one); the widget answers ``{"kind": ..., "body": ...}`` messages with the same function.
A view that streams returns a :class:`Stream` of events: NDJSON lines over HTTP, one
message per event in the widget.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..cancel import Cancel
from ..protocols import VisualizerLike

API_PREFIX = "/api/v1"
ERROR_STATUSES_OF_A_QUERY = (400, 401, 403, 413, 415, 500)


@dataclass
class Stream:
    """Events of an answer sent as they are computed (``{"type": ...}`` dictionaries)."""

    events: Iterable[dict[str, Any]]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.events)

    def close(self) -> None:
        """Stop computing (the client went away or asked for something else)."""
        close = getattr(self.events, "close", None)
        if close is not None:
            close()


class Served(VisualizerLike, Protocol):
    """A visualizer as the transports and the OpenAPI document see it: with its table of views."""

    @property
    def views(self) -> Mapping[str, View]: ...


@dataclass(frozen=True)
class View:
    """One request kind of the API."""

    kind: str  # the route is /api/v1/<kind>; the widget's message kind
    run: Callable[..., Any]  # (visualizer, body or None[, cancel]) -> JSON document, or a Stream
    summary: str  # for the OpenAPI document
    takes_body: bool = True  # POST with a JSON body; False: GET
    public: bool = False  # answered without the server's token (health checks)
    streams: bool = False  # answers a body with ``"stream": true`` with a Stream (over the widget comm, always)
    # The OpenAPI schema of the body (given the visualizer: its classes and methods), when it takes one.
    request_schema: Callable[[Served], dict[str, Any]] | None = None
    # The OpenAPI responses object of a success (error responses are added from ``errors``).
    responses: dict[str, Any] = field(default_factory=dict)
    errors: tuple[int, ...] = ERROR_STATUSES_OF_A_QUERY
    computes: bool = (
        False  # runs the models: served by the model threads, cancellable, refused (503) when too many wait
    )

    def __post_init__(self) -> None:
        if self.computes and 503 not in self.errors:
            object.__setattr__(self, "errors", tuple(self.errors) + (503,))

    def answer(self, vis: VisualizerLike, body: Any, cancel: Cancel | None = None) -> Any:
        """Run the view (handing it ``cancel`` when it takes one)."""
        try:
            takes_cancel = len(inspect.signature(self.run).parameters) >= 3
        except (TypeError, ValueError):  # a builtin or a callable without a signature
            takes_cancel = False
        return self.run(vis, body, cancel) if takes_cancel else self.run(vis, body)

    @property
    def path(self) -> str:
        return f"{API_PREFIX}/{self.kind}"

    @property
    def http_method(self) -> str:
        return "POST" if self.takes_body else "GET"
