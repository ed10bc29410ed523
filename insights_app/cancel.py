"""Whether a piece of work should stop: its client went away, it was replaced, the server is stopping.

A :class:`Cancel` is handed down with the work (the views, the pager, the engine), which asks
it between steps: between captum calls, and before every forward pass the engine runs. Asked
too late to matter costs nothing; asked early, a hang-up stops the computation it asked for
instead of finishing it for nobody.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .errors import Cancelled


class Cancel:
    """True once :meth:`set` was called or any of its ``checks`` says so."""

    def __init__(self, *checks: Callable[[], bool] | None) -> None:
        self._checks = [c for c in checks if c is not None]
        self._set = threading.Event()

    def set(self) -> None:
        self._set.set()

    def __call__(self) -> bool:
        return self._set.is_set() or any(check() for check in self._checks)

    def raise_if_set(self) -> None:
        """Raise :class:`~insights_app.errors.Cancelled` when the work should stop."""
        if self():
            raise Cancelled("the request was cancelled (its client went away, or the server is stopping)")


def raise_if_cancelled(cancel: Cancel | None) -> None:
    """:meth:`Cancel.raise_if_set` for an optional cancel (None: never cancelled)."""
    if cancel is not None:
        cancel.raise_if_set()
