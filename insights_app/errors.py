"""The errors a user may cause or meet, and the one table that says how each is answered.

Every layer raises these; the transports never decide statuses themselves. The Flask error
handlers, the NDJSON stream and the notebook widget all answer through :func:`error_reply`
(or :func:`error_event` inside a stream), so a failure reads the same in the page, over curl
and in a notebook. Anything not in the table is a bug of ours or of the user's code: it is
logged with its traceback and answered as ``internal error: <type>`` only.
"""

from __future__ import annotations

import logging

from .limits import MAX_BODY_BYTES

log = logging.getLogger(__name__)


class ValidationError(ValueError):
    """A request field that is missing, mistyped or out of bounds; the message starts with the field."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


class UnsupportedMediaType(ValidationError):
    """A POST whose body is not declared as JSON (cross-site forms and text/plain posts)."""

    def __init__(self) -> None:
        super().__init__("Content-Type", "must be application/json")


class RenderError(ValueError):
    """A render option that cannot be honoured (e.g. masked_image with sign 'all')."""


class DatasetError(RuntimeError):
    """The dataset could not produce an example (it raised, or the example is gone)."""


class ComputationError(RuntimeError):
    """The model or captum failed on some examples; the message is shown to the user."""


class StoreError(RuntimeError):
    """The persistent store cannot be used: not ours, damaged, newer than this version, or not writable."""


class Busy(RuntimeError):
    """Too much work is waiting already: the request is refused at once rather than queued."""


class Cancelled(RuntimeError):
    """The work was cancelled: its client went away or asked for something else, or the server is stopping."""


# Most specific first: the first row whose type matches answers.
ERROR_STATUSES: tuple[tuple[type[BaseException], int], ...] = (
    (UnsupportedMediaType, 415),
    (ValidationError, 400),
    (RenderError, 400),
    (DatasetError, 500),
    (ComputationError, 500),
    (StoreError, 500),
    (Busy, 503),
    (Cancelled, 503),
    (ValueError, 400),  # a bad value that reached a library's own checks
)


# What the HTTP layer itself refuses (no route, wrong method, a body over the limit), in its words.
HTTP_ERROR_MESSAGES = {
    404: "not found",
    405: "method not allowed",
    413: f"request body too large (limit {MAX_BODY_BYTES} bytes)",
}
# What each status means, for the API's documentation.
STATUS_MEANINGS = {
    400: "invalid request (the message names the field)",
    401: "token missing",
    403: "token invalid",
    413: "body too large",
    415: "not JSON",
    500: "the model or the dataset failed",
    503: "the server is busy (try again shortly) or stopping",
}


def error_status(exc: BaseException) -> int | None:
    """The HTTP status of an error meant for the user; None for an unexpected one."""
    for kind, status in ERROR_STATUSES:
        if isinstance(exc, kind):
            return status
    return None


def error_message(exc: BaseException) -> str:
    """What the user reads: the message itself, or only the type of an unexpected error."""
    if error_status(exc) is None:
        log.error("unexpected error", exc_info=exc)
        return f"internal error: {type(exc).__name__}"
    return str(exc)


def error_reply(exc: BaseException) -> tuple[int, dict[str, str]]:
    """(status, ``{"error": message}``) for any exception; unexpected ones are a 500."""
    message = error_message(exc)
    return error_status(exc) or 500, {"error": message}


def error_event(exc: BaseException) -> dict[str, str]:
    """The stream event that ends a streamed answer which failed midway."""
    return {"type": "error", "error": error_message(exc)}
