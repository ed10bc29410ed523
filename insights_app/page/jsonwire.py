"""JSON as it goes on the wire: strict, so that no NaN or Infinity ever reaches a client.

Python's json writes ``NaN`` and ``Infinity``, which are not JSON: a browser's ``JSON.parse``
refuses the whole answer. The engine and the presenter keep non-finite numbers out of every
answer (they are that example's error, or ``null``); encoding the HTTP answers and streams
strictly is the guard that a slip is our bug, reported as such, and never an answer the page
cannot read. (The widget's messages go through jupyter_client, which refuses them as well.)

Images travel as base64 data URLs, most of an answer's bytes (6.4 MB for 16 examples at
224x224). ``json.dumps`` scans every character of every string for what needs escaping:
9.5 ms for such a page. A base64 data URL never needs it, so those made by the renderer
(:class:`Verbatim`) are taken out before encoding and written back as they are: 1.0 ms.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

# A walk that has found no image in this many values gives up and encodes the answer as it is:
# on an answer of plain numbers and labels the walk cost about as much as encoding it.
SEARCH_VALUES = 2000


class NotJSONCompliant(RuntimeError):
    """An answer held a non-finite number (a bug: it is answered as an internal error)."""


class Verbatim(str):
    """A string that needs no JSON escaping (a base64 data URL made by the renderer): written as
    it is. Only code that controls every character may make one."""

    __slots__ = ()


class _NoImages(Exception):
    """The walk gave up: no Verbatim string among the first SEARCH_VALUES values."""


def _take_out(obj: Any, token: str) -> tuple:
    """``obj`` with each Verbatim string replaced by ``token`` + its index, and those strings."""
    found: list[str] = []
    seen = 0

    def walk(o: Any) -> Any:
        nonlocal seen
        seen += 1
        if not found and seen > SEARCH_VALUES:
            raise _NoImages
        t = type(o)
        if t is Verbatim:
            found.append(o)
            return f"{token}{len(found) - 1}"
        if t is dict:
            return {k: walk(v) for k, v in o.items()}
        if t is list or t is tuple:
            return [walk(v) for v in o]
        return o

    return walk(obj), found


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` refusing NaN and infinities, writing Verbatim strings without escaping."""
    token = "verbatim:" + secrets.token_hex(8) + ":"  # new for each answer: no string of the answer can equal it
    try:
        small, found = _take_out(obj, token)
    except _NoImages:
        small, found = obj, []
    try:
        text = json.dumps(small, allow_nan=False, **kwargs)
    except ValueError as exc:
        raise NotJSONCompliant(str(exc)) from None
    if not found:
        return text
    return re.sub('"' + re.escape(token) + r'(\d+)"', lambda m: '"' + found[int(m.group(1))] + '"', text)
