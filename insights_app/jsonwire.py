"""JSON as it goes on the wire: strict, so that no NaN or Infinity ever reaches a client.

Python's json writes ``NaN`` and ``Infinity``, which are not JSON: a browser's ``JSON.parse``
refuses the whole answer. The engine and the presenter keep non-finite numbers out of every
answer (they are that example's error, or ``null``); encoding the HTTP answers and streams
strictly is the guard that a slip is our bug, reported as such, and never an answer the page
cannot read. (The widget's messages go through jupyter_client, which refuses them as well.)
"""

from __future__ import annotations

import json
from typing import Any


class NotJSONCompliant(RuntimeError):
    """An answer held a non-finite number (a bug: it is answered as an internal error)."""


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` refusing NaN and infinities."""
    try:
        return json.dumps(obj, allow_nan=False, **kwargs)
    except ValueError as exc:
        raise NotJSONCompliant(str(exc)) from None
